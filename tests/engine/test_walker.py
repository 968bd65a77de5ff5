"""The backward walk (``onnxlrp/engine/walker.py``): what ``keep`` returns, and scalar relevance broadcast to its
input. Written for the survivors of mutation testing (``tools/mutation_report.md``)."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

import onnxlrp
from tests.helpers.compare import assert_close
from tests.helpers.onnx_builders import make_model


def _mlp():
    """Relu -> Gemm -> Relu -> Gemm on (N, 3); tensors a, h, r, y."""
    r = np.random.default_rng(0)
    init = {"w1": r.normal(size=(4, 3)).astype(np.float32), "w2": r.normal(size=(2, 4)).astype(np.float32)}
    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Gemm", ["a", "w1"], ["h"], transB=1),
             helper.make_node("Relu", ["h"], ["r"]), helper.make_node("Gemm", ["r", "w2"], ["y"], transB=1)]
    return make_model(nodes, [("x", ["N", 3])], [("y", ["N", 2])], init)


def test_keep_returns_exactly_the_named_tensors_or_all():
    ex = onnxlrp.Explainer(_mlp(), dtype="float64")
    x = np.array([[1.0, 2.0, -0.5], [0.5, -1.0, 3.0]])
    none = ex.explain(x, method="lrp0", target=0)
    assert set(none.intermediate) == set()
    one = ex.explain(x, method="lrp0", target=0, keep=["h"])
    assert set(one.intermediate) == {"h"}
    every = ex.explain(x, method="lrp0", target=0, keep="all")
    assert set(every.intermediate) == {"y", "r", "h", "a"}
    assert_close(every.intermediate["h"], one.intermediate["h"], rtol=0, atol=0)
    # LRP-0 without biases conserves layer by layer: what reaches each kept tensor sums to the logit
    for name in ("y", "r", "h", "a"):
        assert_close(every.intermediate[name].sum(axis=1), none.output[:, 0], rtol=1e-14, atol=1e-15)
    assert_close(every.relevance, none.relevance, rtol=0, atol=0)


@pytest.mark.filterwarnings("ignore::onnxlrp.errors.ZeroRelevanceWarning")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_relevance_of_an_all_zero_input_is_broadcast_to_its_shape_and_dtype(dtype):
    """Every input negative: the first Relu outputs zeros, the Gemm after it skips the work and returns the scalar
    0 for its input (``core.pullback``); the walker broadcasts it to a zero array of the input's shape and dtype."""
    ex = onnxlrp.Explainer(_mlp(), dtype=dtype)
    x = -np.abs(np.random.default_rng(1).normal(size=(2, 3))).astype(dtype) - 0.1
    res = ex.explain(x, method="epsilon", target=1, keep=["a"])
    assert res.intermediate["a"].shape == (2, 3) and res.intermediate["a"].dtype == np.dtype(dtype)
    assert res.relevance.shape == (2, 3) and res.relevance.dtype == np.dtype(dtype)
    assert not res.relevance.any()
