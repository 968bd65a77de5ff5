"""The LRP presets as methods: one pass with the preset's rules (:mod:`onnxlrp.lrp.presets`)."""
from __future__ import annotations

from ..lrp.presets import PRESETS
from .base import layer_rule_assigner, lrp_method

METHODS = [lrp_method(name, preset.description, preset.defaults(), layer_rule_assigner(preset.build))
           for name, preset in PRESETS.items()]
