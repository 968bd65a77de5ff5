"""Faithfulness: remove what the map calls relevant and watch the explained output fall.

Each function takes the model (a path, :class:`~onnxlrp.engine.session.Session`, :class:`~onnxlrp.Explainer` or
:class:`~.model.ModelRunner`), the inputs ``x`` ``(N, ...)``, the explained class per sample (``None``: the
prediction) and the relevance (``x``'s shape, or without its channel axis), and returns :class:`~.common.Scores`.
All perturbation steps of a sample are built as one array and run through onnxruntime in memory-bounded batches
(:meth:`~.model.ModelRunner.score_rows`); masks come from rank comparisons, never from loops over pixels.

Definitions and their Quantus 0.6 counterparts are in ``../shared/EVALUATION.md``; ``output="probability"`` is
Quantus's ``softmax=True`` (its default), ``"logit"`` its ``softmax=False``.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import MethodError
from .common import (
    Scores,
    as_inputs,
    baseline_values,
    check_positive_int,
    feature_order,
    from_nchw,
    ranks_of,
    relevance_like,
    to_nchw,
    trapezoid,
)
from .model import as_runner, as_targets, check_output


def _prepare(model, x, target, relevance, output):
    check_output(output)
    runner = as_runner(model)
    x = as_inputs(x)
    targets = as_targets(target, len(x), runner, x)
    a = relevance_like(relevance, x)
    return runner, x, targets, a


def _flip_curves(runner, x_flat, sample_shape, targets, ranks, thresholds, base, output) -> np.ndarray:
    """``f_c`` after replacing, for each threshold ``t``, the features of rank ``< t`` by ``base``: ``(N, T)``."""
    curves = np.empty((len(x_flat), len(thresholds)))
    for n in range(len(x_flat)):
        rank, row, fill = ranks[n], x_flat[n], base[n]

        def make(index, rank=rank, row=row, fill=fill):
            mask = rank[None, :] < thresholds[index][:, None]
            return np.where(mask, fill[None, :], row[None, :]).reshape(len(index), *sample_shape)

        curves[n] = runner.score_rows(make, len(thresholds), targets[n], sample_shape, output)
    return curves


# ---------------------------------------------------------------------------------------------- pixel flipping
def pixel_flipping(model, x, target, relevance, *, features_in_step: int = 1, baseline="black", order: str = "morf",
                   output: str = "probability", abs: bool = False, seed: int = 0) -> Scores:
    """Pixel flipping (Bach et al. 2015; Quantus ``PixelFlipping``).

    Features (elements of ``x``; a map without channels is repeated over them) are sorted by relevance and replaced
    ``features_in_step`` at a time by ``baseline``; ``curve`` holds ``f_c`` before and after each of the
    ``L = ceil(F / features_in_step)`` steps, ``(N, L+1)``. ``curve[:, 1:]`` is Quantus's result and ``values``
    its ``return_auc_per_sample=True`` figure: the trapezoid area of ``curve[:, 1:]`` with unit spacing (lower is
    better for MoRF). ``extra["auc_fraction"]`` is the area of the whole curve over the fraction removed (0..1).
    """
    runner, x, targets, a = _prepare(model, x, target, relevance, output)
    n, f = len(x), x[0].size
    step = check_positive_int("features_in_step", features_in_step, f)
    rng = np.random.default_rng(seed)
    scores = a.reshape(n, f)
    scores = np.abs(scores) if abs else scores
    ranks = ranks_of(feature_order(scores, order, rng))
    x_flat = x.reshape(n, f)
    base = np.broadcast_to(baseline_values(x_flat, baseline, rng), (n, f))
    steps = math.ceil(f / step)
    thresholds = np.minimum(np.arange(steps + 1) * step, f)
    curve = _flip_curves(runner, x_flat, x.shape[1:], targets, ranks, thresholds, base, output)
    fraction = thresholds / f
    return Scores("pixel_flipping", trapezoid(curve[:, 1:]), higher_is_better=(order == "lerf"), curve=curve,
                  steps=fraction, extra={"order": order, "output": output, "features_in_step": step,
                                         "auc_fraction": np.trapezoid(curve, fraction, axis=1)})


# ---------------------------------------------------------------------------------------------- region perturbation
def _padding(size: int, patch: int) -> tuple[int, int]:
    """Quantus's ``get_padding_size``: the padding that makes ``size`` a multiple of ``patch``, split floor/ceil."""
    extra = (-size) % patch
    return extra // 2, extra - extra // 2


def patch_labels(height: int, width: int, patch: int) -> tuple[np.ndarray, int]:
    """``(H, W)`` patch index of every pixel, patches laid row by row over the input padded as Quantus pads it
    (centred), and the number of patches."""
    top, bottom = _padding(height, patch)
    left, right = _padding(width, patch)
    rows, cols = (height + top + bottom) // patch, (width + left + right) // patch
    labels = ((np.arange(height)[:, None] + top) // patch) * cols + (np.arange(width)[None, :] + left) // patch
    return labels, rows * cols


def region_perturbation(model, x, target, relevance, *, patch_size: int = 8, regions_evaluation: int = 100,
                        order: str = "morf", baseline="black", output: str = "probability", random_orders: int = 3,
                        abs: bool = False, seed: int = 0, layout: str | None = None) -> Scores:
    """Region perturbation and AOPC (Samek et al. 2017; Quantus ``RegionPerturbation``).

    Non-overlapping ``patch_size`` squares (the input padded as Quantus pads it) are ranked by summed relevance and
    replaced, one more per step, by ``baseline`` for ``L = min(regions_evaluation, patches)`` steps. ``curve`` is
    ``f_c`` at steps ``0..L``; Quantus returns ``curve[:, :1] - curve[:, 1:]``. ``values`` is the per-sample
    ``AOPC = 1/(L+1) sum_k (f_c(x0) - f_c(xk))``; ``extra`` holds the same for ``random_orders`` random orders of
    the same patches (``aopc_random``, ``curve_random``, their mean over orders) and ``aopc_relative`` = AOPC minus
    the random AOPC (higher is better for MoRF).
    """
    runner, x, targets, a = _prepare(model, x, target, relevance, output)
    patch = check_positive_int("patch_size", patch_size)
    check_positive_int("regions_evaluation", regions_evaluation)
    xc, axis = to_nchw(x, layout)
    ac, _ = to_nchw(np.asarray(a), layout)
    n, _, height, width = xc.shape
    if patch > min(height, width):
        raise MethodError(f"patch_size {patch} is larger than the input ({height} x {width})")
    labels, count = patch_labels(height, width, patch)
    pixel = (np.abs(ac) if abs else ac).sum(axis=1)
    sums = np.stack([np.bincount(labels.ravel(), weights=p.ravel().astype(np.float64), minlength=count)
                     for p in pixel]).astype(ac.dtype)
    steps = min(int(regions_evaluation), count)
    rng = np.random.default_rng(seed)
    flat = xc.reshape(n, -1)
    base = np.broadcast_to(baseline_values(flat, baseline, rng), flat.shape)

    def curves(patch_order: np.ndarray) -> np.ndarray:
        # a pixel goes at step k when its patch's rank is below k: rank per pixel, repeated over the channels
        pixel_rank = ranks_of(patch_order)[:, labels.ravel()]
        ranks = np.tile(pixel_rank, (1, xc.shape[1]))
        thresholds = np.arange(steps + 1)
        out = np.empty((n, steps + 1))
        for i in range(n):
            rank, row, fill = ranks[i], flat[i], base[i]

            def make(index, rank=rank, row=row, fill=fill):
                mask = rank[None, :] < thresholds[index][:, None]
                rows = np.where(mask, fill[None, :], row[None, :]).reshape(len(index), *xc.shape[1:])
                return from_nchw(rows, axis)

            out[i] = runner.score_rows(make, steps + 1, targets[i], x.shape[1:], output)
        return out

    curve = curves(feature_order(sums, order, rng))
    aopc = (curve[:, :1] - curve).mean(axis=1)
    extra = {"order": order, "output": output, "patch_size": patch, "patches": count, "quantus": curve[:, :1] -
             curve[:, 1:]}
    if random_orders:
        randoms = [curves(feature_order(sums, "random", np.random.default_rng([seed, k])))
                   for k in range(int(random_orders))]
        random_aopc = np.mean([(c[:, :1] - c).mean(axis=1) for c in randoms], axis=0)
        extra.update(curve_random=np.mean(randoms, axis=0), aopc_random=random_aopc, aopc_relative=aopc - random_aopc)
    return Scores("region_perturbation", aopc, higher_is_better=(order != "lerf"), curve=curve,
                  steps=np.arange(steps + 1), extra=extra)


# ---------------------------------------------------------------------------------------------- insertion / deletion
def gaussian_blur(x: np.ndarray, sigma: float = 5.0, size: int = 11) -> np.ndarray:
    """``(N, C, H, W)`` blurred over H and W with a normalised Gaussian of ``size`` taps (RISE's ``klen=11,
    ksig=5``), edges reflected."""
    half = size // 2
    taps = np.exp(-0.5 * (np.arange(-half, half + 1) / sigma) ** 2)
    taps /= taps.sum()
    out = np.asarray(x, dtype=np.float64)
    for ax in (2, 3):
        width = [(0, 0)] * 4
        width[ax] = (half, half)
        padded = np.pad(out, width, mode="symmetric")
        length = out.shape[ax]
        out = sum(t * np.take(padded, np.arange(k, k + length), axis=ax) for k, t in enumerate(taps))
    return out.astype(x.dtype)


def _canvas(xc: np.ndarray, canvas) -> np.ndarray:
    if isinstance(canvas, str):
        if canvas == "blur":
            return gaussian_blur(xc)
        if canvas == "zero":
            return np.zeros_like(xc)
        raise MethodError(f"canvas must be 'blur', 'zero', a number or an array; got {canvas!r}")
    value = np.asarray(canvas, dtype=xc.dtype)
    try:
        return np.broadcast_to(value, xc.shape).copy()
    except ValueError:
        raise MethodError(f"a canvas array must broadcast to the inputs {xc.shape}; got {value.shape}") from None


def insertion_deletion(model, x, target, relevance, *, mode: str = "deletion", step: float = 0.01, canvas=None,
                       output: str = "probability", layout: str | None = None) -> Scores:
    """Deletion or insertion (Petsiuk et al. 2018, RISE).

    Pixels (all channels together) are ranked by channel-summed relevance, most relevant first, ``step`` (a
    fraction of the pixels, at least one) per step. Deletion moves them from ``x`` to ``canvas`` (default zeros);
    insertion starts from ``canvas`` (default: ``x`` blurred) and puts them back. ``curve`` is ``f_c`` over
    ``steps`` = the fraction moved (0..1); ``values`` its area (lower is better for deletion, higher for insertion).
    """
    if mode not in ("deletion", "insertion"):
        raise MethodError(f"mode must be 'deletion' or 'insertion'; got {mode!r}")
    if not (isinstance(step, (int, float)) and 0 < step <= 1):
        raise MethodError(f"step must be a fraction of the pixels in (0, 1]; got {step!r}")
    runner, x, targets, a = _prepare(model, x, target, relevance, output)
    xc, axis = to_nchw(x, layout)
    ac, _ = to_nchw(np.asarray(a), layout)
    n, channels, height, width = xc.shape
    pixels = height * width
    per = max(1, int(round(step * pixels)))
    count = math.ceil(pixels / per)
    thresholds = np.minimum(np.arange(count + 1) * per, pixels)
    pixel_rank = ranks_of(feature_order(ac.sum(axis=1).reshape(n, pixels), "morf", None))
    ranks = np.tile(pixel_rank, (1, channels))
    board = _canvas(xc, canvas if canvas is not None else ("zero" if mode == "deletion" else "blur"))
    source, fill = (xc, board) if mode == "deletion" else (board, xc)
    flat_source, flat_fill = source.reshape(n, -1), fill.reshape(n, -1)
    curve = np.empty((n, count + 1))
    for i in range(n):
        rank, row, new = ranks[i], flat_source[i], flat_fill[i]

        def make(index, rank=rank, row=row, new=new):
            mask = rank[None, :] < thresholds[index][:, None]
            return from_nchw(np.where(mask, new[None, :], row[None, :]).reshape(len(index), channels, height, width),
                             axis)

        curve[i] = runner.score_rows(make, count + 1, targets[i], x.shape[1:], output)
    fraction = thresholds / pixels
    return Scores(mode, np.trapezoid(curve, fraction, axis=1), higher_is_better=(mode == "insertion"), curve=curve,
                  steps=fraction, extra={"output": output, "pixels_per_step": per})


# ---------------------------------------------------------------------------------------------- correlation
def pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row pair of ``a`` and ``b`` ``(N, K)``; NaN where a row is constant."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    norm = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (a * b).sum(axis=1) / norm
    return np.clip(r, -1.0, 1.0)


def random_subsets(n: int, features: int, subset_size: int, runs: int, seed: int = 0) -> np.ndarray:
    """``(N, runs, subset_size)`` feature indices, each subset drawn without replacement (seeded)."""
    rng = np.random.default_rng(seed)
    return np.stack([np.stack([rng.choice(features, subset_size, replace=False) for _ in range(runs)])
                     for _ in range(n)])


def faithfulness_correlation(model, x, target, relevance, *, subset_size: int = 224, nr_runs: int = 100,
                             baseline="black", output: str = "logit", abs: bool = False, seed: int = 0,
                             subsets: np.ndarray | None = None) -> Scores:
    """Faithfulness correlation (Bhatt et al. 2020; Quantus ``FaithfulnessCorrelation``).

    For ``nr_runs`` random subsets ``S`` of ``subset_size`` features (elements of ``x``), the Pearson correlation
    between ``sum_{i in S} R_i`` and ``f_c(x) - f_c(x_{S -> baseline})``; higher is better. ``subsets``
    ``(N, runs, subset_size)`` fixes the subsets (e.g. Quantus's own draws); otherwise they are drawn with ``seed``.
    ``output`` defaults to the logit, as Quantus's ``softmax=False`` default for this measure.
    ``extra`` holds the relevance sums and output drops ``(N, runs)``.
    """
    runner, x, targets, a = _prepare(model, x, target, relevance, output)
    n, f = len(x), x[0].size
    scores = a.reshape(n, f)
    scores = np.abs(scores) if abs else scores
    if subsets is None:
        size = check_positive_int("subset_size", subset_size, f)
        subsets = random_subsets(n, f, size, check_positive_int("nr_runs", nr_runs), seed)
    subsets = np.asarray(subsets)
    if subsets.ndim != 3 or len(subsets) != n or subsets.size == 0 or subsets.min() < 0 or subsets.max() >= f:
        raise MethodError(f"subsets must be feature indices shaped (N={n}, runs, size) below {f}")
    runs = subsets.shape[1]
    x_flat = x.reshape(n, f)
    base = np.broadcast_to(baseline_values(x_flat, baseline, np.random.default_rng(seed)), (n, f))
    original = runner.scores(x, targets, output)
    drops = np.empty((n, runs))
    for i in range(n):
        row, fill, chosen = x_flat[i], base[i], subsets[i]

        def make(index, row=row, fill=fill, chosen=chosen):
            rows = np.repeat(row[None, :], len(index), axis=0)
            picked = chosen[index]
            rows[np.arange(len(index))[:, None], picked] = fill[picked]
            return rows.reshape(len(index), *x.shape[1:])

        drops[i] = original[i] - runner.score_rows(make, runs, targets[i], x.shape[1:], output)
    sums = np.take_along_axis(scores, subsets.reshape(n, -1), axis=1).reshape(n, runs, -1).sum(axis=-1)
    return Scores("faithfulness_correlation", pearson(sums, drops), higher_is_better=True,
                  extra={"relevance_sums": sums, "output_drops": drops, "output": output})


# ---------------------------------------------------------------------------------------------- completeness
def completeness(model, x, target, relevance, *, baseline=None, output: str = "logit") -> Scores:
    """Completeness / conservation: per sample ``sum R / f_c(x)`` (LRP-0, z+), or ``sum R / (f_c(x) -
    f_c(baseline))`` when a ``baseline`` input is given (integrated gradients); 1 is complete. ``extra`` holds the
    relevance sums and the explained scores."""
    runner, x, targets, a = _prepare(model, x, target, relevance, output)
    total = np.asarray(a, dtype=np.float64).reshape(len(x), -1).sum(axis=1)
    score = runner.scores(x, targets, output)
    if baseline is not None:
        b = np.broadcast_to(np.asarray(baseline, dtype=x.dtype), x.shape)
        score = score - runner.scores(np.ascontiguousarray(b), targets, output)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(score != 0, total / np.where(score == 0, 1, score), np.nan)
    return Scores("completeness", ratio, higher_is_better=None,
                  extra={"relevance_sum": total, "score": score, "output": output})
