"""``onnxlrp compile`` and ``onnxlrp explain --backend onnx`` end to end on the shipped digits CNN, and their errors."""
from __future__ import annotations

import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import onnxlrp
from onnxlrp.cli.main import main
from tests.engine.test_compiled import _lstm_model
from tests.helpers.compare import assert_rel

DIGITS = os.path.join(os.path.dirname(__file__), "..", "..", "models", "digits", "digits_cnn.onnx")


def test_compile_writes_a_model_onnxruntime_runs(tmp_path, capsys):
    out = tmp_path / "digits.epsilon.onnx"
    assert main(["compile", DIGITS, "-m", "epsilon", "--set", "epsilon=0.3", "-o", str(out)]) == 0
    assert "inputs image, target; outputs logits, relevance" in capsys.readouterr().out
    assert not (tmp_path / "digits.epsilon.onnx.partial").exists()
    x = np.random.default_rng(0).random((2, 1, 32, 32)).astype(np.float32)
    session = ort.InferenceSession(str(out))
    relevance = session.run(["relevance"], {"image": x, "target": np.array([3, 8])})[0]
    expected = onnxlrp.Explainer(DIGITS).explain(x, "epsilon", target=[3, 8], epsilon=0.3).relevance
    assert_rel(relevance, expected, 1e-5, "onnxlrp compile epsilon=0.3")


def test_contrastive_method_compiles_with_a_contrast_input(tmp_path, capsys):
    out = tmp_path / "digits.cgc.onnx"
    assert main(["compile", DIGITS, "-m", "contrastive_grad_cam", "-o", str(out)]) == 0
    assert {i.name for i in onnx.load(str(out)).graph.input} == {"image", "target", "contrast"}


def test_explain_with_the_onnx_backend_writes_the_same_maps(tmp_path):
    x = np.random.default_rng(1).random((1, 32, 32)).astype(np.float32)
    np.save(tmp_path / "digit.npy", x)
    for backend in ("numpy", "onnx"):
        assert main(["explain", DIGITS, str(tmp_path / "digit.npy"), "--method", "epsilon_plus,gradient",
                     "--backend", backend, "--target", "4", "--out", str(tmp_path / backend), "-q"]) == 0
    for method in ("epsilon_plus", "gradient"):
        compiled = np.load(tmp_path / "onnx" / f"digit.{method}.npy")
        reference = np.load(tmp_path / "numpy" / f"digit.{method}.npy")
        assert_rel(compiled, reference, 1e-5, f"explain --backend onnx {method}")


@pytest.mark.parametrize("case, code, text", [
    ("lstm", 5, "node 'lstm' (LSTM)"),
    ("method", 9, "unknown method"),
    ("folder", 13, "missing or not writable"),
    ("corrupt", 3, "not a readable ONNX model"),
    ("ids", 5, "holds integer ids"),
])
def test_compile_errors_are_one_line(tmp_path, capsys, case, code, text):
    model, method, out = DIGITS, "epsilon", str(tmp_path / "out.onnx")
    if case == "lstm":
        model = str(tmp_path / "lstm.onnx")
        onnx.save(_lstm_model(), model)
        method = "gradient"
    elif case == "method":
        method = "no_such_method"
    elif case == "ids":
        from onnx import TensorProto, helper
        table = helper.make_tensor("E", TensorProto.FLOAT, (10, 4), np.arange(40, dtype=np.float32).tolist())
        nodes = [helper.make_node("Gather", ["E", "ids"], ["e"], name="lookup"),
                 helper.make_node("Flatten", ["e"], ["y"], name="flat")]
        graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("ids", TensorProto.INT64, ["N", 5])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 20])], [table])
        model = str(tmp_path / "ids.onnx")
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), model)
    elif case == "folder":
        out = str(tmp_path / "missing" / "out.onnx")
    else:
        model = str(tmp_path / "corrupt.onnx")
        with open(model, "wb") as handle:
            handle.write(b"\x08\x07garbage" * 10)
    assert main(["compile", model, "-m", method, "-o", out]) == code
    err = capsys.readouterr().err.strip()
    assert text in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not os.path.exists(out)
