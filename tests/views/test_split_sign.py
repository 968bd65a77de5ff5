"""Positive and negative relevance as separate images (the RAP paper's figures): :func:`imaging.split_sign` and
:func:`imaging.split_sign_rgb`, and ``onnxlrp explain --split-sign`` (files, summary, grid, report)."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
from PIL import Image

from onnxlrp.cli import main
from onnxlrp.views import imaging, multiclass
from tests.helpers import REPO

#: positive peak 4, negative peak -0.5: on their own scales both reach 1
RMAP = np.array([[4.0, 2.0, 0.0], [-0.5, -0.25, 1.0]])


def test_each_part_has_its_own_scale():
    p, n = imaging.split_sign(RMAP)
    np.testing.assert_array_equal(p, np.maximum(RMAP, 0) / 4.0)
    np.testing.assert_array_equal(n, np.maximum(-RMAP, 0) / 0.5)


def test_shared_scale_divides_both_by_the_largest_magnitude():
    p, n = imaging.split_sign(RMAP, shared_scale=True)
    np.testing.assert_array_equal(p, np.maximum(RMAP, 0) / 4.0)
    np.testing.assert_array_equal(n, np.maximum(-RMAP, 0) / 4.0)


def test_a_part_that_is_zero_everywhere_stays_zero():
    p, n = imaging.split_sign(np.array([[1.0, 0.0], [3.0, 2.0]]))
    assert not n.any() and p.max() == 1.0


def test_signed_maps_draw_each_part_from_the_centre_towards_its_end():
    """bwr: positive image white -> red, negative image white -> blue; zero is white in both."""
    pos, neg = imaging.split_sign_rgb(RMAP, "bwr")
    assert pos[0, 0].tolist() == [255, 0, 0] and neg[1, 0].tolist() == [0, 0, 255]
    assert pos[1, 0].tolist() == [255, 255, 255] and neg[0, 0].tolist() == [255, 255, 255]
    np.testing.assert_array_equal(pos, imaging.apply_colormap((1 + np.maximum(RMAP, 0) / 4) / 2, "bwr"))


def test_unsigned_maps_span_the_whole_map_per_part():
    """jet: magnitude 0 is jet(0) (dark blue), the part's peak jet(1) (dark red), in both images."""
    pos, neg = imaging.split_sign_rgb(RMAP, "jet")
    low, high = imaging.apply_colormap(np.array([0.0, 1.0]), "jet")
    assert pos[0, 0].tolist() == high.tolist() and neg[1, 0].tolist() == high.tolist()
    assert pos[1, 0].tolist() == low.tolist() and neg[0, 0].tolist() == low.tolist()


def test_class_grid_tiles_keep_the_shared_scale():
    """The evaluate views (multiclass.sign_tiles) keep both parts on the map's largest |R|."""
    pos, neg = multiclass.sign_tiles(RMAP, "bwr")
    expected = imaging.apply_colormap((1 - np.maximum(-RMAP, 0) / 4) / 2, "bwr")
    np.testing.assert_array_equal(neg, expected)


# ------------------------------------------------------------------------------------------------ command line
DIGITS = REPO / "models" / "digits" / "digits_cnn.onnx"
SAMPLE = sorted((REPO / "models" / "digits" / "samples").glob("*.png"))[0]


@pytest.mark.parametrize("cmap", ["bwr", "jet"])
def test_cli_split_sign_writes_both_images_in_files_grid_and_report(tmp_path, cmap):
    out = tmp_path / "out"
    rc = main(["explain", str(DIGITS), str(SAMPLE), "--method", "rap", "--split-sign", "--cmap", cmap, "--report",
               "-o", str(out), "-q"])
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    files = summary["inputs"][0]["explanations"][0]["files"]
    assert files["positive"] == f"{SAMPLE.stem}.rap.positive.png"
    assert files["negative"] == f"{SAMPLE.stem}.rap.negative.png"
    # the written images are the API's images of the written relevance (zoomed by whole pixels)
    rmap = imaging.relevance_map(np.load(out / files["relevance"]), "NCHW")
    factor = imaging.zoom_factor(rmap.shape)
    for part, rgb in zip(("positive", "negative"), imaging.split_sign_rgb(rmap, cmap)):
        png = np.asarray(Image.open(out / files[part]).convert("RGB"))
        np.testing.assert_array_equal(png, imaging.zoom(rgb, factor))
    assert (out / summary["inputs"][0]["grid"]).is_file()  # input, rap, rap +, rap - even with one method
    grid = np.asarray(Image.open(out / summary["inputs"][0]["grid"]))
    assert grid.shape[1] > 4 * 128
    html = (out / "report.html").read_text()
    card = html[html.index("<section class=\"card\""):]
    assert len(re.findall(r"<img ", card)) == 1 + 4  # input; heatmap, overlay, positive, negative
    assert "rap positive relevance" in card and "rap negative relevance" in card


def test_cli_without_split_sign_writes_no_sign_images(tmp_path):
    out = tmp_path / "out"
    assert main(["explain", str(DIGITS), str(SAMPLE), "--method", "rap", "-o", str(out), "-q"]) == 0
    assert not list(out.glob("*.positive.png")) and not list(out.glob("*.grid.png"))
