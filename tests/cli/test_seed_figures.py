"""Seed workflows by their own names, on small models built here:

* seed 004 (RAP, Nam et al. 2020): ``onnxlrp explain --method rap --split-sign`` writes the positive and the negative
  relevance as separate images, and RAP conserves the logit (ΣR = z_target, per input, from ``summary.json``);
* seed 003 (contrastive Grad-CAM, Prabhushankar et al. 2020): ``--method contrastive_grad_cam --contrast 1,2,3``
  gives one "why P rather than Q" map per Q, side by side in one grid image, each equal to the API's map for that Q.
"""
from __future__ import annotations

import json

import numpy as np
import onnx
from PIL import Image

import onnxlrp
from onnxlrp.cli import main
from tests.helpers.compare import assert_close
from tests.helpers.onnx_builders import relu_cnn

X = np.random.default_rng(7).normal(size=(2, 2, 8, 8)).astype(np.float32)


def _inputs(tmp_path):
    model = tmp_path / "cnn.onnx"
    onnx.save(relu_cnn(seed=3, classes=5), model)
    np.save(tmp_path / "batch.npy", X)
    return model, tmp_path / "batch.npy"


def test_seed_004_rap_positive_and_negative_images_and_conservation(tmp_path):
    model, data = _inputs(tmp_path)
    out = tmp_path / "out"
    assert main(["explain", str(model), str(data), "--method", "rap", "--split-sign", "--report", "-o", str(out),
                 "-q"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["inputs"]) == 2
    for entry in summary["inputs"]:
        rap = entry["explanations"][0]
        assert Image.open(out / rap["files"]["positive"]).mode == "RGB"
        relevance = np.load(out / rap["files"]["relevance"])
        assert rap["target"] == entry["predicted"]["class"]
        # RAP conserves the logit (float32 run: a few ulps of the summed map)
        assert_close(relevance.sum(dtype=np.float64), rap["logit"], rtol=1e-6, label="sum R vs logit")
        # the negative image is blank (bwr's white) exactly when no pixel's channel sum is negative
        negative = np.asarray(Image.open(out / rap["files"]["negative"]).convert("RGB")).reshape(-1, 3)
        blank = np.unique(negative, axis=0).tolist() == [[255, 255, 255]]
        assert blank == bool(relevance.sum(axis=0).min() >= 0)
    assert (out / "report.html").read_text().count("negative only") == 2


def test_seed_003_contrastive_grad_cam_p_vs_q_grid(tmp_path):
    model, data = _inputs(tmp_path)
    out = tmp_path / "out"
    contrasts = (1, 2, 3)
    assert main(["explain", str(model), str(data), "--method", "contrastive_grad_cam", "--contrast", "1,2,3",
                 "--set", "layer=a2", "-o", str(out), "-q"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [m["name"] for m in summary["methods"]] == [f"contrastive_grad_cam_vs_{q}" for q in contrasts]
    assert [m["params"]["contrast"] for m in summary["methods"]] == list(contrasts)
    ex = onnxlrp.Explainer(str(model))
    for i, entry in enumerate(summary["inputs"]):
        grid = Image.open(out / entry["grid"])
        assert grid.width > 4 * 128  # the input and three maps side by side
        for q, explanation in zip(contrasts, entry["explanations"]):
            expected = ex.explain(X, method="contrastive_grad_cam", contrast=q, layer="a2").relevance[i]
            np.testing.assert_array_equal(np.load(out / explanation["files"]["relevance"]), expected)
    maps = [np.load(out / e["files"]["relevance"]) for e in summary["inputs"][0]["explanations"]]
    assert not np.allclose(maps[0], maps[1]) and not np.allclose(maps[1], maps[2])  # Q reaches the method


def test_one_contrast_keeps_the_plain_method_name(tmp_path):
    model, data = _inputs(tmp_path)
    out = tmp_path / "out"
    assert main(["explain", str(model), str(data), "--method", "contrastive_grad_cam", "--contrast", "2",
                 "-o", str(out), "-q"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [m["name"] for m in summary["methods"]] == ["contrastive_grad_cam"]
    assert summary["methods"][0]["params"]["contrast"] == 2


def test_a_bad_contrast_list_is_a_usage_error(tmp_path, capsys):
    model, data = _inputs(tmp_path)
    assert main(["explain", str(model), str(data), "--method", "contrastive_grad_cam", "--contrast", "1,x"]) == 2
    assert "invalid class list '1,x'" in capsys.readouterr().err
