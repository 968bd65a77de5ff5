# Two commands for a fresh machine: `make demo` and `make test`. Each sets up .venv itself.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test fuzz bench bench-text clean browser mutate

$(VENV)/.runtime: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.compile: pyproject.toml $(VENV)/.runtime
	$(PY) -m pip install -q -e '.[compile]'
	touch $@

$(VENV)/.test: pyproject.toml $(VENV)/.runtime
	$(PY) -m pip install -q -e '.[test,audit,ray]'
	$(PY) -m pip install -q --no-deps signxai2==0.5.0 lxt==2.1 quantus==0.6.0
	touch $@

# The shipped digits CNN on its ten sample images, three methods; then epsilon_plus compiled into the model
# (demo-out/digits_cnn.epsilon_plus.onnx, runnable with onnxruntime alone; needs the `compile` extra, onnx-ir).
demo: $(VENV)/.compile
	$(PY) -m onnxlrp explain models/digits/digits_cnn.onnx models/digits/samples \
	    --labels models/digits/labels.txt --method epsilon_plus,epsilon_gamma_box,input_x_gradient \
	    --report --out demo-out
	$(PY) -m onnxlrp compile models/digits/digits_cnn.onnx --method epsilon_plus \
	    -o demo-out/digits_cnn.epsilon_plus.onnx

test: $(VENV)/.test browser
	$(PY) -m ruff check .
	ONNXLRP_STRICT=1 $(PY) -m pytest -q

# Headless Chromium for the report rendering test (tests/views/test_report.py). Installed with apt when running as
# root. `make test` runs pytest with ONNXLRP_STRICT=1, where a skipped test is a failure (tests/conftest.py): a peer,
# an exporter or Chromium that is missing fails the run instead of passing it untested.
browser:
	-@command -v chromium >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1 || \
	    { echo "installing chromium (apt) for the report test"; \
	      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 \
	      || echo "could not install chromium; the report rendering test will fail"; }

# The fuzz suite's long profile: many more generated models, inputs and command lines than `make test` runs
# (tests/fuzz/conftest.py; a few minutes on 2 cores). ONNXLRP_FUZZ=random looks further with a fresh seed each run.
fuzz: $(VENV)/.test
	ONNXLRP_FUZZ=long $(PY) -m pytest -q tests/fuzz

# Mutation testing of the engine core with mutmut (slow; not part of `make test`): rules, rule algebra, walker,
# canonizers, seeds, contrastive heads and the conv/dense/pool kernels against the fast test folders. Runs in
# build/mutate/ (tools/mutate.sh); the configuration is [tool.mutmut] in pyproject.toml; tools/mutation_report.md
# records the survivors and what became of each. `make mutate MUTANTS='onnxlrp.lrp.rules*'` limits the run.
mutate: $(VENV)/.test
	PY=$(abspath $(PY)) tools/mutate.sh $(MUTANTS)

# VGG-16 and ResNet-50, epsilon_plus_flat: zennit, the numpy backend, the compiled graph and the plain onnxruntime
# forward in one process; prints times, peak memory and the ratios (compiled/zennit, compiled/forward, numpy/zennit).
# BENCH_ARGS passes options through, e.g. make bench BENCH_ARGS='--models resnet50 --batch 8 --ort-opt basic'.
bench: $(VENV)/.test
	$(PY) tools/bench.py $(BENCH_ARGS)

bench-text: $(VENV)/.test
	[ -f build/text-example/minilm_sentiment.onnx ] || $(PY) tools/make_text_example.py
	$(PY) tools/bench_text.py

clean:
	rm -rf $(VENV) demo-out
