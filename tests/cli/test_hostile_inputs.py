"""Nothing a user can type or feed crashes, hangs or exhausts the machine (issue 15, command-line side).

Every case runs ``main([...])`` in-process (one runs ``python -m onnxlrp`` on a FIFO, with a timeout) and checks the
exit code, that stderr is exactly one line ``onnxlrp: error: ...``, and that no output folder is left behind. Models
are tiny and images a few pixels: a "bomb" is a small file whose header claims huge dimensions, or a small image
under a lowered ``ONNXLRP_MAX_IMAGE_PIXELS``.
"""
from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper
from PIL import Image

from onnxlrp import errors
from onnxlrp.cli import main
from onnxlrp.explainer import Explainer
from onnxlrp.limits import parse_bytes
from tests.helpers.onnx_builders import make_model

REPO = Path(__file__).resolve().parents[2]
DIGITS = REPO / "models" / "digits" / "digits_cnn.onnx"
DIGIT_PNG = sorted((REPO / "models" / "digits" / "samples").glob("*.png"))[0]


def run(capsys, *argv):
    """main(argv) -> (exit code, stdout, stderr)."""
    rc = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def one_error_line(err: str) -> str:
    """The error line, asserting it is the only thing on stderr."""
    lines = err.splitlines()
    assert len(lines) == 1, f"expected exactly one line on stderr, got:\n{err}"
    assert lines[0].startswith("onnxlrp: error:"), lines[0]
    return lines[0]


def expect(capsys, code: int, *argv, match: str | None = None) -> str:
    rc, _, err = run(capsys, *argv)
    line = one_error_line(err)
    assert rc == code, f"exit {rc}, expected {code}: {line}"
    if match is not None:
        assert match in line, line
    return line


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    """Every test runs in its own empty folder, with the limits at their defaults."""
    monkeypatch.chdir(tmp_path)
    for variable in ("ONNXLRP_MAX_IMAGE_PIXELS", "ONNXLRP_MEMORY_BUDGET", "ONNXLRP_MAX_LABELS_BYTES"):
        monkeypatch.delenv(variable, raising=False)


def free_size_model(path: Path, classes: int = 3, zero: bool = False) -> Path:
    """(N, 1, H, W) -> Conv 3x3 -> Relu -> GlobalAveragePool -> Flatten -> Gemm: any image size fits."""
    r = np.random.default_rng(0)
    scale = 0.0 if zero else 1.0
    init = {"w1": r.normal(size=(2, 1, 3, 3)).astype(np.float32) * scale, "b1": np.full(2, 0.1, np.float32),
            "w2": r.normal(size=(classes, 2)).astype(np.float32) * scale,
            "b2": np.arange(1, classes + 1, dtype=np.float32)}
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["a"]),
             helper.make_node("GlobalAveragePool", ["a"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Gemm", ["f", "w2", "b2"], ["y"], transB=1)]
    onnx.save(make_model(nodes, [("x", ["N", 1, "H", "W"])], [("y", ["N", classes])], init), path)
    return path


def small_png(path: Path, size=(8, 8)) -> Path:
    Image.fromarray(np.arange(size[0] * size[1], dtype=np.uint8).reshape(size[1], size[0])).save(path)
    return path


def fifo(path: Path) -> Path:
    if not hasattr(os, "mkfifo"):
        pytest.skip("platform: no FIFOs (os.mkfifo)")
    os.mkfifo(path)
    return path


# ------------------------------------------------------------------------------- 1. paths that never end
@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_labels_from_a_device_is_refused(capsys, tmp_path, device):
    if not os.path.exists(device):
        pytest.skip(f"platform: no {device}")
    line = expect(capsys, errors.LabelsError.exit_code, "explain", DIGITS, DIGIT_PNG, "--labels", device, "-q",
                  "--out", tmp_path / "out", match="not a regular file")
    assert device in line
    assert not (tmp_path / "out").exists()


def test_fifo_as_labels_input_or_model_is_refused(capsys, tmp_path):
    pipe, pipe_npy, pipe_png, pipe_onnx = (fifo(tmp_path / n) for n in ("labels", "x.npy", "x.png", "m.onnx"))
    out = tmp_path / "out"
    expect(capsys, 16, "explain", DIGITS, DIGIT_PNG, "--labels", pipe, "-q", "--out", out, match="FIFO")
    expect(capsys, 15, "explain", DIGITS, pipe_npy, "-q", "--out", out, match="FIFO")
    expect(capsys, 15, "explain", DIGITS, pipe_png, "-q", "--out", out, match="FIFO")
    expect(capsys, 3, "explain", pipe_onnx, DIGIT_PNG, "-q", "--out", out, match="FIFO")
    expect(capsys, 3, "inspect", pipe_onnx, match="FIFO")
    assert not out.exists()


def test_model_on_dev_zero_is_refused(capsys, tmp_path):
    if not os.path.exists("/dev/zero"):
        pytest.skip("platform: no /dev/zero")
    expect(capsys, 3, "explain", "/dev/zero", DIGIT_PNG, "-q", "--out", tmp_path / "out", match="/dev/zero")
    assert not (tmp_path / "out").exists()


def test_folder_and_oversized_files_are_refused(capsys, tmp_path, monkeypatch):
    (tmp_path / "labels.d").mkdir()
    expect(capsys, 16, "explain", DIGITS, DIGIT_PNG, "--labels", tmp_path / "labels.d", "-q", match="directory")
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(str(k) for k in range(10)) + "\n")
    monkeypatch.setenv("ONNXLRP_MAX_LABELS_BYTES", "8")
    expect(capsys, 16, "explain", DIGITS, DIGIT_PNG, "--labels", labels, "-q",
           match="ONNXLRP_MAX_LABELS_BYTES")
    monkeypatch.setenv("ONNXLRP_MAX_IMAGE_BYTES", "16")
    expect(capsys, 15, "explain", DIGITS, DIGIT_PNG, "-q", match="ONNXLRP_MAX_IMAGE_BYTES")
    assert sorted(os.listdir(tmp_path)) == ["labels.d", "labels.txt"]


def test_a_folder_skips_fifos(capsys, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    fifo(folder / "a.png")
    small_png(folder / "b.png", (32, 32))
    rc, _, err = run(capsys, "explain", DIGITS, folder, "-q", "--out", tmp_path / "out")
    assert rc == 0, err
    assert [e["name"] for e in json.loads((tmp_path / "out" / "summary.json").read_text())["inputs"]] == ["b"]


def test_explain_text_paths_are_checked_before_reading(capsys, tmp_path):
    model = free_size_model(tmp_path / "m.onnx")
    tok = tmp_path / "tokenizer.json"
    tok.write_text("{}")
    pipe = fifo(tmp_path / "pipe")
    expect(capsys, 18, "explain-text", model, "--tokenizer", pipe, "hello", match="FIFO")
    if os.path.exists("/dev/zero"):
        expect(capsys, 18, "explain-text", model, "--tokenizer", "/dev/zero", "hello", match="not a regular file")
    expect(capsys, 16, "explain-text", model, "--tokenizer", tok, "--labels", pipe, "hello", match="FIFO")
    expect(capsys, 15, "explain-text", model, "--tokenizer", tok, "--file", pipe, match="FIFO")
    expect(capsys, 3, "explain-text", pipe, "--tokenizer", tok, "hello", match="FIFO")
    expect(capsys, 2, "explain-text", model, "--tokenizer", tok, "--html", "", "hello", match="--html")


def test_fifo_labels_in_a_subprocess_ends_at_once(tmp_path):
    """The real program, not main(): a FIFO nobody writes to must not block it."""
    pipe = fifo(tmp_path / "labels.txt")
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-m", "onnxlrp", "explain", str(DIGITS), str(DIGIT_PNG), "--labels",
                           str(pipe), "-q", "--out", str(tmp_path / "out")], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=60)
    assert proc.returncode == 16, proc.stderr
    assert "FIFO" in one_error_line(proc.stderr)
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------- 2. decompression bombs
def _png(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def _tiny(fmt: str) -> bytearray:
    buffer = io.BytesIO()
    Image.new("L", (4, 4)).save(buffer, fmt)
    return bytearray(buffer.getvalue())


def _bmp(width: int, height: int) -> bytes:
    data = _tiny("BMP")
    data[18:26] = struct.pack("<ii", width, height)
    return bytes(data)


def _gif(width: int, height: int) -> bytes:
    data = _tiny("GIF")
    data[6:10] = struct.pack("<HH", width, height)
    return bytes(data)


def _jpeg(width: int, height: int) -> bytes:
    data = _tiny("JPEG")
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


BOMBS = {"png": _png, "bmp": _bmp, "gif": _gif, "jpg": _jpeg}


@pytest.mark.parametrize("fmt", sorted(BOMBS))
@pytest.mark.parametrize("side", [60000, 10000])  # beyond Pillow's own error; between its warning and its error
def test_decompression_bomb_header_is_refused_before_decoding(capsys, tmp_path, fmt, side):
    bomb = tmp_path / f"bomb.{fmt}"
    bomb.write_bytes(BOMBS[fmt](side, side))
    assert bomb.stat().st_size < 2048
    previous = Image.MAX_IMAGE_PIXELS
    line = expect(capsys, errors.ImageDecodeError.exit_code, "explain", DIGITS, bomb, "-q", "--out",
                  tmp_path / "out", match="ONNXLRP_MAX_IMAGE_PIXELS")
    assert "89,478,485" in line
    assert Image.MAX_IMAGE_PIXELS == previous  # Pillow's global is restored
    assert not (tmp_path / "out").exists()


def test_pixel_limit_comes_from_the_environment(capsys, tmp_path, monkeypatch):
    image = small_png(tmp_path / "x.png", (32, 32))
    monkeypatch.setenv("ONNXLRP_MAX_IMAGE_PIXELS", "1000")
    line = expect(capsys, 12, "explain", DIGITS, image, "-q", match="32x32 = 1,024 pixels")
    assert "limit of 1,000 pixels" in line
    monkeypatch.setenv("ONNXLRP_MAX_IMAGE_PIXELS", "1024")
    rc, _, err = run(capsys, "explain", DIGITS, image, "-q", "--out", tmp_path / "out")
    assert rc == 0, err


def test_pillows_own_bomb_error_is_one_line(capsys, tmp_path, monkeypatch):
    """Pillow's guard fires even when Pillow's limit is lower than onnxlrp's: still exit 12, one line."""
    image = small_png(tmp_path / "x.png", (64, 64))
    from onnxlrp.inputs import images
    monkeypatch.setattr(images.limits, "image_pixel_limit", lambda: 1000)  # 4096 > 2 x 1000: Pillow raises
    expect(capsys, 12, "explain", DIGITS, image, "-q", match="over the limit of 1,000 pixels")


# ------------------------------------------------------------------------------- 3. sizes and the memory budget
def test_size_over_the_pixel_limit_is_a_usage_error(capsys, tmp_path):
    model = free_size_model(tmp_path / "m.onnx")
    image = small_png(tmp_path / "x.png")
    line = expect(capsys, 2, "explain", model, image, "--size", "100000", "100000", "-q", "--out",
                  tmp_path / "out", match="10,000,000,000 pixels")
    assert "--size" in line and "ONNXLRP_MAX_IMAGE_PIXELS" in line
    assert not (tmp_path / "out").exists()


def test_size_over_the_memory_budget_is_refused_before_decoding(capsys, tmp_path, monkeypatch):
    model = free_size_model(tmp_path / "m.onnx")
    image = small_png(tmp_path / "x.png")
    from onnxlrp.cli import inputs as cli_inputs

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded an image that the budget refuses")

    monkeypatch.setattr(cli_inputs.images, "load_image", no_decoding)
    line = expect(capsys, errors.MemoryBudgetError.exit_code, "explain", model, image, "--size", "4000", "4000",
                  "--memory-budget", "64M", "-q", "--out", tmp_path / "out", match="would need about")
    assert "(1, 1, 4000, 4000)" in line and "64 MiB" in line and "--memory-budget" in line and "--size" in line
    assert not (tmp_path / "out").exists()


def test_large_image_on_a_free_size_model_is_refused_by_the_budget(capsys, tmp_path, monkeypatch):
    model = free_size_model(tmp_path / "m.onnx")
    image = small_png(tmp_path / "x.png", (256, 256))
    monkeypatch.setenv("ONNXLRP_MEMORY_BUDGET", "100000")
    expect(capsys, 7, "explain", model, image, "-q", "--out", tmp_path / "out", match="(1, 1, 256, 256)")


def test_batches_are_split_to_fit_the_budget(capsys, tmp_path):
    model = free_size_model(tmp_path / "m.onnx")
    images = [small_png(tmp_path / f"x{k}.png", (16, 16)) for k in range(3)]
    one = Explainer(str(model)).session.plan_bytes((1, 1, 16, 16))
    rc, _, err = run(capsys, "explain", model, *images, "--memory-budget", str(one + one // 2), "-q",
                     "--batch-size", "16", "--out", tmp_path / "out")
    assert rc == 0, err
    assert len(json.loads((tmp_path / "out" / "summary.json").read_text())["inputs"]) == 3


@pytest.mark.parametrize("text, value", [("2G", 2 << 30), ("512M", 512 << 20), ("64k", 65536), ("1.5GiB", 3 << 29),
                                         ("1000", 1000)])
def test_memory_budget_suffixes(text, value):
    assert parse_bytes(text) == value


@pytest.mark.parametrize("text", ["", "abc", "-1G", "0", "nan", "2X"])
def test_bad_memory_budget_is_a_usage_error(capsys, text):
    rc, _, err = run(capsys, "explain", DIGITS, DIGIT_PNG, "--memory-budget", text)
    assert rc == 2
    assert "--memory-budget" in err.strip().splitlines()[-1]


def test_memory_budget_reaches_the_explainer(capsys, tmp_path):
    rc, _, err = run(capsys, "explain", DIGITS, DIGIT_PNG, "--memory-budget", "1K", "-q", "--out", tmp_path / "out")
    assert rc == 7 and "1 KiB" in one_error_line(err)


# ------------------------------------------------------------------------------- 4. output folders
def test_empty_out_is_a_usage_error(capsys, tmp_path):
    expect(capsys, 2, "explain", DIGITS, DIGIT_PNG, "-q", "--out", "", match="--out")
    assert os.listdir(tmp_path) == []


def test_out_through_a_missing_folder_creates_only_the_final_one(capsys, tmp_path):
    (tmp_path / "work").mkdir()
    os.chdir(tmp_path / "work")
    rc, _, err = run(capsys, "explain", DIGITS, DIGIT_PNG, "-q", "--out", "../out/../out2")
    assert rc == 0, err
    assert sorted(os.listdir(tmp_path)) == ["out2", "work"]
    assert (tmp_path / "out2" / "summary.json").is_file()


def test_failed_run_removes_every_folder_it_created(capsys, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    expect(capsys, 12, "explain", DIGITS, bad, "-q", "--out", "a/b/c")
    assert sorted(os.listdir(tmp_path)) == ["bad.png"]


# ------------------------------------------------------------------------------- 5. malformed .npy headers
def _npy(path: Path, header: str, body: bytes = b"") -> Path:
    text = header.encode("latin1")
    text += b" " * (63 - (10 + len(text)) % 64) + b"\n"
    path.write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + body)
    return path


NPY_HEADERS = {
    "negative": ("{'descr': '<f4', 'fortran_order': False, 'shape': (-1, 1, 32, 32), }", "negative dimension"),
    "absurd": ("{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000000, 1000000000000), }",
               "the file holds"),
    "expression": ("{'descr': '<f4', 'fortran_order': False, 'shape': (2**62, 2**62), }", "not a Python literal"),
    "unclosed": ("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 32, 32)", "not a Python literal"),
    "not_a_dict": ("[1, 2, 3]", "not a dict"),
    "float_dim": ("{'descr': '<f4', 'fortran_order': False, 'shape': (1.5, 32, 32), }", "not a tuple of integers"),
    "bad_dtype": ("{'descr': 'zz', 'fortran_order': False, 'shape': (1, 32, 32), }", "not a valid dtype"),
    "huge_dtype": ("{'descr': '<V2000000000', 'fortran_order': False, 'shape': (1, 32, 32), }", "the file holds"),
    "object": ("{'descr': '|O', 'fortran_order': False, 'shape': (1, 32, 32), }", "never unpickles"),
    "truncated": ("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 32, 32), }", "the file holds"),
}


@pytest.mark.parametrize("case", sorted(NPY_HEADERS))
def test_malformed_npy_header_is_one_line(capsys, tmp_path, case):
    header, reason = NPY_HEADERS[case]
    path = _npy(tmp_path / f"{case}.npy", header, b"\0" * 64)
    line = expect(capsys, errors.InputFileError.exit_code, "explain", DIGITS, path, "-q", "--out", tmp_path / "out",
                  match=reason)
    assert f"{case}.npy" in line
    assert not (tmp_path / "out").exists()


class _Payload:
    """Unpickling this would create a folder: the proof that onnxlrp never unpickles."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def test_pickled_npy_is_never_unpickled(capsys, tmp_path):
    marker = tmp_path / "unpickled"
    path = tmp_path / "evil.npy"
    np.save(path, np.array([_Payload(str(marker))], dtype=object), allow_pickle=True)
    expect(capsys, 15, "explain", DIGITS, path, "-q", "--out", tmp_path / "out", match="never unpickles")
    assert not marker.exists()


def test_npy_header_length_beyond_limits(capsys, tmp_path):
    path = tmp_path / "v3.npy"
    path.write_bytes(b"\x93NUMPY\x03\x00" + struct.pack("<I", 0xFFFFFFFF) + b"{")
    expect(capsys, 15, "explain", DIGITS, path, "-q", match="header claims 4,294,967,295 bytes")


# ------------------------------------------------------------------------------- 6. nothing else on stderr
def test_numpy_warnings_do_not_precede_the_error(capsys, tmp_path):
    path = tmp_path / "nan.npy"
    np.save(path, np.full((1, 32, 32), np.nan, np.float32))
    expect(capsys, errors.NonFiniteError.exit_code, "explain", DIGITS, path, "-q", "--out", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_onnxruntime_failure_prints_one_line(capfd, tmp_path):
    """The process's own stderr (fd 2, where onnxruntime logs) holds the error line only."""
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["r"]), helper.make_node("MatMul", ["r", "w"], ["y"])]
    model = make_model(nodes, [("x", ["N", 4])], [("y", ["M", 2])],
                       {"shape": np.array([-1, 3], np.int64), "w": np.ones((3, 2), np.float32)})
    onnx.save(model, tmp_path / "m.onnx")
    np.save(tmp_path / "x.npy", np.ones((1, 4), np.float32))
    rc = main(["explain", str(tmp_path / "m.onnx"), str(tmp_path / "x.npy"), "-q", "--out", str(tmp_path / "out")])
    line = one_error_line(capfd.readouterr().err)
    assert rc == errors.ModelRunError.exit_code, line
    assert not (tmp_path / "out").exists()


def test_warnings_are_printed_after_a_successful_run_and_kept_in_the_summary(capsys, tmp_path):
    model = free_size_model(tmp_path / "m.onnx", zero=True)  # zero weights: every gradient is zero
    image = small_png(tmp_path / "x.png")
    rc, _, err = run(capsys, "explain", model, image, "--method", "gradient", "-q", "--out", tmp_path / "out")
    assert rc == 0, err
    lines = err.splitlines()
    assert lines and all(line.startswith("onnxlrp: warning: ") for line in lines), err
    zero = [line for line in lines if "zero everywhere" in line]
    assert len(zero) == 1 and "gradient" in zero[0]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert [w for w in summary["warnings"] if "zero everywhere" in w] == [zero[0].removeprefix("onnxlrp: warning: ")]


def test_a_clean_run_has_no_warnings(capsys, tmp_path):
    rc, _, err = run(capsys, "explain", DIGITS, DIGIT_PNG, "-q", "--out", tmp_path / "out")
    assert rc == 0 and err == ""
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["warnings"] == []
