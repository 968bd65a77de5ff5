"""PatternNet and PatternAttribution (Kindermans et al. 2018, "Learning how to explain neural networks: PatternNet
and PatternAttribution", ICLR), as iNNvestigate's ``pattern.net`` / ``pattern.attribution`` analyzers compute them.

Both need signal patterns fitted on data first: ``onnxlrp patterns MODEL DATA -o patterns.npz`` (or
:func:`onnxlrp.patterns.fit_patterns`), then ``--set patterns=patterns.npz`` (``patterns=`` a path or a mapping in
the API). The backward pass starts from the target logit (iNNvestigate's seed: the output value, others zero):

* ``pattern_net``: every Conv/dense layer propagates ``Aᵀ r`` (:class:`~onnxlrp.lrp.pattern.PatternNet`): the
  signal estimate in input space;
* ``pattern_attribution``: every Conv/dense layer propagates ``(W ⊙ A)ᵀ r``
  (:class:`~onnxlrp.lrp.pattern.PatternAttribution`); no final multiplication by the input (the first layer's
  ``W ⊙ A`` is the paper's ``w ⊙ a``).

Every other node keeps the exact gradient: ReLUs gate by the forward activation, max-pooling routes through its
switches, reshapes pass. The first layer is not special (iNNvestigate uses the pattern there too).
``pattern_type``: ``relu`` (default, iNNvestigate's: the two-component estimator's positive part ``a_+``) or
``linear`` (``a``); ``relu.negative`` reads ``a_-``. iNNvestigate 1.x also rescaled the backward values at
bottleneck layers to [-1, 1] (``reverse_project_bottleneck_layers``; in 2.x the setting no longer reaches the
analyzer); onnxlrp does not: the maps differ from 1.x's by a positive factor per sample only.
"""
from __future__ import annotations

from ..errors import MethodError
from ..lrp.pattern import PatternAttribution, PatternNet
from ..patterns import load_patterns, pattern_layers
from ..patterns.layers import weight_shape
from .base import Method, propagate_target

PARAMS = {"patterns": None, "pattern_type": "relu"}


def matched(session, params) -> dict:
    """``layer name -> pattern`` for every pattern layer of the model, checked against the file: the same layer
    names, each pattern its layer's weight shape (a one-line :class:`MethodError` otherwise)."""
    layers = pattern_layers(session)
    patterns = load_patterns(params["patterns"]).of_type(params["pattern_type"])
    names = [layer.name for layer in layers]
    missing = [n for n in names if n not in patterns]
    extra = sorted(set(patterns) - set(names))
    if missing or extra:
        what = (f"no pattern for layer {missing[0]!r}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
                if missing else f"a pattern for {extra[0]!r}, which is not a Conv/dense layer of this model")
        raise MethodError(f"the patterns do not match the model: {what}; the model's layers are: "
                          f"{', '.join(names)}; fit them on this model with `onnxlrp patterns`")
    for layer in layers:
        want, got = weight_shape(session, layer), tuple(patterns[layer.name].shape)
        if want != got:
            raise MethodError(f"the patterns do not match the model: layer {layer.name!r} has a weight of shape "
                              f"{want}, its pattern {got}; fit them on this model with `onnxlrp patterns`")
    return {name: patterns[name] for name in names}


def _assigner(rule):
    def assign(session, params):
        if params.get("patterns") is None:  # `inspect` and `check` need no patterns: show where they would go
            return {layer.name: rule() for layer in pattern_layers(session)}
        return {name: rule(pattern) for name, pattern in matched(session, params).items()}

    return assign


def _pattern_method(name: str, rule, description: str) -> Method:
    assign = _assigner(rule)

    def run(session, x, feeds, target, params, options):
        if params.get("patterns") is None:
            raise MethodError(f"{name} needs patterns=FILE (--set patterns=patterns.npz), fitted on data with "
                              "`onnxlrp patterns MODEL DATA -o patterns.npz`")
        return propagate_target(session, x, feeds, target, assign(session, params), options)

    return Method(name, description, dict(PARAMS), "pattern", run, assign)


METHODS = [
    _pattern_method("pattern_net", PatternNet,
                    "PatternNet (Kindermans et al. 2018): the signal estimate, each Conv/dense layer back-projected "
                    "with its pattern A (A^T r) instead of its weights, ReLU/max-pool gradients in between; needs "
                    "patterns=FILE from `onnxlrp patterns`; pattern_type relu (a+) or linear"),
    _pattern_method("pattern_attribution", PatternAttribution,
                    "PatternAttribution (Kindermans et al. 2018): each Conv/dense layer back-projected with W * A "
                    "((W*A)^T r) from the target logit, ReLU/max-pool gradients in between; needs patterns=FILE "
                    "from `onnxlrp patterns`; pattern_type relu (a+) or linear"),
]
