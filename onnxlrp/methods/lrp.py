"""The LRP presets as methods: one pass with the preset's rules (:mod:`onnxlrp.lrp.presets`)."""
from __future__ import annotations

from ..lrp.presets import PRESETS
from .base import layer_rule_assigner, lrp_method

#: descriptions longer than the preset's one-liner, where the parameters change what the method means
_DESCRIPTIONS = {
    "alpha_beta": "LRP-alpha-beta on every Conv and dense layer, any alpha, beta >= 0 (not both 0): R = alpha R+ - "
                  "beta R- per layer. Conserves relevance only when alpha - beta = 1 (each layer scales the sum by "
                  "alpha - beta); alpha=0, beta=1 gives the beta-only (negative) map",
}

METHODS = [lrp_method(name, _DESCRIPTIONS.get(name, preset.description), preset.defaults(),
                      layer_rule_assigner(preset.build))
           for name, preset in PRESETS.items()]
