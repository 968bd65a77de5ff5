"""Fixtures shared by every test folder (the folders mirror the package: engine, kernels, lrp, methods, cli, views,
text; peers holds the comparisons with zennit, Captum and LXT; helpers the model builders and reference scripts)."""
from __future__ import annotations

import os

import numpy as np
import pytest

from tests.helpers import REPO

DIGITS_MODEL = REPO / "models" / "digits" / "digits_cnn.onnx"


@pytest.fixture
def rng():
    """A seeded generator: every test that draws data gets the same numbers on every run."""
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def digits_model() -> str:
    """The shipped example model (a small CNN on 32x32 digits)."""
    return str(DIGITS_MODEL)


# ---------------------------------------------------------------------------------------------- CI rules
#: heavy modules (peers on the same weights, exports, real pretrained models): `pytest -m "not slow"` skips them
SLOW = ("tests/peers/", "tests/cli/test_shipped_models.py", "tests/text/test_text_minilm.py",
        "tests/cli/test_cli_resnet50.py", "tests/methods/test_cam.py", "tests/methods/test_sign.py",
        "tests/methods/test_clrp.py", "tests/methods/test_rap.py")
#: in strict mode (``ONNXLRP_STRICT=1``, set by ``make test``) a skip is a failure unless its reason starts so:
#: only what the platform cannot have (a FIFO, a GPU) may be skipped in CI
ALLOWED_SKIP_PREFIX = "platform:"


def pytest_addoption(parser):
    parser.addoption("--tolerances", action="store_true",
                     help="print every recorded comparison (tests/helpers/compare.py): measured error, tolerance and "
                          "margin; ONNXLRP_TOLERANCES=1 does the same, ONNXLRP_TOLERANCES=FILE.json also writes them")


def pytest_terminal_summary(terminalreporter, config):
    from tests.helpers import compare

    target = os.environ.get("ONNXLRP_TOLERANCES", "")
    if not (config.getoption("--tolerances") or target) or not compare.RECORDS:
        return
    if target not in ("", "1"):
        import json

        with open(target, "w", encoding="utf-8") as handle:
            json.dump([dict(test=r.test, label=r.label, measured=r.measured, tol=r.tol, kind=r.kind, site=r.site)
                       for r in compare.RECORDS], handle, indent=1)
    terminalreporter.section("measured error against tolerance (margin = tol / measured; keep it near 10x)")
    for line in compare.report_lines():
        terminalreporter.write_line(line)


def pytest_collection_modifyitems(config, items):
    for item in items:
        path = item.nodeid.split("::")[0]
        if path.startswith(SLOW):
            item.add_marker(pytest.mark.slow)


def pytest_sessionfinish(session, exitstatus):
    if os.environ.get("ONNXLRP_STRICT") != "1":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    refused = []
    for report in skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        reason = reason.removeprefix("Skipped: ")
        if not reason.startswith(ALLOWED_SKIP_PREFIX):
            refused.append(f"{report.nodeid}: {reason}")
    if refused:
        reporter.write_line("")
        reporter.write_line(f"ONNXLRP_STRICT: {len(refused)} skip(s) are failures in CI (a missing peer, exporter or "
                            "browser means the comparison did not run):", red=True)
        for line in refused:
            reporter.write_line(f"  {line}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
