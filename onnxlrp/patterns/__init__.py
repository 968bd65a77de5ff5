"""Signal patterns for PatternNet and PatternAttribution (Kindermans et al. 2018, "Learning how to explain neural
networks: PatternNet and PatternAttribution", ICLR).

* :mod:`.layers`: which nodes carry a pattern (Conv, Gemm, MatMul with a constant, ``onnxlrp::Dense``) and their
  neuron-wise view (rows of inputs and outputs; every receptive-field patch of a Conv);
* :mod:`.fit`: the patterns fitted from sufficient statistics accumulated batch by batch over a data set;
* :mod:`.store`: the pattern file (``.npz``) written by ``onnxlrp patterns`` and read by the methods.
"""
from __future__ import annotations

from .fit import PatternStatistics, fit_patterns
from .layers import pattern_layers
from .store import FIT_TYPES, PATTERN_TYPES, Patterns, load_patterns, save_patterns

__all__ = ["FIT_TYPES", "PATTERN_TYPES", "PatternStatistics", "Patterns", "fit_patterns", "load_patterns",
           "pattern_layers", "save_patterns"]
