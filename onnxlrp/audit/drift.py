"""Explanation drift between two exports of one model (float32 vs float16, vs int8 QDQ, vs a graph optimised by
onnxruntime): the same inputs through both, prediction agreement, and per input how alike the two maps are.

Per input, with ``A`` the reference model's map and ``B`` the other's, both of the input's shape and flattened to
``F`` features (channels kept apart: the maps are compared as the explainer returns them):

- **Spearman**: the Pearson correlation of the ranks of ``A`` and ``B`` (average ranks for ties;
  :func:`onnxlrp.evaluate.similarity.spearman`), NaN when a map is constant;
- **top-k overlap**: ``|top_k(|A|) ∩ top_k(|B|)| / k``, the share of the ``k`` features with the largest absolute
  relevance in ``A`` that are also among the ``k`` largest in ``B`` (Ghorbani et al. 2019, "Interpretation of neural
  networks is fragile", top-k intersection). Absolute values, so that a feature strongly against the class counts
  as important as one strongly for it: a quantised model that flips a feature's sign keeps it in its top-k, and
  the Spearman correlation (on signed values) shows the flip. Ties are broken by feature index (a stable sort), so
  identical maps overlap exactly 1. ``k`` is ``K`` features for ``K >= 1``, else ``ceil(K F)``;
- **agreement**: ``argmax f_A(x) == argmax f_B(x)`` over the flattened explained output.

Both models explain the same class, the one ``A`` predicts (``target="ref"``: the maps answer the same question,
so their drift is not confounded with a flipped prediction), or each its own prediction (``target="own"``).

:func:`compare` streams over a :class:`~onnxlrp.audit.dataset.Dataset` a batch of rows at a time and yields a
:class:`DriftBatch` of per-row scalars; maps are not kept, except the ``n`` least similar inputs' maps in a
:class:`LeastSimilar` heap (bounded memory whatever the dataset size). :func:`summarize` turns the per-row scalars
into the summary (agreement, quantiles, per-class agreement, a histogram of the Spearman correlations).
"""
from __future__ import annotations

import heapq
import math
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from .. import limits
from ..errors import MemoryBudgetError, UsageError, ZeroRelevanceWarning
from ..evaluate.similarity import spearman
from .dataset import Dataset
from .maps import pixel_maps

TARGETS = ("ref", "own")
#: quantiles reported for the Spearman correlation and the top-k overlap
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95)
#: per-row columns of :class:`DriftBatch`, in table order
COLUMNS = ("prediction_a", "prediction_b", "agree", "class_a", "class_b", "score_a", "score_b",
           "relevance_sum_a", "relevance_sum_b", "spearman", "top_k_overlap")


def top_k_count(k: float, features: int) -> int:
    """The number of features ``k`` stands for: ``k`` itself when ``k >= 1`` (at most ``features``), else the
    fraction ``k`` of them rounded up (at least one).

    Raises
    ------
    UsageError
        For ``k <= 0`` or a ``k >= 1`` that is not a whole number.
    """
    k = float(k)
    if not math.isfinite(k) or k <= 0 or (k >= 1 and k != int(k)):
        raise UsageError(f"top-k must be a whole number of features (>= 1) or a fraction in (0, 1); got {k:g}")
    return min(int(k), features) if k >= 1 else max(1, math.ceil(k * features))


def top_k_overlap(a: np.ndarray, b: np.ndarray, k: int) -> np.ndarray:
    """``|top_k(|a|) ∩ top_k(|b|)| / k`` per sample of two ``(N, ...)`` maps (ties broken by feature index)."""
    a = np.abs(np.asarray(a, dtype=np.float64).reshape(len(a), -1))
    b = np.abs(np.asarray(b, dtype=np.float64).reshape(len(b), -1))
    if a.shape != b.shape:
        raise UsageError(f"maps to compare differ in shape: {a.shape} and {b.shape}")
    k = min(int(k), a.shape[1])
    chosen = []
    for m in (a, b):
        top = np.argsort(-m, axis=1, kind="stable")[:, :k]
        mask = np.zeros(m.shape, dtype=bool)
        np.put_along_axis(mask, top, True, axis=1)
        chosen.append(mask)
    return (chosen[0] & chosen[1]).sum(axis=1) / k


def predictions(output: np.ndarray) -> np.ndarray:
    """The predicted class per sample: the arg-max of the flattened explained output."""
    output = np.asarray(output)
    return output.reshape(len(output), -1).argmax(axis=1)


def explained_scores(output: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``output[i, target[i]]`` over the flattened output (NaN where the target is not one class)."""
    flat = np.asarray(output, dtype=np.float64).reshape(len(output), -1)
    target = np.asarray(target)
    if target.shape != (len(flat),):
        return np.full(len(flat), np.nan)
    inside = (target >= 0) & (target < flat.shape[1])
    return np.where(inside, flat[np.arange(len(flat)), np.clip(target, 0, flat.shape[1] - 1)], np.nan)


def map_keys(rho: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """How similar two maps are, for ranking: the Spearman correlation; where it is undefined (a constant map),
    2 for identical maps and -2 (least similar of all) for different ones."""
    identical = (a.reshape(len(a), -1) == b.reshape(len(b), -1)).all(axis=1)
    return np.where(np.isnan(rho), np.where(identical, 2.0, -2.0), rho)


@dataclass
class DriftExample:
    """One of the least similar inputs: its scalars, both maps summed over channels ``(H, W)``, and its picture
    (uint8, from an image) or ``sample`` (for arrays, to draw)."""

    row: int
    source: str
    label: int
    values: dict
    map_a: np.ndarray
    map_b: np.ndarray
    picture: np.ndarray | None
    sample: np.ndarray | None


class LeastSimilar:
    """The ``n`` inputs with the lowest similarity key seen so far (the earlier row wins a tie); a heap whose root
    is the most similar kept input, replaced when a less similar one comes."""

    def __init__(self, n: int):
        self.n = int(n)
        self._heap: list[tuple[float, int, DriftExample]] = []

    def wants(self, key: float, row: int) -> bool:
        if self.n <= 0:
            return False
        return len(self._heap) < self.n or (-key, -row) > self._heap[0][:2]

    def offer(self, key: float, example: DriftExample) -> None:
        if not self.wants(key, example.row):
            return
        item = (-float(key), -example.row, example)
        if len(self._heap) < self.n:
            heapq.heappush(self._heap, item)
        else:
            heapq.heapreplace(self._heap, item)

    def examples(self) -> list[DriftExample]:
        """The kept inputs, least similar first."""
        return [e for _, _, e in sorted(self._heap, key=lambda t: (-t[0], -t[1]))]


@dataclass
class DriftBatch:
    """Rows ``start .. stop - 1``: each row's source, label (-1 unknown) and error (``None`` when it was read);
    :data:`COLUMNS` as arrays over all the rows (NaN, or -1 for classes, where a row could not be read)."""

    start: int
    stop: int
    sources: list[str]
    labels: np.ndarray
    errors: list[str | None]
    columns: dict[str, np.ndarray]

    @property
    def read(self) -> np.ndarray:
        """Whether each row was read and explained."""
        return np.array([e is None for e in self.errors], dtype=bool)


def rows_per_batch(explainers, sample_shape, batch_size: int) -> int:
    """``batch_size``, lowered so that one pass of each explainer fits its memory budget (a model with a fixed batch
    size is fed that many rows at a time whatever this says).

    Raises
    ------
    MemoryBudgetError
        When a single input does not fit.
    """
    shape = tuple(d if isinstance(d, int) and d > 0 else 1 for d in sample_shape)
    rows = batch_size
    for ex in explainers:
        session = ex.session
        planned = session.plan_bytes((1, *shape)) or int(np.prod(shape)) * 8 * limits.PASS_OVERHEAD
        if planned > session.memory_budget:
            raise MemoryBudgetError(f"one input of shape {shape} would need about {limits.format_bytes(planned)}, over "
                                    f"the memory budget of {limits.format_bytes(session.memory_budget)}; raise "
                                    "--memory-budget (or ONNXLRP_MEMORY_BUDGET)")
        if not isinstance(ex.input_shape[0], int):
            rows = min(rows, max(1, session.memory_budget // planned))
    return max(1, int(rows))


def _explain(explainer, x: np.ndarray, method: str, params: Mapping, target):
    """``(relevance, output, target)`` of ``x``; a model with a fixed batch size gets batches of exactly that many
    rows (the last one padded with copies of its last row, cut off again)."""
    count, fixed = len(x), explainer.input_shape[0]
    if x.dtype != np.dtype(explainer.input_dtype) and x.dtype.kind == "f" and explainer.input_dtype.kind == "f":
        x = x.astype(explainer.input_dtype)  # the export's own input type (a float16 model takes float16)
    if not isinstance(fixed, int):
        fixed = count
    parts = []
    for first in range(0, count, fixed):
        xs = x[first:first + fixed]
        ts = None if target is None else target[first:first + fixed]
        n = len(xs)
        if n < fixed:
            xs = np.concatenate([xs, np.repeat(xs[-1:], fixed - n, axis=0)])
            ts = None if ts is None else np.concatenate([ts, np.repeat(ts[-1:], fixed - n)])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ZeroRelevanceWarning)  # ΣR = 0 says it in the table
            res = explainer.explain(xs, method=method, target=ts, **params)
        parts.append((res.relevance[:n], np.asarray(res.output)[:n], np.asarray(res.target)[:n]))
    return tuple(np.concatenate(arrays) for arrays in zip(*parts))


def _maps(relevance: np.ndarray, layout: str | None) -> np.ndarray:
    """One 2-D map per sample, channels summed (:func:`onnxlrp.audit.maps.pixel_maps`)."""
    if relevance.ndim == 4:
        return pixel_maps(relevance, layout or "NCHW")
    if relevance.ndim in (2, 3):
        return pixel_maps(relevance, "NCHW")
    return relevance.reshape(len(relevance), 1, -1)


def compare(explainer_a, explainer_b, dataset: Dataset, method: str, params: Mapping | None = None,
            top_k: float = 0.1, batch_size: int = 16, *, target: str = "ref", keep: LeastSimilar | None = None,
            layout: str | None = None) -> Iterator[DriftBatch]:
    """Explain every row of ``dataset`` with both explainers and yield one :class:`DriftBatch` per batch of rows.

    ``target`` is ``"ref"`` (both explain the class ``explainer_a`` predicts) or ``"own"``; ``top_k`` the ``K`` of
    :func:`top_k_count`; ``keep`` collects the least similar inputs' maps (``layout`` says where an image's
    channels are, for summing them).
    """
    if target not in TARGETS:
        raise UsageError(f"target must be one of {', '.join(TARGETS)}; got {target!r}")
    params = dict(params or {})
    rows = rows_per_batch((explainer_a, explainer_b), dataset.sample_shape, batch_size)
    for start in range(0, len(dataset), rows):
        batch = dataset.read(start, start + rows, pictures=keep is not None)
        n = batch.stop - batch.start
        columns = {name: np.full(n, -1 if name.startswith(("prediction", "class")) else np.nan)
                   for name in COLUMNS}
        errors = [batch.errors.get(r) for r in range(batch.start, batch.stop)]
        if batch.x is not None:
            at = batch.rows - batch.start
            rel_a, out_a, class_a = _explain(explainer_a, batch.x, method, params, None)
            wanted = class_a if target == "ref" and class_a.shape == (len(at),) else None
            rel_b, out_b, class_b = _explain(explainer_b, batch.x, method, params, wanted)
            if rel_a.shape != rel_b.shape:
                raise UsageError(f"the two models' maps differ in shape: {rel_a.shape[1:]} and {rel_b.shape[1:]}")
            pred_a, pred_b = predictions(out_a), predictions(out_b)
            k = top_k_count(top_k, int(np.prod(rel_a.shape[1:])))
            rho = spearman(rel_a, rel_b)
            values = {"prediction_a": pred_a, "prediction_b": pred_b, "agree": (pred_a == pred_b).astype(float),
                      "class_a": class_a.reshape(len(at), -1)[:, 0] if class_a.size == len(at) else -1,
                      "class_b": class_b.reshape(len(at), -1)[:, 0] if class_b.size == len(at) else -1,
                      "score_a": explained_scores(out_a, class_a.reshape(-1) if class_a.size == len(at) else None),
                      "score_b": explained_scores(out_b, class_b.reshape(-1) if class_b.size == len(at) else None),
                      "relevance_sum_a": rel_a.reshape(len(at), -1).astype(np.float64).sum(axis=1),
                      "relevance_sum_b": rel_b.reshape(len(at), -1).astype(np.float64).sum(axis=1),
                      "spearman": rho, "top_k_overlap": top_k_overlap(rel_a, rel_b, k)}
            for name, value in values.items():
                columns[name][at] = value
            if keep is not None:
                _keep(keep, batch, at, rel_a, rel_b, rho, columns, layout)
        yield DriftBatch(batch.start, batch.stop, batch.sources, batch.labels, errors, columns)


def _keep(keep: LeastSimilar, batch, at: np.ndarray, rel_a, rel_b, rho, columns, layout) -> None:
    keys = map_keys(rho, rel_a, rel_b)
    chosen = [i for i, row in enumerate(batch.rows) if keep.wants(float(keys[i]), int(row))]
    if not chosen:
        return
    maps_a, maps_b = _maps(rel_a[chosen], layout), _maps(rel_b[chosen], layout)
    for j, i in enumerate(chosen):
        offset = int(at[i])
        picture = batch.pictures[i] if batch.pictures is not None else None
        keep.offer(float(keys[i]), DriftExample(
            int(batch.rows[i]), batch.sources[offset], int(batch.labels[offset]),
            {name: columns[name][offset].item() for name in COLUMNS}, np.asarray(maps_a[j], dtype=np.float32),
            np.asarray(maps_b[j], dtype=np.float32), picture, None if picture is not None else batch.x[i].copy()))


def _stats(values: np.ndarray) -> dict:
    """Count, undefined count, mean, standard deviation, min, max and :data:`QUANTILES` of the finite values."""
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    out = {"count": int(finite.size), "undefined": int(values.size - finite.size)}
    if finite.size == 0:
        return {**out, "mean": None, "std": None, "min": None, "max": None, "quantiles": {}}
    return {**out, "mean": float(finite.mean()), "std": float(finite.std()), "min": float(finite.min()),
            "max": float(finite.max()),
            "quantiles": {f"{q:g}": float(np.quantile(finite, q)) for q in QUANTILES}}


def histogram(values: np.ndarray, bins: int = 20) -> dict:
    """Counts of the finite ``values`` in ``bins`` equal bins from the lowest value (at most 0.95, floored to a
    multiple of 0.05) to 1: ``{"edges": [...], "counts": [...]}``."""
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    low = min(0.95, math.floor(finite.min() * 20) / 20) if finite.size else 0.0
    counts, edges = np.histogram(finite, bins=bins, range=(low, 1.0))
    return {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]}


def summarize(columns: Mapping[str, np.ndarray], labels: np.ndarray, read: np.ndarray) -> dict:
    """The summary of a whole run from its per-row :data:`COLUMNS` (all rows concatenated), labels (-1 unknown)
    and which rows were read: agreement, the statistics of the Spearman correlation and the top-k overlap, the
    histogram of the Spearman correlations, per class (of model A's prediction) the rows, the agreement and the
    mean similarity, and, where labels are known, each model's accuracy."""
    read = np.asarray(read, dtype=bool)
    pred_a, pred_b = columns["prediction_a"][read], columns["prediction_b"][read]
    rho, overlap = columns["spearman"][read], columns["top_k_overlap"][read]
    agree = pred_a == pred_b
    out = {"rows": int(read.size), "explained": int(read.sum()), "unreadable": int(read.size - read.sum()),
           "agreement": float(agree.mean()) if agree.size else None, "disagreements": int((~agree).sum()),
           "spearman": _stats(rho), "top_k_overlap": _stats(overlap), "spearman_histogram": histogram(rho)}
    per_class = {}
    for c in np.unique(pred_a):
        here = pred_a == c
        per_class[int(c)] = {"rows": int(here.sum()), "agreement": float(agree[here].mean()),
                             "spearman_mean": _stats(rho[here])["mean"],
                             "top_k_overlap_mean": _stats(overlap[here])["mean"]}
    out["per_class"] = per_class
    known = np.asarray(labels)[read] >= 0
    if known.any():
        truth = np.asarray(labels)[read][known]
        out["accuracy"] = {"a": float((pred_a[known] == truth).mean()), "b": float((pred_b[known] == truth).mean()),
                           "labelled": int(known.sum())}
    return out
