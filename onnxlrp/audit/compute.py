"""One shard of an audit: rows ``k * shard_size`` to ``(k + 1) * shard_size - 1`` explained with every method.

:class:`AuditPlan` is everything a worker needs (picklable: a Ray actor receives it); :class:`ShardWorker` opens the
model and the dataset once and turns a shard index into a :class:`ShardResult`: per row the source, label,
prediction, top-k scores and, per method, the explained class, the explained score, ``ΣR`` and the chosen measures;
per method the rows' relevance maps, summed over channels and resized to ``map_size`` (NaN for a row that could
not be read). The result depends on the plan and the shard index only, so every engine writes the same rows.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from .. import limits
from ..errors import MemoryBudgetError, ZeroRelevanceWarning
from .dataset import Dataset
from .maps import downsample, pixel_maps


@dataclass(frozen=True)
class MethodSpec:
    """A method as the audit runs it: its name, the parameters the user set, and all of them with defaults."""

    name: str
    params: dict
    full: dict


@dataclass(frozen=True)
class AuditPlan:
    """What to audit and how; the same plan and shard index give the same rows on every engine."""

    model: str
    data: tuple[str, ...]
    methods: tuple[MethodSpec, ...]
    explainer_options: dict = field(default_factory=dict)   # input_name, output_name, dtype, memory_budget, ...
    dataset_options: dict = field(default_factory=dict)     # prep, labels, column, label_column
    metrics: tuple[tuple[str, dict], ...] = ()
    top_k: int = 5
    map_size: int = 32
    batch_size: int = 16
    shard_size: int = 256
    seed: int = 0
    #: what each method explains: ``"pred"`` the predicted class, ``"label"`` the row's label where it is known
    #: (the prediction otherwise), as SpRAy's authors explained the true class
    target: str = "pred"

    def columns(self) -> list[str]:
        """The per-method columns, in table order."""
        out = []
        for m in self.methods:
            out += [f"{m.name}.class", f"{m.name}.score", f"{m.name}.relevance_sum"]
            out += [f"{m.name}.{metric}" for metric, _ in self.metrics]
        return out


@dataclass
class ShardResult:
    """A shard's rows as columns (every list has the shard's row count) and each method's maps ``(rows, S, S)``."""

    index: int
    columns: dict
    maps: dict


def open_explainer(plan: AuditPlan):
    from ..explainer import Explainer
    return Explainer(plan.model, **plan.explainer_options)


def open_dataset(plan: AuditPlan, explainer) -> Dataset:
    return Dataset(plan.data, explainer.input_shape, explainer.input_dtype, explainer.input_name,
                   **plan.dataset_options)


class ShardWorker:
    """Explains shards of ``plan``: the model, runner and dataset are opened once, here."""

    def __init__(self, plan: AuditPlan):
        from ..evaluate.model import ModelRunner
        self.plan = plan
        self.explainer = open_explainer(plan)
        self.dataset = open_dataset(plan, self.explainer)
        self.runner = ModelRunner(self.explainer.session)
        prep = plan.dataset_options.get("prep")
        self.layout = prep.layout if prep is not None else None
        if self.layout is None and len(self.explainer.input_shape) == 4:
            from ..inputs.images import image_layout_from_shape
            self.layout = image_layout_from_shape(self.explainer.input_shape)
        first = self.explainer.input_shape[0]
        self.static_batch = first if isinstance(first, int) and first > 0 else None
        self.rows_per_batch = self._rows_per_batch()

    def _rows_per_batch(self) -> int:
        """``batch_size``, lowered so that one explanation pass fits the session's memory budget."""
        session = self.explainer.session
        if self.static_batch is not None:
            return self.static_batch
        shape = tuple(d if isinstance(d, int) and d > 0 else 1 for d in self.dataset.sample_shape)
        planned = session.plan_bytes((1, *shape)) or int(np.prod(shape)) * 8 * limits.PASS_OVERHEAD
        if planned > session.memory_budget:
            raise MemoryBudgetError(f"one input of shape {shape} would need about {limits.format_bytes(planned)}, over "
                                    f"the memory budget of {limits.format_bytes(session.memory_budget)}; raise "
                                    "--memory-budget (or ONNXLRP_MEMORY_BUDGET)")
        return max(1, min(self.plan.batch_size, session.memory_budget // planned))

    def bounds(self, index: int) -> tuple[int, int]:
        start = index * self.plan.shard_size
        return start, min(start + self.plan.shard_size, len(self.dataset))

    def __call__(self, index: int) -> ShardResult:
        plan = self.plan
        start, stop = self.bounds(index)
        batch = self.dataset.read(start, stop)
        n = stop - start
        columns: dict[str, list] = {
            "row": list(range(start, stop)), "source": batch.sources,
            "label": [None if v < 0 else int(v) for v in batch.labels],
            "prediction": [None] * n, "top_classes": [None] * n, "top_scores": [None] * n,
            "error": [batch.errors.get(r) for r in range(start, stop)]}
        for name in plan.columns():
            columns[name] = [None] * n
        maps: dict[str, np.ndarray] = {}
        at = batch.rows - start  # where the decoded rows sit in the shard
        for first in range(0, len(at), self.rows_per_batch):
            rows = at[first:first + self.rows_per_batch]
            self._explain(batch.x[first:first + self.rows_per_batch], rows, batch.labels[rows], n, columns, maps)
        for m in plan.methods:  # a shard with no readable row still has its (all-NaN) maps
            maps.setdefault(m.name, np.full((n, plan.map_size, plan.map_size), np.nan, dtype=np.float32))
        return ShardResult(index, columns, maps)

    def _explain(self, x: np.ndarray, at: np.ndarray, labels: np.ndarray, n: int, columns: dict, maps: dict) -> None:
        from ..evaluate.suite import METRICS, Context, run_metric
        plan, count = self.plan, len(x)
        fed = x
        if self.static_batch is not None and count < self.static_batch:  # the model's fixed batch: pad, then drop
            fed = np.concatenate([x, np.repeat(x[-1:], self.static_batch - count, axis=0)])
        outputs = np.asarray(self.runner.outputs(fed))[:count]
        scores = outputs.reshape(count, -1).astype(np.float64)
        k = min(plan.top_k, scores.shape[1])
        top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        for i, row in enumerate(at):
            columns["prediction"][row] = int(top[i, 0])
            columns["top_classes"][row] = top[i].tolist()
            columns["top_scores"][row] = scores[i, top[i]].tolist()
        asked = None  # the prediction
        if plan.target == "label":
            classes = scores.shape[1]
            chosen = np.where((labels >= 0) & (labels < classes), labels, top[:, 0])
            asked = np.concatenate([chosen, np.repeat(chosen[-1:], len(fed) - count)]).tolist()
        for m in plan.methods:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ZeroRelevanceWarning)  # ΣR = 0 says it in the table
                res = self.explainer.explain(fed, method=m.name, target=asked, **m.params)
            relevance, targets = res.relevance[:count], np.asarray(res.target)[:count]
            explained = np.asarray(res.output)[:count].reshape(count, -1)
            sums = relevance.reshape(count, -1).astype(np.float64).sum(axis=1)
            for i, row in enumerate(at):
                target = int(np.ravel(targets[i])[0]) if np.size(targets[i]) == 1 else None
                columns[f"{m.name}.class"][row] = target
                columns[f"{m.name}.score"][row] = (float(explained[i, target]) if target is not None
                                                   and 0 <= target < explained.shape[1] else None)
                columns[f"{m.name}.relevance_sum"][row] = float(sums[i])
            for metric, params in plan.metrics:
                context = Context(self.explainer, self.runner, x, targets, relevance, m.name, m.full, None,
                                  plan.seed, self.layout if x.ndim == 4 else None)
                values = np.asarray(run_metric(METRICS[metric], context, params).values, dtype=np.float64)
                for i, row in enumerate(at):
                    columns[f"{m.name}.{metric}"][row] = float(values[i])
            shard_maps = maps.setdefault(m.name, np.full((n, plan.map_size, plan.map_size), np.nan,
                                                         dtype=np.float32))
            shard_maps[at] = self.small_maps(relevance)

    def small_maps(self, relevance: np.ndarray) -> np.ndarray:
        """Maps ``(N, S, S)``: channels summed (images), then resized to ``map_size``; other inputs are flattened
        to one row ``(N, 1, F)`` first."""
        if relevance.ndim == 4 and self.layout is not None:
            pixels = pixel_maps(relevance, self.layout)
        elif relevance.ndim == 3:
            pixels = relevance
        else:
            pixels = relevance.reshape(len(relevance), 1, -1)
        return downsample(np.asarray(pixels, dtype=np.float64), self.plan.map_size)
