"""``onnxlrp patterns`` end to end: fit on a folder of .npy and .npz files in batches, then ``onnxlrp explain
--method pattern_attribution --set patterns=FILE``; both against the API on the same data, and the error lines."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

import onnxlrp
from onnxlrp.cli.main import main
from onnxlrp.engine.session import Session
from onnxlrp.patterns import fit_patterns, load_patterns
from tests.helpers.compare import assert_rel
from tests.methods.test_pattern import model


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("patterns")
    path = root / "net.onnx"
    onnx.save(model(), path)
    data = np.random.default_rng(5).normal(size=(12, 2, 7, 7)).astype(np.float32)  # what the CLI feeds
    folder = root / "data"
    folder.mkdir()
    np.save(folder / "a_batch.npy", data[:7])
    np.save(folder / "b_one.npy", data[7])
    np.savez(folder / "c_more.npz", first=data[8:11], second=data[11])
    return root, path, folder, data


def test_fit_then_explain_end_to_end(setup, capsys):
    root, path, folder, data = setup
    out = root / "patterns.npz"
    assert main(["patterns", str(path), str(folder), "-o", str(out), "--batch-size", "5", "--dtype", "float64"]) == 0
    assert "on 12 samples" in capsys.readouterr().out
    fitted = load_patterns(str(out))
    expected = fit_patterns(Session(model(), dtype="float64"), [data])
    assert fitted.samples == 12 and sorted(fitted.arrays) == ["linear", "relu.negative", "relu.positive"]
    for kind, layers in expected.arrays.items():
        for name, array in layers.items():  # batches of 5 from files against all at once: summation order only
            assert_rel(fitted.arrays[kind][name], array, 1e-14, f"{kind} {name}")

    sample = root / "probe.npy"
    np.save(sample, data[3])
    outdir = root / "out"
    assert main(["explain", str(path), str(sample), "--method", "pattern_attribution,pattern_net", "--set",
                 f"patterns={out}", "--set", "pattern_net.pattern_type=linear", "-o", str(outdir), "--dtype",
                 "float64", "-q"]) == 0
    ex = onnxlrp.Explainer(model(), dtype="float64")
    for method, params in (("pattern_attribution", {}), ("pattern_net", {"pattern_type": "linear"})):
        api = ex.explain(data[3:4], method, patterns=str(out), **params).relevance[0]
        written = np.load(outdir / f"probe.{method}.npy")
        assert np.abs(api).max() > 0
        assert_rel(written, api, 1e-15, method)


def test_only_the_chosen_types_are_fitted(setup):
    root, path, folder, _ = setup
    out = root / "linear.npz"
    assert main(["patterns", str(path), str(folder / "c_more.npz"), "-o", str(out), "--type", "linear", "-q"]) == 0
    fitted = load_patterns(str(out))
    assert sorted(fitted.arrays) == ["linear"] and fitted.samples == 4


def _error(capsys, argv, code):
    assert main(argv) == code
    err = capsys.readouterr().err.strip()
    assert err.startswith("onnxlrp: error: ") and "\n" not in err
    return err


def test_errors_are_one_line(setup, capsys, tmp_path):
    root, path, folder, data = setup
    _error(capsys, ["patterns", str(path), str(tmp_path / "none"), "-o", str(tmp_path / "p.npz")], 15)
    assert "--type" in _error(capsys, ["patterns", str(path), str(folder), "--type", "cubic"], 2)
    sample = tmp_path / "x.npy"
    np.save(sample, data[0])
    argv = ["explain", str(path), str(sample), "--method", "pattern_net", "-o", str(tmp_path / "o"), "-q"]
    assert "patterns=FILE" in _error(capsys, argv, 9)
    assert "does not exist" in _error(capsys, argv + ["--set", f"patterns={tmp_path / 'none.npz'}"], 15)
    bad = tmp_path / "wrong.npz"
    np.savez(bad, x=np.ones(2))
    assert "not a pattern file" in _error(capsys, argv + ["--set", f"patterns={bad}"], 15)
    # patterns of another model: a dense layer only
    from onnx import helper

    from tests.helpers.onnx_builders import make_model
    other = make_model([helper.make_node("MatMul", ["x", "w"], ["y"], name="readout")], [("x", ["N", 3])],
                       [("y", ["N", 2])], {"w": np.ones((3, 2), np.float32)})
    other_path = tmp_path / "other.onnx"
    onnx.save(other, other_path)
    np.save(tmp_path / "three.npy", np.ones((4, 3)))
    foreign = tmp_path / "foreign.npz"
    assert main(["patterns", str(other_path), str(tmp_path / "three.npy"), "-o", str(foreign), "-q"]) == 0
    text = _error(capsys, argv + ["--set", f"patterns={foreign}"], 9)
    assert "no pattern for layer 'conv1'" in text
