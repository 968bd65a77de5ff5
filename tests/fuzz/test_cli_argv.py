"""The command line in-process: ``onnxlrp.cli.main(argv)`` with generated argv (``--method``, ``--set``,
``--target``, ``--size``, ``--input-name`` and the other options) on the shipped digits CNN, with small generated
``.npy`` files (wrong shapes and dtypes, NaN, empty batches, pickles, truncated files) and a sample image. The
return code is always a documented exit code and never 1 (an internal error); an error prints one
``onnxlrp: error:`` line; a successful run writes only finite relevance arrays."""
from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st

import onnxlrp
from onnxlrp.cli import main
from onnxlrp.errors import EXIT_CODES
from onnxlrp.methods.params import PARAMS
from tests.fuzz import support

pytestmark = [pytest.mark.fuzz, pytest.mark.filterwarnings("ignore::onnxlrp.errors.OnnxLrpWarning")]

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "models" / "digits" / "digits_cnn.onnx"
SAMPLE = REPO / "models" / "digits" / "samples" / "digit3_0918.png"

#: cheap methods (the digits CNN takes ~10 ms a pass); integrated gradients and SmoothGrad get few steps below
METHODS = ["epsilon_plus_flat", "gradient", "grad_cam", "rap", "clrp1", "epsilon_gamma_box", "input_x_gradient",
           "integrated_gradients", "smoothgrad", "contrastive_grad_cam", "lrpsign_epsilon_0_1", "sglrp"]
BAD_METHODS = ["nope", "", ",", "epsilon,epsilon", "EPSILON", "gradient,,rap", " gradient", "lrp_epsilon_x"]
COUNTS = ("steps", "samples", "internal_batch_size")
SET_VALUES = ["0", "1", "-1", "0.5", "1e-6", "1e400", "nan", "inf", "-inf", "true", "none", "null", "", "abc", "[]",
              "[1,2]", "1,2,3", "a=b", ",", "NCHW", "paper", "riemann_left", "bias", "image", "/features/features.0",
              "3", "9", "10", "0x10", "1_000", "  2 ", "[1, 2"]
COUNT_VALUES = ["1", "2", "0", "-1", "2.5", "1e9", "none", "x", "[2]"]


def _array(kind: str, rng: np.random.Generator):
    """An ``.npy`` payload: ``(array, allow_pickle)`` or raw bytes."""
    normal = rng.normal(size=(1, 32, 32)).astype(np.float32)
    arrays = {
        "sample": normal, "batch": rng.normal(size=(2, 1, 32, 32)).astype(np.float32),
        "float64": normal.astype(np.float64), "float16": normal.astype(np.float16), "big-endian": normal.astype(">f4"),
        "fortran": np.asfortranarray(rng.normal(size=(1, 32, 32))).astype(np.float32),
        "nan": np.where(normal > 2, np.nan, normal).astype(np.float32), "inf": np.full((1, 32, 32), np.inf, np.float32),
        "huge": np.full((1, 32, 32), 1e38, np.float32), "-huge": np.full((1, 32, 32), -3e38, np.float32),
        "empty batch": np.zeros((0, 1, 32, 32), np.float32), "ints": np.ones((1, 32, 32), np.int64),
        "bools": np.ones((1, 32, 32), bool), "complex": normal.astype(np.complex64), "scalar": np.float32(1.0),
        "wrong shape": np.ones((3, 32, 32), np.float32), "small": np.ones((1, 8, 8), np.float32),
        "rank 5": np.ones((1, 1, 1, 32, 32), np.float32), "strings": np.array(["a", "b"]),
        "objects": np.array([None, 1.0], dtype=object), "zeros": np.zeros((1, 32, 32), np.float32),
    }
    if kind in arrays:
        return arrays[kind]
    if kind == "truncated":
        buffer = io.BytesIO()
        np.save(buffer, normal)
        return buffer.getvalue()[:100]
    return b"not a numpy file at all"


INPUT_KINDS = ["sample", "sample", "sample", "sample", "batch", "batch", "float64", "float16", "big-endian",
               "fortran", "nan", "inf", "huge", "-huge", "empty batch", "ints", "bools", "complex", "scalar",
               "wrong shape", "small", "rank 5", "strings", "objects", "zeros", "truncated", "garbage"]


@st.composite
def explain_argv(draw, folder: Path):
    rng = np.random.default_rng(draw(st.integers(0, 9), label="seed"))
    inputs = []
    for k, kind in enumerate(draw(st.lists(st.sampled_from(INPUT_KINDS + ["png", "missing", "folder"]), min_size=1,
                                           max_size=3), label="inputs")):
        path = folder / f"in{k}.npy"
        if kind == "png":
            path = SAMPLE
        elif kind == "missing":
            path = folder / "missing.npy"
        elif kind == "folder":
            path = folder / f"empty{k}"
            path.mkdir()
        else:
            payload = _array(kind, rng)
            if isinstance(payload, bytes):
                path.write_bytes(payload)
            else:
                np.save(path, payload, allow_pickle=payload.dtype.kind == "O")
        inputs.append(str(path))
    argv = ["explain", str(MODEL), *inputs, "--out", str(folder / "out"), "-q"]
    valid = st.lists(st.sampled_from(METHODS), min_size=1, max_size=2, unique=True).map(",".join)
    bad = draw(st.integers(0, 9), label="bad method") == 5  # not 0: hypothesis favours the ends of a range
    methods = draw(st.sampled_from(BAD_METHODS) if bad else valid, label="method")
    argv += ["--method", methods]
    for method in methods.split(","):
        if method.strip() in ("integrated_gradients", "smoothgrad"):
            argv += ["--set", f"{method.strip()}.{'steps' if method.strip()[0] == 'i' else 'samples'}=2"]
    own = sorted({p for m in methods.split(",") if m.strip() in onnxlrp.methods() for p in
                  onnxlrp.methods()[m.strip()]["params"]})
    keys = own * 6 + sorted(PARAMS) + ["bogus", "", "gradient.steps", "nope.epsilon", "rap.x", "clrp1.contrast", "=",
                                       "a.b.c"]
    for key in draw(st.lists(st.sampled_from(keys), max_size=3), label="set keys"):
        pool = COUNT_VALUES if key.rpartition(".")[2] in COUNTS else SET_VALUES
        argv += ["--set", f"{key}={draw(st.sampled_from(pool), label=key)}"]
    chosen = draw(st.lists(st.sampled_from(sorted(OPTIONS)), max_size=4, unique=True), label="options")
    for option in chosen:
        value = draw(OPTIONS[option], label=option)
        if option == "--labels":
            labels = folder / f"labels-{value}.txt"
            if value == "folder":
                labels.mkdir()
            elif value != "missing":
                text = {"ten": "\n".join(f"digit{k}" for k in range(10)), "three": "a\nb\nc", "empty": ""}
                labels.write_bytes(text[value].encode() if value in text else b"\xff\xfe\x00bad")
            value = str(labels)
        argv += [option] if value is None else [option, *value] if isinstance(value, tuple) else [option, value]
    return argv


#: option -> its values, mostly valid (the last ones of each list are not)
OPTIONS = {
    "--target": st.sampled_from(["pred", "0", "9", "10", "-1", "3", "99999999999999999999", "1.5", "nan", "",
                                 "three", "pred,1", " 2", "٣"]),
    "--size": st.tuples(st.sampled_from(["32", "16", "1", "0", "-3", "100000", "x"]),
                        st.sampled_from(["32", "8", "1", "65536"])),
    "--input-name": st.sampled_from(["image", "logits", "", "x", "image ", "input:image", "/features/x"]),
    "--output-name": st.sampled_from(["logits", "image", "", "nope", "/classifier/classifier.1/Gemm_output_0"]),
    "--contrast": st.sampled_from(["0", "9", "10", "-1", "x"]),
    "--labels": st.sampled_from(["ten", "three", "missing", "folder", "binary", "empty"]),
    "--batch-size": st.sampled_from(["1", "2", "0", "-1", "x"]),
    "--top-k": st.sampled_from(["1", "10", "11", "0"]),
    "--dtype": st.sampled_from(["float32", "float64", "float16"]),
    "--scale": st.sampled_from(["1/255", "1/0", "0", "nan", "inf", "abc", "-1"]),
    "--mean": st.sampled_from(["0", "0.5,0.5,0.5", "nan", "", "1e39"]),
    "--std": st.sampled_from(["1", "0", "0,0,0", "-1", "inf", "1e-45"]),
    "--layout": st.sampled_from(["NCHW", "nhwc", "CHW"]),
    "--cmap": st.sampled_from(["bwr", "gray", "rainbow"]),
    "--grayscale": st.just(None), "--report": st.just(None),
}


@st.composite
def inspect_argv(draw):
    method = draw(st.sampled_from(METHODS + BAD_METHODS), label="method")
    argv = ["inspect", str(MODEL), "--method", method]
    own = sorted(onnxlrp.methods()[method]["params"]) if method in onnxlrp.methods() else []
    for key in draw(st.lists(st.sampled_from(own * 4 + sorted(PARAMS) + ["bogus"]), max_size=2), label="set keys"):
        argv += ["--set", f"{key}={draw(st.sampled_from(SET_VALUES), label=key)}"]
    for option, value in draw(st.fixed_dictionaries({}, optional={
            "--input-name": st.sampled_from(["image", "x", ""]), "--output-name": st.sampled_from(["logits", "x"]),
            "--json": st.just(None)}), label="options").items():
        argv += [option] if value is None else [option, value]
    return argv


def run_cli(argv: list[str]) -> tuple[int, str]:
    """``main(argv)`` in-process, bounded in time, with stdout and stderr captured."""
    out, err = io.StringIO(), io.StringIO()
    with support.bounded(what=f"onnxlrp {' '.join(argv)}"), contextlib.redirect_stdout(out), \
            contextlib.redirect_stderr(err), np.errstate(all="ignore"):
        code = main(argv)
    return code, err.getvalue()


def check_run(code: int, stderr: str, out: Path | None) -> None:
    assert code in EXIT_CODES, f"exit code {code} is not documented; stderr: {stderr}"
    assert code != 1 and "internal error" not in stderr, f"internal error (exit {code}): {stderr}"
    if code not in (0, 2):
        lines = [line for line in stderr.splitlines() if line.startswith("onnxlrp: error: ")]
        assert lines, f"exit {code} without an 'onnxlrp: error:' line: {stderr!r}"
        problem = support.sentence_problem(lines[0][len("onnxlrp: error: "):])
        assert problem is None, f"the error line is not a complete sentence ({problem}): {lines[0]!r}"
    if code == 0 and out is not None:
        for path in out.glob("*.npy"):
            assert np.isfinite(np.load(path)).all(), f"{path.name} holds NaN or inf after a successful run"


@settings(max_examples=support.examples(1))
@given(data=st.data())
def test_generated_explain_command_lines(data):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        argv = data.draw(explain_argv(folder), label="argv")
        code, stderr = run_cli(argv)
        note(f"exit {code}: {stderr.strip()[-500:]}")
        check_run(code, stderr, folder / "out")


@settings(max_examples=support.examples(0.5))
@given(argv=inspect_argv())
def test_generated_inspect_command_lines(argv):
    code, stderr = run_cli(argv)
    note(f"exit {code}: {stderr.strip()[-500:]}")
    check_run(code, stderr, None)
