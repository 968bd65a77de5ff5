"""Python API misuse and out-of-range parameters end in onnxlrp's own errors (one line, a documented exit code),
never a bare Python exception."""
from __future__ import annotations

import numpy as np
import pytest

import onnxlrp
from onnxlrp import errors
from onnxlrp.methods.params import PARAMS, Param
from tests.helpers.compare import assert_close
from tests.helpers.onnx_builders import relu_cnn


@pytest.fixture(scope="module")
def ex():
    return onnxlrp.Explainer(relu_cnn(seed=4))


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(1).normal(size=(2, 2, 8, 8)).astype(np.float32)


class ShapedButNotAnArray:
    shape = (2, 2, 8, 8)
    dtype = "float32"


@pytest.mark.parametrize("call, error, text", [
    (lambda ex, x: onnxlrp.Explainer(None), errors.ModelLoadError, "got NoneType"),
    (lambda ex, x: onnxlrp.Explainer(3.5), errors.ModelLoadError, "got float"),
    (lambda ex, x: ex.explain(x, method=None), errors.MethodError, "got None"),
    (lambda ex, x: ex.explain(x, method=3), errors.MethodError, "got 3"),
    (lambda ex, x: ex.explain(x, method=["gradient"]), errors.MethodError, "got ['gradient']"),
    (lambda ex, x: ex.explain(x[:0]), errors.InputShapeError, "at least one sample"),
    (lambda ex, x: ex.explain(ShapedButNotAnArray()), errors.InputDtypeError, "dtype object"),
    (lambda ex, x: ex.explain(x, rules="abc"), errors.MethodError, "rules must map"),
    (lambda ex, x: ex.explain(x, rules={"Conv": 3}), errors.MethodError, "got 3"),
    (lambda ex, x: ex.explain(x, rules={"Conv": ("gamma", 3)}), errors.MethodError, "got ('gamma', 3)"),
    (lambda ex, x: ex.explain(x, keep=3), errors.MethodError, "keep must be"),
    (lambda ex, x: ex.explain(x, feeds=[1]), errors.NameSelectionError, "feeds must map"),
    (lambda ex, x: ex.explain(x, target="cat"), errors.TargetError, "got 'cat'"),
    (lambda ex, x: ex.explain(x, "integrated_gradients", baseline=[1, 2, 3]), errors.MethodError,
     "cannot be broadcast"),
])
def test_misuse_raises_our_errors(ex, x, call, error, text):
    with pytest.raises(error) as info:
        call(ex, x)
    assert text in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("method, params, text", [
    ("epsilon", {"epsilon": "abc"}, "epsilon must be a number >= 0; got 'abc' (a parameter of method 'epsilon')"),
    ("epsilon", {"epsilon": [1, 2]}, "epsilon must be a number >= 0; got [1, 2]"),
    ("epsilon", {"epsilon": -1e-3}, "epsilon must be a number >= 0; got -0.001"),
    ("epsilon", {"epsilon": float("nan")}, "epsilon must be a number >= 0; got nan"),
    ("integrated_gradients", {"steps": "abc"}, "steps must be an integer in [1, 100000]; got 'abc'"),
    ("integrated_gradients", {"steps": 100_000_000}, "steps must be an integer in [1, 100000]; got 100000000"),
    ("integrated_gradients", {"steps": 2.5}, "steps must be an integer in [1, 100000]; got 2.5"),
    ("integrated_gradients", {"integration": "simpson"}, "integration must be one of 'gausslegendre'"),
    ("smoothgrad", {"random_state": -1}, "random_state must be an integer in [0, 4294967295]; got -1"),
    ("smoothgrad", {"samples": 10**9}, "samples must be an integer in [1, 100000]"),
    ("smoothgrad", {"samples": True}, "samples must be an integer"),
    ("grad_cam", {"layer": 7}, "layer must be a non-empty name; got 7"),
    ("grad_cam", {"layout": "CHW"}, "layout must be one of 'auto', 'NCHW', 'NHWC'; got 'CHW'"),
    ("clrp1", {"preset": "best"}, "preset must be one of 'clrp', 'lrp0'"),
    ("epsilon_plus", {"zero_params": 3}, "zero_params must be parameter names such as 'bias'; got 3"),
    ("epsilon_gamma_box", {"low": "dark"}, "low must be a number or an array of numbers; got 'dark'"),
])
def test_parameters_are_checked_against_their_declaration(ex, x, method, params, text):
    with pytest.raises(errors.MethodError) as info:
        ex.explain(x, method, **params)
    assert str(info.value).startswith(text)
    assert info.value.exit_code == 9


def test_valid_values_pass_unchanged_or_normalised(ex, x):
    res = ex.explain(x, "integrated_gradients", steps=4.0, baseline=[[[0.0]]] * 2)
    assert res.params["steps"] == 4 and isinstance(res.params["steps"], int)
    res = ex.explain(x, "epsilon_plus", zero_params="bias")
    assert res.params["zero_params"] == ("bias",)


def test_every_method_parameter_is_declared():
    """A new parameter must be declared in PARAMS (type and range) before a method can take it, and every
    default must satisfy its declaration."""
    declared = set(PARAMS)
    taken = {p for m in onnxlrp.methods.METHODS.values() for p in m.params}
    assert taken <= declared, sorted(taken - declared)
    for method in onnxlrp.methods.METHODS.values():  # every default is valid under its declaration
        for name, default in method.params.items():
            PARAMS[name].check(method.name, name, default)


@pytest.mark.parametrize("param, good, bad", [
    (Param("number", low=0, high=1), [0, 0.5, 1, np.float32(0.25)], [-0.1, 1.1, "x", None, True, float("inf")]),
    (Param("integer", low=1), [1, 7, 3.0, np.int64(4)], [0, 2.5, "3", False]),
    (Param("classes", optional=True), [None, 3, [1, 2], np.array([0, 1])], [1.5, "a", [[1]], [], True]),
    (Param("numbers"), [0.5, [1, 2], np.ones((1, 3))], ["a", [], [1, float("nan")], None]),
])
def test_param_kinds(param, good, bad):
    for value in good:
        param.check("m", "p", value)
    for value in bad:
        with pytest.raises(errors.MethodError):
            param.check("m", "p", value)


def _pooling_model():
    from onnx import helper

    from tests.helpers.onnx_builders import make_model
    w = np.random.default_rng(0).normal(size=(3, 2, 3, 3)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3, 3], name="conv"),
             helper.make_node("MaxPool", ["c"], ["p"], kernel_shape=[2, 2], name="pool"),
             helper.make_node("GlobalAveragePool", ["p"], ["g"]), helper.make_node("Flatten", ["g"], ["y"])]
    return make_model(nodes, [("x", ["N", 2, "H", "W"])], [("y", ["N", 3])], {"w": w})


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("size", [2, 3])
def test_an_input_smaller_than_the_windows_is_a_model_run_error(dtype, size):
    ex = onnxlrp.Explainer(_pooling_model(), dtype=dtype)
    with pytest.raises(errors.ModelRunError) as info:
        ex.explain(np.ones((1, 2, size, size), np.float32))
    text = str(info.value)
    assert "\n" not in text and f"x (1, 2, {size}, {size})" in text and info.value.exit_code == 4
    assert ex.explain(np.ones((1, 2, 4, 4), np.float32)).relevance.shape == (1, 2, 4, 4)


def test_a_malformed_node_names_itself(capfd):
    from onnx import helper

    from tests.helpers.onnx_builders import make_model
    w = np.ones((2, 2, 3, 3), np.float32)
    model = make_model([helper.make_node("Conv", ["x", "w"], ["y"], group=3, name="grouped")],
                       [("x", [1, 4, 5, 5])], [("y", [1, 2, 3, 3])], {"w": w})
    with pytest.raises(errors.ModelRunError, match=r"at node 'grouped' \(Conv\): Input channels C is not equal"):
        onnxlrp.Explainer(model, check=False).explain(np.ones((1, 4, 5, 5), np.float32))
    assert capfd.readouterr().err == ""  # onnxruntime's own log line is silenced


def _cnn_with(edit):
    model = relu_cnn()
    edit(model)
    return model


def _external_nul(model):
    from onnx import TensorProto
    tensor = model.graph.initializer[0]
    tensor.data_location = TensorProto.EXTERNAL
    tensor.ClearField("raw_data")
    tensor.ClearField("float_data")
    tensor.external_data.add(key="location", value="a\x00b")


@pytest.mark.parametrize("edit, error, text", [
    (lambda m: setattr(m.graph.initializer[0], "data_type", 99), errors.ModelCheckError,
     "initializer 'w1' (unknown data type 99, dims [4, 2, 3, 3]) cannot be decoded"),
    (lambda m: setattr(m.graph.initializer[0], "data_type", 7), errors.ModelCheckError,
     "initializer 'w1' (INT64, dims [4, 2, 3, 3]) cannot be decoded"),
    (_external_nul, errors.ExternalDataError, "unusable external data location 'a\\x00b'"),
])
def test_hostile_model_files(tmp_path, edit, error, text):
    path = tmp_path / "m.onnx"
    path.write_bytes(_cnn_with(edit).SerializeToString())
    with pytest.raises(error) as info:
        onnxlrp.Explainer(str(path), check=False).explain(np.ones((1, 2, 8, 8), np.float32))
    assert text in str(info.value)


@pytest.mark.parametrize("make", ["fifo", "device", "folder", "too_large"])
def test_a_model_path_must_be_a_regular_file_within_the_limit(tmp_path, monkeypatch, make):
    import os
    path = tmp_path / "model.onnx"
    if make == "fifo":
        os.mkfifo(path)
    elif make == "device":
        path = "/dev/zero"
    elif make == "folder":
        path.mkdir()
    else:
        path.write_bytes(relu_cnn().SerializeToString())
        monkeypatch.setenv("ONNXLRP_MAX_MODEL_BYTES", "100")
    with pytest.raises(errors.ModelLoadError) as info:
        onnxlrp.Explainer(str(path))
    expected = {"fifo": "not a regular file", "device": "not a regular file", "folder": "is a directory",
                "too_large": "over the 100 bytes limit for model files; set ONNXLRP_MAX_MODEL_BYTES"}[make]
    assert expected in str(info.value)


def test_a_scalar_output_is_refused_with_the_reason():
    from onnx import helper

    from tests.helpers.onnx_builders import make_model
    model = make_model([helper.make_node("ReduceSum", ["x"], ["y"], keepdims=0)], [("x", [3])], [("y", [])])
    with pytest.raises(errors.UnsupportedGraphError, match=r"output 'y' has shape \(\), with no batch axis"):
        onnxlrp.Explainer(model).explain(np.ones(3, np.float32))


def test_a_pass_over_the_memory_budget_is_refused_before_it_starts():
    ex = onnxlrp.Explainer(relu_cnn(), memory_budget=20_000)
    planned = ex.session.plan_bytes((1, 2, 8, 8))
    assert 0 < planned < 20_000 < ex.session.plan_bytes((64, 2, 8, 8))
    with pytest.raises(errors.MemoryBudgetError, match=r"input of shape \(64, 2, 8, 8\) would need about"):
        ex.explain(np.ones((64, 2, 8, 8), np.float32))
    assert ex.explain(np.ones((1, 2, 8, 8), np.float32)).relevance.shape == (1, 2, 8, 8)


def test_multi_pass_methods_chunk_to_the_budget_with_the_same_result():
    x = np.random.default_rng(2).normal(size=(3, 2, 8, 8))
    model = relu_cnn()
    whole = onnxlrp.Explainer(model, dtype="float64").explain(x, "integrated_gradients", steps=8)
    per_sample = onnxlrp.Session(model, dtype="float64").plan_bytes((1, 2, 8, 8))
    budget = 7 * per_sample  # two copies of the 3-sample batch fit, three do not
    tight = onnxlrp.Explainer(model, dtype="float64", memory_budget=budget)
    chunks = tight.session.chunks(8 * 3, None, 3, x.shape)
    assert [len(c) for c in chunks] == [6, 6, 6, 6]
    assert_close(tight.explain(x, "integrated_gradients", steps=8).relevance, whole.relevance,
                               rtol=3e-15, atol=3e-17)


def two_head_detector():
    """``x → conv → relu`` then two heads (stride 1 and stride 2 convs, each pooled to 2 scores), concatenated: a
    score of the first head does not depend on the second head's feature map (the last conv, Grad-CAM's default)."""
    from onnx import helper

    from tests.helpers.onnx_builders import make_model
    r = np.random.default_rng(3)
    w = {k: r.normal(size=s).astype(np.float32) for k, s in
         {"w0": (4, 2, 3, 3), "wa": (2, 4, 3, 3), "wb": (2, 4, 3, 3)}.items()}
    nodes = [helper.make_node("Conv", ["x", "w0"], ["c0"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c0"], ["a0"]),
             helper.make_node("Conv", ["a0", "wa"], ["ca"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["ca"], ["fa"]),
             helper.make_node("GlobalAveragePool", ["fa"], ["pa"]), helper.make_node("Flatten", ["pa"], ["ya"]),
             helper.make_node("Conv", ["a0", "wb"], ["cb"], strides=[2, 2], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["cb"], ["fb"]), helper.make_node("GlobalAveragePool", ["fb"], ["pb"]),
             helper.make_node("Flatten", ["pb"], ["yb"]), helper.make_node("Concat", ["ya", "yb"], ["y"], axis=1)]
    return make_model(nodes, [("x", ["N", 2, 8, 8])], [("y", ["N", 4])], w)


def test_grad_cam_default_layer_is_one_the_target_depends_on():
    from onnxlrp.methods import cam
    ex = onnxlrp.Explainer(two_head_detector(), dtype="float64")
    assert cam.default_layer(ex.session) == "fb"
    x = np.abs(np.random.default_rng(4).normal(size=(2, 2, 8, 8))) + 0.5
    first_head = ex.explain(x, "grad_cam", target=1)          # a score of the stride-1 head: fa, not fb
    np.testing.assert_array_equal(first_head.relevance, ex.explain(x, "grad_cam", target=1, layer="fa").relevance)
    second_head = ex.explain(x, "grad_cam", target=3)         # the default layer serves the second head
    np.testing.assert_array_equal(second_head.relevance, ex.explain(x, "grad_cam", target=3, layer="fb").relevance)
    assert first_head.relevance.any() and not np.array_equal(first_head.relevance, second_head.relevance)
