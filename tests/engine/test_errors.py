"""Every error the engine raises on purpose, with its exact first line."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

import onnxlrp
from onnxlrp import errors
from tests.helpers.onnx_builders import make_model, relu_cnn


def first_line(exc_info) -> str:
    return str(exc_info.value).splitlines()[0]


def test_missing_file(tmp_path):
    with pytest.raises(errors.ModelLoadError) as e:
        onnxlrp.Explainer(str(tmp_path / "nope.onnx"))
    assert first_line(e) == f"model file {str(tmp_path / 'nope.onnx')!r} does not exist"


def test_truncated_file(tmp_path):
    path = tmp_path / "cut.onnx"
    path.write_bytes(relu_cnn().SerializeToString()[:100])
    with pytest.raises(errors.ModelLoadError) as e:
        onnxlrp.Explainer(str(path))
    assert first_line(e).startswith(f"{str(path)!r} is not a readable ONNX model (truncated or not ONNX): ")


def test_not_onnx(tmp_path):
    path = tmp_path / "text.onnx"
    path.write_text("hello world, definitely not protobuf")
    with pytest.raises(errors.ModelLoadError) as e:
        onnxlrp.Explainer(str(path))
    assert "is not" in first_line(e) and str(path) in first_line(e)


def test_checker_failure():
    model = make_model([helper.make_node("Relu", ["x"], ["y"])], [("x", [1, 2])], [("y", [1, 2])])
    model.graph.node[0].input[0] = "undefined"
    with pytest.raises(errors.ModelCheckError) as e:
        onnxlrp.Explainer(model)
    assert first_line(e).startswith("the model fails the ONNX checker: ")
    assert "\n" not in str(e.value) and "'undefined'" in str(e.value)


def test_unsupported_ops_are_listed_together():
    nodes = [helper.make_node("Sin", ["x"], ["a"], name="s1"), helper.make_node("Sin", ["a"], ["b"], name="s2"),
             helper.make_node("Cos", ["b"], ["c"], name="e1"), helper.make_node("Relu", ["c"], ["y"])]
    model = make_model(nodes, [("x", ["N", 2])], [("y", ["N", 2])])
    with pytest.raises(errors.UnsupportedOpError) as e:
        onnxlrp.Explainer(model)
    lines = str(e.value).splitlines()
    assert lines[0] == ("onnxlrp cannot explain the model: 2 op types on the relevance path have no usable kernel: "
                        "Cos (1 node, e.g. 'e1'), Sin (2 nodes, e.g. 's2').")
    assert lines[1] == "  Cos  (domain 'ai.onnx', opset version 7)  1 node, e.g. 'e1': no kernel registered"
    assert lines[2] == "  Sin  (domain 'ai.onnx', opset version 7)  2 nodes, e.g. 's2': no kernel registered"
    assert lines[3].startswith("Fix: ")


def test_unsupported_use_of_a_supported_op_is_reported():
    nodes = [helper.make_node("Pow", ["x", "x"], ["y"], name="power")]
    with pytest.raises(errors.UnsupportedOpError) as e:
        onnxlrp.Explainer(make_model(nodes, [("x", ["N", 2, 2])], [("y", ["N", 2, 2])]))
    assert ("Pow  (domain 'ai.onnx', opset version 15)  1 node, e.g. 'power': Pow with an exponent that depends on "
            "the explained input is not supported") in str(e.value)


def two_input_model():
    nodes = [helper.make_node("Add", ["a", "b"], ["s"]), helper.make_node("Relu", ["s"], ["y"]),
             helper.make_node("Relu", ["s"], ["z"])]
    return make_model(nodes, [("a", ["N", 2]), ("b", ["N", 2])], [("y", ["N", 2]), ("z", ["N", 2])])


def test_ambiguous_input():
    with pytest.raises(errors.NameSelectionError) as e:
        onnxlrp.Explainer(two_input_model(), output_name="y")
    assert first_line(e) == "the model has 2 inputs ('a', 'b'); choose one with input_name="


def test_ambiguous_output():
    with pytest.raises(errors.NameSelectionError) as e:
        onnxlrp.Explainer(two_input_model(), input_name="a")
    assert first_line(e) == "the model has 2 outputs ('y', 'z'); choose one with output_name="


def test_unknown_input_name():
    with pytest.raises(errors.NameSelectionError) as e:
        onnxlrp.Explainer(relu_cnn(), input_name="image")
    assert first_line(e) == "the model has no input named 'image'; its inputs are: 'x'"


def test_missing_feed_for_other_input():
    ex = onnxlrp.Explainer(two_input_model(), input_name="a", output_name="y")
    with pytest.raises(errors.NameSelectionError) as e:
        ex.explain(np.ones((1, 2), np.float32), method="gradient")
    assert first_line(e) == ("the model has other inputs that must be held fixed; pass feeds={'b': ...} "
                             "(missing: b)")
    res = ex.explain(np.ones((1, 2), np.float32), method="lrp0", target=0, feeds={"b": np.ones((1, 2), np.float32)})
    assert res.relevance.tolist() == [[2.0, 0.0]]  # the fixed input is a constant shift: Pass (ALGORITHMS 0.5)


def test_wrong_rank_and_shape():
    ex = onnxlrp.Explainer(relu_cnn())
    with pytest.raises(errors.InputShapeError) as e:
        ex.explain(np.ones((2, 8, 8), np.float32))
    assert first_line(e) == "input 'x' expects 4 dimensions [N, 2, 8, 8]; got shape (2, 8, 8)"
    with pytest.raises(errors.InputShapeError) as e:
        ex.explain(np.ones((1, 3, 8, 8), np.float32))
    assert first_line(e) == "input 'x' expects shape [N, 2, 8, 8]; got (1, 3, 8, 8) (axis 1 is 3, not 2)"


def test_wrong_dtype():
    with pytest.raises(errors.InputDtypeError) as e:
        onnxlrp.Explainer(relu_cnn()).explain(np.ones((1, 2, 8, 8), np.uint8))
    assert first_line(e) == ("input 'x' expects floating-point values (float32); got an array of dtype uint8: "
                             "convert and normalise it first")


def test_target_out_of_range():
    ex = onnxlrp.Explainer(relu_cnn())
    with pytest.raises(errors.TargetError) as e:
        ex.explain(np.ones((1, 2, 8, 8), np.float32), target=5)
    assert first_line(e) == "target 5 is out of range for output 'y' with 5 classes (valid: 0..4)"
    with pytest.raises(errors.TargetError) as e:
        ex.explain(np.ones((2, 2, 8, 8), np.float32), target=[1, 2, 3])
    assert first_line(e) == "target has 3 entries but the batch has 2 samples"


def test_unknown_method_and_parameter():
    ex = onnxlrp.Explainer(relu_cnn())
    x = np.ones((1, 2, 8, 8), np.float32)
    with pytest.raises(errors.MethodError) as e:
        ex.explain(x, method="lrp-magic")
    assert first_line(e).startswith("unknown method 'lrp-magic'; methods are: alpha_beta, ")
    assert "epsilon_plus_flat, " in first_line(e) and "integrated_gradients, " in first_line(e)
    with pytest.raises(errors.MethodError) as e:
        ex.explain(x, method="epsilon_plus", gamma=0.5)
    assert first_line(e) == ("method 'epsilon_plus' has no parameter 'gamma'; its parameters are: epsilon, "
                             "stabilizer, zero_params")
    with pytest.raises(errors.MethodError) as e:
        ex.explain(x, method="alpha_beta", alpha=0.0, beta=0.0)
    assert first_line(e) == ("bad parameters for method 'alpha_beta': alpha and beta cannot both be 0 (no relevance "
                             "would pass); got alpha=0, beta=0")


def test_rule_not_applicable():
    with pytest.raises(errors.RuleNotApplicableError) as e:
        onnxlrp.Explainer(relu_cnn()).explain(np.ones((1, 2, 8, 8), np.float32), rules={"Relu": "gamma"})
    assert first_line(e) == ("rule Gamma(gamma=0.25, stabilizer=1e-06, zero_params=()) cannot be applied to 2 "
                             "node(s), e.g. 'Relu_1' (Relu, a activation node); it applies to: affine, avgpool, "
                             "batchnorm, conv, dense, sum")


def test_nan_input_and_zero_denominator_are_reported():
    ex = onnxlrp.Explainer(relu_cnn(bias=False), dtype="float64")
    x = np.ones((1, 2, 8, 8), np.float32)
    x[0, 0, 0, 0] = np.nan
    with pytest.raises(errors.NonFiniteError) as e:
        ex.explain(x)
    assert first_line(e) == "input 'x' contains NaN or inf"
    w = np.array([[1.0, -1.0]], np.float32)
    model = make_model([helper.make_node("Gemm", ["x", "w"], ["y"], transB=1)], [("x", ["N", 2])], [("y", ["N", 1])],
                       {"w": w})
    res = onnxlrp.Explainer(model).explain(np.array([[1.0, 1.0]], np.float32), method="lrp0", target=0,
                                           relevance_init="one_hot")
    assert np.isfinite(res.relevance).all()  # LRP-0 drops relevance at exact zeros instead of dividing by 0


def test_external_data_outside_the_folder_is_refused(tmp_path):
    import onnx
    model = relu_cnn()
    for t in model.graph.initializer:
        if t.name == "w1":
            t.data_location = onnx.TensorProto.EXTERNAL
            del t.external_data[:]
            t.external_data.add(key="location", value="../secret.bin")
            t.ClearField("raw_data")
            t.ClearField("float_data")
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(errors.ExternalDataError) as e:
        onnxlrp.Explainer(str(path))
    assert first_line(e) == (f"initializer 'w1' points to external data '../secret.bin' outside the model's folder "
                             f"{str(tmp_path)!r}; refusing to read it")


def test_every_error_class_has_a_positive_exit_code():  # the table: tests/cli/test_exit_codes.py
    classes = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.OnnxLrpError)]
    assert all(isinstance(c.exit_code, int) and c.exit_code > 0 for c in classes)
