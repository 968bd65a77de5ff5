"""The model families people ship, each exported or built in the test, explained from the command line with
``epsilon_plus_flat``, ``gradient`` and ``integrated_gradients``: a YOLO-style detector (one box's class score), a
UNet segmenter, LSTM and GRU classifiers, a QDQ-quantised and a float16 CNN, a graph with an ``If`` on a shape
test, and a recommender taking integer ids."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from onnxlrp.cli import main

torch = pytest.importorskip("torch")

METHODS = "epsilon_plus_flat,gradient,integrated_gradients"


def _yolo(tmp_path):
    from tests.kernels.test_shipped_ops import TinyYolo, _export
    torch.manual_seed(0)
    return _export(TinyYolo().eval(), (2, 3, 8, 8)), (2, 3, 8, 8), ["--target", "9,6"]


def _unet(tmp_path):
    from tests.kernels.test_shipped_ops import UNet, _export
    torch.manual_seed(0)
    return _export(UNet().eval(), (2, 2, 8, 8)), (2, 2, 8, 8), ["--target", "1,3,5"]


def _recurrent(kind):
    def build(tmp_path):
        from tests.kernels.test_recurrent import classifier
        _, model, x = classifier(kind, False)
        return model.SerializeToString(), tuple(x.shape), ["--target", "1"]
    return build


def _quantised(tmp_path):
    from tests.engine.test_quantised import quantize, resnet_cnn
    return quantize(resnet_cnn(), tmp_path, "QDQ"), (2, 3, 16, 16), []


def _float16(tmp_path):
    from tests.engine.test_quantised import _float16
    return _float16(True), (2, 3, 16, 16), []


def _if_on_a_shape_test(tmp_path):
    from tests.engine.test_control_flow import if_model
    return if_model("shape")[0].SerializeToString(), (2, 4), []


FAMILIES = {"yolo": _yolo, "unet": _unet, "lstm": _recurrent("LSTM"), "gru": _recurrent("GRU"),
            "qdq": _quantised, "float16": _float16, "if": _if_on_a_shape_test}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_each_family_explains_from_the_command_line(tmp_path, capsys, family):
    model, shape, extra = FAMILIES[family](tmp_path)
    (tmp_path / "model.onnx").write_bytes(model)
    x = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "out"
    code = main(["explain", str(tmp_path / "model.onnx"), str(tmp_path / "x.npy"), "--method", METHODS,
                 "--set", "steps=8", "--out", str(out), "--quiet", *extra])
    assert code == 0, capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["inputs"]) == shape[0]
    for entry in summary["inputs"]:
        for explanation in entry["explanations"]:
            relevance = np.load(out / f"{entry['name']}.{explanation['method']}.npy")
            assert relevance.shape == shape[1:] and np.isfinite(relevance).all() and relevance.any()


def test_the_recommender_explains_each_id_from_the_command_line(tmp_path, capsys):
    from tests.engine.test_integer_inputs import recommender
    onnx.save(recommender(), tmp_path / "rec.onnx")
    np.save(tmp_path / "user.npy", np.array([0, 3, 5]))
    np.save(tmp_path / "item.npy", np.array([1, 1, 4]))
    code = main(["explain", str(tmp_path / "rec.onnx"), str(tmp_path / "user.npy"), "--input-name", "user",
                 "--feed", f"item={tmp_path / 'item.npy'}", "--target", "0", "--method", METHODS, "--set", "steps=8",
                 "--out", str(tmp_path / "out"), "--quiet"])
    assert code == 0, capsys.readouterr().err
    assert np.load(tmp_path / "out" / "user_2.integrated_gradients.npy").shape == ()
