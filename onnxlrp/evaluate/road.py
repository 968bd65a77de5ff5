"""ROAD: remove and debias (Rong et al. 2022; Quantus ``ROAD``), with noisy linear imputation.

A removed pixel becomes the weighted mean of its 8 neighbours (weights 1/6 for the 4 direct and 1/12 for the 4
diagonal ones, fewer at the border), solved for all removed pixels at once as a sparse linear system, plus Gaussian
noise (``noise``, default 0.01): the imputed values carry no trace of the mask's shape. The system ``M v = c`` is
symmetric positive definite (every group of removed pixels touches a kept pixel), so it is solved with
Jacobi-preconditioned conjugate gradients on the pixel grid, all removal levels of a sample and all channels at
once (the stencil is 8 shifted array adds: no loop over pixels, no SciPy); the residual is driven below 1e-10
relative, which agrees with Quantus's direct ``spsolve`` to about 1e-9.
"""
from __future__ import annotations

import numpy as np

from ..errors import MethodError
from .common import Scores, as_inputs, feature_order, from_nchw, pixel_map, ranks_of, to_nchw
from .model import as_runner, as_targets, check_output

#: (dy, dx) -> weight: the 8-neighbourhood of the ROAD paper and Quantus
NEIGHBOURS = (((1, 1), 1 / 12), ((0, 1), 1 / 6), ((-1, 1), 1 / 12), ((1, -1), 1 / 12), ((0, -1), 1 / 6),
              ((-1, -1), 1 / 12), ((1, 0), 1 / 6), ((-1, 0), 1 / 6))


def _stencil(a: np.ndarray) -> np.ndarray:
    """Weighted sum of each pixel's in-grid neighbours (zeros outside the grid)."""
    h, w = a.shape[-2:]
    p = np.pad(a, [(0, 0)] * (a.ndim - 2) + [(1, 1), (1, 1)])

    def at(dy, dx):
        return p[..., 1 + dy:1 + dy + h, 1 + dx:1 + dx + w]

    direct = at(0, 1) + at(0, -1) + at(1, 0) + at(-1, 0)
    diagonal = at(1, 1) + at(1, -1) + at(-1, 1) + at(-1, -1)
    return direct * (1 / 6) + diagonal * (1 / 12)


def impute(x: np.ndarray, removed: np.ndarray, *, tol: float = 1e-10, max_iter: int | None = None) -> np.ndarray:
    """Linear imputation: ``x`` ``(B, C, H, W)`` with the pixels where ``removed`` ``(B, H, W)`` is true replaced by
    the solution of ``v_i * sum_j w_ij = sum_j w_ij v_j`` (``j`` the in-grid neighbours, kept pixels at their
    values), without noise."""
    x = np.asarray(x, dtype=np.float64)
    u = removed[:, None].astype(np.float64)  # 1 where unknown
    known = x * (1.0 - u)
    diag = _stencil(np.ones(x.shape[-2:]))[None, None]  # sum of in-grid neighbour weights
    rhs = _stencil(known) * u

    def apply(v):
        return (diag * v - _stencil(v)) * u

    v = np.zeros_like(x)
    r = rhs.copy()
    inv = u / diag
    z = r * inv
    p = z.copy()
    rz = (r * z).sum(axis=(-2, -1), keepdims=True)
    norm = np.sqrt((rhs * rhs).sum(axis=(-2, -1), keepdims=True))
    limit = max_iter or 20 * int(np.sqrt(x.shape[-2] * x.shape[-1])) + 200
    for _ in range(limit):
        if np.all(np.sqrt((r * r).sum(axis=(-2, -1), keepdims=True)) <= tol * np.maximum(norm, 1e-300)):
            break
        q = apply(p)
        pq = (p * q).sum(axis=(-2, -1), keepdims=True)
        alpha = np.divide(rz, pq, out=np.zeros_like(rz), where=pq != 0)
        v += alpha * p
        r -= alpha * q
        z = r * inv
        rz_new = (r * z).sum(axis=(-2, -1), keepdims=True)
        beta = np.divide(rz_new, rz, out=np.zeros_like(rz), where=rz != 0)
        p = z + beta * p
        rz = rz_new
    return known + v * u


def road(model, x, target, relevance, *, percentages=None, noise: float = 0.01, order: str = "morf",
         output: str = "probability", seed: int = 0, layout: str | None = None, noise_values=None) -> Scores:
    """ROAD (Rong et al. 2022; Quantus ``ROAD``).

    For each percentage ``p`` (default 1, 3, ..., 99) the ``int(H*W*p/100)`` pixels ranked first (``order``,
    channel-summed relevance: for one-channel inputs Quantus's flattened ranking) are imputed as above, plus
    ``noise`` times standard normal noise (seeded; ``noise_values`` ``(N, P, C, H, W)`` supplies it instead).
    ``curve`` is ``f_c`` at each percentage, ``extra["still_predicted"]`` ``(N, P)`` whether the model still
    predicts the target: its mean over samples is Quantus's result (a dict percentage -> accuracy). ``values`` is
    the mean of the curve (lower is better for MoRF).
    """
    check_output(output)
    runner = as_runner(model)
    x = as_inputs(x)
    targets = as_targets(target, len(x), runner, x)
    percentages = list(range(1, 100, 2)) if percentages is None else [float(p) for p in percentages]
    if not percentages or min(percentages) < 0 or max(percentages) >= 100:
        raise MethodError(f"percentages must lie in [0, 100); got {percentages!r}")
    rng = np.random.default_rng(seed)
    xc, axis = to_nchw(x, layout)
    pixel = pixel_map(relevance, x, layout)
    n, channels, height, width = xc.shape
    pixels = height * width
    ranks = ranks_of(feature_order(pixel.reshape(n, pixels), order, rng))
    counts = np.array([int(pixels * p / 100) for p in percentages])
    curve = np.empty((n, len(percentages)))
    still = np.empty((n, len(percentages)), dtype=bool)
    for i in range(n):
        removed = (ranks[i][None, :] < counts[:, None]).reshape(len(counts), height, width)
        filled = impute(np.repeat(xc[i:i + 1], len(counts), axis=0), removed)
        if noise_values is not None:
            extra_noise = np.asarray(noise_values[i], dtype=np.float64).reshape(filled.shape)
        else:
            extra_noise = noise * rng.standard_normal(filled.shape)
        filled = np.where(removed[:, None], filled + extra_noise, xc[i:i + 1]).astype(x.dtype)
        out = runner.outputs(from_nchw(filled, axis))
        values = out if output == "logit" else _softmax(out)
        curve[i] = values[:, targets[i]]
        still[i] = out.argmax(axis=1) == targets[i]
    return Scores("road", curve.mean(axis=1), higher_is_better=(order == "lerf"), curve=curve,
                  steps=np.asarray(percentages) / 100,
                  extra={"still_predicted": still, "accuracy": still.mean(axis=0), "order": order, "output": output})


def _softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)
