"""The PatternNet / PatternAttribution rules on one node: the op's VJP with the weight swapped for ``A`` or
``W ⊙ A``, against an explicit numpy transpose (a strided, grouped, asymmetrically padded Conv; a Gemm with
``transB``), and the one-line refusals."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from onnxlrp.engine.graph import Graph
from onnxlrp.engine.kernel import Call
from onnxlrp.engine.registry import resolve
from onnxlrp.errors import MethodError, RuleNotApplicableError
from onnxlrp.lrp.pattern import PatternAttribution, PatternNet
from tests.helpers.compare import assert_rel
from tests.helpers.onnx_builders import make_model
from tests.methods.test_pattern import conv_backward

R = np.random.default_rng(2)
CFG = dict(stride=2, pads=(1, 0, 0, 1), group=2)


def conv_call(x, w):
    model = make_model([helper.make_node("Conv", ["x", "w"], ["y"], strides=[2, 2], pads=[1, 0, 0, 1], group=2)],
                       [("x", list(x.shape))], [("y", None)], {"w": w.astype(np.float32)})
    node = Graph(model, check=False).nodes[0]
    return resolve(node), Call(node, (x, w), (), (True, False), np)


@pytest.mark.parametrize("rule_type", [PatternNet, PatternAttribution])
def test_conv_rule_is_the_transpose_with_the_swapped_weight(rule_type):
    x, w, a = R.normal(size=(2, 4, 7, 6)), R.normal(size=(6, 2, 3, 3)), R.normal(size=(6, 2, 3, 3))
    kernel, call = conv_call(x, w)
    r_out = R.normal(size=kernel.forward(call)[0].shape)
    swapped = a if rule_type is PatternNet else w * a
    expected = conv_backward(r_out, swapped, x.shape, CFG)
    got = rule_type(a).propagate(kernel, call, (r_out,))[0]
    assert_rel(got, expected, 1.5e-15, rule_type.__name__)  # measured 1.2e-16


def test_gemm_rule_uses_the_effective_weight():
    x, b = R.normal(size=(3, 5)), R.normal(size=(4, 5))      # transB: effective weight (5, 4)
    model = make_model([helper.make_node("Gemm", ["x", "b"], ["y"], transB=1)], [("x", [3, 5])], [("y", [3, 4])],
                       {"b": b.astype(np.float32)})
    node = Graph(model).nodes[0]
    kernel, call = resolve(node), Call(node, (x, b), (), (True, False), np)
    a, r_out = R.normal(size=(5, 4)), R.normal(size=(3, 4))
    assert_rel(PatternAttribution(a).propagate(kernel, call, (r_out,))[0], r_out @ (b.T * a).T, 1e-15, "gemm")
    with pytest.raises(MethodError, match=r"has shape \(4, 5\), its weight \(5, 4\)"):
        PatternNet(a.T).propagate(kernel, call, (r_out,))
    with pytest.raises(MethodError, match="has no pattern"):
        PatternNet().propagate(kernel, call, (r_out,))


def test_a_node_without_weights_is_refused():
    model = make_model([helper.make_node("Relu", ["x"], ["y"])], [("x", [1, 3])], [("y", [1, 3])])
    node = Graph(model).nodes[0]
    with pytest.raises(RuleNotApplicableError, match="weighted linear layer"):
        PatternNet(np.ones(3)).propagate(resolve(node), Call(node, (np.ones((1, 3)),), (), (True,), np),
                                         (np.ones((1, 3)),))
