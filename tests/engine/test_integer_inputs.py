"""Integer inputs (ids) are explained at the float tensor that reads them: an embedding lookup, a one-hot written
as ``Cast(Equal(ids, classes))``; relevance per id position, the other inputs held fixed."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxlrp
from onnxlrp import errors

R = np.random.default_rng(7)
USERS, ITEMS, WIDTH = R.normal(size=(6, 3)), R.normal(size=(5, 3)), 3
W1, W2 = R.normal(size=(6, 4)), R.normal(size=(4, 1))


def _model(nodes, inputs, outputs, inits):
    graph = helper.make_graph(nodes, "ids", inputs, outputs,
                              [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def recommender():
    """``user (N,)``, ``item (N,)`` ids → two embedding tables → concat → dense → relu → dense → score (N, 1)."""
    nodes = [helper.make_node("Gather", ["U", "user"], ["u"]), helper.make_node("Gather", ["V", "item"], ["v"]),
             helper.make_node("Concat", ["u", "v"], ["uv"], axis=1), helper.make_node("MatMul", ["uv", "W1"], ["h"]),
             helper.make_node("Relu", ["h"], ["a"]), helper.make_node("MatMul", ["a", "W2"], ["score"])]
    f32 = {"U": USERS, "V": ITEMS, "W1": W1, "W2": W2}
    return _model(nodes, [helper.make_tensor_value_info("user", TensorProto.INT64, ["N"]),
                          helper.make_tensor_value_info("item", TensorProto.INT64, ["N"])],
                  [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N", 1])],
                  {k: v.astype(np.float32) for k, v in f32.items()})


def test_a_recommender_is_explained_per_id_with_the_other_id_fed():
    ex = onnxlrp.Explainer(recommender(), input_name="user", dtype="float64")
    assert ex.input_name == "user" and ex.lookup.tensor == "u"
    user, item = np.array([0, 3, 5]), np.array([1, 1, 4])
    res = ex.explain(user, "input_x_gradient", target=0, feeds={"item": item})
    u, v = USERS.astype(np.float32)[user].astype(np.float64), ITEMS.astype(np.float32)[item].astype(np.float64)
    w1, w2 = W1.astype(np.float32).astype(np.float64), W2.astype(np.float32).astype(np.float64)
    mask = (np.concatenate([u, v], 1) @ w1 > 0)
    grad_u = (mask * w2[:, 0]) @ w1[:3].T
    assert res.relevance.shape == (3,) and res.input_name == "user"
    np.testing.assert_allclose(res.intermediate["lookup_relevance"], u * grad_u, rtol=1e-9)
    np.testing.assert_allclose(res.relevance, (u * grad_u).sum(axis=1), rtol=1e-9)
    with pytest.raises(errors.NameSelectionError, match="pass feeds="):
        ex.explain(user, "gradient")
    with pytest.raises(errors.InputDtypeError, match="takes integer ids"):
        ex.explain(user.astype(np.float32), "gradient", feeds={"item": item})


def one_hot_classifier(vocab=5, classes=3):
    """``ids (N, T)`` → ``Cast(Equal(Unsqueeze(ids), arange(vocab)))`` (N, T, vocab) → dense → mean over T → dense,
    with a pad mask ``Cast(Not(Equal(ids, 0)))`` read from the same ids."""
    nodes = [helper.make_node("Unsqueeze", ["ids", "last"], ["ids3"]),
             helper.make_node("Equal", ["ids3", "vocab"], ["eq"]),
             helper.make_node("Cast", ["eq"], ["onehot"], to=TensorProto.FLOAT),
             helper.make_node("Equal", ["ids", "pad"], ["is_pad"]), helper.make_node("Not", ["is_pad"], ["keep"]),
             helper.make_node("Cast", ["keep"], ["keep_f"], to=TensorProto.FLOAT),
             helper.make_node("Unsqueeze", ["keep_f", "last"], ["keep3"]),
             helper.make_node("MatMul", ["onehot", "E"], ["e"]), helper.make_node("Mul", ["e", "keep3"], ["masked"]),
             helper.make_node("ReduceMean", ["masked"], ["pooled"], axes=[1], keepdims=0),
             helper.make_node("MatMul", ["pooled", "C"], ["logits"])]
    inits = {"last": np.array([-1], np.int64), "vocab": np.arange(vocab, dtype=np.int64), "pad": np.array(0, np.int64),
             "E": R.normal(size=(vocab, 4)).astype(np.float32), "C": R.normal(size=(4, classes)).astype(np.float32)}
    return _model(nodes, [helper.make_tensor_value_info("ids", TensorProto.INT64, ["N", "T"])],
                  [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])], inits)


def test_a_one_hot_idiom_is_the_lookup_and_a_pad_mask_is_not():
    ex = onnxlrp.Explainer(one_hot_classifier(), dtype="float64")
    assert ex.lookup.tensor == "onehot" and ex.lookup.cut_reads_ids  # the pad mask still reads the ids
    ids = np.array([[1, 2, 4, 0], [3, 3, 1, 0]])
    res = ex.explain(ids, "epsilon", epsilon=1e-12, stabilizer=1e-12)
    assert res.relevance.shape == (2, 4)
    np.testing.assert_allclose(res.relevance.sum(axis=1), res.output[[0, 1], res.target], rtol=1e-8)
    np.testing.assert_allclose(res.relevance[:, 3], 0, atol=1e-12)   # padding carries nothing
    assert res.intermediate["lookup_relevance"].shape == (2, 4, 5)


def test_an_integer_input_with_no_lookup_says_so():
    nodes = [helper.make_node("Cast", ["ids"], ["f"], to=TensorProto.FLOAT), helper.make_node("Neg", ["f"], ["y"])]
    model = _model(nodes, [helper.make_tensor_value_info("ids", TensorProto.INT64, ["N", 2])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])], {})
    with pytest.raises(errors.EmbeddingNotFoundError, match="holds integers"):
        onnxlrp.Explainer(model)
