"""Evaluating explanations: faithfulness, randomisation, localisation and complexity measures on onnxruntime.

Every measure takes arrays ``(x, target, relevance)`` (plus the model where it runs it) and returns
:class:`Scores`: per-sample ``values``, and the ``curve`` where the measure has one. Definitions follow their papers
and Quantus 0.6 (``../shared/EVALUATION.md``); perturbed inputs run through onnxruntime in memory-bounded batches
(:class:`ModelRunner`), and random choices are seeded.

>>> import onnxlrp, onnxlrp.evaluate as ev
>>> ex = onnxlrp.Explainer("models/digits/digits_cnn.onnx")
>>> res = ex.explain(x, method="epsilon_plus")
>>> ev.pixel_flipping(ex, x, res.target, res.relevance, features_in_step=16).values   # AUC per sample

The measures by family: faithfulness (:func:`pixel_flipping`, :func:`region_perturbation`,
:func:`insertion_deletion`, :func:`road`, :func:`faithfulness_correlation`, :func:`completeness`), randomisation
(:func:`mprt`, :func:`random_logit`, :func:`randomised_models`), localisation (:func:`pointing_game`,
:func:`relevance_mass_accuracy`, :func:`relevance_rank_accuracy`, :func:`outside_inside_ratio`), complexity
(:func:`sparseness`, :func:`complexity`). :data:`METRICS` lists them for the command line; :mod:`.quantus_bridge`
lets Quantus's own metrics run on an ONNX model (its torch part needs the ``test`` extra).
"""
from __future__ import annotations

from .common import Scores
from .faithfulness import (
    completeness,
    faithfulness_correlation,
    insertion_deletion,
    pixel_flipping,
    region_perturbation,
)
from .localisation import (
    boxes_to_masks,
    outside_inside_ratio,
    pointing_game,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
)
from .model import ModelRunner, as_runner
from .quantus_bridge import quantus_explain_func, torch_module
from .randomisation import layers, mprt, random_logit, randomised_models
from .road import road
from .similarity import complexity, sparseness, spearman, ssim
from .suite import METRICS, Metric

__all__ = ["METRICS", "Metric", "ModelRunner", "Scores", "as_runner", "boxes_to_masks", "completeness", "complexity",
           "faithfulness_correlation", "insertion_deletion", "layers", "mprt", "outside_inside_ratio",
           "pixel_flipping", "pointing_game", "quantus_explain_func", "random_logit", "randomised_models",
           "region_perturbation", "relevance_mass_accuracy", "relevance_rank_accuracy", "road", "sparseness",
           "spearman", "ssim", "torch_module"]
