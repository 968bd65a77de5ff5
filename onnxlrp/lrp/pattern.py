"""PatternNet and PatternAttribution rules (Kindermans et al. 2018, "Learning how to explain neural networks:
PatternNet and PatternAttribution", ICLR; iNNvestigate's ``PatternNetReverseKernelLayer``).

Both are the layer's exact vector-Jacobian product with its weight parameter swapped, run through the kernel's
:class:`~onnxlrp.engine.kernel.LinearOp` (any Conv, Gemm, MatMul or dense op, strides, groups and padding included):

* :class:`PatternNet`: ``R_in = Aᵀ R_out``, the transposed layer with the pattern ``A`` in place of ``W`` (the
  signal ``s = a y`` projected back);
* :class:`PatternAttribution`: ``R_in = (W ⊙ A)ᵀ R_out``.

The bias takes no part (as in the gradient). ReLUs and max-pooling between the layers keep the exact gradient (the
gate of the forward activation, the max-pooling switches): the methods assign these rules only to the pattern
layers. A pattern has its layer's effective weight shape (``onnxlrp.patterns.store``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..engine.kernel import Call, Kernel, Rule, scatter_ports
from ..errors import MethodError, RuleNotApplicableError


@dataclass(frozen=True, eq=False)
class PatternNet(Rule):
    """``R_in = Aᵀ R_out``: the layer's VJP with its weight replaced by the pattern ``A`` (``pattern``, an array of
    the weight's shape)."""

    pattern: Any = field(default=None, repr=False)
    applies_to = frozenset({"conv", "dense"})

    def swapped(self, weight, pattern):
        """The parameter used in place of the weight."""
        return pattern

    def propagate(self, kernel: Kernel, call: Call, relevance: tuple) -> tuple:
        op = kernel.linear_op(call)
        if op is None or "weight" not in op.params:
            raise RuleNotApplicableError(f"rule {self.describe()} needs a weighted linear layer; node "
                                         f"{call.node.name!r} ({call.node.op_type}) is not one")
        if self.pattern is None:
            raise MethodError(f"rule {type(self).__name__} at node {call.node.name!r} has no pattern: pass "
                              "patterns=FILE (fitted with `onnxlrp patterns`)")
        weight = op.params["weight"]
        if tuple(self.pattern.shape) != tuple(weight.shape):
            raise MethodError(f"the pattern of node {call.node.name!r} has shape {tuple(self.pattern.shape)}, its "
                              f"weight {tuple(weight.shape)}")
        pattern = call.xp.asarray(self.pattern, dtype=weight.dtype)
        params = {**op.params, "weight": self.swapped(weight, pattern)}
        return scatter_ports(len(call.inputs), op.ports, op.vjp(relevance[0], params))

    def describe(self) -> str:
        shape = "not given" if self.pattern is None else "x".join(str(d) for d in self.pattern.shape)
        return f"{type(self).__name__}(pattern {shape})"


@dataclass(frozen=True, eq=False)
class PatternAttribution(PatternNet):
    """``R_in = (W ⊙ A)ᵀ R_out``: the layer's VJP with its weight ``W`` replaced by ``W ⊙ A``."""

    def swapped(self, weight, pattern):
        return weight * pattern
