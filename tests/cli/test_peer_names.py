"""The command line with the peers' names and with contrastive methods on a one-output model: ``explain --report``
with signxai and iNNvestigate names writes the report; ``methods --all-names`` lists every name; a refused name and
a contrast on a regression output stop with one line and exit code 9 (MethodError)."""
from __future__ import annotations

import html
import json

import numpy as np
import onnx
import pytest

import onnxlrp
from onnxlrp import errors
from onnxlrp.cli import main
from onnxlrp.methods.names import all_names
from tests.helpers.onnx_builders import relu_cnn

REPORT_NAMES = ["lrpsign_epsilon_0_1_std_x", "gradient_x_sign_mu_neg_0_5", "lrp.z", "lrp.sequential_preset_a_flat",
                "gradient_x_input", "lrp_epsilon_0_1_x_sign", "zblrp_z_VGG16ILSVRC"]


def run(capsys, *argv):
    rc = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


@pytest.fixture
def files(tmp_path):
    def write(classes):
        model = tmp_path / f"cnn{classes}.onnx"
        onnx.save(relu_cnn(classes=classes), model)
        x = tmp_path / "x.npy"
        np.save(x, np.random.default_rng(0).normal(size=(2, 2, 8, 8)).astype(np.float32))
        return model, x
    return write


def test_report_with_peer_names(capsys, files, tmp_path):
    model, x = files(5)
    out = tmp_path / "out"
    rc, stdout, err = run(capsys, "explain", model, x, "--method", ",".join(REPORT_NAMES), "--report", "-o", out,
                          "-q")
    assert rc == 0, err
    report = (out / "report.html").read_text(encoding="utf-8")
    for name in REPORT_NAMES:
        assert f"<h3>{html.escape(name)}</h3>" in report
        assert (out / f"x_0.{name}.npy").is_file()
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert [m["name"] for m in summary["methods"]] == REPORT_NAMES


def test_all_names_lists_every_name(capsys):
    rc, stdout, _ = run(capsys, "methods", "--all-names")
    assert rc == 0
    rows = all_names()
    listed = {line.split()[0] for line in stdout.splitlines() if line.strip()}
    assert {r["name"] for r in rows} <= listed
    rc, stdout, _ = run(capsys, "methods", "--all-names", "--json")
    assert rc == 0 and json.loads(stdout) == json.loads(json.dumps(rows, default=list))


def test_refused_name_is_one_line_exit_9(capsys, files, tmp_path):
    model, x = files(5)
    rc, _, err = run(capsys, "explain", model, x, "--method", "deep_taylor.bounded", "-o", tmp_path / "o")
    assert rc == errors.MethodError.exit_code
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "'deep_taylor.bounded' (iNNvestigate) is not supported" in err


@pytest.mark.parametrize(("method", "extra"), [("clrp1", []), ("clrp2", []), ("sglrp", []),
                                               ("clrp1", ["--contrast", "0"]),
                                               ("contrastive_grad_cam", ["--contrast", "0"])])
def test_contrast_on_one_output_is_refused(capsys, files, tmp_path, method, extra):
    """A regression/score model (one output unit): a contrast has nothing to contrast with; before the fix the maps
    came back all zero (or non-contrastive) with exit 0."""
    model, x = files(1)
    out = tmp_path / "o"
    rc, _, err = run(capsys, "explain", model, x, "--method", method, *extra, "-o", out)
    assert rc == errors.MethodError.exit_code, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "at least two classes" in err
    assert not (out / "summary.json").exists()


@pytest.mark.parametrize("method", ["clrp1", "clrp2", "sglrp", "contrastive_grad_cam"])
def test_contrast_on_one_output_api_and_check(method):
    ex = onnxlrp.Explainer(relu_cnn(classes=1).SerializeToString())
    x = np.random.default_rng(1).normal(size=(2, 2, 8, 8)).astype(np.float32)
    with pytest.raises(errors.MethodError, match="at least two classes"):
        ex.explain(x, method=method, **({"contrast": 0} if method == "contrastive_grad_cam" else {}))
    from onnxlrp.methods import find_method
    check = find_method(method).check(ex.session)
    assert not check and "at least two classes" in check.reason
    two = onnxlrp.Explainer(relu_cnn(classes=2).SerializeToString())
    assert find_method(method).check(two.session)
