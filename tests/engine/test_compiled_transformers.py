"""The compiled backend on transformers: ``onnxlrp.compiler.compile`` writes AttnLRP, CP-LRP, the gradient and the
ε-rule into BERT (TorchScript and dynamo exports), a torchvision ViT, a Llama and a GPT-2 (the tiny random models
of ``tests/helpers/transformer_reference.py`` and ``llm_reference.py``), and onnxruntime alone runs the result.

The compiled model is run with onnxruntime and numpy only (``GraphOptimizationLevel.ORT_ENABLE_BASIC``), on a batch
and a sequence length other than the export's (the batch dimension stays symbolic in the graph), and its relevance
equals the numpy backend's per sample: float32 ≤ 1e-5 and float64 ≤ 1e-3 (rel. L2; measured 9e-8 .. 1.3e-6 against
float32 and 1e-7 .. 4e-6 against float64, ViT ε-rule 1e-4 as numpy's own float32 against float64: the compiled graph
runs in float32 and differs from the numpy float32 path only in rounding order).
"""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest

from onnxlrp import Explainer
from onnxlrp.compiler import compile as compile_method
from tests.helpers import HELPERS
from tests.helpers.compare import record, rel_err

pytestmark = pytest.mark.slow
pytest.importorskip("torch")
pytest.importorskip("transformers")

#: the compiled graph against the numpy backend in float32 / float64 (rel. L2 per sample)
TOL32, TOL64 = 1e-5, 1e-3
#: a free batch dimension and a free sequence length are given these sizes (the exports used others)
BATCH, LENGTH = 3, 7
METHODS = ("attnlrp", "cp_lrp", "gradient", "epsilon")


def _export(tmp_path_factory, script: str, folder: str):
    """Run the reference script ``script OUT_DIR`` in its own process (it also computes LXT references there)."""
    out = tmp_path_factory.mktemp(folder)
    proc = subprocess.run([sys.executable, os.path.join(HELPERS, script), str(out)], cwd=str(out),
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        pytest.fail(f"{script} failed:\n{proc.stderr[-4000:]}")
    return out


@pytest.fixture(scope="module")
def encoders(tmp_path_factory):
    return _export(tmp_path_factory, "transformer_reference.py", "encoders")


@pytest.fixture(scope="module")
def decoders(tmp_path_factory):
    return _export(tmp_path_factory, "llm_reference.py", "decoders")


def _model_path(folder, name: str) -> str:
    path = folder / f"{name}.onnx"
    if not path.exists():
        reason = (folder / f"{name}.error").read_text() if (folder / f"{name}.error").exists() else "not exported"
        pytest.skip(f"{name}: {reason}")
    return str(path)


def _run_compiled(model, feeds: dict) -> np.ndarray:
    """The compiled model's ``relevance``, computed by onnxruntime (basic graph optimisations) from ``feeds``."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(["relevance"], feeds)[0]


def _per_sample(actual, expected) -> float:
    return max(rel_err(a, e) for a, e in zip(actual, expected))


def _check(path: str, methods=METHODS):
    ex32, ex64 = Explainer(path), Explainer(path, dtype="float64")
    shape = [d if isinstance(d, int) and d > 0 else (BATCH if i == 0 else LENGTH)
             for i, d in enumerate(ex32.session.input_info.shape)]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    classes = ex32.explain(x, "gradient").output.shape[-1]
    target = np.arange(shape[0], dtype=np.int64) % classes
    name = os.path.basename(path)
    for method in methods:
        compiled = compile_method(path, method)
        feeds = {ex32.session.input_name: x, "target": target}
        got = _run_compiled(compiled, feeds)
        ref32 = ex32.explain(x, method, target=target).relevance
        ref64 = ex64.explain(x.astype(np.float64), method, target=target).relevance
        err32 = record(_per_sample(got, ref32), TOL32, f"{name} {method} float32")
        err64 = record(_per_sample(got, ref64), TOL64, f"{name} {method} float64")
        print(f"{name:18s} {method:10s} rel. L2 vs float32 {err32:.1e}, vs float64 {err64:.1e}")
        assert got.shape == x.shape and np.isfinite(got).all()
        assert err32 <= TOL32, f"{name} {method}: {err32:.2e} > {TOL32:g} against the float32 backend"
        assert err64 <= TOL64, f"{name} {method}: {err64:.2e} > {TOL64:g} against the float64 backend"
        if method == "gradient":  # a negative target explains the prediction, as target=None does
            predicted = _run_compiled(compiled, {**feeds, "target": np.full_like(target, -1)})
            err = record(_per_sample(predicted, ex32.explain(x, method).relevance), TOL32,
                         f"{name} predicted class")
            assert err <= TOL32, f"{name}: the predicted class (target -1) differs by {err:.2e}"


@pytest.mark.parametrize("name", ["bert", "bert_dynamo", "vit"])
def test_encoders_compile_and_equal_the_numpy_backend(encoders, name):
    """BERT on its input embeddings, both exports; the ViT on its image (its attention's packed projection is
    unflattened by a run-time shape, whose ranks the compiler reads from one probe run)."""
    _check(_model_path(encoders, name))


@pytest.mark.parametrize("name", ["llama", "gpt2", "llama_dynamo", "gpt2_dynamo"])
def test_decoders_compile_and_equal_the_numpy_backend(decoders, name):
    _check(_model_path(decoders, name))
