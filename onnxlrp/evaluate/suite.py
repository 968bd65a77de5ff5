"""The measures by name, as ``onnxlrp evaluate --metric`` runs them on one batch of one method's maps.

:data:`METRICS` maps a name to a :class:`Metric`: what it needs (the model, masks, the method itself to explain
again), its parameters with the defaults the command line uses, and which way is better. ``Metric.run(context,
**params)`` returns :class:`~.common.Scores` for one batch; :func:`random_baseline` gives the curve of a random
order (the same for every method, so it is computed once per batch) for the measures that plot one.

Command-line defaults differ from the functions' where those would be slow on large inputs: pixel flipping
removes 1/100 of the pixels per step (all channels of a pixel together), faithfulness correlation uses subsets of
1/16 of the features.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..errors import MethodError
from . import faithfulness as faith
from . import localisation as loc
from .common import Scores, channel_axis
from .randomisation import mprt, random_logit
from .road import road
from .similarity import complexity, sparseness


@dataclass
class Context:
    """One batch of one method: the explainer, inputs, explained classes, maps, masks, the method's name and
    parameters, the runner and the seed."""

    explainer: object
    runner: object
    x: np.ndarray
    targets: np.ndarray
    relevance: np.ndarray
    method: str
    method_params: dict
    masks: np.ndarray | None = None
    seed: int = 0
    layout: str | None = None


@dataclass(frozen=True)
class Metric:
    """A measure the command line can run."""

    name: str
    family: str
    description: str
    run: Callable[..., Scores]
    params: dict = field(default_factory=dict)
    needs_masks: bool = False
    random_baseline: bool = False
    #: "step" or "fraction": what the curve's x-axis counts
    axis: str = "fraction"


def _pixel_step(x: np.ndarray, layout) -> int:
    """Features per pixel-flipping step: 1/100 of the pixels, times the channels (whole pixels go at once)."""
    axis = channel_axis(x, layout)
    channels = x.shape[axis] if axis is not None else 1
    return channels * max(1, math.ceil(x[0].size / channels / 100))


def _pixel_flipping(c: Context, order: str = "morf", features_in_step=None, **params) -> Scores:
    step = features_in_step or _pixel_step(c.x, c.layout)
    return faith.pixel_flipping(c.runner, c.x, c.targets, c.relevance, features_in_step=step, order=order,
                                seed=c.seed, **params)


def _region(c: Context, order: str = "morf", patch_size=None, **params) -> Scores:
    if patch_size is None:
        side = min(c.x.shape[-2:]) if channel_axis(c.x, c.layout) != 3 else min(c.x.shape[1:3])
        patch_size = max(1, min(8, side // 8))
    return faith.region_perturbation(c.runner, c.x, c.targets, c.relevance, patch_size=patch_size, order=order,
                                     random_orders=0, seed=c.seed, layout=c.layout, **params)


def _insertion(c: Context, **params) -> Scores:
    return faith.insertion_deletion(c.runner, c.x, c.targets, c.relevance, mode="insertion", layout=c.layout,
                                    **params)


def _deletion(c: Context, **params) -> Scores:
    return faith.insertion_deletion(c.runner, c.x, c.targets, c.relevance, mode="deletion", layout=c.layout,
                                    **params)


def _road(c: Context, **params) -> Scores:
    return road(c.runner, c.x, c.targets, c.relevance, seed=c.seed, layout=c.layout, **params)


def _correlation(c: Context, subset_size=None, **params) -> Scores:
    size = subset_size or max(1, c.x[0].size // 16)
    return faith.faithfulness_correlation(c.runner, c.x, c.targets, c.relevance, subset_size=size, seed=c.seed,
                                          **params)


def _completeness(c: Context, **params) -> Scores:
    return faith.completeness(c.runner, c.x, c.targets, c.relevance, **params)


def _mprt(c: Context, **params) -> Scores:
    return mprt(c.explainer, c.x, c.targets, method=c.method, params=c.method_params, relevance=c.relevance,
                layout=c.layout, **params)


def _random_logit(c: Context, **params) -> Scores:
    return random_logit(c.explainer, c.x, c.targets, method=c.method, params=c.method_params,
                        relevance=c.relevance, layout=c.layout, **params)


def _masked(function):
    def run(c: Context, **params) -> Scores:
        return function(c.relevance, c.masks, x=c.x, layout=c.layout, **params)
    return run


def _maps(function):
    def run(c: Context, **params) -> Scores:
        return function(c.relevance, **params)
    return run


METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("pixel_flipping", "faithfulness", "f_c as the most relevant pixels are removed; area under the curve",
           _pixel_flipping, {"features_in_step": None, "baseline": "black", "output": "probability"},
           random_baseline=True),
    Metric("region_perturbation", "faithfulness", "AOPC: mean drop of f_c as the most relevant patches are "
           "removed; also relative to a random order", _region,
           {"patch_size": None, "regions_evaluation": 100, "baseline": "black", "output": "probability"},
           random_baseline=True, axis="step"),
    Metric("insertion", "faithfulness", "f_c as the most relevant pixels are put back on a blurred canvas; area",
           _insertion, {"step": 0.01, "output": "probability"}, random_baseline=True),
    Metric("deletion", "faithfulness", "f_c as the most relevant pixels are set to zero; area",
           _deletion, {"step": 0.01, "output": "probability"}, random_baseline=True),
    Metric("road", "faithfulness", "f_c as the most relevant pixels are removed by noisy linear imputation; mean",
           _road, {"noise": 0.01, "output": "probability"}, random_baseline=True),
    Metric("faithfulness_correlation", "faithfulness", "Pearson correlation of summed relevance and output drop "
           "over random subsets", _correlation,
           {"subset_size": None, "nr_runs": 100, "baseline": "black", "output": "logit"}),
    Metric("completeness", "faithfulness", "sum R / f_c(x) (1 is complete)", _completeness, {"output": "logit"}),
    Metric("mprt", "randomisation", "Spearman correlation with the map of the fully randomised model "
           "(cascading from the output)", _mprt, {"order": "top_down", "seed": 42}, axis="layer"),
    Metric("random_logit", "randomisation", "SSIM between the maps of the target and a random other class",
           _random_logit, {"seed": 42, "similarity": "ssim"}),
    Metric("pointing_game", "localisation", "the most relevant pixel lies in the mask",
           _masked(loc.pointing_game), {"tolerance": 0}, needs_masks=True),
    Metric("relevance_mass_accuracy", "localisation", "share of positive relevance in the mask",
           _masked(loc.relevance_mass_accuracy), needs_masks=True),
    Metric("relevance_rank_accuracy", "localisation", "share of the |mask| most relevant pixels in the mask",
           _masked(loc.relevance_rank_accuracy), needs_masks=True),
    Metric("outside_inside_ratio", "localisation", "mean positive relevance outside the mask over inside",
           _masked(loc.outside_inside_ratio), needs_masks=True),
    Metric("sparseness", "complexity", "Gini index of |R|", _maps(sparseness)),
    Metric("complexity", "complexity", "entropy of |R| / sum |R|", _maps(complexity)),
)}


def run_metric(metric: Metric, context: Context, params: dict) -> Scores:
    """``metric`` on one batch, with its defaults overridden by ``params`` (unknown names are refused)."""
    unknown = sorted(set(params) - set(metric.params))
    if unknown:
        raise MethodError(f"unknown parameter {unknown[0]!r} for metric {metric.name!r}; valid parameters: "
                          f"{', '.join(sorted(metric.params)) or 'none'}")
    full = {k: v for k, v in {**metric.params, **params}.items() if v is not None}
    return metric.run(context, **full)


def random_baseline(metric: Metric, context: Context, params: dict) -> Scores | None:
    """The same measure with the features in a random order (seeded): the baseline its curve is drawn against."""
    if not metric.random_baseline:
        return None
    unknown = sorted(set(params) - set(metric.params))
    if unknown:
        return None
    full = {k: v for k, v in {**metric.params, **params}.items() if v is not None}
    rng = np.random.default_rng([context.seed, 7])
    shape = list(np.shape(context.relevance))
    axis = channel_axis(context.x, context.layout) if len(shape) == context.x.ndim else None
    if axis is not None:
        shape[axis] = 1  # one value per pixel: its channels go together
    noise = rng.random(shape)
    shuffled = Context(**{**context.__dict__, "relevance": noise})  # a random map gives a random order
    return metric.run(shuffled, **full)
