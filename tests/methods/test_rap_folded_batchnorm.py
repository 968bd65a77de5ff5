"""RAP warns when the exporter folded BatchNorm into Conv/Gemm weights (``FoldedBatchNormWarning``), and only then.

A small Conv+BatchNorm+ReLU model with negative BatchNorm scales is exported four ways with torch 2.x: the legacy
exporter with ``do_constant_folding`` on (folds, renames the weights ``onnx::Conv_<n>``) and off (keeps the
BatchNormalization nodes), the dynamo exporter with ``optimize=True`` (folds, records ``FuseBatchNormIntoConv`` in the
node's metadata) and ``optimize=False`` (keeps them). RAP's maps of the folded exports differ from the unfolded ones
(the reason for the warning: 14 % relative L2 here); the unfolded exports agree with each other. (This module's
own name contains "batchnorm" and the dynamo export records it in every node's class hierarchy: the Gemm must not be
flagged for it.)
"""
from __future__ import annotations

import io
import json
import warnings

import numpy as np
import onnx
import pytest

from onnxlrp.cli import main
from tests.helpers.compare import rel_err, within

torch = pytest.importorskip("torch")

import onnxlrp  # noqa: E402
from onnxlrp.errors import FoldedBatchNormWarning  # noqa: E402
from onnxlrp.methods.rap import exporter_folded_batchnorms  # noqa: E402


class ConvBnNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.features = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                                            torch.nn.Conv2d(4, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU())
        self.classifier = torch.nn.Linear(4 * 4 * 4, 3)

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    model = ConvBnNet().eval()
    with torch.no_grad():
        for bn in (model.features[1], model.features[4]):
            bn.weight.copy_(torch.tensor([1.2, -0.8, 0.9, -1.1]))  # negative scales: W+ and |W-| swap when folded
            bn.bias.uniform_(-0.2, 0.2)
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
    return model


def _export(model, how: str) -> bytes:
    example = torch.randn(1, 3, 8, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if how.startswith("dynamo"):
            program = torch.onnx.export(model, (example,), dynamo=True, optimize=how == "dynamo_folded",
                                        input_names=["x"], output_names=["logits"], verbose=False)
            return program.model_proto.SerializeToString()
        buffer = io.BytesIO()
        torch.onnx.export(model, (example,), buffer, dynamo=False, opset_version=17, input_names=["x"],
                          output_names=["logits"], do_constant_folding=how == "legacy_folded")
        return buffer.getvalue()


EXPORTS = ("legacy_folded", "legacy_kept", "dynamo_folded", "dynamo_kept")
X = np.random.default_rng(1).normal(size=(1, 3, 8, 8)).astype(np.float64)


@pytest.fixture(scope="module")
def exports() -> dict[str, bytes]:
    model = _model()
    return {how: _export(model, how) for how in EXPORTS}


def _rap(onnx_bytes: bytes):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = onnxlrp.Explainer(onnx_bytes, dtype="float64").explain(X, method="rap", target=[0])
    return result, [w for w in caught if issubclass(w.category, FoldedBatchNormWarning)]


@pytest.mark.parametrize("how", EXPORTS)
def test_warning_exactly_for_folded_exports(exports, how):
    result, caught = _rap(exports[how])
    if how.endswith("folded"):
        assert len(caught) == 1
        message = str(caught[0].message)
        assert message.startswith("rap: the exporter folded a BatchNorm into ")
        assert "and 1 more node;" in message and "do_constant_folding=False" in message
        assert ("FuseBatchNormIntoConv" if how.startswith("dynamo") else "'onnx::Conv_") in message
    else:
        assert caught == []
    # RAP conserves the logit either way
    assert within(abs(result.relevance.sum() - result.output[0, 0]) / abs(result.output[0, 0]), 1e-14, "sum R")


def test_the_folded_maps_really_differ(exports):
    """What the warning is about: folded and kept exports of the same model give different RAP maps, while the two
    kept exports agree (float64)."""
    maps = {how: _rap(exports[how])[0].relevance for how in EXPORTS}
    assert within(rel_err(maps["dynamo_kept"], maps["legacy_kept"]), 1e-6, "kept vs kept")
    assert rel_err(maps["legacy_folded"], maps["legacy_kept"]) > 1e-2
    assert rel_err(maps["dynamo_folded"], maps["legacy_kept"]) > 1e-2


def test_no_warning_for_other_methods_or_models_without_batchnorm(exports):
    with warnings.catch_warnings():
        warnings.simplefilter("error", FoldedBatchNormWarning)
        onnxlrp.Explainer(exports["legacy_folded"]).explain(X.astype(np.float32), method="epsilon_plus")
    plain = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                                torch.nn.Linear(4 * 6 * 6, 3)).eval()
    for how in ("legacy_folded", "dynamo_folded"):
        session = onnxlrp.Explainer(_export(plain, how)).session
        assert exporter_folded_batchnorms(session) == []


def test_no_warning_for_the_folded_transposes_of_linear_layers():
    """The legacy exporter writes an ``nn.Linear`` on a 3-D input as a MatMul on a constant-folded transpose named
    ``onnx::MatMul_<n>``: every transformer export has dozens, and none carries a BatchNorm."""
    class Tokens(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.query, self.head = torch.nn.Linear(6, 6), torch.nn.Linear(6, 3)

        def forward(self, x):
            return self.head(torch.relu(self.query(x)).mean(dim=1))

    torch.manual_seed(0)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Tokens().eval(), (torch.randn(1, 4, 6),), buffer, dynamo=False, opset_version=17,
                          do_constant_folding=True, input_names=["x"], output_names=["logits"])
    model = onnx.load_from_string(buffer.getvalue())
    assert any(t.name.startswith("onnx::MatMul_") for t in model.graph.initializer)  # the case in point
    assert exporter_folded_batchnorms(onnxlrp.Explainer(buffer.getvalue()).session) == []


def test_the_cli_prints_the_warning_once_and_keeps_it_in_the_summary(exports, tmp_path, capsys):
    (tmp_path / "m.onnx").write_bytes(exports["legacy_folded"])
    np.save(tmp_path / "x.npy", X.astype(np.float32))
    rc = main(["explain", str(tmp_path / "m.onnx"), str(tmp_path / "x.npy"), "--method", "rap", "-o",
               str(tmp_path / "out"), "-q"])
    err = capsys.readouterr().err
    assert rc == 0
    lines = [line for line in err.splitlines() if "folded a BatchNorm" in line]
    assert len(lines) == 1 and lines[0].startswith("onnxlrp: warning: rap: the exporter folded a BatchNorm")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert any("folded a BatchNorm" in w for w in summary["warnings"])
