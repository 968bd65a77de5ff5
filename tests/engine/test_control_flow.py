"""``If`` nodes: inlined when their condition is fixed (a constant, a test on a static shape), reported by name when
it depends on the input's values; outer-scope tensors a subgraph reads count as the node's inputs."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxlrp
from onnxlrp import errors
from onnxlrp.engine.control_flow import implicit_inputs, inline_fixed_ifs


def _branch(name, weight, scale):
    """A branch reading the outer tensor ``h``: ``relu(h) @ weight * scale``."""
    w = numpy_helper.from_array(weight, f"{name}_w")
    s = numpy_helper.from_array(np.array(scale, np.float32), f"{name}_s")
    nodes = [helper.make_node("Relu", ["h"], [f"{name}_r"]), helper.make_node("MatMul", [f"{name}_r", w.name], ["m"]),
             helper.make_node("Mul", ["m", s.name], [f"{name}_out"])]
    return helper.make_graph(nodes, name, [], [helper.make_tensor_value_info(f"{name}_out", TensorProto.FLOAT, None)],
                             [w, s])


def if_model(condition: str, batch=2):
    """``x (batch, 4) → MatMul → h``; ``If(cond)`` picks one of two dense heads on ``h``. ``condition``: ``"true"``
    (a constant), ``"shape"`` (``Shape(x)[0] == batch``), ``"data"`` (``ReduceSum(x) > 0``)."""
    r = np.random.default_rng(0)
    w0 = r.normal(size=(4, 5)).astype(np.float32)
    then_w, else_w = r.normal(size=(5, 3)).astype(np.float32), r.normal(size=(5, 3)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w0"], ["h"])]
    inits = [numpy_helper.from_array(w0, "w0")]
    if condition == "true":
        nodes.append(helper.make_node("Constant", [], ["cond"], value=numpy_helper.from_array(np.array(True))))
    elif condition == "shape":
        inits += [numpy_helper.from_array(np.array([0], np.int64), "zero"),
                  numpy_helper.from_array(np.array([batch], np.int64), "expected")]
        nodes += [helper.make_node("Shape", ["x"], ["shape"]), helper.make_node("Gather", ["shape", "zero"], ["n"]),
                  helper.make_node("Equal", ["n", "expected"], ["eq"]),
                  helper.make_node("Squeeze", ["eq"], ["cond"])]
    else:
        inits.append(numpy_helper.from_array(np.array(0, np.float32), "zero_f"))
        nodes += [helper.make_node("ReduceSum", ["x"], ["total"], keepdims=0),
                  helper.make_node("Greater", ["total", "zero_f"], ["cond"])]
    nodes.append(helper.make_node("If", ["cond"], ["y"], name="choose", then_branch=_branch("then", then_w, 2.0),
                                  else_branch=_branch("else", else_w, -1.0)))
    graph = helper.make_graph(nodes, "if", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 3])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model, (w0, then_w, 2.0)


def test_implicit_inputs_are_the_outer_tensors_a_branch_reads():
    model, _ = if_model("data")
    node = next(n for n in model.graph.node if n.op_type == "If")
    assert implicit_inputs(node) == ("h",)


@pytest.mark.parametrize("condition", ["true", "shape"])
def test_a_fixed_condition_is_inlined_and_explained_exactly(condition):
    model, (w0, w, scale) = if_model(condition)
    log: list[str] = []
    inlined = inline_fixed_ifs(onnx.load_from_string(model.SerializeToString()), log)
    assert [n.op_type for n in inlined.graph.node if n.op_type == "If"] == []
    assert log == ["inlined If 'choose': its condition is fixed (True), so it always takes its then branch"]
    ex = onnxlrp.Explainer(model, dtype="float64")
    x = np.random.default_rng(1).normal(size=(2, 4))
    res = ex.explain(x, "gradient", target=[0, 2])
    h = x @ w0
    mask = (h > 0).astype(float)
    expected = np.stack([(w0 @ (mask[i] * w[:, t] * scale)) for i, t in enumerate([0, 2])])
    np.testing.assert_allclose(res.relevance, expected, rtol=1e-12)
    np.testing.assert_allclose(res.output, np.maximum(h, 0) @ w * scale, rtol=1e-6)
    assert any("inlined If 'choose'" in line for line in ex.canonizer_log)
    lrp = ex.explain(x, "epsilon", target=[0, 2], epsilon=1e-12)
    np.testing.assert_allclose(lrp.relevance.sum(axis=1), res.output[[0, 1], [0, 2]], rtol=1e-8)


def test_a_data_dependent_condition_is_reported_by_name():
    model, _ = if_model("data")
    with pytest.raises(errors.UnsupportedOpError) as info:
        onnxlrp.Explainer(model)
    text = str(info.value)
    assert "If (1 node, e.g. 'choose')" in text and "condition depends on the explained input's values" in text
    assert [node.op_type for node, _ in info.value.unsupported] == ["If"]


def test_a_subgraph_reading_the_input_counts_as_depending_on_it():
    """Before: the If's output looked independent of x (its subgraph reads h implicitly): 'nothing to explain'."""
    model, _ = if_model("data")
    from onnxlrp.engine.graph import Graph
    graph = Graph(model)
    assert "y" in graph.depends_on("x")


def test_what_onnxruntime_loads_is_explained_with_a_warning():
    """A model the ONNX checker rejects (an output without a type, as some exporters write it) but onnxruntime runs
    is explained, with a ModelCheckWarning; one onnxruntime refuses too stays an error."""
    model, _ = if_model("true")
    del model.graph.output[:]
    model.graph.output.append(onnx.ValueInfoProto(name="y"))
    with pytest.warns(errors.ModelCheckWarning, match="fails the ONNX checker: Field 'type'.*explained anyway"):
        ex = onnxlrp.Explainer(model)
    assert ex.explain(np.ones((2, 4), np.float32), "gradient").relevance.shape == (2, 4)
    model.graph.node[0].op_type = "NoSuchOp"
    with pytest.raises(errors.ModelCheckError, match="fails the ONNX checker"):
        onnxlrp.Explainer(model)


def test_nodes_listed_out_of_order_are_sorted_as_onnxruntime_does():
    from tests.helpers.onnx_builders import relu_cnn
    model = relu_cnn()
    nodes = list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(nodes[2:] + nodes[:2])  # the first conv and relu listed last
    x = np.random.default_rng(0).normal(size=(1, 2, 8, 8)).astype(np.float32)
    ex = onnxlrp.Explainer(model, check=False)
    assert any("topological order" in line for line in ex.canonizer_log)
    expected = onnxlrp.Explainer(relu_cnn()).explain(x, "epsilon_plus")
    np.testing.assert_array_equal(ex.explain(x, "epsilon_plus").relevance, expected.relevance)
