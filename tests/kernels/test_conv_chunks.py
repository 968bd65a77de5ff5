"""Batch-chunked convolutions: ``kernels/op_conv.py`` splits the batch so that one im2col buffer stays below
``COLUMN_BUDGET`` elements (64 Mi by default, so no small test ever uses more than one chunk). Here the budget is
lowered so that every sample is a chunk of its own, and the chunked forward, VJP and a whole explanation must equal
the unchunked ones: each chunk computes the same per-sample GEMM, so the results are equal to float64 rounding."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

import onnxlrp
from onnxlrp.kernels import op_conv
from tests.helpers.compare import assert_close
from tests.helpers.onnx_builders import make_model

#: (C, M, group, attrs): stride 1 (flat shift; its VJP is the flipped-kernel flat shift), stride 2 (im2col; the VJP
#: scatters columns), grouped (im2col per group) and dilated
GEOMETRIES = {
    "stride1": (3, 4, 1, {"pads": [1, 1, 1, 1]}),
    "stride2": (3, 4, 1, {"strides": [2, 2], "pads": [1, 0, 1, 0]}),
    "grouped": (4, 6, 2, {"strides": [2, 1], "pads": [1, 1, 1, 1]}),
    "dilated": (2, 3, 1, {"dilations": [2, 2], "pads": [2, 2, 2, 2]}),
}
BATCH = 5
#: each comparison: the chunked result equals the unchunked one up to a few float64 ulps (measured: 0, bit-equal)
TOL = 1e-14


def _attrs(group, extra):
    return {"group": group, "auto_pad": "NOTSET", **extra}


def _data(c, m, group, seed=0):
    r = np.random.default_rng(seed)
    x = r.normal(size=(BATCH, c, 7, 6))
    w = r.normal(size=(m, c // group, 3, 3))
    b = r.normal(size=m)
    return x, w, b


@pytest.mark.parametrize("geom", list(GEOMETRIES))
def test_chunked_forward_equals_unchunked(monkeypatch, geom):
    c, m, group, extra = GEOMETRIES[geom]
    x, w, b = _data(c, m, group)
    attrs = _attrs(group, extra)
    whole = op_conv.conv_forward(np, x, w, b, attrs)
    chunks = []
    monkeypatch.setattr(op_conv, "_chunks", _spy(op_conv._chunks, chunks))
    monkeypatch.setattr(op_conv, "COLUMN_BUDGET", 1)              # one sample per chunk
    chunked = op_conv.conv_forward(np, x, w, b, attrs)
    assert max(len(c) for c in chunks) == BATCH                   # really chunked, one sample each
    assert chunked.shape == whole.shape
    assert_close(chunked, whole, rtol=TOL, atol=TOL)


@pytest.mark.parametrize("geom", list(GEOMETRIES))
def test_chunked_vjp_equals_unchunked(monkeypatch, geom):
    c, m, group, extra = GEOMETRIES[geom]
    x, w, _ = _data(c, m, group)
    attrs = _attrs(group, extra)
    g = np.random.default_rng(1).normal(size=op_conv.conv_forward(np, x, w, None, attrs).shape)
    whole = op_conv.conv_vjp(np, g, w, x.shape, attrs)
    chunks = []
    monkeypatch.setattr(op_conv, "_chunks", _spy(op_conv._chunks, chunks))
    monkeypatch.setattr(op_conv, "COLUMN_BUDGET", 1)
    chunked = op_conv.conv_vjp(np, g, w, x.shape, attrs)
    assert max(len(c) for c in chunks) == BATCH
    assert chunked.shape == whole.shape == x.shape
    assert_close(chunked, whole, rtol=TOL, atol=TOL)
    # and the VJP is the adjoint of the (chunked) forward: <g, conv(v)> = <conv_vjp(g), v>
    v = np.random.default_rng(2).normal(size=x.shape)
    lhs, rhs = float(np.sum(g * op_conv.conv_forward(np, v, w, None, attrs))), float(np.sum(chunked * v))
    assert_close(lhs, rhs, rtol=3e-15)                             # measured 2.6e-16


def _spy(chunks_fn, seen: list):
    def wrapped(n, per_sample):
        out = chunks_fn(n, per_sample)
        seen.append(out)
        return out
    return wrapped


def _strided_cnn():
    """Conv (stride 1) - Relu - Conv (stride 2, 2 groups) - Relu - Conv (stride 1) - GAP - Flatten - Gemm."""
    r = np.random.default_rng(3)
    init = {"w1": r.normal(size=(4, 2, 3, 3)), "b1": r.normal(size=4) * 0.1,
            "w2": r.normal(size=(6, 2, 3, 3)), "b2": r.normal(size=6) * 0.1,
            "w3": r.normal(size=(5, 6, 3, 3)), "b3": r.normal(size=5) * 0.1, "w4": r.normal(size=(3, 5))}
    init = {k: v.astype(np.float32) for k, v in init.items()}
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["a1"]),
             helper.make_node("Conv", ["a1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], strides=[2, 2], group=2),
             helper.make_node("Relu", ["c2"], ["a2"]),
             helper.make_node("Conv", ["a2", "w3", "b3"], ["c3"], pads=[1, 1, 1, 1]),
             helper.make_node("GlobalAveragePool", ["c3"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Gemm", ["f", "w4"], ["y"], transB=1)]
    return make_model(nodes, [("x", ["N", 2, 8, 8])], [("y", ["N", 3])], init)


@pytest.mark.parametrize("method", ["epsilon_plus", "gradient"])
def test_chunked_explanation_equals_unchunked(monkeypatch, method):
    """A whole float64 explanation with every Conv forward and VJP chunked per sample equals the unchunked one."""
    model = _strided_cnn()
    x = np.random.default_rng(4).normal(size=(BATCH, 2, 8, 8))
    ex = onnxlrp.Explainer(model, dtype="float64")
    whole = ex.explain(x, method=method, target=1)
    monkeypatch.setattr(op_conv, "COLUMN_BUDGET", 1)
    chunked = onnxlrp.Explainer(model, dtype="float64").explain(x, method=method, target=1)
    assert_close(chunked.output, whole.output, rtol=TOL, atol=TOL)
    assert_close(chunked.relevance, whole.relevance, rtol=TOL, atol=TOL)
