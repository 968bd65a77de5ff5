"""Every explanation method, one module per family, registered here from this explicit list.

======================  ==================================================================================
module                  methods
======================  ==================================================================================
:mod:`.lrp`             the LRP presets (``epsilon_plus_flat``, ``epsilon_gamma_box``, ...)
:mod:`.gradients`       ``gradient``, ``input_x_gradient``, guided backprop, DeconvNet, IG, SmoothGrad
:mod:`.cam`             Grad-CAM, Grad-CAM++, contrastive Grad-CAM
:mod:`.clrp`            CLRP1, CLRP2, SGLRP (contrastive heads spliced into the graph)
:mod:`.rap`             Relative Attributing Propagation
:mod:`.sign`            SIGN / SIGN-mu and signxai's method-name grammars
:mod:`.attnlrp`         AttnLRP and CP-LRP for transformers
:mod:`.names`           iNNvestigate's and signxai's method names, verbatim (registered last)
:mod:`.pattern`         PatternNet, PatternAttribution (patterns fitted by :mod:`onnxlrp.patterns`)
======================  ==================================================================================

The package is callable: ``onnxlrp.methods()`` lists every method (:func:`~onnxlrp.methods.registry.methods`).

Each module lists its methods in ``METHODS`` (and name grammars in ``FAMILIES``); every method is a
:class:`~onnxlrp.methods.base.Method` whose ``run`` and ``check`` take a :class:`~onnxlrp.engine.session.Session`.
"""
from __future__ import annotations

import sys
import types

from . import attnlrp, cam, clrp, gradients, lrp, names, pattern, rap, sign
from .base import Check, Method, MethodFamily, Result
from .registry import METHODS, find_method, methods, register_family, register_method, resolve_method

for _module in (lrp, gradients, cam, clrp, rap, sign, attnlrp, pattern, names):
    for _method in _module.METHODS:
        register_method(_method)
    for _family in getattr(_module, "FAMILIES", ()):
        register_family(_family)

__all__ = ["METHODS", "Check", "Method", "MethodFamily", "Result", "find_method", "methods", "resolve_method"]


class _CallableModule(types.ModuleType):
    """``onnxlrp.methods()`` is the listing; ``onnxlrp.methods`` is also this package."""

    def __call__(self) -> dict[str, dict]:
        return methods()


sys.modules[__name__].__class__ = _CallableModule
