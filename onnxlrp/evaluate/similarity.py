"""Comparing two maps, and how concentrated one map is: rank correlation, SSIM, Gini sparseness, entropy.

Numpy only (SciPy and scikit-image are not runtime dependencies): :func:`spearman` ranks with average ties as
``scipy.stats.rankdata`` does; :func:`ssim` is scikit-image's ``structural_similarity`` with its defaults (7-wide
uniform window, K1 = 0.01, K2 = 0.03, sample covariance, borders cropped) and Quantus's data range (the span of
both maps together).
"""
from __future__ import annotations

import numpy as np

from ..errors import InputShapeError
from .common import Scores


def rankdata(a: np.ndarray) -> np.ndarray:
    """Ranks (1-based, ties averaged) along the last axis of a 2-D array."""
    a = np.asarray(a)
    n, f = a.shape
    order = np.argsort(a, axis=1, kind="stable")
    sorted_a = np.take_along_axis(a, order, axis=1)
    ranks = np.empty((n, f), dtype=np.float64)
    for i in range(n):  # one row at a time: tie groups from the sorted row, vectorised within it
        new = np.concatenate([[True], sorted_a[i, 1:] != sorted_a[i, :-1]])
        group = np.cumsum(new) - 1
        starts = np.flatnonzero(new)
        ends = np.append(starts[1:], f)
        average = (starts + ends + 1) / 2.0
        ranks[i, order[i]] = average[group]
    return ranks


def spearman(a, b) -> np.ndarray:
    """Spearman rank correlation of each sample's flattened maps ``a`` and ``b`` ``(N, ...)``."""
    a = np.asarray(a).reshape(len(a), -1)
    b = np.asarray(b).reshape(len(b), -1)
    if a.shape != b.shape:
        raise InputShapeError(f"maps to compare differ in shape: {a.shape} and {b.shape}")
    ra, rb = rankdata(a), rankdata(b)
    ra -= ra.mean(axis=1, keepdims=True)
    rb -= rb.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (ra * rb).sum(axis=1) / np.sqrt((ra * ra).sum(axis=1) * (rb * rb).sum(axis=1))


def _uniform_filter(a: np.ndarray, size: int) -> np.ndarray:
    """SciPy's ``uniform_filter`` (mode ``reflect``) over every axis of ``a``."""
    out = a
    half = size // 2
    for axis in range(a.ndim):
        width = [(0, 0)] * a.ndim
        width[axis] = (half, size - 1 - half)
        padded = np.pad(out, width, mode="symmetric")
        cum = np.cumsum(padded, axis=axis)
        cum = np.concatenate([np.zeros_like(np.take(cum, [0], axis=axis)), cum], axis=axis)
        n = out.shape[axis]
        out = (np.take(cum, np.arange(size, size + n), axis=axis) - np.take(cum, np.arange(n), axis=axis)) / size
    return out


def ssim_one(a: np.ndarray, b: np.ndarray, win_size: int = 7, data_range: float | None = None) -> float:
    """SSIM of two arrays of one shape (any rank, each axis at least ``win_size`` long)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if data_range is None:
        data_range = float(abs(max(a.max(), b.max()) - min(a.min(), b.min())))
    if min(a.shape) < win_size:
        raise InputShapeError(f"SSIM needs maps at least {win_size} wide on every axis; got {a.shape}")
    npts = win_size ** a.ndim
    cov_norm = npts / (npts - 1)
    ux, uy = _uniform_filter(a, win_size), _uniform_filter(b, win_size)
    uxx, uyy, uxy = _uniform_filter(a * a, win_size), _uniform_filter(b * b, win_size), _uniform_filter(a * b,
                                                                                                         win_size)
    vx, vy, vxy = cov_norm * (uxx - ux * ux), cov_norm * (uyy - uy * uy), cov_norm * (uxy - ux * uy)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux ** 2 + uy ** 2 + c1) * (vx + vy + c2))
    pad = (win_size - 1) // 2
    crop = tuple(slice(pad, d - pad) for d in s.shape)
    return float(s[crop].mean())


def ssim(a, b, win_size: int = 7) -> np.ndarray:
    """SSIM per sample of ``a`` and ``b`` ``(N, ...)`` (each sample's array as it is: pass ``(N, H, W)`` pixel maps
    for the image SSIM, flattened ``(N, F)`` maps for Quantus's 1-D one)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise InputShapeError(f"maps to compare differ in shape: {a.shape} and {b.shape}")
    return np.array([ssim_one(x, y, win_size) for x, y in zip(a, b)])


SIMILARITIES = {"spearman": spearman, "ssim": ssim}


# ---------------------------------------------------------------------------------------------- complexity
def _flat_abs_normalised(relevance) -> np.ndarray:
    a = np.abs(np.asarray(relevance, dtype=np.float64)).reshape(len(relevance), -1)
    peak = a.max(axis=1, keepdims=True)
    return np.divide(a, peak, out=np.zeros_like(a), where=peak > 0)


def sparseness(relevance) -> Scores:
    """Sparseness (Chalasani et al. 2020; Quantus ``Sparseness``): the Gini index of ``|R|`` (each map divided by its
    largest ``|R|``, plus 1e-7 as Quantus adds), over the map's elements as given; 1 is sparsest."""
    a = np.sort(_flat_abs_normalised(relevance) + 1e-7, axis=1)
    f = a.shape[1]
    k = np.arange(1, f + 1)
    gini = ((2 * k - f - 1) * a).sum(axis=1) / (f * a.sum(axis=1))
    return Scores("sparseness", gini, higher_is_better=True)


def complexity(relevance) -> Scores:
    """Complexity (Bhatt et al. 2020; Quantus ``Complexity``): the entropy of ``|R_i| / sum |R|``; lower is
    simpler."""
    a = _flat_abs_normalised(relevance)
    total = a.sum(axis=1, keepdims=True)
    p = np.divide(a, total, out=np.zeros_like(a), where=total > 0)
    return Scores("complexity", -(p * np.log(p + 1e-12)).sum(axis=1), higher_is_better=False)
