"""How results are compared with a peer's: relative L2 error in float64."""
from __future__ import annotations

import numpy as np


def rel_err(actual, expected) -> float:
    """``||actual - expected|| / ||expected||`` over the whole array, in float64 (shapes must agree)."""
    actual, expected = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    return float(np.linalg.norm(actual - expected) / max(np.linalg.norm(expected), 1e-300))
