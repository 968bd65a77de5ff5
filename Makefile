# Two commands for a fresh machine: `make demo` and `make test`. Each sets up .venv itself.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test bench clean

$(VENV)/.runtime: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.test: pyproject.toml $(VENV)/.runtime
	$(PY) -m pip install -q -e '.[test]'
	touch $@

demo: $(VENV)/.runtime
	$(PY) -m onnxlrp explain models/digits/digits_cnn.onnx models/digits/samples \
	    --labels models/digits/labels.txt --method epsilon_plus_flat,gradient,lrp0 --report --out demo-out
	@echo "Open demo-out/report.html"

test: $(VENV)/.test
	$(PY) -m pytest -q

bench: $(VENV)/.test
	$(PY) tools/bench.py

clean:
	rm -rf $(VENV) demo-out
