"""``onnxlrp evaluate`` end to end on the digits CNN: tables, curves, report, masks, and its usage errors; the
Pillow line plot."""
from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from PIL import Image

from onnxlrp.cli import main
from onnxlrp.views.plots import Series, line_plot, nice_ticks
from tests.conftest import DIGITS_MODEL

SAMPLES = DIGITS_MODEL.parent / "samples"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval")
    masks = tmp_path_factory.mktemp("masks")
    inputs = sorted(SAMPLES.glob("*.png"))[:3]
    for path in inputs:  # the digit's own bright pixels as its mask
        Image.fromarray(((np.asarray(Image.open(path)) > 127) * 255).astype(np.uint8)).save(masks / path.name)
    code = main(["evaluate", str(DIGITS_MODEL), *map(str, inputs), "--method", "epsilon_plus,input_x_gradient",
                 "--metric", "pixel_flipping,region_perturbation,faithfulness_correlation,relevance_mass_accuracy,"
                 "sparseness", "--metric-set", "nr_runs=10", "--metric-set", "pixel_flipping.output=logit",
                 "--masks", str(masks), "--report", "-q", "-o", str(out / "res")])
    return code, out / "res"


def test_writes_tables_curves_and_report(run):
    code, out = run
    assert code == 0
    rows = list(csv.DictReader(io.StringIO((out / "summary.csv").read_text())))
    assert {r["metric"] for r in rows} == {"pixel_flipping", "region_perturbation", "faithfulness_correlation",
                                           "relevance_mass_accuracy", "sparseness"}
    assert {r["rank"] for r in rows if r["metric"] == "pixel_flipping"} == {"1", "2"}
    per_sample = list(csv.DictReader(io.StringIO((out / "evaluation.csv").read_text())))
    assert len(per_sample) == 5 * 2 * 3
    data = json.loads((out / "evaluation.json").read_text())
    pf = data["metrics"]["pixel_flipping"]
    assert pf["params"]["output"] == "logit" and pf["better"] == "lower"
    assert len(pf["methods"]["epsilon_plus"]["mean_curve"]) == len(pf["steps"]) == len(pf["random"]["mean_curve"])
    assert data["metrics"]["faithfulness_correlation"]["params"]["nr_runs"] == 10
    assert [r["method"] for r in data["ranking"]] and len(data["ranking"]) == 2
    assert (out / "curves" / "pixel_flipping.png").is_file() and (out / "curves" / "region_perturbation.png").is_file()
    html = (out / "report.html").read_text()
    assert 'id="evaluation"' in html and html.count("<img") == 2 and "random order" in html
    assert 0 < data["metrics"]["relevance_mass_accuracy"]["methods"]["epsilon_plus"]["mean"] <= 1


def test_reruns_give_identical_numbers(run, tmp_path):
    _, out = run
    code = main(["evaluate", str(DIGITS_MODEL), *map(str, sorted(SAMPLES.glob("*.png"))[:3]), "--method",
                 "epsilon_plus,input_x_gradient", "--metric", "faithfulness_correlation", "--metric-set",
                 "nr_runs=10", "-q", "-o", str(tmp_path / "again")])
    assert code == 0
    first = json.loads((out / "evaluation.json").read_text())["metrics"]["faithfulness_correlation"]["methods"]
    again = json.loads((tmp_path / "again" / "evaluation.json").read_text())["metrics"]["faithfulness_correlation"]
    assert first["epsilon_plus"]["values"] == again["methods"]["epsilon_plus"]["values"]


@pytest.mark.parametrize("argv, message", [
    (["--metric", "pixel_flopping"], "unknown metric"),
    (["--metric", "pointing_game"], "--masks"),
    (["--metric-set", "colour=red"], "no chosen metric takes"),
])
def test_usage_errors_exit_2(argv, message, tmp_path, capsys):
    code = main(["evaluate", str(DIGITS_MODEL), str(SAMPLES), "-o", str(tmp_path / "x"), *argv])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_line_plot_draws_series_and_baseline():
    x = np.linspace(0, 1, 11)
    image = line_plot([Series("a", x, 1 - x), Series("b", x, (1 - x) ** 2),
                       Series("random", x, np.full(11, np.nan), dashed=True)], title="t", xlabel="x", ylabel="y")
    assert image.shape == (360, 560, 3) and image.dtype == np.uint8
    colours = {tuple(c) for c in image.reshape(-1, 3)[::7]}
    assert (0, 114, 178) in colours and (213, 94, 0) in colours
    assert nice_ticks(0.0, 1.0) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]


def test_several_targets_and_contrasts_make_variants_and_views(tmp_path):
    inputs = [str(p) for p in sorted(SAMPLES.glob("*.png"))[3:5]]
    out = tmp_path / "mc"
    code = main(["evaluate", str(DIGITS_MODEL), *inputs, "--method", "epsilon_plus,clrp1", "--target", "3,8",
                 "--contrast", "5", "--split-sign", "--metric", "sparseness", "--report", "-q", "-o", str(out)])
    assert code == 0
    data = json.loads((out / "evaluation.json").read_text())
    names = [m["name"] for m in data["methods"]]
    assert names == ["epsilon_plus@3", "epsilon_plus@8", "clrp1@3 vs 5", "clrp1@8 vs 5"]
    assert data["methods"][2]["params"]["contrast"] == 5 and data["methods"][2]["target"] == "3"
    views = sorted((out / "views").glob("*.png"))
    assert len(views) == 2
    picture = np.asarray(Image.open(views[0]))
    assert picture.shape[0] > 2 * 128  # two rows (targets) of zoomed tiles
    html = (out / "report.html").read_text()
    assert 'id="views"' in html and html.count("<img") == 2


def test_contrast_without_a_contrastive_method_is_a_usage_error(tmp_path, capsys):
    code = main(["evaluate", str(DIGITS_MODEL), str(SAMPLES), "--contrast", "5", "--metric", "sparseness",
                 "-o", str(tmp_path / "x")])
    assert code == 2 and "contrastive method" in capsys.readouterr().err


def test_sign_tiles_separate_positive_and_negative_relevance():
    from onnxlrp.views.multiclass import sign_tiles
    rmap = np.array([[2.0, -1.0], [0.0, 0.5]])
    positive, negative = sign_tiles(rmap)
    assert tuple(positive[0, 0]) == (255, 0, 0) and tuple(positive[0, 1]) == (255, 255, 255)
    assert tuple(negative[0, 0]) == (255, 255, 255) and negative[0, 1, 2] == 255 and negative[0, 1, 0] < 255
    assert tuple(negative[1, 0]) == tuple(positive[1, 0]) == (255, 255, 255)
