"""Contrastive splicing (``onnxlrp/engine/splice.py``) on hand-built models, torch-free: which node produces the
logits (and the messages when none fits), the dense layer's effective weights, and the spliced heads (the nodes,
constants, categories and varying tensors they hold, and the relevance a walk through them returns, checked against
the formulas). Written for the survivors of mutation testing (``tools/mutation_report.md``)."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxlrp
from onnxlrp.engine.session import Session
from onnxlrp.engine.splice import PREFIX, dense_weights, final_dense, splice_after_output, splice_dense_head
from onnxlrp.errors import MethodError
from onnxlrp.lrp.rules import Epsilon
from tests.helpers.compare import assert_close
from tests.helpers.onnx_builders import make_model

R = np.random.default_rng(7)
W = R.normal(size=(4, 3))           # Gemm's B with transB=1: (classes, features)
C = R.normal(size=4)
X = np.array([[1.0, -2.0, 0.5], [0.25, 1.5, -1.0]])


def _gemm_model(bias=C, alpha=0.5, beta=2.0, opset=17):
    """``x (N, 3)`` → Relu → ``a`` → Gemm(a, W, bias; transB=1, alpha, beta) → ``y (N, 4)``."""
    init = {"w": W.astype(np.float32)}
    inputs = ["a", "w"]
    if bias is not None:
        init["c"] = np.asarray(bias, np.float32)
        inputs.append("c")
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="relu"),
             helper.make_node("Gemm", inputs, ["y"], name="logits", transB=1, alpha=alpha, beta=beta)]
    return make_model(nodes, [("x", ["N", 3])], [("y", ["N", 4])], init, opset=opset)


def _w32():
    return W.astype(np.float32).astype(np.float64)


def _c32(bias=C):
    return np.asarray(bias, np.float32).astype(np.float64)


def test_the_final_dense_node_is_the_one_producing_the_logits():
    session = Session(_gemm_model(), dtype="float64")
    node = final_dense(session)
    assert node is session.path.nodes[-1] and node.name == "logits" and node.op_type == "Gemm"


def _refused(nodes, inputs, outputs, init):
    session = Session(make_model(nodes, inputs, outputs, init), dtype="float64")
    with pytest.raises(MethodError) as e:
        final_dense(session)
    return str(e.value)


def test_logits_from_anything_but_a_dense_layer_are_refused_naming_what_produces_them():
    w = {"w": W.T.astype(np.float32)}
    relu_last = [helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"), helper.make_node("Relu", ["h"], ["y"],
                                                                                            name="last")]
    assert _refused(relu_last, [("x", ["N", 3])], [("y", ["N", 4])], w) == (
        "contrastive splicing needs the logits 'y' to come from a dense layer (Gemm, MatMul with constant weights); "
        "they come from Relu node 'last'")
    bilinear = [helper.make_node("MatMul", ["x", "x"], ["y"], name="square")]  # both factors vary: not dense
    assert _refused(bilinear, [("x", ["N", 3, 3])], [("y", ["N", 3, 3])], {}) == (
        "contrastive splicing needs the logits 'y' to come from a dense layer (Gemm, MatMul with constant weights); "
        "they come from MatMul node 'square'")
    # the explained output is the input itself: no node produces it
    relu = [helper.make_node("Relu", ["x"], ["r"], name="relu")]
    session = Session(make_model(relu, [("x", ["N", 3])], [("x", ["N", 3]), ("r", ["N", 3])]), output_name="x",
                      dtype="float64")
    with pytest.raises(MethodError) as e:
        final_dense(session)
    assert str(e.value) == ("contrastive splicing needs the logits 'x' to come from a dense layer (Gemm, MatMul with "
                            "constant weights); they come from nothing")


@pytest.mark.parametrize("bias, expected_bias", [(C, 2.0 * _c32()), (C[None, :], 2.0 * _c32()),
                                                 (np.float32(0.75), np.full(4, 1.5)), (None, None)])
def test_the_dense_layers_effective_weights_fold_alpha_beta_and_the_transpose(bias, expected_bias):
    session = Session(_gemm_model(bias=bias), dtype="float64")
    values, _ = session.forward(X)
    weight, b = dense_weights(session, final_dense(session), values)
    assert_close(weight, 0.5 * _w32().T, rtol=0, atol=0)
    if expected_bias is None:
        assert b is None
    else:
        assert b.shape == (4,)
        assert_close(b, expected_bias, rtol=0, atol=0)


def test_a_dense_layer_on_more_than_two_axes_is_refused_by_name():
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"], name="per_token")]
    session = Session(make_model(nodes, [("x", ["N", 2, 3])], [("y", ["N", 2, 4])], {"w": W.T.astype(np.float32)}),
                      dtype="float64")
    values, _ = session.forward(np.ones((1, 2, 3)))
    with pytest.raises(MethodError) as e:
        dense_weights(session, final_dense(session), values)
    assert str(e.value) == ("contrastive splicing needs a dense layer on a 2-D input (N, features); MatMul node "
                            "'per_token' takes (1, 2, 3)")


@pytest.mark.parametrize("with_bias", [True, False])
def test_a_dense_head_replaces_the_logit_layer_with_one_weight_matrix_per_sample(with_bias):
    session = Session(_gemm_model(), dtype="float64")
    dense = final_dense(session)
    weight = R.normal(size=(2, 3, 2))   # (N, D, K): two dual units per sample
    bias = R.normal(size=(2, 2)) if with_bias else None
    head = splice_dense_head(session, dense, weight, bias, "dual")
    name = f"{PREFIX}dual/logits"
    node = head.nodes[-1]
    assert [n.name for n in head.nodes] == ["relu", name] and head.nodes[0] is session.path.nodes[0]
    assert (node.name, node.op_type, node.domain, node.since, node.index) == (name, "RowDense", "onnxlrp", 1,
                                                                               dense.index)
    assert node.inputs == ("a", f"{name}/weight", f"{name}/bias" if with_bias else "")
    assert node.outputs == (f"{name}/output",) and head.output == f"{name}/output"
    assert node.attrs["replaces"] == ("Gemm", "logits")
    assert set(head.constants) == ({f"{name}/weight", f"{name}/bias"} if with_bias else {f"{name}/weight"})
    assert head.constants[f"{name}/weight"] is weight
    if with_bias:
        assert head.constants[f"{name}/bias"] is bias
    assert set(head.kernels) == {name} and head.kernels[name].op_type == "RowDense"
    assert head.categories == {**session.categories, name: "dense"}
    assert head.varying == set(session.path.varying) | {f"{name}/output"}
    assert "y" in session.path.varying and name not in session.categories  # the session itself is left as it was

    # LRP-0 at the head, the gradient through the Relu: R_a = a ⊙ (W_n (s_n / z_n)), z_n = a W_n + b_n
    values, _ = session.forward(X)
    seed = np.array([[1.0, -0.5], [2.0, 0.25]])
    relevance, kept = session.propagate(values, {name: Epsilon(epsilon=0.0)}, {head.output: seed}, keep=["a"],
                                        head=head)
    a = np.maximum(X, 0)
    z = np.einsum("nd,ndk->nk", a, weight) + (bias if with_bias else 0)
    expected = a * np.einsum("ndk,nk->nd", weight, seed / z)
    assert_close(kept["a"], expected, rtol=1e-14, atol=1e-15)
    assert_close(relevance, expected * (X > 0), rtol=1e-14, atol=1e-15)


def test_a_head_after_the_output_consumes_the_logits():
    session = Session(_gemm_model(opset=13), dtype="float64")
    head = splice_after_output(session, "LogSoftmax", {"axis": -1}, "cross_entropy")
    name = f"{PREFIX}cross_entropy"
    node = head.nodes[-1]
    assert head.nodes[:-1] == list(session.path.nodes)
    assert (node.name, node.op_type, node.domain, node.since) == (name, "LogSoftmax", "", 13)
    assert node.index == len(session.graph.nodes) and node.index > max(n.index for n in session.path.nodes)
    assert node.inputs == ("y",) and node.outputs == (f"{name}/output",) and head.output == f"{name}/output"
    assert node.attrs["axis"] == -1 and head.constants == {}
    assert set(head.kernels) == {name} and head.kernels[name].op_type == "LogSoftmax"
    assert head.categories == {**session.categories, name: "softmax"}
    assert head.varying == set(session.path.varying) | {f"{name}/output"}

    # seeding −e_q at log-softmax(z) gives ∂CE(z, q)/∂z = softmax(z) − e_q at the logits
    values, output = session.forward(X)
    q = np.array([2, 0])
    seed = -np.eye(4)[q]
    _, kept = session.propagate(values, {}, {head.output: seed}, keep=["y"], head=head)
    p = np.exp(output - output.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    assert_close(kept["y"], p - np.eye(4)[q], rtol=1e-14, atol=1e-15)


@pytest.mark.filterwarnings("ignore::onnxlrp.errors.ZeroRelevanceWarning")  # the rectified maps are zero here
@pytest.mark.parametrize("method", ["clrp1", "clrp2", "sglrp"])
def test_contrastive_methods_take_a_gemm_bias_of_any_broadcastable_shape(method):
    """Gemm's C as ``(1, C)`` (valid ONNX; it raised a bare ValueError before): the same maps as with ``(C,)``."""
    expected = onnxlrp.Explainer(_gemm_model(bias=C), dtype="float64").explain(X, method, target=1)
    got = onnxlrp.Explainer(_gemm_model(bias=C[None, :]), dtype="float64").explain(X, method, target=1)
    for name in ("target_relevance", "dual_relevance"):
        assert_close(got.intermediate[name], expected.intermediate[name], rtol=0, atol=0)
    assert_close(got.relevance, expected.relevance, rtol=0, atol=0)
    assert expected.intermediate["dual_relevance"].any()  # a comparison of something


def test_a_head_after_the_output_of_a_model_without_the_default_domain_still_resolves():
    """A model that imports only ``com.microsoft`` (its FusedGemm becomes Gemm → Relu): the appended LogSoftmax
    takes the default opset, and the walk through it gives softmax(z) − e_q at the logits."""
    node = helper.make_node("FusedGemm", ["x", "w"], ["y"], domain="com.microsoft", name="fused", activation="Relu")
    graph = helper.make_graph([node], "fused", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
                              [numpy_helper.from_array(W.T.astype(np.float32), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 8
    session = Session(model, dtype="float64")
    assert "" not in session.graph.opsets
    head = splice_after_output(session, "LogSoftmax", {"axis": -1}, "cross_entropy")
    values, output = session.forward(X)
    _, kept = session.propagate(values, {}, {head.output: -np.eye(4)[[3, 1]]}, keep=["y"], head=head)
    p = np.exp(output - output.max(axis=1, keepdims=True))
    assert_close(kept["y"], p / p.sum(axis=1, keepdims=True) - np.eye(4)[[3, 1]], rtol=1e-14, atol=1e-15)
