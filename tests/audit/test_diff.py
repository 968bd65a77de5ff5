"""``onnxlrp diff``: explanation drift of the digits CNN against its float16 and int8 QDQ exports, made here with
onnxruntime's own converters (:mod:`tests.helpers.exports`), on the shipped samples plus 64 noisy copies of them
(an .npz); the measures against hand-made cases; the refusals; the report in headless Chromium.

Measured under epsilon_plus on those 74 inputs (onnxruntime 1.32's converters; QDQ calibrated on the ten samples):

============================ =========== ============================ ============================
B                            agreement   Spearman min / mean / median  top-103 overlap min / mean
============================ =========== ============================ ============================
float16, float32 in and out  74 of 74    0.9972 / 0.9998 / 1.0000      0.971 / 0.9965
float16, float16 in and out  74 of 74    0.9972 / 0.9998 / 1.0000      0.971 / 0.9963
int8 QDQ                     74 of 74    0.9588 / 0.9953 / 0.9972      0.922 / 0.9743
============================ =========== ============================ ============================

(gradient: float16 0.9925 / 0.9996 Spearman, QDQ 0.9156 / 0.9794.) float16 maps are near-identical (float16
rounding of the activations); QDQ maps correlate less, as the quantised activations move relevance between
neighbouring pixels. The bounds keep about a 10x margin on ``1 - value`` for float16 and 5x for QDQ, and the order
(QDQ drifts more than float16) is asserted.
"""
from __future__ import annotations

import json
import re
import sys
import warnings
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

import onnxlrp
from onnxlrp.audit.dataset import Dataset
from onnxlrp.audit.drift import (
    LeastSimilar,
    compare,
    map_keys,
    summarize,
    top_k_count,
    top_k_overlap,
)
from onnxlrp.cli import main
from onnxlrp.evaluate.similarity import spearman
from onnxlrp.inputs import images
from tests.conftest import DIGITS_MODEL
from tests.helpers import REPO
from tests.helpers.compare import within
from tests.helpers.exports import float16_export, optimised_export, qdq_export
from tests.views.test_report import CHROMIUM, _chromium

SAMPLES = REPO / "models" / "digits" / "samples"
LABELS = REPO / "models" / "digits" / "labels.txt"
INPUTS = 74  # 10 samples + 64 noisy copies


def _samples() -> tuple[np.ndarray, np.ndarray]:
    files = sorted(SAMPLES.glob("*.png"))
    x = np.stack([np.asarray(Image.open(f).convert("L"), dtype=np.float32) / 255 for f in files])[:, None]
    return x, np.array([int(f.name[5]) for f in files])


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("exports")
    x, _ = _samples()
    return {"float16_io32": float16_export(DIGITS_MODEL, folder / "fp16_io32.onnx", keep_io_types=True),
            "float16": float16_export(DIGITS_MODEL, folder / "fp16.onnx", keep_io_types=False),
            "qdq": qdq_export(DIGITS_MODEL, folder / "qdq.onnx", x, "image")}


@pytest.fixture(scope="module")
def noisy(tmp_path_factory) -> Path:
    """64 copies of the ten samples with Gaussian noise (sigma 0.15), clipped to [0, 1], labelled."""
    x, y = _samples()
    rng = np.random.default_rng(0)
    pick = np.arange(64) % 10
    path = tmp_path_factory.mktemp("data") / "noisy.npz"
    np.savez(path, x=np.clip(x[pick] + rng.normal(0, 0.15, (64, 1, 32, 32)), 0, 1).astype(np.float32), y=y[pick])
    return path


def _diff(b, out, *extra, a=DIGITS_MODEL, data=(SAMPLES,)) -> int:
    return main(["diff", str(a), str(b), *map(str, data), "--labels", str(LABELS), "-o", str(out), "-q",
                 *map(str, extra)])


# ------------------------------------------------------------------------------------------------- the measures
def test_top_k_count_takes_features_or_a_fraction():
    assert top_k_count(5, 100) == 5 and top_k_count(500, 100) == 100
    assert top_k_count(0.1, 1024) == 103 and top_k_count(0.001, 10) == 1
    for bad in (0, -1, 2.5, float("nan")):
        with pytest.raises(onnxlrp.errors.UsageError, match="top-k"):
            top_k_count(bad, 10)


def test_top_k_overlap_ranks_absolute_relevance_and_breaks_ties_by_index():
    a = np.array([[5.0, -4.0, 0.1, 0.0, 0.0, 3.0]])
    b = np.array([[0.2, 4.0, -6.0, 0.0, 0.0, 1.0]])
    # top-3 of |a|: {0, 1, 5}; of |b|: {2, 1, 5}
    assert top_k_overlap(a, b, 3).tolist() == [2 / 3]
    # the zeros tie: index order picks 3 before 4 in both, so equal maps overlap fully
    zeros = np.array([[1.0, 0.0, 0.0, 0.0]])
    assert top_k_overlap(zeros, zeros.copy(), 3).tolist() == [1.0]
    assert top_k_overlap(a, -a, 2).tolist() == [1.0]  # a sign flip keeps a feature important


def test_map_keys_rank_a_constant_map_first_unless_both_are_equal():
    a = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    b = np.array([[1.0, 2.0, 4.0], [0.0, 0.0, 0.0], [1.0, 0.0, 2.0]])
    rho = spearman(a, b)
    assert rho[0] == 1.0 and np.isnan(rho[1:]).all()
    assert map_keys(rho, a, b).tolist() == [1.0, 2.0, -2.0]


def test_least_similar_keeps_the_n_lowest_and_the_earlier_row_of_a_tie():
    from onnxlrp.audit.drift import DriftExample
    keep = LeastSimilar(3)
    keys = [0.9, 0.2, 0.5, 0.2, 0.95, 0.1, 0.5]
    for row, key in enumerate(keys):
        keep.offer(key, DriftExample(row, f"r{row}", -1, {}, np.zeros((1, 1)), np.zeros((1, 1)), None, None))
    assert [e.row for e in keep.examples()] == [5, 1, 3]
    assert not keep.wants(0.2, 9) and keep.wants(0.2, 0)


def test_summary_counts_agreement_per_class_and_accuracy():
    columns = {"prediction_a": np.array([0, 0, 1, 1, -1]), "prediction_b": np.array([0, 1, 1, 1, -1]),
               "spearman": np.array([1.0, 0.5, np.nan, 0.9, np.nan]),
               "top_k_overlap": np.array([1.0, 0.5, 0.8, 0.6, np.nan])}
    s = summarize(columns, np.array([0, 0, 1, -1, 2]), np.array([True, True, True, True, False]))
    assert (s["rows"], s["explained"], s["unreadable"], s["disagreements"]) == (5, 4, 1, 1)
    assert s["agreement"] == 0.75 and s["spearman"]["count"] == 3 and s["spearman"]["undefined"] == 1
    assert s["spearman"]["mean"] == pytest.approx(0.8) and s["top_k_overlap"]["min"] == 0.5
    assert s["per_class"] == {0: {"rows": 2, "agreement": 0.5, "spearman_mean": 0.75, "top_k_overlap_mean": 0.75},
                              1: {"rows": 2, "agreement": 1.0, "spearman_mean": 0.9, "top_k_overlap_mean": 0.7}}
    assert s["accuracy"] == {"a": 1.0, "b": 2 / 3, "labelled": 3}
    assert sum(s["spearman_histogram"]["counts"]) == 3 and s["spearman_histogram"]["edges"][0] == 0.5


def test_identical_models_give_spearman_and_overlap_exactly_one(noisy):
    ex_a, ex_b = onnxlrp.Explainer(str(DIGITS_MODEL)), onnxlrp.Explainer(str(DIGITS_MODEL))
    prep = images.resolve_preprocessing(ex_a.input_shape)
    dataset = Dataset([str(SAMPLES), str(noisy)], ex_a.input_shape, ex_a.input_dtype, ex_a.input_name, prep=prep)
    keep = LeastSimilar(4)
    batches = list(compare(ex_a, ex_b, dataset, "epsilon_plus", {}, 0.1, batch_size=16, keep=keep, layout="NCHW"))
    assert [b.start for b in batches] == list(range(0, INPUTS, 16))
    columns = {k: np.concatenate([b.columns[k] for b in batches]) for k in batches[0].columns}
    assert (columns["spearman"] == 1.0).all() and (columns["top_k_overlap"] == 1.0).all()
    assert (columns["agree"] == 1.0).all() and (columns["prediction_a"] == columns["class_b"]).all()
    assert [e.row for e in keep.examples()] == [0, 1, 2, 3]  # all tie at 1: the earliest rows
    first = keep.examples()[0]
    assert first.map_a.shape == (32, 32) and first.picture.shape == (32, 32, 3) and first.sample is None


# ------------------------------------------------------------------------------------------------- the exports
def _table(out: Path) -> dict:
    return pq.read_table(out / "diff.parquet").to_pydict()


@pytest.mark.parametrize("export", ["float16_io32", "float16"])
def test_float16_exports_explain_near_identically(exports, noisy, tmp_path, export):
    out = tmp_path / "out"
    assert _diff(exports[export], out, data=(SAMPLES, noisy)) == 0
    table, summary = _table(out), json.loads((out / "diff.json").read_text())
    assert len(table["row"]) == INPUTS and table["row"] == list(range(INPUTS))
    assert summary["agreement"] == 1.0 and all(table["agree"])
    rho, overlap = np.array(table["spearman"]), np.array(table["top_k_overlap"])
    assert within(1 - rho.min(), 0.03, f"{export}: 1 - min Spearman")          # measured 0.0028
    assert within(1 - rho.mean(), 2e-3, f"{export}: 1 - mean Spearman")        # measured 2e-4
    assert within(1 - overlap.mean(), 0.03, f"{export}: 1 - mean overlap")     # measured 0.003
    b = summary["models"]["b"]
    assert b["weights"].get("float16", 0) >= 10 and b["input"]["dtype"] == ("float32" if export == "float16_io32"
                                                                               else "float16")
    scores = np.array(table["score_a"]) - np.array(table["score_b"])
    assert within(np.abs(scores).max(), 0.1, f"{export}: explained logit")     # measured 9e-3 (logits up to 20)


def test_int8_qdq_export_drifts_more_than_float16_but_agrees(exports, noisy, tmp_path):
    out_q, out_h = tmp_path / "qdq", tmp_path / "fp16"
    assert _diff(exports["qdq"], out_q, data=(SAMPLES, noisy)) == 0
    assert _diff(exports["float16_io32"], out_h, data=(SAMPLES, noisy)) == 0
    table, summary = _table(out_q), json.loads((out_q / "diff.json").read_text())
    assert summary["models"]["b"]["quantisation_ops"]["QuantizeLinear"] >= 5
    assert summary["agreement"] >= 0.95                                          # measured 1.0 (74 of 74)
    rho, overlap = np.array(table["spearman"]), np.array(table["top_k_overlap"])
    assert within(1 - np.median(rho), 0.03, "qdq: 1 - median Spearman")         # measured 0.003
    assert within(1 - rho.min(), 0.2, "qdq: 1 - min Spearman")                  # measured 0.041
    assert within(1 - overlap.mean(), 0.11, "qdq: 1 - mean overlap")            # measured 0.026
    fp16 = _table(out_h)
    assert np.mean(rho) < np.mean(fp16["spearman"]) and np.mean(overlap) < np.mean(fp16["top_k_overlap"])
    least = summary["least_similar"]
    assert len(least) == 12 and least[0]["spearman"] == pytest.approx(rho.min())
    assert [e["spearman"] for e in least] == sorted(e["spearman"] for e in least)


def test_an_onnxruntime_optimised_graph_explains_as_the_original(noisy, tmp_path):
    import onnx
    optimised = optimised_export(DIGITS_MODEL, tmp_path / "optimised.onnx")
    assert {"FusedConv", "FusedGemm"} <= {n.op_type for n in onnx.load(str(optimised)).graph.node}
    assert _diff(optimised, tmp_path / "out", data=(SAMPLES, noisy)) == 0
    summary = json.loads((tmp_path / "out" / "diff.json").read_text())
    assert summary["agreement"] == 1.0
    assert within(1 - summary["spearman"]["min"], 1e-7, "optimised: 1 - min Spearman")  # measured 1.1e-8


def test_identical_files_through_the_cli_and_the_target_option(noisy, tmp_path):
    assert _diff(DIGITS_MODEL, tmp_path / "same", "--target", "own", "--top-k", "50", "--method", "gradient",
                 data=(noisy,)) == 0
    table = _table(tmp_path / "same")
    assert set(table["spearman"]) == {1.0} and set(table["top_k_overlap"]) == {1.0}
    summary = json.loads((tmp_path / "same" / "diff.json").read_text())
    assert summary["top_k"] == {"option": 50.0, "features": 50, "of": 1024} and summary["target"] == "own"
    assert summary["accuracy"]["a"] == summary["accuracy"]["b"] and summary["accuracy"]["labelled"] == 64


def test_a_fixed_batch_export_is_fed_whole_padded_batches(noisy, tmp_path):
    """B: the digits model with its batch fixed at 5; 12 rows go to it as 5 + 5 + 2 (padded to 5), to A as 12."""
    import onnx
    model = onnx.load(str(DIGITS_MODEL))
    for value in (model.graph.input[0], model.graph.output[0]):
        value.type.tensor_type.shape.dim[0].dim_value = 5
    fixed = tmp_path / "fixed5.onnx"
    onnx.save(model, str(fixed))
    with np.load(noisy) as data:
        np.savez(tmp_path / "twelve.npz", x=data["x"][:12], y=data["y"][:12])
    assert _diff(fixed, tmp_path / "out", "--batch-size", "12", data=(tmp_path / "twelve.npz",)) == 0
    table = _table(tmp_path / "out")
    assert table["row"] == list(range(12)) and all(table["agree"])
    rho = np.array(table["spearman"])
    assert within(1 - rho.min(), 1e-6, "fixed batch: 1 - Spearman")  # measured 0: the same model
    assert table["prediction_b"] == table["prediction_a"] == table["class_b"]


# ------------------------------------------------------------------------------------------------- refusals
def _model(tmp_path: Path, name: str, shape: list, classes: int) -> Path:
    """Flatten → Gemm from an input of ``shape`` to ``classes`` logits."""
    from onnx import TensorProto, helper, numpy_helper
    features = int(np.prod(shape[1:]))
    w = numpy_helper.from_array(np.ones((classes, features), np.float32), "w")
    graph = helper.make_graph([helper.make_node("Flatten", ["image"], ["f"]),
                               helper.make_node("Gemm", ["f", "w"], ["logits"], transB=1)], "g",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / name
    path.write_bytes(model.SerializeToString())
    return path


def test_refusals_are_one_line_and_leave_no_folder(tmp_path, capsys):
    cases = [
        (_model(tmp_path, "shape.onnx", ["batch", 1, 28, 28], 10),
         "differ in shape: A 'image' (N, 1, 32, 32), B 'image' (N, 1, 28, 28)", 2),
        (_model(tmp_path, "classes.onnx", ["batch", 1, 32, 32], 5), "explained outputs differ", 2),
    ]
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(DIGITS_MODEL.read_bytes()[:700])
    cases.append((corrupt, "corrupt.onnx", 3))
    for b, message, code in cases:
        capsys.readouterr()
        out = tmp_path / f"out-{b.stem}"
        assert _diff(b, out) == code, b
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
        assert not out.exists()
    assert _diff(DIGITS_MODEL, tmp_path / "x", data=(tmp_path / "missing",)) == 15
    assert "missing" in capsys.readouterr().err and not (tmp_path / "x").exists()
    assert _diff(DIGITS_MODEL, tmp_path / "x", "--top-k", "2.5") == 2
    assert main(["diff", str(DIGITS_MODEL), str(DIGITS_MODEL), str(SAMPLES), "-m", "gradient,epsilon", "-q",
                 "-o", str(tmp_path / "x")]) == 2


def test_without_pyarrow_the_error_names_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    assert _diff(DIGITS_MODEL, tmp_path / "out") == 11
    assert "pip install 'onnxlrp[audit]'" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_an_unreadable_input_is_a_row_with_its_error(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    for f in sorted(SAMPLES.glob("*.png"))[:3]:
        (folder / f.name).write_bytes(f.read_bytes())
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    assert _diff(DIGITS_MODEL, tmp_path / "out", data=(folder,)) == 0
    table = _table(tmp_path / "out")
    broken = table["source"].index(str(folder / "broken.png"))
    assert table["error"][broken] and table["spearman"][broken] is None and table["prediction_a"][broken] is None
    assert sum(e is None for e in table["error"]) == 3
    summary = json.loads((tmp_path / "out" / "diff.json").read_text())
    assert (summary["explained"], summary["unreadable"]) == (3, 1)


# ------------------------------------------------------------------------------------------------- the report
@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium at /usr/bin/chromium (apt-get install -y "
                                              "chromium; `make test` tries this when run as root)")
def test_report_renders_the_least_similar_inputs_in_headless_chromium(exports, noisy, tmp_path):
    out = tmp_path / "out"
    assert _diff(exports["qdq"], out, "--worst", "6", data=(SAMPLES, noisy)) == 0
    report = out / "report.html"
    html = report.read_text(encoding="utf-8")
    assert not re.search(r"(src|href)=\"(https?:|file:|/)", html) and "<script" not in html
    least = json.loads((out / "diff.json").read_text())["least_similar"]
    # each least similar input: a card with its picture and both maps; the histogram; nothing else is an image
    expected = 1 + 3 * len(least)
    probe = tmp_path / "probe.html"
    probe.write_text(html.replace(
        "</body>", "<script>window.addEventListener('load', () => { const imgs = [...document.images];"
                   "const ok = imgs.filter(i => i.complete && i.naturalWidth > 0).length;"
                   "const cards = [...document.querySelectorAll('#least-similar .input')];"
                   "const shown = cards.filter(c => c.getBoundingClientRect().height > 100).map(c => c.id);"
                   "document.body.insertAdjacentHTML('beforeend', `<p id=\"probe\">${imgs.length} ${ok} "
                   "${shown.join(',')}</p>`); });</script></body>"), encoding="utf-8")
    dom = _chromium(["--dump-dom", probe.as_uri()], tmp_path / "profile1")
    assert dom.returncode == 0, dom.stderr.decode(errors="replace")[-2000:]
    found = re.search(r'<p id="probe">(\d+) (\d+) ([\w,-]*)</p>', dom.stdout.decode())
    assert found, dom.stdout.decode()[-500:]
    assert (int(found.group(1)), int(found.group(2))) == (expected, expected)
    assert found.group(3).split(",") == [f"row-{e['row']}" for e in least]  # least similar first, each laid out

    shot = tmp_path / "report.png"
    res = _chromium(["--window-size=1200,2400", f"--screenshot={shot}", report.as_uri()], tmp_path / "profile2")
    assert res.returncode == 0 and shot.is_file(), res.stderr.decode(errors="replace")[-2000:]
    img = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    histogram_blue = (img[..., 0] < 10) & (abs(img[..., 1] - 114) < 10) & (abs(img[..., 2] - 178) < 10)
    red = (img[..., 0] > 200) & (img[..., 1] < 90) & (img[..., 2] < 90)
    assert histogram_blue.sum() > 200 and red.sum() > 500, (histogram_blue.sum(), red.sum())


def test_engine_explains_the_exports_without_warnings(exports):
    """The exports load and explain in both compute dtypes, with nothing left unexplained."""
    x, _ = _samples()
    for name, path in exports.items():
        for dtype in ("float32", "float64"):
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                res = onnxlrp.Explainer(str(path), dtype=dtype).explain(x, method="epsilon_plus")
            assert res.relevance.dtype == np.dtype(dtype) and np.isfinite(res.relevance).all(), name
            assert (res.target == np.arange(10)).all(), (name, dtype)
