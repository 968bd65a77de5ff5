"""``onnxlrp audit`` on the digits CNN: the table and maps against the Explainer, every data format, resume after
SIGKILL with every row exactly once, and the refusals. (Ray: tests/audit/test_audit_ray.py; SpRAy: test_spray.py.)"""
from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

import onnxlrp
from onnxlrp.audit import AuditMaps
from onnxlrp.audit.maps import downsample, pixel_maps
from onnxlrp.cli import main
from tests.conftest import DIGITS_MODEL
from tests.helpers import REPO

SAMPLES = REPO / "models" / "digits" / "samples"
LABELS = REPO / "models" / "digits" / "labels.txt"


def _digits(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` inputs (1, 32, 32) in [0, 1]: the ten shipped digits with noise and shifts, and their labels."""
    rng = np.random.default_rng(seed)
    files = sorted(SAMPLES.glob("*.png"))
    base = np.stack([np.asarray(Image.open(f).convert("L"), dtype=np.float32) / 255 for f in files])
    labels = np.array([int(f.name[5]) for f in files])
    pick = rng.integers(0, len(files), n)
    x = np.roll(base[pick], rng.integers(-2, 3, n)[0], axis=2) + rng.normal(0, 0.05, (n, 32, 32))
    return np.clip(x, 0, 1).astype(np.float32)[:, None], labels[pick]


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.round(array[0] * 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _audit(*argv) -> int:
    return main(["audit", str(DIGITS_MODEL), *map(str, argv), "-q"])


def _table(folder) -> dict:
    return pq.read_table(folder / "audit.parquet").to_pydict()


def test_rows_and_maps_equal_the_explainer_on_the_same_batches(tmp_path):
    x, y = _digits(22)
    np.savez(tmp_path / "data.npz", x=x, y=y)
    out = tmp_path / "out"
    assert _audit(tmp_path / "data.npz", "-m", "epsilon_plus,gradient", "--metric", "sparseness",
                  "--shard-size", "8", "--batch-size", "4", "--map-size", "16", "--no-spray", "-o", out) == 0
    table = _table(out)
    assert table["row"] == list(range(22))
    assert table["label"] == y.tolist()
    assert table["source"][3] == f"{tmp_path / 'data.npz'}[3]"
    ex = onnxlrp.Explainer(str(DIGITS_MODEL))
    maps = AuditMaps(out)
    for method in ("epsilon_plus", "gradient"):
        for start in range(0, 22, 4):  # the audit's batches: 4 rows, restarting at each shard of 8
            rows = [r for r in range(start, min(start + 4, 22)) if r // 8 == start // 8]
            res = ex.explain(x[rows], method=method)
            assert table[f"{method}.class"][rows[0]:rows[-1] + 1] == res.target.tolist()
            np.testing.assert_array_equal(table[f"{method}.relevance_sum"][rows[0]:rows[-1] + 1],
                                          res.relevance.reshape(len(rows), -1).astype(np.float64).sum(axis=1))
            np.testing.assert_array_equal(maps.get(method, rows), downsample(pixel_maps(res.relevance, "NCHW"), 16))
    logits = ex.explain(x, method="gradient").output
    assert table["prediction"] == logits.argmax(axis=1).tolist()
    np.testing.assert_allclose(np.array(table["top_scores"])[:, 0], logits.max(axis=1), rtol=1e-6)
    assert all(0 < v < 1 for v in table["epsilon_plus.sparseness"])
    assert maps.get("gradient", [21, 0]).shape == (2, 16, 16)


def test_every_data_format_gives_the_same_rows(tmp_path):
    """Class folders of PNGs, a list file, .npy, .npz and Parquet (image bytes and arrays) hold the same eight
    inputs; each audit gives the same predictions, labels and relevance sums."""
    x, y = _digits(8, seed=1)
    x = np.round(x * 255) / 255  # exactly what a PNG round trip gives
    names = LABELS.read_text().split()
    lines = []
    for i, (sample, label) in enumerate(zip(x, y)):
        folder = tmp_path / "folders" / names[label]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i:02d}.png").write_bytes(_png(sample))
        lines.append(f"folders/{names[label]}/{i:02d}.png,{label}")
    (tmp_path / "list.txt").write_text("# path, label\n" + "\n".join(lines) + "\n")
    order = sorted(range(8), key=lambda i: (names[y[i]], i))  # folder order: by class name, then file name
    np.save(tmp_path / "batch.npy", x[order])
    np.savez(tmp_path / "data.npz", images=x[order], labels=y[order])
    pq.write_table(pa.table({"image": [_png(s) for s in x[order]], "label": y[order]}), tmp_path / "bytes.parquet",
                   row_group_size=3)
    pq.write_table(pa.table({"x": [s.reshape(-1).tolist() for s in x[order]],
                             "label": [names[v] for v in y[order]]}), tmp_path / "arrays.parquet", row_group_size=5)
    results = {}
    for name, data, extra in [("folders", "folders", ["--labels", LABELS]), ("npy", "batch.npy", []),
                              ("npz", "data.npz", []), ("bytes", "bytes.parquet", []),
                              ("arrays", "arrays.parquet", ["--labels", LABELS])]:
        assert _audit(tmp_path / data, *extra, "--no-spray", "-o", tmp_path / f"out-{name}") == 0, name
        results[name] = _table(tmp_path / f"out-{name}")
    assert _audit(tmp_path / "list.txt", "--no-spray", "-o", tmp_path / "out-list") == 0
    listed = _table(tmp_path / "out-list")
    for name, table in results.items():
        assert table["prediction"] == [listed["prediction"][i] for i in order], name
        np.testing.assert_allclose(table["epsilon_plus.relevance_sum"],
                                   [listed["epsilon_plus.relevance_sum"][i] for i in order], rtol=1e-6, err_msg=name)
        if name != "npy":
            assert table["label"] == y[order].tolist(), name
    assert results["npy"]["label"] == [None] * 8


def test_an_unreadable_input_is_a_row_with_its_error_not_the_end_of_the_run(tmp_path):
    for i, sample in enumerate(_digits(5)[0]):
        (tmp_path / f"{i}.png").write_bytes(_png(sample))
    (tmp_path / "2.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    assert _audit(tmp_path, "--no-spray", "-o", tmp_path / "out") == 0
    table = _table(tmp_path / "out")
    assert [e is not None for e in table["error"]] == [False, False, True, False, False]
    assert "cannot decode image" in table["error"][2] and table["prediction"][2] is None
    assert np.isnan(AuditMaps(tmp_path / "out").get("epsilon_plus", [2])).all()
    assert not np.isnan(AuditMaps(tmp_path / "out").get("epsilon_plus", [1])).any()


def _start_audit(data, out, *extra) -> subprocess.Popen:
    code = "import sys; from onnxlrp.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.Popen([sys.executable, "-c", code, "audit", str(DIGITS_MODEL), str(data), "-m", "epsilon_plus",
                             "--shard-size", "4", "--batch-size", "2", "--no-spray", "-q", "-o", str(out), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)


@pytest.mark.slow
def test_a_run_killed_with_sigkill_resumes_with_every_row_exactly_once(tmp_path):
    x, y = _digits(120, seed=2)
    np.savez(tmp_path / "data.npz", x=x, y=y)
    out = tmp_path / "out"
    run = _start_audit(tmp_path / "data.npz", out, "--metric", "sparseness")
    deadline = time.monotonic() + 120
    while len(list((out / "shards").glob("rows-*.parquet"))) < 3 and time.monotonic() < deadline:
        assert run.poll() is None, run.stderr.read().decode()
        time.sleep(0.01)
    os.kill(run.pid, signal.SIGKILL)
    run.wait(30)
    committed = len(list((out / "shards").glob("rows-*.parquet")))
    assert 3 <= committed < 30 and not (out / "audit.parquet").exists()
    again = _start_audit(tmp_path / "data.npz", out, "--metric", "sparseness", "--resume")
    assert again.wait(300) == 0, again.stderr.read().decode()
    table = _table(out)
    assert table["row"] == list(range(120)) and table["label"] == y.tolist()
    assert not list(out.rglob(".*.tmp-*"))
    whole = tmp_path / "whole"
    assert _start_audit(tmp_path / "data.npz", whole, "--metric", "sparseness").wait(300) == 0
    assert _table(whole) == table
    for shard in range(30):
        np.testing.assert_array_equal(np.load(out / "maps" / "epsilon_plus" / f"{shard:06d}.npy"),
                                      np.load(whole / "maps" / "epsilon_plus" / f"{shard:06d}.npy"))


def test_resume_refuses_another_audit_and_a_new_run_refuses_an_old_folder(tmp_path, capsys):
    x, y = _digits(6)
    np.savez(tmp_path / "data.npz", x=x, y=y)
    out = tmp_path / "out"
    assert _audit(tmp_path / "data.npz", "--no-spray", "-o", out) == 0
    assert _audit(tmp_path / "data.npz", "--no-spray", "-o", out) == 2
    assert "already holds an audit: pass --resume" in capsys.readouterr().err
    assert _audit(tmp_path / "data.npz", "--no-spray", "--map-size", "8", "--resume", "-o", out) == 2
    assert "different map_size" in capsys.readouterr().err
    assert _audit(tmp_path / "data.npz", "--no-spray", "--resume", "-o", out) == 0  # all shards done: nothing to do
    assert _table(out)["row"] == list(range(6))


@pytest.mark.parametrize("argv, code, message", [
    (["missing-folder"], 15, "does not exist"),
    (["{tmp}/notes.md"], 15, "not an image, .npy, .npz, Parquet or list file"),
    (["{tmp}/data.npz", "--metric", "pointing_game"], 2, "need(s) a mask"),
    (["{tmp}/data.npz", "--address", "auto"], 2, "--engine ray"),
    (["{tmp}/data.npz", "-m", "no_such_method"], 9, "unknown method"),
    (["{tmp}/wrong.npy"], 7, "has shape (5, 7)"),
    (["{tmp}/list.txt"], 15, "names 'nothing.bin'"),
    (["{tmp}/corrupt.parquet"], 15, "as Parquet"),
    (["{tmp}/labels-only.parquet"], 15, "has no column of images or arrays"),
    (["{tmp}/data.npz", "--column", "pixels"], 2, "--column is for Parquet data"),
    (["{tmp}/classes"], 16, "class folder 'zebra'"),
    (["{tmp}/data.npz", "--engine", "ray", "--address", "127.0.0.1:1"], 11, "nothing answers on 127.0.0.1:1"),
])
def test_bad_data_and_options_are_one_line_errors(tmp_path, capsys, argv, code, message):
    x, y = _digits(3)
    np.savez(tmp_path / "data.npz", x=x, y=y)
    np.save(tmp_path / "wrong.npy", np.zeros((5, 7), np.float32))
    (tmp_path / "notes.md").write_text("hello")
    (tmp_path / "list.txt").write_text("nothing.bin 3\n")
    (tmp_path / "corrupt.parquet").write_bytes(b"PAR1 not really")
    pq.write_table(pa.table({"label": [1, 2]}), tmp_path / "labels-only.parquet")
    (tmp_path / "classes" / "zebra").mkdir(parents=True)
    np.save(tmp_path / "classes" / "zebra" / "a.npy", x[0])
    argv = [*argv, "--labels", str(LABELS)] if "classes" in argv[0] else argv
    assert _audit(*[a.format(tmp=tmp_path) for a in argv], "-o", tmp_path / "out") == code
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_the_report_draws_the_most_distinct_classes_and_lists_the_rest(tmp_path, monkeypatch):
    from onnxlrp.cli import audit_report
    monkeypatch.setattr(audit_report, "MAX_CLASSES", 2)
    x, y = _digits(60, seed=4)
    np.savez(tmp_path / "data.npz", x=x, y=y)
    assert _audit(tmp_path / "data.npz", "--labels", LABELS, "-o", tmp_path / "out") == 0
    report = (tmp_path / "out" / "report.html").read_text()
    predicted = len(set(_table(tmp_path / "out")["epsilon_plus.class"]))
    assert report.count('<div class="class">') == 2
    assert f"{predicted - 2} more classes" in report
    strategies = json.loads((tmp_path / "out" / "spray.json").read_text())["methods"]["epsilon_plus"]
    assert sorted(map(int, strategies)) == sorted(set(_table(tmp_path / "out")["epsilon_plus.class"]))


def test_ctrl_c_keeps_the_committed_shards_and_says_how_to_finish(tmp_path, monkeypatch, capsys):
    from onnxlrp.audit import compute
    x, y = _digits(12)
    np.savez(tmp_path / "data.npz", x=x, y=y)
    explain_shard = compute.ShardWorker.__call__

    def interrupted_at_shard_2(self, index):
        if index == 2:
            raise KeyboardInterrupt
        return explain_shard(self, index)

    monkeypatch.setattr(compute.ShardWorker, "__call__", interrupted_at_shard_2)
    out = tmp_path / "out"
    assert _audit(tmp_path / "data.npz", "--shard-size", "4", "--no-spray", "-o", out) == 130
    assert "run the same command with --resume to finish the audit" in capsys.readouterr().err
    assert sorted(p.name for p in (out / "shards").iterdir()) == ["rows-000000.parquet", "rows-000001.parquet"]
    monkeypatch.setattr(compute.ShardWorker, "__call__", explain_shard)
    assert _audit(tmp_path / "data.npz", "--shard-size", "4", "--no-spray", "--resume", "-o", out) == 0
    assert _table(out)["row"] == list(range(12))


def test_target_label_explains_each_rows_label_where_it_is_known(tmp_path):
    x, y = _digits(10, seed=6)
    y = (y + np.arange(10) % 2) % 10  # half the labels differ from what the model predicts
    y[3] = -1  # unknown: the prediction is explained
    np.savez(tmp_path / "data.npz", x=x, y=y)
    assert _audit(tmp_path / "data.npz", "--target", "label", "-m", "gradient,epsilon_plus", "--no-spray",
                  "--map-size", "32", "-o", tmp_path / "out") == 0
    table = _table(tmp_path / "out")
    ex = onnxlrp.Explainer(str(DIGITS_MODEL))
    expected = np.where(y >= 0, y, ex.explain(x, method="gradient").target)
    assert table["gradient.class"] == table["epsilon_plus.class"] == expected.tolist()
    assert table["label"][3] is None and table["gradient.class"][3] == table["prediction"][3]
    res = ex.explain(x, method="gradient", target=expected.tolist())
    np.testing.assert_array_equal(AuditMaps(tmp_path / "out").get("gradient", range(10)),
                                  downsample(pixel_maps(res.relevance, "NCHW"), 32))


def test_a_huge_map_size_is_a_usage_error_before_anything_is_written(tmp_path, capsys):
    """A shard's maps are held in memory: --map-size 100000 would ask for 10^10 floats per row."""
    assert _audit(SAMPLES, "--map-size", "100000", "-o", tmp_path / "out") == 2
    assert "argument --map-size: at most 1024" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
