"""Transformer rules of AttnLRP (Achtibat et al., ICML 2024; LXT) and CP-LRP (Ali et al., ICML 2022).

Products of two activations, the softmax rule of Prop. 3.1, no relevance (Stop), and LayerNorm with σ held
constant. :mod:`onnxlrp.methods.attnlrp` assigns them; the LRP presets use them on transformer parts too.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..engine.kernel import Rule, scatter_ports, unbroadcast
from ..errors import RuleNotApplicableError
from .core import divide
from .rules import Epsilon


@dataclass(frozen=True)
class UniformProduct(Rule):
    """Relevance of a product of two activations (category ``bilinear``).

    ``receivers`` are the input ports that get relevance (``None``: every varying factor; the others are held
    constant). With ``n`` receivers: an elementwise product gives each receiver ``R/n`` (LXT ``mul2``, Eq. 7); a
    matrix product gives ``R_k = x_k ⊙ J_kᵀ(R / (n·O + ε·sgn0))`` (``n = 2``: LXT ``matmul`` uniform-ε rule,
    Prop. 3.3; ``n = 1``: the ε-rule with the other operand as weights, CP-LRP). A quotient ``a/b`` always holds the
    divisor constant (a normalisation: the numerator receives ``R``).
    """

    epsilon: float = 1e-8
    receivers: tuple | None = None

    applies_to = frozenset({"bilinear"})

    def propagate(self, kernel, call, relevance):
        xp, r = call.xp, relevance[0]
        varying = [p for p in (0, 1) if call.varying[p]]
        product = getattr(kernel, "product", None)
        if product == "quotient":
            ports = [p for p in varying if p == 0]
        else:
            ports = [p for p in varying if self.receivers is None or p in self.receivers] or varying
        n = len(ports)
        if product in ("elementwise", "quotient"):
            return scatter_ports(len(call.inputs), ports, [unbroadcast(xp, r / n, call.inputs[p].shape) for p in ports])
        if product != "matmul":
            raise RuleNotApplicableError(f"rule {self.describe()} needs a product kernel; node {call.node.name!r} "
                                         f"({call.node.op_type}) is not one")
        (out,) = kernel.forward(call)
        grads = kernel.vjp(call, (divide(xp, r, n * out, self.epsilon),))
        return scatter_ports(len(call.inputs), ports, [call.inputs[p] * grads[p] for p in ports])


@dataclass(frozen=True)
class SoftmaxDT(Rule):
    """AttnLRP softmax rule (Prop. 3.1, DTD with bias): ``R_x = x ⊙ Jᵀ(R / y)`` with ``J`` the Jacobian at ``x``;
    ``x = −inf`` entries (masks) count as 0. Not conservative.

    * Softmax (``y = s``): ``R_x = x ⊙ (R − s ⊙ Σ_axis R)`` (no division), ``ΣR_x = Σ x⊙R − (x·s) ΣR``.
    * LogSoftmax (``y = log s``): the same first-order rule, ``R_x = x ⊙ (v − s ⊙ Σ_axis v)`` with
      ``v = R / (y + ε·sgn0(y))``. Seeded with the target's log-probability ``R = y_c e_c`` this is gradient × input
      of ``log p_c``: ``R_x = x ⊙ (e_c − s)``.
    """

    epsilon: float = 1e-12

    applies_to = frozenset({"softmax"})

    def propagate(self, kernel, call, relevance):
        xp, x = call.xp, call.inputs[0]
        v, axis = kernel.axis_view(call, x)
        s = kernel.softmax(xp, v, axis)
        r = relevance[0].reshape(v.shape)
        if getattr(kernel, "log", False):
            r = divide(xp, r, xp.log(s), self.epsilon)
        v0 = xp.where(xp.isinf(v), 0.0, v).astype(v.dtype, copy=False)
        out = v0 * (r - s * r.sum(axis=axis, keepdims=True))
        return scatter_ports(len(call.inputs), (0,), [out.reshape(x.shape)])


@dataclass(frozen=True)
class Stop(Rule):
    """No relevance flows to the node's inputs (LXT ``StopRelevanceRule``; CP-LRP on Softmax)."""

    def propagate(self, kernel, call, relevance):
        return (None,) * len(call.inputs)


@dataclass(frozen=True)
class LayerNormEpsilon(Epsilon):
    """AttnLRP LayerNorm rule: the ε-rule on the layer with σ held constant (``R_x = x ⊙ Jᵀ(R/(y + ε))``,
    ``J = diag(w/σ)(I − 11ᵀ/N)``), i.e. the identity on the normalisation; the bias absorbs its share."""

    epsilon: float = 1e-6
    zero_params: tuple = ()

    applies_to = frozenset({"layernorm"})
