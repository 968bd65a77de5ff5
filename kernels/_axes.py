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

import numpy as np


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


def emit_axis_size(xp, x, axis: int):
    """``x.shape[axis]`` as a 1-element int64 tensor (a constant when static, else read with ``Shape``)."""
    size = x.shape[axis]
    return xp.ints([size]) if isinstance(size, int) else xp.take(xp.shape_of(x), xp.ints([axis]))


def emit_scatter_axis(xp, g, x, axis: int, positions):
    """Adjoint of ``take(x, positions, axis)`` for a 1-D ``positions`` without repeats, as ONNX: ``g`` placed at
    ``positions`` along ``axis`` in zeros shaped like ``g`` with ``x``'s size there. Contiguous constant positions
    are a ``Pad``; others a ``ScatterElements`` (indices broadcast to ``g``'s shape with ``Expand``)."""
    at = positions.const
    size = x.shape[axis]
    if at is not None and isinstance(size, int) and at.size and (at.size == 1 or (at[1:] - at[:-1] == 1).all()):
        pads = [0] * (2 * g.ndim)
        pads[axis], pads[g.ndim + axis] = int(at[0]), size - int(at[-1]) - 1
        if not any(pads):
            return g
        shape = tuple(size if i == axis else d for i, d in enumerate(g.shape))
        return xp.node("Pad", [g, xp.ints(pads)], {"mode": "constant"}, shape=shape)
    rank = g.ndim
    target = xp.where(xp.arange(rank) == axis, xp.shape_of(x) if x.ndim == rank else emit_axis_size(xp, x, axis),
                      xp.shape_of(g))
    zeros = xp.node("Expand", [xp.zeros((), dtype=g.dtype), target],
                    shape=tuple(size if i == axis else d for i, d in enumerate(g.shape)))
    column = xp.reshape(positions, tuple(-1 if i == axis else 1 for i in range(rank)))
    index = xp.node("Expand", [column, xp.shape_of(g)], shape=tuple(g.shape))
    return xp.node("ScatterElements", [zeros, index, g], {"axis": axis}, shape=zeros.shape)


def emit_slice_positions(xp, x, axis: int, start, end, step):
    """The positions along ``axis`` that ``Slice(x, start, end, axis, step)`` reads (1-element int64 operands):
    folded in numpy when all are constants and the size static, else ``Slice(Range(0, size, 1), …)``."""
    size = x.shape[axis]
    if isinstance(size, int) and all(v.const is not None for v in (start, end, step)):
        window = slice(int(start.const.reshape(-1)[0]), int(end.const.reshape(-1)[0]), int(step.const.reshape(-1)[0]))
        return xp.const(np.arange(size, dtype=np.int64)[window])
    length = xp.reshape(emit_axis_size(xp, x, axis), ())
    every = xp.node("Range", [xp.const(np.int64(0)), length, xp.const(np.int64(1))], dtype=np.int64,
                    shape=(size,))
    return xp.node("Slice", [every, start, end, xp.ints([0]), step], dtype=np.int64, shape=None)
