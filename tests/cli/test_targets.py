"""Explaining any scalar of any output from the command line: a position in a detector-style output
(``--target J,K``), other model inputs held fixed (``--feed``), and ``pred`` refused where it would pick a box
coordinate."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import helper

import onnxlrp
from onnxlrp.cli import main
from tests.helpers.onnx_builders import make_model


def detector(tmp_path):
    """``x (N, 2, 6, 6)`` and ``prior (N, 6)``: conv → relu → pool → dense + prior → ``boxes (N, 3, 2)``."""
    r = np.random.default_rng(5)
    init = {"w": r.normal(size=(4, 2, 3, 3)).astype(np.float32), "d": r.normal(size=(4, 6)).astype(np.float32),
            "s": np.array([-1, 3, 2], np.int64)}
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Relu", ["c"], ["a"]),
             helper.make_node("GlobalAveragePool", ["a"], ["g"]), helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("MatMul", ["f", "d"], ["m"]), helper.make_node("Add", ["m", "prior"], ["z"]),
             helper.make_node("Reshape", ["z", "s"], ["boxes"])]
    model = make_model(nodes, [("x", ["N", 2, 6, 6]), ("prior", ["N", 6])], [("boxes", ["N", 3, 2])], init)
    path = tmp_path / "detector.onnx"
    onnx.save(model, path)
    x = r.normal(size=(2, 2, 6, 6)).astype(np.float32)
    prior = r.normal(size=(1, 6)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "prior.npy", prior)
    (tmp_path / "labels.txt").write_text("cat\ndog\n")
    return path, x, prior


def test_a_position_and_a_fed_input(tmp_path, capsys):
    path, x, prior = detector(tmp_path)
    out = tmp_path / "out"
    code = main(["explain", str(path), str(tmp_path / "x.npy"), "--input-name", "x", "--target", "2,dog",
                 "--labels", str(tmp_path / "labels.txt"), "--feed", f"prior={tmp_path / 'prior.npy'}",
                 "--method", "gradient", "--out", str(out), "--quiet"])
    assert code == 0, capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["target"] == [2, 1]
    assert [m["target"] for m in summary["inputs"][0]["explanations"]] == [5]
    assert summary["inputs"][0]["explanations"][0]["target_label"] == "dog"
    expected = onnxlrp.Explainer(str(path), input_name="x").explain(
        x, "gradient", target=onnxlrp.Position(2, 1), feeds={"prior": np.repeat(prior, 2, axis=0)})
    np.testing.assert_allclose(np.load(out / "x_0.gradient.npy"), expected.relevance[0], rtol=1e-6)


@pytest.mark.parametrize("argv, code, text", [
    (["--target", "pred"], 8, "not a class vector, so 'pred' would pick any entry"),
    (["--target", "3,0"], 8, "target position [3, 0] is out of range"),
    (["--target", "1,2,3"], 8, "does not fit output 'boxes'"),
    (["--target", "6"], 8, "6 entries per sample (shape (3, 2); flat index 0..5, or a position J,K)"),
])
def test_targets_that_do_not_fit_say_why(tmp_path, capsys, argv, code, text):
    path, _, _ = detector(tmp_path)
    assert main(["explain", str(path), str(tmp_path / "x.npy"), "--input-name", "x", "--feed",
                 f"prior={tmp_path / 'prior.npy'}", "--out", str(tmp_path / "o"), *argv]) == code
    err = capsys.readouterr().err
    assert text in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("feeds, text", [
    ([], "give --feed prior=FILE.npy (missing: prior)"),
    (["--feed", "other=p.npy"], "--feed other: the model has no other input of that name"),
    (["--feed", "x=p.npy"], "--feed x: that is the explained input"),
    (["--feed", "prior"], "write NAME=FILE.npy"),
])
def test_feeds_are_checked(tmp_path, capsys, feeds, text):
    path, _, _ = detector(tmp_path)
    (tmp_path / "p.npy").write_bytes((tmp_path / "prior.npy").read_bytes())
    code = main(["explain", str(path), str(tmp_path / "x.npy"), "--input-name", "x", "--target", "0,0",
                 "--out", str(tmp_path / "o"), *[f.replace("p.npy", str(tmp_path / "p.npy")) for f in feeds]])
    err = capsys.readouterr().err
    assert code in (2, 6) and text in err, err


def test_integer_ids_from_the_command_line(tmp_path, capsys):
    from tests.engine.test_integer_inputs import recommender
    onnx.save(recommender(), tmp_path / "rec.onnx")
    np.save(tmp_path / "user.npy", np.array([0, 3, 5]))
    np.save(tmp_path / "item.npy", np.array([1, 1, 4]))
    out = tmp_path / "out"
    assert main(["explain", str(tmp_path / "rec.onnx"), str(tmp_path / "user.npy"), "--input-name", "user",
                 "--feed", f"item={tmp_path / 'item.npy'}", "--target", "0", "--method", "input_x_gradient",
                 "--out", str(out), "--quiet"]) == 0, capsys.readouterr().err
    api = onnxlrp.Explainer(str(tmp_path / "rec.onnx"), input_name="user").explain(
        np.array([0, 3, 5]), "input_x_gradient", target=0, feeds={"item": np.array([1, 1, 4])})
    np.testing.assert_allclose([np.load(out / f"user_{i}.input_x_gradient.npy") for i in range(3)], api.relevance,
                               rtol=1e-6)


def test_inspect_describes_a_model_whose_output_does_not_depend_on_the_input(tmp_path, capsys):
    model = make_model([helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Cast", ["s"], ["y"], to=1)],
                       [("x", ["N", 3])], [("y", [2])])
    onnx.save(model, tmp_path / "m.onnx")
    assert main(["inspect", str(tmp_path / "m.onnx")]) == 5
    out, err = capsys.readouterr()
    assert "explainable: no, with no method: output 'y' does not depend on input 'x'" in out
    assert "Shape      1" in out and len(err.strip().splitlines()) == 1
