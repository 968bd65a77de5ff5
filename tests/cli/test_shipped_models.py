"""The model families people ship, each exported or built in the test, explained from the command line with
``epsilon_plus_flat``, ``gradient`` and ``integrated_gradients``: a YOLO-style detector (one box's class score), a
UNet segmenter, LSTM and GRU classifiers, a QDQ-quantised and a float16 CNN, a graph with an ``If`` on a shape
test, an onnxruntime-optimised BERT (fused attention), a scikit-learn scaler pipeline, and a recommender taking
integer ids."""
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


def _optimised_bert(tmp_path):
    """onnxruntime's transformer optimiser output (Attention, SkipLayerNormalization, FastGelu), the mask fed."""
    from tests.kernels.test_fused_ops import _bert
    _, optimised = _bert("gelu_new")
    np.save(tmp_path / "mask.npy", np.array([[1, 1, 1, 1, 0, 0]], dtype=np.int64))
    return optimised, (2, 6, 32), ["--input-name", "embeds", "--feed", f"attention_mask={tmp_path / 'mask.npy'}"]


def _sklearn_pipeline(tmp_path):
    """StandardScaler → MLPClassifier exported by skl2onnx (ai.onnx.ml Scaler on the path)."""
    pytest.importorskip("skl2onnx")
    import warnings

    from skl2onnx import to_onnx
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    r = np.random.default_rng(0)
    X, y = r.normal(size=(200, 8)).astype(np.float32) * 16, r.integers(0, 3, size=200)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe = make_pipeline(StandardScaler(), MLPClassifier((12,), max_iter=30, random_state=0)).fit(X, y)
        model = to_onnx(pipe, X[:1], options={id(pipe.steps[-1][1]): {"zipmap": False}})
    return model.SerializeToString(), (2, 8), ["--output-name", "probabilities"]


def _if_on_a_shape_test(tmp_path):
    from tests.engine.test_control_flow import if_model
    return if_model("shape")[0].SerializeToString(), (2, 4), []


FAMILIES = {"yolo": _yolo, "unet": _unet, "lstm": _recurrent("LSTM"), "gru": _recurrent("GRU"),
            "qdq": _quantised, "float16": _float16, "if": _if_on_a_shape_test, "bert_optimised": _optimised_bert,
            "sklearn_pipeline": _sklearn_pipeline}


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
