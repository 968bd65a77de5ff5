"""Relevance maps for a dataset audit: channels summed to one map per input, resampled to a fixed size.

:func:`pixel_maps` turns an input-shaped relevance into one map per sample: ``(N, C, H, W)`` (``"NCHW"``) or
``(N, H, W, C)`` (``"NHWC"``) summed over C; ``(N, C, L)`` (``"NCL"``) or ``(N, L, C)`` (``"NLC"``) summed over C to
``(N, 1, L)``; ``(N, H, W)`` as it is; ``(N, L)`` as ``(N, 1, L)``. Relevance is a signed additive quantity, so
channels are summed (as zennit and CoRelAy do), not their absolute values.

:func:`downsample` resamples ``(N, H, W)`` maps to ``(N, size, size)`` by area averaging. Output cell ``i`` along an
axis of length ``H`` covers the interval ``[i H / size, (i + 1) H / size)`` of input pixels; its value is the
overlap-weighted mean of the pixels it covers,

    out[n, i, j] = sum_{h, w} A_H[i, h] A_W[j, w] maps[n, h, w],
    A_H[i, h] = |[h, h + 1) ∩ [i H / size, (i + 1) H / size)| / (H / size)    (each row sums to 1)

which is the block mean when ``H`` is a multiple of ``size`` (``A_H`` then holds ``size / H`` on each block),
weighs the pixels cut by a cell's border by the share they lie inside otherwise (exact area coverage, as OpenCV's
``INTER_AREA`` shrinks; PIL's ``BOX`` takes or drops whole pixels instead), and for an axis shorter than
``size`` (upsampling) gives each output cell the pixel it lies in, or the area-weighted mean of the two it straddles.
It is an average: the map's mean is kept, its sum is scaled by ``size^2 / (H W)``.
"""
from __future__ import annotations

import numpy as np

from ..errors import InputShapeError, UsageError

#: layouts :func:`pixel_maps` knows, and the axis of each that holds the channels
CHANNEL_AXIS = {"NCHW": 1, "NHWC": 3, "NCL": 1, "NLC": 2}


def pixel_maps(relevance: np.ndarray, layout: str = "NCHW") -> np.ndarray:
    """One map per sample: ``(N, H, W)`` from a 4-D relevance in ``layout`` ``"NCHW"``/``"NHWC"``, ``(N, 1, L)``
    from a 3-D one in ``"NCL"``/``"NLC"`` or from ``(N, L)``; a 3-D relevance under an image layout is taken as
    ``(N, H, W)`` maps already and returned as it is."""
    relevance = np.asarray(relevance)
    if layout not in CHANNEL_AXIS:
        raise UsageError(f"layout must be one of {', '.join(map(repr, CHANNEL_AXIS))}; got {layout!r}")
    if relevance.ndim == 2:
        return relevance[:, None, :]
    if relevance.ndim == 3:
        return relevance.sum(axis=CHANNEL_AXIS[layout])[:, None, :] if layout in ("NCL", "NLC") else relevance
    if relevance.ndim == 4 and layout in ("NCHW", "NHWC"):
        return relevance.sum(axis=CHANNEL_AXIS[layout])
    raise InputShapeError(f"relevance of shape {tuple(relevance.shape)} cannot be made into maps with layout "
                          f"{layout!r}; expected (N, L), (N, H, W), (N, C, L)/(N, L, C) or (N, C, H, W)/(N, H, W, C)")


def area_weights(length: int, size: int) -> np.ndarray:
    """``(size, length)`` matrix ``A`` with ``A[i, h]`` = the share of output cell ``i``'s interval
    ``[i length / size, (i + 1) length / size)`` that input pixel ``h`` covers (rows sum to 1)."""
    edges = np.arange(size + 1) * (length / size)
    start, stop = edges[:-1, None], edges[1:, None]
    pixel = np.arange(length)[None, :]
    overlap = np.clip(np.minimum(stop, pixel + 1) - np.maximum(start, pixel), 0.0, None)
    return overlap / (length / size)


def downsample(maps: np.ndarray, size: int) -> np.ndarray:
    """``(N, H, W)`` maps -> ``(N, size, size)`` float32 by area averaging (module docstring: exact block means
    when ``H`` and ``W`` are multiples of ``size``, fractional weights otherwise, box upsampling along an axis
    shorter than ``size``). Maps already ``size x size`` come back unchanged (as float32)."""
    maps = np.asarray(maps)
    if maps.ndim != 3:
        raise InputShapeError(f"maps must be (N, H, W); got shape {tuple(maps.shape)}")
    if not (isinstance(size, (int, np.integer)) and size >= 1):
        raise UsageError(f"size must be a positive integer; got {size!r}")
    n, height, width = maps.shape
    if (height, width) == (size, size):
        return maps.astype(np.float32)
    if 0 in (height, width):
        raise InputShapeError(f"maps must have at least one pixel; got shape {tuple(maps.shape)}")
    rows, cols = area_weights(height, size), area_weights(width, size)
    out = rows @ maps.astype(np.float64) @ cols.T
    return out.astype(np.float32)
