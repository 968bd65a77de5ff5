"""Separable per-axis resampling and its adjoint, shared by Resize/Upsample and Pad (edge, reflect, wrap).

Along one axis, output position ``o`` reads the taps ``index[o, t]`` of the input with the weights ``weight[o, t]``:
``y[…, o, …] = Σ_t weight[o, t] · x[…, index[o, t], …]``. Nearest-neighbour resizing and padding by edge, reflect
or wrap are one tap of weight 1 (a gather: ``weight`` is ``None``), linear interpolation two taps, cubic four. An
N-D resampling is one such step per axis.

The adjoint (:func:`scatter_axis`) sums ``g·weight`` into the source positions with one ``bincount`` over flat
indices, so a source position read by several outputs receives the sum of their gradients (or relevance). Loops run
over taps only; every step is vectorised over the whole tensor.
"""
from __future__ import annotations

import math


def gather_axis(xp, x, axis: int, index, weight=None):
    """``y[…, o, …] = Σ_t weight[o, t] · x[…, index[o, t], …]`` along ``axis`` (``index``/``weight`` ``(O, T)``;
    ``weight`` ``None`` for a plain gather, ``T`` = 1)."""
    if weight is None:
        return xp.take(x, index[:, 0], axis=axis)
    shape = [1] * x.ndim
    shape[axis] = index.shape[0]
    out = None
    for t in range(index.shape[1]):
        term = xp.take(x, index[:, t], axis=axis) * weight[:, t].reshape(shape)
        out = term if out is None else out + term
    return out


def scatter_axis(xp, g, axis: int, index, weight, size: int):
    """Adjoint of :func:`gather_axis`: ``g`` ``(…, O, …)`` summed back into ``(…, size, …)``."""
    moved = xp.moveaxis(g, axis, -1)
    lead = moved.shape[:-1]
    rows = math.prod(lead)
    o, taps = index.shape
    moved = moved.reshape(rows, o, 1)
    values = xp.broadcast_to(moved, (rows, o, taps)) if weight is None else moved * weight.reshape(1, o, taps)
    flat = (xp.arange(rows, dtype=index.dtype).reshape(rows, 1, 1) * size + index.reshape(1, o, taps)).reshape(-1)
    out = xp.bincount(flat, weights=values.reshape(-1), minlength=rows * size)
    return xp.moveaxis(out.astype(g.dtype, copy=False).reshape(lead + (size,)), -1, axis)
