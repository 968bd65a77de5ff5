"""The command line: every command in-process (``main([...])``) and as ``python -m onnxlrp``; every bad input with
its one-line message and exit code; atomic output; progress bar only on a terminal."""
from __future__ import annotations

import io
import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from onnxlrp.cli import args as cli_args
from onnxlrp.cli import main, outputs
from onnxlrp.cli.progress import Progress
from tests.helpers import REPO  # noqa: E402

DIGITS = REPO / "models" / "digits" / "digits_cnn.onnx"
SAMPLES = REPO / "models" / "digits" / "samples"
LABELS = REPO / "models" / "digits" / "labels.txt"
SAMPLE_FILES = sorted(SAMPLES.glob("*.png"))


def run(capsys, *argv):
    """main(argv) -> (exit code, stdout, stderr)."""
    rc = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def run_subprocess(*argv, **kwargs):
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "onnxlrp", *map(str, argv)], capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=300, **kwargs)


def error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert lines, "expected a message on stderr"
    assert "Traceback" not in err
    return lines[0]


# ------------------------------------------------------------------------------------------ tiny test models
def _dense_model(path: Path, *, middle: str | None = None, inputs: int = 1, outputs: int = 1, width: int = 4,
                 classes: int = 3, bad_input_ref: bool = False, batch: int | str = "N") -> Path:
    """x (N, width) -> Gemm -> [middle op] -> Gemm -> logits (N, classes); options make it broken on purpose."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(size=(width, width)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.normal(size=(width,)).astype(np.float32), "b1"),
             numpy_helper.from_array(rng.normal(size=(classes, width)).astype(np.float32), "w2"),
             numpy_helper.from_array(rng.normal(size=(classes,)).astype(np.float32), "b2")]
    graph_inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, width])]
    nodes = []
    first = "x"
    if inputs == 2:
        graph_inputs.append(helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", width]))
        nodes.append(helper.make_node("Add", ["x", "y"], ["xy"], name="add"))
        first = "xy"
    nodes.append(helper.make_node("Gemm", ["undefined" if bad_input_ref else first, "w1", "b1"], ["h"],
                                  name="dense1", transB=1))
    h = "h"
    if middle:
        nodes.append(helper.make_node(middle, ["h"], ["m"], name=f"my_{middle.lower()}"))
        h = "m"
    nodes.append(helper.make_node("Relu", [h], ["r"], name="relu"))
    nodes.append(helper.make_node("Gemm", ["r", "w2", "b2"], ["logits"], name="dense2", transB=1))
    graph_outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, classes])]
    if outputs == 2:
        nodes.append(helper.make_node("Softmax", ["logits"], ["probs"], name="softmax", axis=1))
        graph_outputs.append(helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", classes]))
    model = helper.make_model(helper.make_graph(nodes, "tiny", graph_inputs, graph_outputs, inits),
                              opset_imports=[helper.make_opsetid("", 17)], producer_name="onnxlrp-tests")
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.fixture
def dense(tmp_path):
    return _dense_model(tmp_path / "dense.onnx")


@pytest.fixture
def digit_npy(tmp_path):
    """One digits sample as a (1, 32, 32) float32 array (pixel / 255) and a (3, 1, 32, 32) batch."""
    x = np.asarray(Image.open(SAMPLE_FILES[3]), dtype=np.float32)[None] / 255.0
    one = tmp_path / "one.npy"
    np.save(one, x)
    batch = tmp_path / "batch.npy"
    np.save(batch, np.stack([x, x, x]))
    return one, batch


# ------------------------------------------------------------------------------------------------- parsing
@pytest.mark.parametrize("text, value", [
    ("1", 1), ("-3", -3), ("0.25", 0.25), ("1e-6", 1e-6), ("true", True), ("No", False), ("none", None),
    ("abc", "abc"), ("1,2,3", [1, 2, 3]), ("[0.1, -1]", [0.1, -1]), ("[]", []), ("inf", float("inf")),
])
def test_set_values_are_parsed_to_python_values(text, value):
    assert cli_args.parse_value(text) == value


def test_set_items_split_method_scope():
    assert cli_args.parse_sets(["epsilon=0.1", "gradient.steps=5"]) == [(None, "epsilon", 0.1),
                                                                        ("gradient", "steps", 5)]


# ------------------------------------------------------------------------------------------------- methods
def test_methods_lists_every_method_with_parameters_and_description(capsys):
    import onnxlrp
    rc, out, err = run(capsys, "methods")
    assert rc == 0 and err == ""
    for name, info in onnxlrp.methods().items():
        assert name in out
        assert info["description"].split()[0] in out
        for param in info["params"]:
            assert f"{param}=" in out
    rc, out, _ = run(capsys, "methods", "--json")
    assert rc == 0 and set(json.loads(out)) == set(onnxlrp.methods())


# ------------------------------------------------------------------------------------------------- inspect
def test_inspect_shows_io_opset_ops_path_and_rules(capsys):
    rc, out, err = run(capsys, "inspect", DIGITS, "--method", "epsilon_plus")
    assert rc == 0 and err == ""
    assert "image  float32  (batch, 1, 32, 32)   <- explained" in out
    assert "logits  float32  (batch, 10)" in out
    assert "producer pytorch" in out and "opset ai.onnx 17" in out
    assert "Conv         3  kernel: yes" in out
    assert "relevance path: 13 nodes" in out
    assert "ZPlus" in out and "Epsilon" in out
    rc, out, _ = run(capsys, "inspect", DIGITS, "--json", "--method", "epsilon_gamma_box", "--set", "gamma=0.5")
    doc = json.loads(out)
    assert rc == 0 and len(doc["relevance_path"]) == 13 and doc["params"] == {"gamma": 0.5}
    assert [r["op_type"] for r in doc["rules"]][:3] == ["Conv", "Relu", "MaxPool"]
    assert {o["op_type"]: o["kernel"] for o in doc["ops"]}["Gemm"] == "yes"


def test_inspect_of_an_unexplainable_model_lists_ops_and_exits_5(tmp_path, capsys):
    model = _dense_model(tmp_path / "erf.onnx", middle="Cos")
    rc, out, err = run(capsys, "inspect", model)
    assert rc == 5
    assert "Cos" in error_line(err)
    assert "Cos            1  kernel: no kernel" in out or "kernel: no kernel" in out
    assert "supported op types:" in out and "Conv" in out and "onnxlrp::" not in out
    assert any("'my_cos'" in line for line in err.splitlines()[1:])


# ------------------------------------------------------------------------------------------------- explain
def test_explain_digits_writes_every_output_and_a_consistent_summary(tmp_path, capsys):
    out_dir = tmp_path / "out"
    rc, out, err = run(capsys, "explain", DIGITS, SAMPLES, "--labels", LABELS, "--method",
                       "epsilon_plus,input_x_gradient", "--out", out_dir, "--top-k", "3")
    assert rc == 0, err
    assert err == ""                                  # no progress bar off a terminal
    assert f"explained {len(SAMPLE_FILES)} inputs with epsilon_plus, input_x_gradient" in out
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["model"]["input"] == {"name": "image", "shape": [None, 1, 32, 32], "dtype": "float32"}
    assert [m["name"] for m in summary["methods"]] == ["epsilon_plus", "input_x_gradient"]
    assert summary["preprocessing"]["channels"] == 1 and summary["preprocessing"]["height"] == 32
    assert len(summary["inputs"]) == len(SAMPLE_FILES)
    correct = 0
    for entry, path in zip(summary["inputs"], SAMPLE_FILES):
        assert entry["source"].endswith(path.name)
        truth = int(path.name[len("digit")])
        correct += entry["predicted"]["class"] == truth
        assert entry["predicted"]["label"] == str(entry["predicted"]["class"])
        assert len(entry["top_k"]) == 3 and entry["top_k"][0]["class"] == entry["predicted"]["class"]
        assert (out_dir / entry["grid"]).is_file()
        for e in entry["explanations"]:
            assert e["target"] == entry["predicted"]["class"]
            rel = np.load(out_dir / e["files"]["relevance"])
            assert rel.shape == (1, 32, 32) and rel.dtype == np.float32
            assert e["relevance_sum"] == pytest.approx(float(rel.sum(dtype=np.float64)), rel=1e-6)
            assert Image.open(out_dir / e["files"]["heatmap"]).size == (128, 128)
            assert Image.open(out_dir / e["files"]["overlay"]).size == (128, 128)
        lrp = entry["explanations"][0]
        assert lrp["logit"] == pytest.approx(entry["predicted"]["logit"])
        assert 0.8 < lrp["relevance_sum_over_logit"] < 1.05   # epsilon_plus nearly conserves the logit
    assert correct >= len(SAMPLE_FILES) - 1
    assert not list(out_dir.glob(".*tmp"))


def test_heatmap_puts_relevance_on_the_digit_strokes(tmp_path, capsys):
    """Most positive LRP relevance lies on ink, not on the black background."""
    rc, _, err = run(capsys, "explain", DIGITS, *SAMPLE_FILES[:4], "-m", "epsilon_plus", "-o", tmp_path, "-q")
    assert rc == 0, err
    for path in SAMPLE_FILES[:4]:
        ink = np.asarray(Image.open(path), dtype=np.float64) > 64
        rel = np.load(tmp_path / f"{path.stem}.epsilon_plus.npy")[0]
        pos = np.clip(rel, 0, None)
        assert pos[ink].sum() / pos.sum() > 0.8


def test_explain_npy_sample_and_batch_with_fixed_target_and_set(digit_npy, tmp_path, capsys):
    one, batch = digit_npy
    rc, out, err = run(capsys, "explain", DIGITS, one, batch, "--target", "5", "--method", "epsilon",
                       "--set", "epsilon=0.01", "-o", tmp_path / "o")
    assert rc == 0, err
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert [e["name"] for e in summary["inputs"]] == ["one", "batch_0", "batch_1", "batch_2"]
    assert [e["index_in_file"] for e in summary["inputs"]] == [None, 0, 1, 2]
    assert summary["methods"][0]["params"]["epsilon"] == 0.01
    assert summary["preprocessing"] is None
    for entry in summary["inputs"]:
        assert entry["explanations"][0]["target"] == 5
    r_one = np.load(tmp_path / "o" / "one.epsilon.npy")
    r_b1 = np.load(tmp_path / "o" / "batch_1.epsilon.npy")
    np.testing.assert_allclose(r_one, r_b1, rtol=1e-5, atol=1e-7)


def test_target_by_label_name_and_batching_does_not_change_results(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    assert run(capsys, "explain", DIGITS, SAMPLES, "-t", "7", "--labels", LABELS, "-o", a, "--batch-size", "3")[0] == 0
    assert run(capsys, "explain", DIGITS, SAMPLES, "-t", "7", "-o", b, "--batch-size", "16", "-q")[0] == 0
    for path in SAMPLE_FILES:
        np.testing.assert_allclose(np.load(a / f"{path.stem}.epsilon_plus_flat.npy"),
                                   np.load(b / f"{path.stem}.epsilon_plus_flat.npy"), rtol=1e-5, atol=1e-7)


def test_explain_a_non_image_model_from_npy(dense, tmp_path, capsys):
    x = tmp_path / "x.npy"
    np.save(x, np.random.default_rng(1).normal(size=(5, 4)).astype(np.float32))
    rc, out, err = run(capsys, "explain", dense, x, "-m", "lrp0,gradient", "-o", tmp_path / "o", "--report")
    assert rc == 0, err
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert len(summary["inputs"]) == 5
    e = summary["inputs"][0]["explanations"][0]
    assert set(e["files"]) == {"relevance", "heatmap"}
    assert np.load(tmp_path / "o" / e["files"]["relevance"]).shape == (4,)


def test_a_model_with_a_fixed_batch_size_gets_batches_of_that_size(tmp_path, capsys):
    fixed = _dense_model(tmp_path / "fixed.onnx", batch=2)
    free = _dense_model(tmp_path / "free.onnx")
    x = tmp_path / "x.npy"
    np.save(x, np.random.default_rng(2).normal(size=(5, 4)).astype(np.float32))
    for model in (fixed, free):
        rc, _, err = run(capsys, "explain", model, x, "-m", "lrp0", "-o", tmp_path / model.stem, "--batch-size", "3")
        assert rc == 0, err
    for i in range(5):
        np.testing.assert_allclose(np.load(tmp_path / "fixed" / f"x_{i}.lrp0.npy"),
                                   np.load(tmp_path / "free" / f"x_{i}.lrp0.npy"), rtol=1e-6)


def test_duplicate_stems_get_distinct_output_names(tmp_path, capsys):
    for sub in ("p", "q"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "same.png").write_bytes(SAMPLE_FILES[0].read_bytes())
    rc, _, err = run(capsys, "explain", DIGITS, tmp_path / "p", tmp_path / "q", "-o", tmp_path / "o", "-q")
    assert rc == 0, err
    names = [e["name"] for e in json.loads((tmp_path / "o" / "summary.json").read_text())["inputs"]]
    assert names == ["same", "same-2"]


def test_image_preprocessing_options_reach_the_model(tmp_path, capsys):
    """--scale/--mean/--std change the input exactly as documented: x = (pixel * scale - mean) / std.

    input_x_gradient / gradient recovers the x the model saw, wherever the gradient is not zero."""
    rc, _, err = run(capsys, "explain", DIGITS, SAMPLE_FILES[0], "-m", "gradient,input_x_gradient",
                     "--scale", "1/510", "--mean", "0.25", "--std", "0.5", "-o", tmp_path, "-q")
    assert rc == 0, err
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["preprocessing"]["scale"] == pytest.approx(1 / 510)
    assert summary["preprocessing"]["mean"] == [0.25] and summary["preprocessing"]["std"] == [0.5]
    pixels = np.asarray(Image.open(SAMPLE_FILES[0]), dtype=np.float64)
    expected = (pixels / 510.0 - 0.25) / 0.5
    grad = np.load(tmp_path / f"{SAMPLE_FILES[0].stem}.gradient.npy")[0].astype(np.float64)
    ixg = np.load(tmp_path / f"{SAMPLE_FILES[0].stem}.input_x_gradient.npy")[0].astype(np.float64)
    mask = np.abs(grad) > 1e-3 * np.abs(grad).max()
    assert mask.sum() > 100
    np.testing.assert_allclose(ixg[mask] / grad[mask], expected[mask], rtol=1e-3, atol=1e-4)


def _nhwc_rgb_model(path: Path) -> Path:
    """x (N, 8, 8, 3) -> Transpose to NCHW -> Conv -> Relu -> GlobalAveragePool -> Flatten -> Gemm -> (N, 2)."""
    rng = np.random.default_rng(3)
    inits = [numpy_helper.from_array(rng.normal(size=(4, 3, 3, 3)).astype(np.float32), "wc"),
             numpy_helper.from_array(rng.normal(size=(2, 4)).astype(np.float32), "wd")]
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[0, 3, 1, 2]),
             helper.make_node("Conv", ["t", "wc"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Gemm", ["f", "wd"], ["logits"], transB=1)]
    graph = helper.make_graph(nodes, "nhwc", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8, 8, 3])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_rgb_images_for_an_nhwc_model_are_resized_and_laid_out_from_the_model_shape(tmp_path, capsys):
    model = _nhwc_rgb_model(tmp_path / "nhwc.onnx")
    photo = tmp_path / "photo.jpg"
    Image.fromarray(np.random.default_rng(4).integers(0, 255, (20, 30, 3), dtype=np.uint8)).save(photo)
    rc, _, err = run(capsys, "explain", model, photo, "-m", "lrp0,gradient", "-o", tmp_path / "o", "-q")
    assert rc == 0, err
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["preprocessing"] == {"height": 8, "width": 8, "channels": 3, "layout": "NHWC",
                                        "scale": pytest.approx(1 / 255), "mean": [0.0], "std": [1.0],
                                        "channel_order": "RGB", "preset": None}
    assert np.load(tmp_path / "o" / "photo.lrp0.npy").shape == (8, 8, 3)
    assert Image.open(tmp_path / "o" / "photo.lrp0.overlay.png").size == (128, 128)
    rc, _, err = run(capsys, "explain", model, photo, "--layout", "NCHW", "-o", tmp_path / "p", "-q")
    assert rc == 2 and "8 channels" in err


# ------------------------------------------------------------------------------------------------- progress
def test_progress_bar_draws_only_on_a_tty():
    class FakeTTY(io.StringIO):
        def isatty(self):
            return True

    quiet = io.StringIO()
    bar = Progress(3, stream=quiet)
    for _ in range(3):
        bar.update()
    bar.close()
    assert quiet.getvalue() == ""
    tty = FakeTTY()
    bar = Progress(3, stream=tty, min_interval=0)
    for _ in range(3):
        bar.update()
    bar.close()
    assert "3/3 inputs" in tty.getvalue() and tty.getvalue().startswith("\r[")
    forced_off = FakeTTY()
    Progress(3, stream=forced_off, enabled=False).update(3)
    assert forced_off.getvalue() == ""


#: seconds the pty test waits for its child to finish drawing (a hung child fails the test, not the run)
PTY_TIMEOUT = 300


def test_explain_is_silent_on_stderr_off_a_terminal_and_draws_on_one(tmp_path):
    """Subprocess with stderr a pipe: no bar; with stderr a pseudo-terminal: the bar appears; --quiet: nothing."""
    argv = ["explain", DIGITS, SAMPLES, "-o", tmp_path / "a"]
    piped = run_subprocess(*argv)
    assert piped.returncode == 0 and piped.stderr == ""
    for quiet in (False, True):
        master, slave = pty.openpty()
        env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "100"}
        proc = subprocess.Popen([sys.executable, "-m", "onnxlrp", *map(str, argv), *(["-q"] if quiet else [])],
                                stdout=subprocess.DEVNULL, stderr=slave, cwd=REPO, env=env)
        os.close(slave)
        chunks = []
        deadline = time.monotonic() + PTY_TIMEOUT
        while True:  # read until the child closes the pty (EOF or EIO), but never past the deadline
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                proc.kill()
                proc.wait()
                os.close(master)
                pytest.fail(f"the child did not close its pseudo-terminal within {PTY_TIMEOUT} s")
            ready, _, _ = select.select([master], [], [], min(remaining, 1.0))
            if not ready:
                continue
            try:
                data = os.read(master, 4096)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        assert proc.wait(timeout=PTY_TIMEOUT) == 0
        os.close(master)
        text = b"".join(chunks).decode()
        if quiet:
            assert text == ""
        else:
            assert f"{len(SAMPLE_FILES)}/{len(SAMPLE_FILES)} inputs" in text


# ------------------------------------------------------------------------------------------------- subprocess
def test_every_command_runs_as_python_m_onnxlrp(tmp_path):
    r = run_subprocess("methods")
    assert r.returncode == 0 and "epsilon_plus_flat" in r.stdout
    r = run_subprocess("inspect", DIGITS)
    assert r.returncode == 0 and "relevance path" in r.stdout
    r = run_subprocess("explain", DIGITS, SAMPLE_FILES[0], "--method", "epsilon_plus,gradient", "--report",
                       "-o", tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "report.html").is_file() and (tmp_path / "summary.json").is_file()
    r = run_subprocess("explain", tmp_path / "missing.onnx", SAMPLE_FILES[0])
    assert r.returncode == 3 and r.stderr.startswith("onnxlrp: error: model file") and "Traceback" not in r.stderr
    r = run_subprocess("--help")
    assert r.returncode == 0 and "explain" in r.stdout and "inspect" in r.stdout and "methods" in r.stdout


def test_help_and_version_return_zero(capsys):
    assert run(capsys, "--version")[0] == 0
    rc, out, _ = run(capsys, "explain", "--help")
    assert rc == 0 and "x = pixel * scale; x = (x - mean) / std" in out


# ------------------------------------------------------------------------------------------------- bad input
def _bad_cases(tmp_path: Path) -> dict:
    """name -> (argv, exit code, regex the first stderr line must match)."""
    not_onnx = tmp_path / "notes.onnx"
    not_onnx.write_text("this is a text file, not a protobuf\n")
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(DIGITS.read_bytes()[: DIGITS.stat().st_size // 2])
    checker = _dense_model(tmp_path / "checker.onnx", bad_input_ref=True)
    erf = _dense_model(tmp_path / "erf.onnx", middle="Cos")
    two_in = _dense_model(tmp_path / "two_inputs.onnx", inputs=2)
    two_out = _dense_model(tmp_path / "two_outputs.onnx", outputs=2)
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"\x89PNG\r\n\x1a\n but then nothing sensible")
    cut = tmp_path / "cut.png"
    cut.write_bytes(SAMPLE_FILES[0].read_bytes()[:120])
    wrong_shape = tmp_path / "wrong_shape.npy"
    np.save(wrong_shape, np.zeros((3, 32), np.float32))
    wrong_dtype = tmp_path / "wrong_dtype.npy"
    np.save(wrong_dtype, np.zeros((1, 32, 32), np.int64))
    pickled = tmp_path / "broken.npy"
    pickled.write_bytes(b"not an npy file")
    objects = tmp_path / "objects.npy"
    np.save(objects, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    short_labels = tmp_path / "labels.txt"
    short_labels.write_text("a\nb\n")
    (tmp_path / "empty").mkdir()
    text_input = tmp_path / "input.txt"
    text_input.write_text("1 2 3")
    ext_dir = tmp_path / "ext"
    ext_dir.mkdir()
    ext = _external_data_model(ext_dir, tmp_path)
    img = SAMPLE_FILES[0]
    d = str(DIGITS)
    return {
        "model missing": (["explain", tmp_path / "nope.onnx", img], 3,
                          r"^onnxlrp: error: model file '.*nope\.onnx' does not exist$"),
        "model not onnx": (["explain", not_onnx, img], 3, r"^onnxlrp: error: '.*notes\.onnx' is not .*ONNX"),
        "model truncated": (["explain", truncated, img], 3,
                            r"^onnxlrp: error: '.*truncated\.onnx' is not a readable ONNX model \(truncated"),
        "model is a folder": (["inspect", tmp_path], 3, r"is a directory, not an \.onnx file"),
        "fails checker": (["explain", checker, img], 4, r"^onnxlrp: error: the model fails the ONNX checker"),
        "external data outside folder": (["inspect", ext], 14,
                                         r"^onnxlrp: error: initializer 'w1' points to external data "
                                         r"'\.\./outside\.bin' outside the model's folder"),
        "unsupported op": (["explain", erf, img], 5,
                           r"^onnxlrp: error: .*no usable kernel: Cos \(1 node, e\.g\. '.*'\)\.$"),
        "several inputs": (["inspect", two_in], 6, r"^onnxlrp: error: the model has 2 inputs \('x', 'y'\); "
                                                   r"choose one with --input-name"),
        "unknown input name": (["inspect", d, "--input-name", "nope"], 6,
                               r"^onnxlrp: error: the model has no input named 'nope'; its inputs are: 'image'"),
        "several outputs": (["inspect", two_out], 6, r"the model has 2 outputs \('logits', 'probs'\); choose one "
                                                     r"with --output-name"),
        "image not decodable": (["explain", d, garbage], 12,
                                r"^onnxlrp: error: cannot decode image '.*garbage\.png': not a format Pillow"),
        "image truncated": (["explain", d, cut], 12, r"^onnxlrp: error: cannot decode image '.*cut\.png'"),
        "array wrong shape": (["explain", d, wrong_shape], 7,
                              r"^onnxlrp: error: array '.*wrong_shape\.npy' has shape \(3, 32\), but the model input "
                              r"'image' takes \(N, 1, 32, 32\): one sample \(1, 32, 32\) or a batch"),
        "array wrong dtype": (["explain", d, wrong_dtype], 7,
                              r"^onnxlrp: error: array '.*wrong_dtype\.npy' has dtype int64, but the model input "
                              r"'image' takes float32"),
        "array unreadable": (["explain", d, pickled], 15,
                             r"^onnxlrp: error: cannot read array '.*broken\.npy': not a \.npy file "
                             r"\(no NumPy header\)$"),
        "array of objects": (["explain", d, objects], 15, r"cannot read array '.*objects\.npy': it holds Python "
                                                          r"objects"),
        "target out of range": (["explain", d, img, "--target", "10"], 8,
                                r"^onnxlrp: error: target 10 is out of range: the output 'logits' has 10 classes "
                                r"\(0\.\.9\)$"),
        "target negative": (["explain", d, img, "--target", "-1"], 8, r"target -1 is out of range"),
        "target unknown label": (["explain", d, img, "--target", "cat", "--labels", LABELS], 8,
                                 r"target 'cat' is not 'pred', a class index or a label from --labels"),
        "unknown method": (["explain", d, img, "--method", "epsilon_plus,magic"], 9,
                           r"^onnxlrp: error: unknown method 'magic'; methods are: .*epsilon_plus_flat.*gradient"),
        "unknown method in inspect": (["inspect", d, "--method", "magic"], 9, r"unknown method 'magic'"),
        "unknown parameter": (["explain", d, img, "--method", "epsilon", "--set", "gamma=0.5"], 9,
                              r"^onnxlrp: error: unknown parameter 'gamma' for method 'epsilon'; valid parameters: "
                              r"epsilon, stabilizer, zero_params$"),
        "parameter for a method not chosen": (["explain", d, img, "--set", "gradient.steps=3"], 9,
                                              r"method 'gradient' is not among the chosen methods"),
        "out dir is a file": (["explain", d, img, "--out", a_file], 13,
                              r"^onnxlrp: error: output directory '.*a_file' is not writable: a file of that name"),
        "out dir under a file": (["explain", d, img, "--out", a_file / "sub"], 13,
                                 r"^onnxlrp: error: output directory '.*a_file/sub' is not writable"),
        "input missing": (["explain", d, tmp_path / "nothing.png"], 15,
                          r"^onnxlrp: error: input '.*nothing\.png' does not exist$"),
        "input folder empty": (["explain", d, tmp_path / "empty"], 15, r"input folder '.*empty' has no images"),
        "input of unknown kind": (["explain", d, text_input], 15, r"input '.*input\.txt' is neither an image"),
        "labels count": (["explain", d, img, "--labels", short_labels], 16,
                         r"^onnxlrp: error: labels file '.*labels\.txt' has 2 lines but the model output has 10 "
                         r"classes$"),
        "labels missing": (["explain", d, img, "--labels", tmp_path / "no_labels.txt"], 16,
                           r"cannot read labels file '.*no_labels\.txt': No such file or directory$"),
        "size against static shape": (["explain", d, img, "--size", "28", "28"], 2,
                                      r"--size 28 28 does not match the model input \(N, 1, 32, 32\)"),
        "bad set syntax": (["explain", d, img, "--set", "epsilon"], 2, r"--set takes key=value"),
    }


def _external_data_model(folder: Path, outside: Path) -> Path:
    """A model whose initializer 'w1' is stored in ../outside.bin, outside its folder."""
    path = _dense_model(folder / "ext.onnx")
    model = onnx.load(str(path))
    w1 = next(t for t in model.graph.initializer if t.name == "w1")
    (outside / "outside.bin").write_bytes(numpy_helper.to_array(w1).tobytes())
    w1.ClearField("raw_data")
    w1.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "../outside.bin"), ("offset", "0"), ("length", str(16 * 4))):
        entry = w1.external_data.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))
    return path


def _case_names() -> list[str]:
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        return list(_bad_cases(Path(tmp)))


@pytest.mark.parametrize("case", _case_names())
def test_bad_input_gives_one_line_and_its_exit_code(case, tmp_path, capsys):
    argv, code, pattern = _bad_cases(tmp_path)[case]
    out_dir = tmp_path / "out-for-this-case"
    if argv[0] == "explain" and "--out" not in argv:
        argv = [*argv, "--out", out_dir]
    rc, out, err = run(capsys, *argv)
    line = error_line(err)
    assert re.search(pattern, line), line
    assert rc == code, (rc, line)
    extra = err.strip().splitlines()[1:]
    if code != 5:
        assert extra == [], err                       # one line, no traceback
    else:
        assert any("my_cos" in x for x in extra)      # the unsupported-op table names the node
    assert not out_dir.exists()                       # nothing written, not even an empty folder


def test_argparse_usage_errors_exit_2(capsys):
    for argv in (["explain"], ["frobnicate"], ["explain", DIGITS, SAMPLE_FILES[0], "--batch-size", "0"],
                 ["explain", DIGITS, SAMPLE_FILES[0], "--cmap", "rainbow"], ["explain", DIGITS, SAMPLE_FILES[0],
                                                                            "--mean", "a,b"]):
        rc, _, err = run(capsys, *argv)
        assert rc == 2 and "usage:" in err and "Traceback" not in err


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(Exception) as info:
        main(["explain", str(tmp_path / "nope.onnx"), str(SAMPLE_FILES[0]), "--debug"])
    assert type(info.value).__name__ == "ModelLoadError"
    r = run_subprocess("explain", tmp_path / "nope.onnx", SAMPLE_FILES[0], "--debug")
    assert r.returncode == 1 and "Traceback" in r.stderr and "ModelLoadError" in r.stderr


def test_exit_codes_are_distinct_per_kind_of_failure():
    from onnxlrp import errors
    codes = {
        "model load": errors.ModelLoadError.exit_code, "checker": errors.ModelCheckError.exit_code,
        "unsupported op": errors.UnsupportedOpError.exit_code, "names": errors.NameSelectionError.exit_code,
        "array": errors.InputShapeError.exit_code, "target": errors.TargetError.exit_code,
        "method": errors.MethodError.exit_code, "image": errors.ImageDecodeError.exit_code,
        "out dir": errors.OutputDirError.exit_code, "input file": errors.InputFileError.exit_code,
        "labels": errors.LabelsError.exit_code, "external data": errors.ExternalDataError.exit_code, "usage": 2,
    }
    assert len(set(codes.values())) == len(codes), codes
    assert errors.InputDtypeError.exit_code == errors.InputShapeError.exit_code


# ------------------------------------------------------------------------------------------------- atomicity
def test_interrupt_leaves_only_complete_files(tmp_path, capsys, monkeypatch):
    """Ctrl-C in the middle of writing a file: that file does not appear, earlier ones are whole, no summary."""
    real_save = np.save
    calls = {"n": 0}

    def save_then_interrupt(handle, arr, *a, **k):
        calls["n"] += 1
        if calls["n"] == 5:
            handle.write(b"\x93NUMPY partial")
            raise KeyboardInterrupt
        return real_save(handle, arr, *a, **k)

    monkeypatch.setattr(outputs.np, "save", save_then_interrupt)
    out_dir = tmp_path / "out"
    rc, _, err = run(capsys, "explain", DIGITS, SAMPLES, "-m", "epsilon_plus,gradient", "--report", "-o", out_dir)
    assert rc == 130 and err.startswith("onnxlrp: interrupted")
    names = sorted(p.name for p in out_dir.iterdir())
    assert "summary.json" not in names and "report.html" not in names
    assert not [n for n in names if n.startswith(".")], names     # no temporary files left
    npys = [n for n in names if n.endswith(".npy")]
    assert len(npys) == 4
    for n in npys:
        assert np.load(out_dir / n).shape == (1, 32, 32)
    for n in names:
        if n.endswith(".png"):
            Image.open(out_dir / n).load()


def _png_with_garbage_pixels() -> bytes:
    import struct
    import zlib
    buf = io.BytesIO()
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(buf, format="PNG")
    data, out, pos = buf.getvalue(), [buf.getvalue()[:8]], 8
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IDAT":
            body = b"\x78\x9c" + bytes(range(7, 7 + 40))
        out.append(struct.pack(">I4s", len(body), kind) + body + struct.pack(">I", zlib.crc32(kind + body)))
        pos += 12 + length
    return b"".join(out)


def test_error_mid_run_leaves_no_partial_files(tmp_path, capsys):
    """A corrupt image discovered only when decoded stops the run; no temp files and no summary remain."""
    folder = tmp_path / "in"
    folder.mkdir()
    for p in SAMPLE_FILES[:3]:
        (folder / p.name).write_bytes(p.read_bytes())
    # a PNG whose chunks and checksums are valid but whose compressed pixels are garbage: Pillow's verify() (the
    # up-front check) accepts it, only the full decode in the second batch fails
    (folder / "zz_bad.png").write_bytes(_png_with_garbage_pixels())
    out_dir = tmp_path / "out"
    rc, _, err = run(capsys, "explain", DIGITS, folder, "--batch-size", "2", "--report", "-o", out_dir)
    assert rc == 12 and "zz_bad.png" in err
    names = sorted(p.name for p in out_dir.iterdir())
    assert len([n for n in names if n.endswith(".npy")]) == 2    # the first batch was written, whole
    assert not [n for n in names if n.startswith(".")] and "summary.json" not in names
    assert "report.html" not in names


# ------------------------------------------------------------------------------------------------- shipped example
def test_shipped_example_is_small_and_self_consistent():
    model = onnx.load(str(DIGITS))
    assert DIGITS.stat().st_size < 1_000_000
    assert {n.op_type for n in model.graph.node} <= {"Conv", "Relu", "MaxPool", "Flatten", "Gemm"}
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # dynamic batch axis
    assert LABELS.read_text().split() == [str(d) for d in range(10)]
    assert 6 <= len(SAMPLE_FILES) <= 10
    for path in SAMPLE_FILES:
        assert Image.open(path).size == (32, 32) and Image.open(path).mode == "L"
    metrics = json.loads((DIGITS.parent / "metrics.json").read_text())
    assert metrics["test_accuracy"] >= 0.97
    assert f"{metrics['test_accuracy'] * 100:.2f} %" in (REPO / "models" / "README.md").read_text()


def test_the_demo_needs_only_runtime_dependencies(tmp_path):
    """The CLI never imports torch, scikit-learn, matplotlib, zennit or captum: block them and run the demo."""
    blocker = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in {'torch', 'torchvision', 'sklearn', 'matplotlib', 'zennit', 'captum',"
        " 'scipy'}:\n"
        "            raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from onnxlrp.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, "-c", blocker, "explain", str(DIGITS), str(SAMPLES), "--labels", str(LABELS),
                        "--method", "epsilon_plus,epsilon_gamma_box,input_x_gradient", "--report", "--out",
                        str(tmp_path)], capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "report: " in r.stdout and (tmp_path / "report.html").is_file()


def test_contrast_option_reaches_contrastive_methods(tmp_path, capsys):
    out_dir = tmp_path / "o"
    rc, _, err = run(capsys, "explain", DIGITS, SAMPLE_FILES[0], "-m", "clrp1,gradient", "--contrast", "3",
                     "-o", out_dir, "-q")
    assert rc == 0, err
    summary = json.loads((out_dir / "summary.json").read_text())
    params = {m["name"]: m["params"] for m in summary["methods"]}
    assert params["clrp1"]["contrast"] == 3 and "contrast" not in params["gradient"]
    rc, _, err = run(capsys, "explain", DIGITS, SAMPLE_FILES[0], "-m", "gradient", "--contrast", "3", "-o", out_dir)
    assert rc == 9 and "unknown parameter 'contrast' for method 'gradient'" in err
