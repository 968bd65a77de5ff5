"""Localisation: does the relevance fall on the object? Needs a mask (or a box) per sample.

Maps and masks are compared per pixel: the relevance is summed over channels (:func:`~.common.pixel_map`) unless it
already has the mask's shape, and a mask may be given per pixel ``(N, H, W)`` or, like Quantus's ``s_batch``, with
a channel axis of one. :func:`boxes_to_masks` turns ``(y0, x0, y1, x1)`` boxes into masks. An empty mask gives
NaN for that sample.
"""
from __future__ import annotations

import numpy as np

from ..errors import InputShapeError
from .common import Scores, pixel_map


def boxes_to_masks(boxes, height: int, width: int) -> np.ndarray:
    """``(N, H, W)`` boolean masks from one box ``(y0, x0, y1, x1)`` per sample (end-exclusive pixel indices)."""
    boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
    ys, xs = np.arange(height)[None, :, None], np.arange(width)[None, None, :]
    y0, x0, y1, x1 = (boxes[:, k, None, None] for k in range(4))
    return (ys >= y0) & (ys < y1) & (xs >= x0) & (xs < x1)


def _maps_and_masks(relevance, masks, x=None, layout=None) -> tuple[np.ndarray, np.ndarray]:
    masks = np.asarray(masks).astype(bool)
    a = np.asarray(relevance, dtype=np.float64)
    if masks.ndim == 4 and masks.shape[1] == 1:
        masks = masks[:, 0]
    elif masks.ndim == 4 and masks.shape[3] == 1:
        masks = masks[..., 0]
    if a.shape != masks.shape:
        a = pixel_map(a, np.empty(a.shape, dtype=np.float32) if x is None else np.asarray(x), layout)
    if a.shape != masks.shape:
        raise InputShapeError(f"masks of shape {masks.shape} do not fit relevance of shape {np.shape(relevance)}")
    return a.reshape(len(a), -1), masks.reshape(len(masks), -1)


def _empty_nan(values: np.ndarray, masks: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    values[masks.sum(axis=1) == 0] = np.nan
    return values


def dilate(masks: np.ndarray, pixels: int) -> np.ndarray:
    """Grow ``(N, H, W)`` masks by ``pixels`` (a square neighbourhood)."""
    out = masks.copy()
    for _ in range(int(pixels)):
        grown = out.copy()
        grown[:, 1:] |= out[:, :-1]
        grown[:, :-1] |= out[:, 1:]
        grown[:, :, 1:] |= grown[:, :, :-1].copy()
        grown[:, :, :-1] |= grown[:, :, 1:].copy()
        out = grown
    return out


def pointing_game(relevance, masks, *, tolerance: int = 0, x=None, layout=None) -> Scores:
    """Pointing game (Zhang et al. 2018; Quantus ``PointingGame``): 1 if a pixel of largest relevance lies in the
    mask grown by ``tolerance`` pixels (Zhang et al. use 15), else 0."""
    a, m = _maps_and_masks(relevance, masks, x, layout)
    if tolerance:
        shape = np.asarray(masks).shape
        m = dilate(m.reshape(len(m), *shape[-2:]), tolerance).reshape(len(m), -1)
    hit = np.any(m & (a == a.max(axis=1, keepdims=True)), axis=1)
    return Scores("pointing_game", _empty_nan(hit, m), higher_is_better=True)


def relevance_mass_accuracy(relevance, masks, *, x=None, layout=None) -> Scores:
    """Relevance mass accuracy (Arras et al. 2021): ``sum_{i in mask} R+_i / sum_i R+_i`` (for non-negative maps,
    Quantus's ``RelevanceMassAccuracy``); 1 when all positive relevance lies in the mask."""
    a, m = _maps_and_masks(relevance, masks, x, layout)
    pos = np.clip(a, 0, None)
    total = pos.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        values = np.where(total > 0, (pos * m).sum(axis=1) / np.where(total > 0, total, 1), np.nan)
    return Scores("relevance_mass_accuracy", _empty_nan(values, m), higher_is_better=True)


def relevance_rank_accuracy(relevance, masks, *, x=None, layout=None) -> Scores:
    """Relevance rank accuracy (Arras et al. 2021; Quantus ``RelevanceRankAccuracy``): the share of the ``|mask|``
    most relevant pixels that lie in the mask."""
    a, m = _maps_and_masks(relevance, masks, x, layout)
    size = m.sum(axis=1)
    order = np.argsort(-a, axis=1)
    inside = np.take_along_axis(m, order, axis=1)
    top = np.arange(a.shape[1])[None, :] < size[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        values = (inside & top).sum(axis=1) / size
    return Scores("relevance_rank_accuracy", _empty_nan(values, m), higher_is_better=True)


def outside_inside_ratio(relevance, masks, *, x=None, layout=None) -> Scores:
    """The RAP paper's outside-inside relevance ratio (Nam et al. 2020): the mean positive relevance per pixel
    outside the mask over the mean inside (``values``, lower is better), and the same for negative relevance and the
    shares of positive and negative relevance inside the mask (``extra``)."""
    a, m = _maps_and_masks(relevance, masks, x, layout)
    pos, neg = np.clip(a, 0, None), np.clip(-a, 0, None)
    inside, outside = m.sum(axis=1), (~m).sum(axis=1)

    def ratio(part):
        mean_in = (part * m).sum(axis=1) / np.maximum(inside, 1)
        mean_out = (part * ~m).sum(axis=1) / np.maximum(outside, 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(mean_in > 0, mean_out / np.where(mean_in > 0, mean_in, 1), np.nan)

    def share(part):
        total = part.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(total > 0, (part * m).sum(axis=1) / np.where(total > 0, total, 1), np.nan)

    return Scores("outside_inside_ratio", _empty_nan(ratio(pos), m), higher_is_better=False,
                  extra={"negative_ratio": _empty_nan(ratio(neg), m), "positive_inside": _empty_nan(share(pos), m),
                         "negative_inside": _empty_nan(share(neg), m)})
