"""The engine's public Session: the pass written out by hand equals Explainer, views are read-only, the runner is
chosen once, ``Method.check`` answers as data, unsupported ops come back as data."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

import onnxlrp
from onnxlrp.engine.session import Session
from onnxlrp.errors import MethodError, NameSelectionError, UnsupportedOpError
from onnxlrp.methods import METHODS, find_method
from onnxlrp.methods.base import propagate_target
from tests.helpers.onnx_builders import make_model, relu_cnn


def dense_only(classes=4):
    r = np.random.default_rng(3)
    init = {"w1": r.normal(size=(6, 5)).astype(np.float32), "w2": r.normal(size=(5, classes)).astype(np.float32)}
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Relu", ["h"], ["a"]),
             helper.make_node("MatMul", ["a", "w2"], ["y"])]
    return make_model(nodes, [("x", ["N", 6])], [("y", ["N", classes])], init)


@pytest.fixture(scope="module")
def cnn():
    return relu_cnn(seed=2)


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(0).normal(size=(3, 2, 8, 8))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_pass_by_hand_equals_explainer(cnn, x, dtype):
    session = Session(cnn, dtype=dtype)
    rules = find_method("epsilon_plus").rules(session, METHODS["epsilon_plus"].params)
    values, output = session.forward(x)
    targets = session.targets(output)
    relevance, _ = session.propagate(values, rules, session.seed(output, targets, "logit"))
    expected = onnxlrp.Explainer(cnn, dtype=dtype).explain(x.astype(dtype), "epsilon_plus")
    assert relevance.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(session.host(relevance), expected.relevance)
    np.testing.assert_array_equal(targets, expected.target)


def test_the_shared_driver_is_the_lrp_methods_pass(cnn, x):
    session = Session(cnn, dtype="float64")
    rules = METHODS["epsilon"].assign(session, dict(METHODS["epsilon"].params))
    result = propagate_target(session, x, {}, 1, rules, {"relevance_init": "logit"})
    expected = onnxlrp.Explainer(cnn, dtype="float64").explain(x, "epsilon", target=1)
    np.testing.assert_array_equal(result.relevance, expected.relevance)
    assert result.targets.tolist() == [1, 1, 1]


def test_views_are_read_only(cnn):
    session = Session(cnn)
    name = session.path.nodes[0].name
    with pytest.raises(TypeError):
        session.kernels[name] = None
    with pytest.raises(TypeError):
        session.categories[name] = "dense"
    assert session.categories[name] == "conv"


def test_the_runner_is_chosen_once(cnn, x):
    session = Session(cnn, dtype="float64")
    session.forward(x)
    runner = session._runner
    values, _ = session.forward(x[:1])
    assert session._runner is runner
    assert all(v.dtype == np.float64 for v in values.values() if v.dtype.kind == "f")


def test_seed_and_targets_validate(cnn, x):
    session = Session(cnn)
    _, output = session.forward(x)
    seed = session.seed(output, np.array([0, 1, 2]), "one_hot")
    assert seed.sum() == 3 and seed[1, 1] == 1
    with pytest.raises(MethodError, match="relevance_init"):
        session.seed(output, np.array([0, 1, 2]), "logits")
    with pytest.raises(onnxlrp.errors.TargetError, match="out of range"):
        session.targets(output, 5)
    with pytest.raises(MethodError, match="contrast 9 is out of range"):
        session.class_indices(9, output, "contrast")


def test_check_answers_as_data(cnn):
    conv, dense = Session(cnn), Session(dense_only())
    assert METHODS["epsilon_plus"].check(conv)
    assert METHODS["contrastive_grad_cam"].check(conv)  # its required contrast= is not needed to answer
    cam = METHODS["grad_cam"].check(dense)
    assert not cam and "cannot choose a Grad-CAM layer" in cam.reason and "\n" not in cam.reason
    assert METHODS["grad_cam"].check(conv, {"layer": "a1"})
    bad_layer = METHODS["grad_cam"].check(conv, {"layer": "nowhere"})
    assert not bad_layer and "'nowhere'" in bad_layer.reason
    gamma = METHODS["gamma"].check(dense, {"bogus": 1})
    assert not gamma and gamma.reason.startswith("bad parameters for method 'gamma'")


def test_rap_and_clrp_check_the_logit_layer():
    r = np.random.default_rng(1)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Relu", ["c"], ["a"]),
             helper.make_node("GlobalAveragePool", ["a"], ["g"]), helper.make_node("Flatten", ["g"], ["y"])]
    model = make_model(nodes, [("x", ["N", 2, 5, 5])], [("y", ["N", 3])],
                       {"w": r.normal(size=(3, 2, 3, 3)).astype(np.float32)})
    session = Session(model)
    for name in ("rap", "clrp1", "clrp2", "sglrp"):
        check = METHODS[name].check(session)
        assert not check and "dense layer" in check.reason, name
    assert METHODS["clrp1"].check(Session(dense_only()))


def test_unsupported_ops_come_back_as_data():
    nodes = [helper.make_node("Erf", ["x"], ["e"]), helper.make_node("Hardmax", ["e"], ["y"])]
    model = make_model(nodes, [("x", ["N", 4])], [("y", ["N", 4])])
    with pytest.raises(UnsupportedOpError) as info:
        Session(model)
    assert sorted(node.op_type for node, _ in info.value.unsupported) == ["Hardmax"]
    assert all(isinstance(reason, str) and reason for _, reason in info.value.unsupported)


def test_names_are_chosen_and_checked():
    model = dense_only()
    with pytest.raises(NameSelectionError, match="no input named 'z'"):
        Session(model, input_name="z")
    session = Session(onnx.load_from_string(model.SerializeToString()), output_name="y")
    assert (session.input_name, session.output_name) == ("x", "y")
