"""Dense kernels (``kernels/op_dense.py``) beyond forward/VJP conformance (``tests/kernels/test_kernels.py``): which
MatMul operand carries relevance and what category that makes, the linear view a rule gets, the uses refused with
their messages, and the fused Dense without its bias. Written for the survivors of mutation testing
(``tools/mutation_report.md``)."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

import onnxlrp
from onnxlrp.engine.graph import Graph, Node
from onnxlrp.engine.kernel import Call
from onnxlrp.engine.registry import resolve
from onnxlrp.errors import UnsupportedOpError
from tests.helpers.compare import assert_close
from tests.helpers.onnx_builders import make_model

R = np.random.default_rng(4)


def _node(op, inputs, name="n", **attrs):
    return Graph(make_model([helper.make_node(op, inputs, ["y"], name=name, **attrs)], [("x", ["N", 3])],
                            [("y", ["N", 3])]), check=False).nodes[0]


@pytest.mark.parametrize("inputs, varying, ports, category", [
    (["x", "w"], {"x"}, (0,), "dense"), (["w", "x"], {"x"}, (1,), "dense"),
    (["x", "x2"], {"x", "x2"}, (0, 1), "bilinear")])
def test_matmul_relevance_flows_to_the_varying_operands(inputs, varying, ports, category):
    node = _node("MatMul", inputs)
    kernel = resolve(node)
    assert kernel.data_inputs(node, varying) == ports
    assert kernel.node_category(node, varying) == category
    assert category in kernel.category_cases


@pytest.mark.parametrize("port", [0, 1])
def test_a_matmul_with_one_constant_operand_is_a_linear_op_on_the_other(port):
    """``x @ W`` or ``W @ x``: the rule's linear view takes the varying operand and names the constant ``weight``;
    forward and VJP are the products (and a MatMul of two varying operands has no linear view)."""
    x, w = R.normal(size=(2, 4, 4)), R.normal(size=(4, 4))
    inputs = (x, w) if port == 0 else (w, x)
    node = _node("MatMul", ["x", "w"] if port == 0 else ["w", "x"])
    varying = (port == 0, port == 1)
    op = resolve(node).linear_op(Call(node=node, inputs=inputs, outputs=(), varying=varying, xp=np))
    assert op.ports == (port,) and op.inputs[0] is x and op.params["weight"] is w
    assert_close(op.forward([x], op.params), inputs[0] @ inputs[1], rtol=1e-15, atol=1e-15)
    g = R.normal(size=(2, 4, 4))
    expected = g @ w.T if port == 0 else w.T @ g
    assert_close(op.vjp(g, op.params)[0], expected, rtol=1e-15, atol=1e-15)
    both = Call(node=node, inputs=inputs, outputs=(), varying=(True, True), xp=np)
    assert resolve(node).linear_op(both) is None


def test_a_matmul_by_a_vector_is_refused_by_name():
    node = _node("MatMul", ["x", "w"], name="proj")
    message = "MatMul node 'proj' multiplies by a vector; only matrix operands of rank >= 2 are supported"
    for inputs, varying in (((R.normal(size=(2, 4)), R.normal(size=4)), (True, False)),      # dense, vector weight
                            ((R.normal(size=4), R.normal(size=(4, 3))), (True, False)),      # dense, vector input
                            ((R.normal(size=(2, 4)), R.normal(size=4)), (True, True))):      # bilinear
        call = Call(node=node, inputs=inputs, outputs=(), varying=varying, xp=np)
        with pytest.raises(UnsupportedOpError) as e:
            resolve(node).vjp(call, (np.ones(2),))
        assert str(e.value) == message


def test_a_gemm_on_a_non_matrix_input_is_refused_by_name():
    node = _node("Gemm", ["x", "w"], name="head")
    call = Call(node=node, inputs=(R.normal(size=5), R.normal(size=(5, 2))), outputs=(), varying=(True, False),
                xp=np)
    with pytest.raises(UnsupportedOpError) as e:
        resolve(node).linear_op(call)
    assert str(e.value) == "Gemm node 'head' takes a 2-D input A; got shape (5,)"


@pytest.mark.parametrize("inputs", [["x", "x"], ["x", "w", "x"]], ids=["B varies", "C varies"])
def test_a_gemm_whose_weight_or_bias_varies_is_reported(inputs):
    w = {"w": R.normal(size=(3, 3)).astype(np.float32)}
    nodes = [helper.make_node("Gemm", inputs, ["y"], name="g")]
    with pytest.raises(UnsupportedOpError) as e:
        onnxlrp.Explainer(make_model(nodes, [("x", [2, 3])], [("y", [2, 3])], w))
    assert ("1 node, e.g. 'g': a Gemm whose B or C operand depends on the explained input is not supported"
            in str(e.value))


def test_the_fused_dense_layer_without_its_bias_is_the_product():
    """A rule that drops the bias (``zero_params=("bias",)``) hands the fused Dense ``bias=None``."""
    node = Node(name="d", op_type="Dense", domain="onnxlrp", since=1, inputs=("x", "w", "b"), outputs=("y",),
                attrs={}, index=0)  # made only by the canonizer
    x, w, b = R.normal(size=(4, 3)), R.normal(size=(3, 2)), R.normal(size=2)
    op = resolve(node).linear_op(Call(node=node, inputs=(x, w, b), outputs=(), varying=(True, False, False), xp=np))
    assert_close(op.forward([x], op.params), x @ w + b, rtol=1e-15, atol=1e-15)
    assert_close(op.forward([x], {**op.params, "bias": None}), x @ w, rtol=1e-15, atol=1e-15)
