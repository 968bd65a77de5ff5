"""Fixtures shared by every test folder (the folders mirror the package: engine, kernels, lrp, methods, cli, views,
text; peers holds the comparisons with zennit, Captum and LXT; helpers the model builders and reference scripts)."""
from __future__ import annotations

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
