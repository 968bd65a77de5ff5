"""What every measure shares: the result type, relevance shaped like the input, feature orders, baselines, layouts.

Conventions (``../shared/EVALUATION.md``): measures take arrays ``(x, target, relevance)`` plus the model, return
per-sample values and, where there is one, the curve; random choices take a ``seed`` (``numpy.random.default_rng``)
so a rerun gives the same numbers. Feature orders use :func:`numpy.argsort` on ``-R`` (MoRF) or ``R`` (LeRF) with
numpy's default kind, exactly as Quantus 0.6 sorts, so that ties (zero relevance) fall in the same order.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import InputShapeError, MethodError

ORDERS = ("morf", "lerf", "random")
BASELINES = ("black", "white", "mean", "uniform", "zero")


@dataclass
class Scores:
    """One measure's result for a batch.

    ``values`` holds one number per sample (NaN where it is undefined, e.g. an empty mask); ``curve`` the
    per-sample curve ``(N, L+1)`` where the measure has one (step 0 = the unperturbed input), with ``steps`` its
    x-axis; ``higher_is_better`` says how to rank ``values`` (``None``: not a ranking, as for completeness);
    ``extra`` holds the measure's other outputs (a random baseline's curve and values, Quantus's form of the
    result, ...).
    """

    name: str
    values: np.ndarray
    higher_is_better: bool | None
    curve: np.ndarray | None = None
    steps: np.ndarray | None = None
    extra: dict = field(default_factory=dict)

    def mean(self) -> float:
        """The mean over samples, ignoring NaN (NaN when every sample is NaN)."""
        v = np.asarray(self.values, dtype=np.float64)
        return float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")


def as_inputs(x) -> np.ndarray:
    """``x`` as a floating-point batch ``(N, ...)``."""
    x = np.asarray(x)
    if x.dtype.kind != "f":
        raise InputShapeError(f"the inputs must be a floating-point array; got dtype {x.dtype}")
    if x.ndim < 2 or len(x) == 0:
        raise InputShapeError(f"the inputs must be a batch (N, ...) of at least one sample; got shape {x.shape}")
    if not np.isfinite(x).all():
        raise InputShapeError("the inputs contain NaN or inf")
    return x


def relevance_like(relevance, x: np.ndarray) -> np.ndarray:
    """``relevance`` broadcast to ``x``'s shape, as Quantus expands a map without (or with one) channel axis: a map
    shaped ``(N, H, W)`` or ``(N, 1, H, W)`` is repeated over an NCHW input's channels ((N, H, W, 1) over NHWC)."""
    a = np.asarray(relevance)
    if a.dtype.kind not in "fiu":
        raise InputShapeError(f"relevance must be numeric; got dtype {a.dtype}")
    if a.shape == x.shape:
        return a
    if len(a) != len(x):
        raise InputShapeError(f"relevance has {len(a)} samples but the inputs have {len(x)}")
    if a.ndim == x.ndim - 1:
        if a.shape[1:] == x.shape[2:]:
            a = a[:, None]
        elif a.shape[1:] == x.shape[1:-1]:
            a = a[..., None]
    try:
        return np.broadcast_to(a, x.shape)
    except ValueError:
        raise InputShapeError(f"relevance of shape {np.shape(relevance)} does not fit inputs of shape "
                              f"{x.shape}") from None


def channel_axis(x: np.ndarray, layout: str | None = None) -> int | None:
    """The channel axis of an image batch: 1 (NCHW), 3 (NHWC), or ``None`` for ``(N, H, W)`` and other ranks.
    ``layout`` decides; otherwise a 4-D batch is NHWC when its last axis has 1, 3 or 4 entries and its second not."""
    if layout is not None:
        layout = layout.upper()
        if layout not in ("NCHW", "NHWC"):
            raise MethodError(f"layout must be 'NCHW' or 'NHWC'; got {layout!r}")
        if x.ndim != 4:
            raise InputShapeError(f"layout {layout} needs 4-D inputs; got shape {x.shape}")
        return 1 if layout == "NCHW" else 3
    if x.ndim != 4:
        return None
    if x.shape[3] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
        return 3
    return 1


def pixel_map(relevance, x: np.ndarray, layout: str | None = None) -> np.ndarray:
    """Relevance per pixel, ``(N, H, W)``: summed over the channel axis of an image batch (``(N, H, W)`` maps and
    inputs are used as they are)."""
    a = relevance_like(relevance, x)
    axis = channel_axis(x, layout)
    if axis is None:
        if x.ndim != 3:
            raise InputShapeError(f"this measure works on images (N, C, H, W), (N, H, W, C) or (N, H, W); got "
                                  f"inputs of shape {x.shape}")
        return np.asarray(a)
    return np.asarray(a).sum(axis=axis)


def to_nchw(x: np.ndarray, layout: str | None = None) -> tuple[np.ndarray, int | None]:
    """``x`` as ``(N, C, H, W)`` (a view), and its channel axis to undo it with :func:`from_nchw`."""
    axis = channel_axis(x, layout)
    if axis is None:
        if x.ndim != 3:
            raise InputShapeError(f"this measure works on images (N, C, H, W), (N, H, W, C) or (N, H, W); got "
                                  f"inputs of shape {x.shape}")
        return x[:, None], None
    return (x if axis == 1 else np.moveaxis(x, 3, 1)), axis


def from_nchw(x: np.ndarray, axis: int | None) -> np.ndarray:
    """Undo :func:`to_nchw` on a batch ``(B, C, H, W)``."""
    if axis is None:
        return x[:, 0]
    return x if axis == 1 else np.moveaxis(x, 1, 3)


def feature_order(scores: np.ndarray, order: str, rng: np.random.Generator) -> np.ndarray:
    """Per row of ``scores`` ``(N, F)``: feature indices, most relevant first (``"morf"``), least relevant first
    (``"lerf"``) or in a random order (``"random"``, drawn from ``rng``)."""
    if order == "morf":
        return np.argsort(-scores, axis=1)
    if order == "lerf":
        return np.argsort(scores, axis=1)
    if order == "random":
        return np.stack([rng.permutation(scores.shape[1]) for _ in range(len(scores))])
    raise MethodError(f"order must be one of {', '.join(map(repr, ORDERS))}; got {order!r}")


def ranks_of(order: np.ndarray) -> np.ndarray:
    """The inverse permutation of each row: ``ranks[n, order[n, k]] = k``."""
    ranks = np.empty_like(order)
    rows = np.arange(len(order))[:, None]
    ranks[rows, order] = np.arange(order.shape[1])[None, :]
    return ranks


def baseline_values(x_flat: np.ndarray, baseline, rng: np.random.Generator, low: float = 0.0,
                    high: float = 1.0) -> np.ndarray:
    """What removed features become, per row of ``x_flat`` ``(N, F)``: shape ``(N, 1)`` or ``(N, F)``.

    ``"black"`` is each sample's minimum and ``"white"`` its maximum (Quantus's convention), ``"mean"`` its mean,
    ``"zero"`` 0, ``"uniform"`` noise in ``[low, high)`` per feature, a number that constant, an array of a
    sample's shape that array. (Quantus recomputes ``"mean"`` on the progressively perturbed input and draws one
    ``"uniform"`` value per step; here both are fixed per sample, so only the other baselines compare.)
    """
    n, f = x_flat.shape
    if isinstance(baseline, str):
        name = baseline.lower()
        if name == "black":
            return x_flat.min(axis=1, keepdims=True)
        if name == "white":
            return x_flat.max(axis=1, keepdims=True)
        if name == "mean":
            return x_flat.mean(axis=1, keepdims=True)
        if name == "zero":
            return np.zeros((n, 1), dtype=x_flat.dtype)
        if name == "uniform":
            return rng.uniform(low, high, size=(n, f)).astype(x_flat.dtype)
        raise MethodError(f"baseline must be one of {', '.join(map(repr, BASELINES))}, a number or an array; got "
                          f"{baseline!r}")
    value = np.asarray(baseline, dtype=x_flat.dtype)
    if value.ndim == 0:
        return np.full((n, 1), value, dtype=x_flat.dtype)
    if value.size == f:
        return np.broadcast_to(value.reshape(1, f), (n, f))
    if value.size == n * f:
        return value.reshape(n, f)
    raise MethodError(f"a baseline array must have one sample's shape ({f} values); got shape {value.shape}")


def trapezoid(y: np.ndarray, dx: float = 1.0) -> np.ndarray:
    """Area under each row of ``y`` by the trapezoid rule (spacing ``dx``), as Quantus's ``calculate_auc``."""
    y = np.asarray(y, dtype=np.float64)
    if y.shape[-1] < 2:
        return np.zeros(y.shape[:-1])
    return dx * (y[..., 1:] + y[..., :-1]).sum(axis=-1) / 2.0


def check_positive_int(name: str, value, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise MethodError(f"{name} must be a positive integer; got {value!r}")
    if maximum is not None and value > maximum:
        raise MethodError(f"{name} must be at most {maximum} (the number of features); got {value}")
    return int(value)
