"""Graph loading, naming, the relevance path and preflight."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

import onnxlrp
from onnxlrp.engine.graph import Graph
from tests.helpers.compare import assert_close
from tests.helpers.onnx_builders import make_model, relu_cnn


def test_duplicate_and_missing_names_become_unique():
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="act"), helper.make_node("Relu", ["a"], ["b"], name="act"),
             helper.make_node("Relu", ["b"], ["y"])]
    g = Graph(make_model(nodes, [("x", [1, 2])], [("y", [1, 2])]))
    assert [n.name for n in g.nodes] == ["act", "act_1", "Relu_2"]


def test_add_x_x_keeps_two_edges():
    g = Graph(make_model([helper.make_node("Add", ["x", "x"], ["y"])], [("x", [1, 2])], [("y", [1, 2])]))
    assert g.dag.number_of_edges("input:x", "Add_0") == 2


def test_shape_subgraph_is_never_entered():
    """Reshape's shape comes from Shape -> Gather -> Concat; Gather has no kernel, yet explaining works."""
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("Shape", ["r"], ["s"]),
        helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "ax"], ["n1"]),
        helper.make_node("Concat", ["n1", "minus1"], ["shape"], axis=0),
        helper.make_node("Reshape", ["r", "shape"], ["f"]),
        helper.make_node("Gemm", ["f", "w"], ["y"], transB=1),
    ]
    init = {"zero": np.array(0, np.int64), "ax": np.array([0], np.int64), "minus1": np.array([-1], np.int64),
            "w": np.ones((3, 8), np.float32)}
    model = make_model(nodes, [("x", ["N", 2, 4])], [("y", ["N", 3])], init)
    ex = onnxlrp.Explainer(model)
    assert [op for _, op in ex.path_nodes()] == ["Relu", "Reshape", "Gemm"]
    for dtype in ("float32", "float64"):
        x = np.random.default_rng(0).normal(size=(2, 2, 4)).astype(np.float32)
        res = onnxlrp.Explainer(model, dtype=dtype).explain(x, method="lrp0", target=0)
        assert res.relevance.shape == x.shape
        assert res.relevance.sum() == np.float32(res.output[:, 0].sum()) or abs(
            res.relevance.sum() - res.output[:, 0].sum()) < 1e-4


def test_constant_nodes_and_identity_initializers_resolve():
    nodes = [helper.make_node("Constant", [], ["w0"], value=onnx.numpy_helper.from_array(np.eye(2, dtype=np.float32))),
             helper.make_node("Identity", ["w0"], ["w"]),
             helper.make_node("MatMul", ["x", "w"], ["y"])]
    ex = onnxlrp.Explainer(make_model(nodes, [("x", ["N", 2])], [("y", ["N", 2])]))
    res = ex.explain(np.array([[1.0, 2.0]], np.float32), method="lrp0", target=1)
    np.testing.assert_allclose(res.relevance, [[0.0, 2.0]])


def test_final_softmax_is_skipped_unless_asked():
    nodes = [helper.make_node("Gemm", ["x", "w"], ["z"], transB=1), helper.make_node("Softmax", ["z"], ["p"])]
    model = make_model(nodes, [("x", ["N", 3])], [("p", ["N", 2])], {"w": np.arange(6, dtype=np.float32).reshape(2, 3)})
    x = np.array([[1.0, 0.0, 1.0]], np.float32)
    ex = onnxlrp.Explainer(model)
    assert ex.output_name == "z"
    np.testing.assert_allclose(ex.explain(x, method="lrp0").output, [[2.0, 8.0]])
    probs = onnxlrp.Explainer(model, explain_softmax=True).explain(x, method="gradient", target=1)
    assert probs.output.sum() == np.float32(1.0) or abs(probs.output.sum() - 1) < 1e-6


def test_batchnorm_after_conv_is_folded_and_before_conv_is_passed():
    r = np.random.default_rng(0)
    bn = lambda p: {f"{p}s": r.uniform(0.5, 2, 3), f"{p}b": r.normal(size=3), f"{p}m": r.normal(size=3),  # noqa
                    f"{p}v": r.uniform(0.5, 2, 3)}
    init = {"w": r.normal(size=(3, 3, 1, 1)), "w2": r.normal(size=(2, 3, 1, 1)), **bn("a"), **bn("c")}
    init = {k: np.asarray(v, np.float32) for k, v in init.items()}
    nodes = [helper.make_node("BatchNormalization", ["x", "as", "ab", "am", "av"], ["n0"]),
             helper.make_node("Conv", ["n0", "w"], ["c"]),
             helper.make_node("BatchNormalization", ["c", "cs", "cb", "cm", "cv"], ["n1"]),
             helper.make_node("Relu", ["n1"], ["a"]),
             helper.make_node("Conv", ["a", "w2"], ["y"])]
    model = make_model(nodes, [("x", ["N", 3, 2, 2])], [("y", ["N", 2, 2, 2])], init)
    ex = onnxlrp.Explainer(model, dtype="float64")
    assert [op for _, op in ex.path_nodes()] == ["BatchNormalization", "Conv", "Relu", "Conv"]
    assert ex.canonizer_log == ["folded BatchNormalization 'BatchNormalization_2' into Conv 'Conv_1'"]
    rules = {n: r for n, _, r in ex.rules_for("epsilon_plus")}
    assert rules["BatchNormalization_0"] == "Pass()"
    x = r.normal(size=(2, 3, 2, 2)).astype(np.float32)
    import onnxruntime as ort
    ref = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_allclose(ex.explain(x, method="gradient", target=0).output, ref, rtol=1e-5, atol=1e-5)


def test_model_is_never_mutated():
    model = relu_cnn()
    before = model.SerializeToString()
    onnxlrp.Explainer(model).explain(np.ones((1, 2, 8, 8), np.float32), method="epsilon_plus")
    assert model.SerializeToString() == before


def test_model_info_and_histogram():
    ex = onnxlrp.Explainer(relu_cnn())
    info = ex.model_info()
    assert info["op_histogram"]["Conv"] == 2 and info["inputs"][0][0] == "x"
    assert ex.input_shape == (None, 2, 8, 8) and ex.output_shape == (None, 5)


def test_split_with_an_output_off_the_path():
    """Only one Split output leads to the explained output; the other is varying but never fetched."""
    nodes = [helper.make_node("Split", ["x", "sizes"], ["a", "b"], axis=1),
             helper.make_node("Relu", ["a"], ["unused"]),
             helper.make_node("Gemm", ["b", "w"], ["y"], transB=1)]
    model = make_model(nodes, [("x", ["N", 4])], [("y", ["N", 2]), ("unused", ["N", 2])],
                       {"sizes": np.array([2, 2], np.int64), "w": np.ones((2, 2), np.float32)})
    x = np.array([[1.0, 2.0, 3.0, 4.0]], np.float32)
    for dtype in ("float32", "float64"):
        res = onnxlrp.Explainer(model, output_name="y", dtype=dtype).explain(x, method="lrp0", target=0)
        np.testing.assert_allclose(res.relevance, [[0.0, 0.0, 3.0, 4.0]])


def _double(model):
    """Make every initializer, the input and the output of ``model`` float64 (the values are already float64)."""
    for value in model.graph.initializer:
        value.data_type = onnx.TensorProto.DOUBLE
    for value in list(model.graph.input) + list(model.graph.output):
        value.type.tensor_type.elem_type = onnx.TensorProto.DOUBLE
    return model


@pytest.mark.parametrize("eps", [1e-5, 1e-2])
@pytest.mark.parametrize("producer", ["Conv", "Gemm"])
def test_batchnorm_folding_is_exact_in_float64(producer, eps):
    """Conv/Gemm + BatchNormalization with float64 weights, folded by onnxlrp and run in float64, against the
    unfolded formula ``γ (z − μ)/√(σ² + ε) + β`` computed with numpy in float64: the output and the gradient (which
    runs through the folded weights ``W·γ/√(σ² + ε)``) agree to float64 rounding (measured <= 2 ulps). The float32
    onnxruntime comparison above cannot see an ε of 1e-5 dropped from the fold (a change of ~1e-5 relative)."""
    r = np.random.default_rng(7)
    init = {"s": r.uniform(0.5, 2, 4) * np.where(r.random(4) < 0.3, -1, 1), "bb": r.normal(size=4),
            "m": r.normal(size=4), "v": r.uniform(0.05, 0.5, 4)}
    scale = init["s"] / np.sqrt(init["v"] + eps)
    if producer == "Conv":
        init.update(w=r.normal(size=(4, 3, 1, 1)), b=r.normal(size=4))
        nodes = [helper.make_node("Conv", ["x", "w", "b"], ["z"]),
                 helper.make_node("BatchNormalization", ["z", "s", "bb", "m", "v"], ["n"], epsilon=eps),
                 helper.make_node("Flatten", ["n"], ["y"])]
        x = r.normal(size=(2, 3, 2, 2))
        z = np.einsum("mc,nchw->nmhw", init["w"][:, :, 0, 0], x) + init["b"][None, :, None, None]
        bn = lambda p: p[None, :, None, None]  # noqa: E731
        shape, out_shape = ["N", 3, 2, 2], ["N", 16]
        grad = np.zeros_like(x)
        grad[:, :, 0, 1] = init["w"][0, :, 0, 0] * scale[0]   # target 1 = channel 0 at (0, 1)
    else:
        init.update(w=r.normal(size=(4, 3)), b=r.normal(size=4))
        nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["z"], transB=1),
                 helper.make_node("BatchNormalization", ["z", "s", "bb", "m", "v"], ["y"], epsilon=eps)]
        x = r.normal(size=(2, 3))
        z = x @ init["w"].T + init["b"]
        bn = lambda p: p[None, :]  # noqa: E731
        shape, out_shape = ["N", 3], ["N", 4]
        grad = np.broadcast_to(init["w"][1] * scale[1], x.shape)
    expected = (bn(init["s"]) * (z - bn(init["m"])) / np.sqrt(bn(init["v"]) + eps) + bn(init["bb"])).reshape(2, -1)
    model = _double(make_model(nodes, [("x", shape)], [("y", out_shape)],
                               {k: np.asarray(v, np.float64) for k, v in init.items()}))
    ex = onnxlrp.Explainer(model, dtype="float64")
    assert any("folded BatchNormalization" in line for line in ex.canonizer_log)
    res = ex.explain(x, method="gradient", target=1)
    assert_close(res.output, expected, rtol=1e-14, atol=1e-14)
    assert_close(res.relevance, grad, rtol=1e-14, atol=1e-14)
