"""The compiled backend (``backend="onnx"``) on onnxruntime's float16 and int8 QDQ exports of the digits CNN, against
the numpy backend on the same export.

- QDQ: the compiled graph reads the same onnxruntime values and emits ``QuantizeLinear``'s straight-through VJP
  (``Round`` for ``rint``); measured relative L2 error against the numpy backend 2e-7 (float32 rounding).
- float16 with float32 inputs and outputs: the model's float16 values are cast to float32 where the backward pass
  reads them (the numpy backend computes in the session dtype the same way). Which intermediate values keep their
  float16 rounding differs between the two runs (onnxruntime computes some float16 ops in float32 internally), so
  the maps differ as the numpy backend's float32 and float64 runs do (relative L2 up to 0.05 either way); measured
  lowest per-sample Spearman against the numpy backend 0.9992 (epsilon_plus), 0.9979 (gradient), 0.9907
  (integrated gradients, 8 steps), logits within 8e-3 (of up to 20).
- float16 inputs stay refused: the compiled graph takes the model's own inputs, and relevance is float32.
"""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import onnxlrp
from onnxlrp.evaluate.similarity import spearman
from tests.conftest import DIGITS_MODEL
from tests.helpers import REPO
from tests.helpers.compare import assert_close, assert_rel, within
from tests.helpers.exports import float16_export, qdq_export

METHODS = {"epsilon_plus": {}, "gradient": {}, "integrated_gradients": {"steps": 8}}
#: 1 - the lowest per-sample Spearman of the float16 export's compiled maps against the numpy backend's; measured
#: 7.6e-4, 2.1e-3, 9.3e-3
FLOAT16_SPEARMAN_TOL = {"epsilon_plus": 0.01, "gradient": 0.02, "integrated_gradients": 0.08}


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    files = sorted((REPO / "models" / "digits" / "samples").glob("*.png"))
    return np.stack([np.asarray(Image.open(f).convert("L"), dtype=np.float32) / 255 for f in files])[:, None]


def test_compiled_qdq_export_equals_the_numpy_backend(x, tmp_path):
    model = str(qdq_export(DIGITS_MODEL, tmp_path / "qdq.onnx", x, "image"))
    numpy_backend, compiled = onnxlrp.Explainer(model), onnxlrp.Explainer(model, backend="onnx")
    for method, params in METHODS.items():
        a = numpy_backend.explain(x, method=method, target=3, **params)
        b = compiled.explain(x, method=method, target=3, **params)
        assert_rel(b.relevance, a.relevance, 1e-6, f"qdq {method}")  # measured 1.4e-7
        assert_close(b.output, a.output, rtol=0, atol=1e-6, label=f"qdq {method} logits")  # measured 0


def test_compiled_float16_export_follows_the_numpy_backend(x, tmp_path):
    model = str(float16_export(DIGITS_MODEL, tmp_path / "fp16.onnx", keep_io_types=True))
    numpy_backend, compiled = onnxlrp.Explainer(model), onnxlrp.Explainer(model, backend="onnx")
    for method, params in METHODS.items():
        a = numpy_backend.explain(x, method=method, target=3, **params)
        b = compiled.explain(x, method=method, target=3, **params)
        rho = spearman(b.relevance, a.relevance)
        assert within(1 - rho.min(), FLOAT16_SPEARMAN_TOL[method], f"fp16 {method}: 1 - Spearman"), rho
        assert_close(b.output, a.output, rtol=0, atol=0.07, label=f"fp16 {method} logits")
    float16_io = str(float16_export(DIGITS_MODEL, tmp_path / "fp16_io.onnx", keep_io_types=False))
    with pytest.raises(onnxlrp.errors.CompileError, match="is float16"):
        onnxlrp.Explainer(float16_io, backend="onnx").explain(x, method="gradient")
