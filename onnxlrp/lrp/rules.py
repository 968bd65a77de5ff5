"""LRP rules and gradient routings: op-agnostic policies applied to a kernel's forward/VJP.

Linear rules follow zennit's ``BasicHook`` decomposition (Montavon et al. 2019, "Layer-wise relevance propagation:
an overview"): for each term *k*, the input and the parameters are modified, the op is re-run forward
(``z_k = f(x_k; θ_k)``), the output relevance is divided by a stabilised denominator, pulled back through the op's
VJP (``c_k = J(θ_k)ᵀ s_k``) and the terms are reduced (``R_in = Σ_k x_k ⊙ c_k``). Notation: ``x⁺ = max(x, 0)``,
``x⁻ = min(x, 0)``, likewise for parameters; ``sgn0(z) = +1 if z ≥ 0 else −1``.

Every linear rule works on any kernel exposing a :class:`~onnxlrp.registry.LinearOp` (Conv, Gemm, MatMul with a
constant, pooling, residual Add, ...). Rules are frozen dataclasses: printable, hashable, comparable.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..engine.kernel import Call, Kernel, LinearOp, Rule, scatter_ports, unbroadcast
from ..engine.kernel import Gradient as Gradient  # the exact VJP: in the catalogue too
from ..errors import RuleNotApplicableError
from .core import (
    add_terms,
    broadcast_param,
    clamp,
    divide,
    forward_or_zero,
    layer_output,
    modified_params,
    pullback,
    stabilize,
)

# -------------------------------------------------------------------------------------------- base class


class LinearRule(Rule):
    """A rule defined on a :class:`LinearOp`; subclasses implement :meth:`apply`."""

    applies_to = frozenset({"conv", "dense", "avgpool", "sum", "batchnorm", "affine"})

    def propagate(self, kernel: Kernel, call: Call, relevance: tuple) -> tuple:
        op = kernel.linear_op(call)
        if op is None:
            raise RuleNotApplicableError(
                f"rule {self.describe()} needs a linear op but node {call.node.name!r} ({call.node.op_type}) is not "
                "linear in its inputs")
        return scatter_ports(len(call.inputs), op.ports, self.apply(op, relevance[0], call))

    def apply(self, op: LinearOp, r, call: Call) -> list:
        raise NotImplementedError


# -------------------------------------------------------------------------------------------- routing rules


@dataclass(frozen=True)
class Pass(Rule):
    """Identity: ``R_in = R_out`` for an elementwise op (zennit ``Pass``); relevance summed over broadcast axes."""

    def propagate(self, kernel, call, relevance):
        ports = kernel.data_inputs(call.node, {t for t, v in zip(call.node.inputs, call.varying) if v})
        r = relevance[0]
        return scatter_ports(len(call.inputs), ports,
                             [unbroadcast(call.xp, r, call.inputs[p].shape) for p in ports])


@dataclass(frozen=True)
class GuidedBackprop(Rule):
    """Guided backprop on ReLU (Springenberg et al. 2015): ``R_in = 1[x > 0] · g · 1[g > 0]``."""

    applies_to = frozenset({"activation"})

    def propagate(self, kernel, call, relevance):
        x, g = call.inputs[0], relevance[0]
        return scatter_ports(len(call.inputs), (0,), [g * ((x > 0) & (g > 0))])


@dataclass(frozen=True)
class DeconvNet(Rule):
    """DeconvNet on ReLU (Zeiler & Fergus 2014): ``R_in = max(g, 0)``, ignoring the forward mask."""

    applies_to = frozenset({"activation"})

    def propagate(self, kernel, call, relevance):
        g = relevance[0]
        return scatter_ports(len(call.inputs), (0,), [call.xp.maximum(g, 0)])


# -------------------------------------------------------------------------------------------- LRP rules


@dataclass(frozen=True)
class Epsilon(LinearRule):
    """LRP-ε (Bach et al. 2015): ``R_i = x_i Σ_j w_ij R_j / (z_j + ε·sgn0(z_j))``; ``ε = 0`` is LRP-0.

    With ``epsilon=0`` outputs with ``z_j = 0`` pass no relevance (safe division). ``zero_params`` names parameters
    (e.g. ``('bias',)``) set to zero for the relevance computation only.
    """

    epsilon: float = 1e-6
    zero_params: tuple = ()

    def apply(self, op, r, call):
        xp = call.xp
        params = modified_params(op, lambda n, p: p, self.zero_params)
        z = layer_output(op, params, call, r)
        return pullback(op, divide(xp, r, z, self.epsilon), params, op.inputs, xp)


@dataclass(frozen=True)
class Norm(Epsilon):
    """zennit ``Norm``: the ε-rule on a parameter-free linear op (average pooling, residual Add), a proportional split
    ``R_k = x_k ⊙ R / (Σ_k x_k + ε·sgn0)``."""

    epsilon: float = 1e-6


@dataclass(frozen=True)
class StdxEpsilon(LinearRule):
    """ε-rule with ``ε = stdfactor · std(x)`` per sample, the population std of the layer input (signxai's
    ``StdxEpsilonRule``, computed per sample rather than over the batch)."""

    stdfactor: float = 0.25
    zero_params: tuple = ()

    def apply(self, op, r, call):
        xp = call.xp
        x = op.inputs[0]
        axes = tuple(range(1, x.ndim))
        eps = (self.stdfactor * x.std(axis=axes, keepdims=True)).reshape((x.shape[0],) + (1,) * (r.ndim - 1))
        params = modified_params(op, lambda n, p: p, self.zero_params)
        z = layer_output(op, params, call, r)
        denominator = stabilize(xp, z, eps)  # exactly 0 only when eps = 0 (constant layer input) and z = 0
        zero = denominator == 0
        s = xp.where(zero, 0.0, r / xp.where(zero, 1.0, denominator)).astype(r.dtype, copy=False)
        return pullback(op, s, params, op.inputs, xp)


@dataclass(frozen=True)
class AlphaBeta(LinearRule):
    """LRP-αβ (Bach et al. 2015), zennit semantics: ``R_i = α[x⁺_i(W⁺ᵀs^α)_i + x⁻_i(W⁻ᵀs^α)_i]
    − β[x⁺_i(W⁻ᵀs^β)_i + x⁻_i(W⁺ᵀs^β)_i]`` with ``s^α = R/(W⁺x⁺ + W⁻x⁻ + b⁺)``, ``s^β = R/(W⁻x⁺ + W⁺x⁻ + b⁻)``.
    Any ``α, β ≥ 0`` (not both 0). Each term is conserved on its own (``Σ_i R^α_i = R = Σ_i R^β_i`` where the
    denominators are non-zero, less the share of the bias), so the layer's input relevance sums to ``(α − β)·ΣR``:
    conservative only when ``α − β = 1`` (zennit's and the papers' usual setting). ``α = 0, β = 1`` gives the
    β-only (negative) map, its sum ``−ΣR``; ``α = 3, β = 1`` amplifies by 2 per layer."""

    alpha: float = 2.0
    beta: float = 1.0
    stabilizer: float = 1e-6
    zero_params: tuple = ()

    def __post_init__(self):
        if self.alpha < 0 or self.beta < 0:
            raise ValueError(f"alpha and beta must be non-negative; got alpha={self.alpha}, beta={self.beta}")
        if self.alpha == 0 and self.beta == 0:
            raise ValueError("alpha and beta cannot both be 0 (no relevance would pass); got alpha=0, beta=0")

    def apply(self, op, r, call):
        xp = call.xp
        xpos = [clamp(xp, x, lo=0) for x in op.inputs]
        xneg = [clamp(xp, x, hi=0) for x in op.inputs]
        wpos = modified_params(op, lambda n, p: clamp(xp, p, lo=0), self.zero_params)
        wneg = modified_params(op, lambda n, p: clamp(xp, p, hi=0), self.zero_params)
        wpos_nb = modified_params(op, lambda n, p: clamp(xp, p, lo=0), self.zero_params, drop_bias=True)
        wneg_nb = modified_params(op, lambda n, p: clamp(xp, p, hi=0), self.zero_params, drop_bias=True)
        if self.alpha == 0:  # the β-only map: the α term is not computed
            return [-self.beta * b for b in self._inhibitor(op, r, xpos, xneg, wneg, wpos_nb, xp)]
        z_a = forward_or_zero(op, xpos, wpos, xp) + forward_or_zero(op, xneg, wneg_nb, xp)
        s_a = divide(xp, r, z_a, self.stabilizer)
        r_a = add_terms(pullback(op, s_a, wpos, xpos, xp), pullback(op, s_a, wneg_nb, xneg, xp))
        if self.beta == 0:
            return [self.alpha * a for a in r_a] if self.alpha != 1 else r_a
        r_b = self._inhibitor(op, r, xpos, xneg, wneg, wpos_nb, xp)
        return [self.alpha * a - self.beta * b for a, b in zip(r_a, r_b)]

    def _inhibitor(self, op, r, xpos, xneg, wneg, wpos_nb, xp):
        """``R^β = x⁺(W⁻ᵀs^β) + x⁻(W⁺ᵀs^β)``, ``s^β = R/(W⁻x⁺ + W⁺x⁻ + b⁻)``."""
        z_b = forward_or_zero(op, xpos, wneg, xp) + forward_or_zero(op, xneg, wpos_nb, xp)
        s_b = divide(xp, r, z_b, self.stabilizer)
        return add_terms(pullback(op, s_b, wneg, xpos, xp), pullback(op, s_b, wpos_nb, xneg, xp))


@dataclass(frozen=True)
class ZPlus(AlphaBeta):
    """z⁺ rule = α1β0 with zennit semantics (negative inputs contribute through ``W⁻``)."""

    alpha: float = 1.0
    beta: float = 0.0
    stabilizer: float = 1e-6
    zero_params: tuple = ()


@dataclass(frozen=True)
class Gamma(LinearRule):
    """Generalised LRP-γ (Montavon et al. 2019; Andéol et al. 2021), zennit semantics. With ``W↑ = W + γW⁺``,
    ``W↓ = W + γW⁻``: ``s↑ = [z>0] R / (W↑x⁺ + W↓x⁻ + b↑)``, ``s↓ = [z<0] R / (W↓x⁺ + W↑x⁻ + b↓)``,
    ``R_i = x⁺_i(W↑ᵀs↑ + W↓ᵀs↓)_i + x⁻_i(W↓ᵀs↑ + W↑ᵀs↓)_i``; ``z`` is the unmodified output."""

    gamma: float = 0.25
    stabilizer: float = 1e-6
    zero_params: tuple = ()

    def apply(self, op, r, call):
        xp, g = call.xp, self.gamma
        xpos = [clamp(xp, x, lo=0) for x in op.inputs]
        xneg = [clamp(xp, x, hi=0) for x in op.inputs]
        up = lambda n, p: p + g * clamp(xp, p, lo=0)  # noqa: E731
        down = lambda n, p: p + g * clamp(xp, p, hi=0)  # noqa: E731
        w_up, w_down = modified_params(op, up, self.zero_params), modified_params(op, down, self.zero_params)
        w_up_nb = modified_params(op, up, self.zero_params, drop_bias=True)
        w_down_nb = modified_params(op, down, self.zero_params, drop_bias=True)
        z = op.forward(op.inputs, op.params)
        s_up = (z > 0) * divide(xp, r, forward_or_zero(op, xpos, w_up, xp) + forward_or_zero(op, xneg, w_down_nb, xp),
                                self.stabilizer)
        s_down = (z < 0) * divide(xp, r, forward_or_zero(op, xpos, w_down, xp) + forward_or_zero(op, xneg, w_up_nb, xp),
                                  self.stabilizer)
        out = add_terms(pullback(op, s_up, w_up, xpos, xp), pullback(op, s_up, w_down_nb, xneg, xp))
        out = add_terms(out, pullback(op, s_down, w_down, xpos, xp))
        return add_terms(out, pullback(op, s_down, w_up_nb, xneg, xp))


@dataclass(frozen=True)
class ZBox(LinearRule):
    """zᴮ / box rule (Montavon et al. 2017) for inputs bounded by ``low ≤ x ≤ high``:
    ``R_i = x_i(Wᵀs)_i − l_i(W⁺ᵀs)_i − h_i(W⁻ᵀs)_i`` with ``s = R / (Wx − W⁺l − W⁻h)``.

    ``low``/``high`` are scalars, arrays broadcastable to the input (e.g. per channel ``(1, C, 1, 1)``), or ``None``
    for the per-sample minimum / maximum of the layer input.
    """

    low: Any = None
    high: Any = None
    stabilizer: float = 1e-6
    zero_params: tuple = ()

    def apply(self, op, r, call):
        xp = call.xp
        x = op.inputs[0]
        axes = tuple(range(1, x.ndim))
        low = broadcast_param(xp, x.min(axis=axes, keepdims=True) if self.low is None else self.low, x, "low")
        high = broadcast_param(xp, x.max(axis=axes, keepdims=True) if self.high is None else self.high, x, "high")
        w = modified_params(op, lambda n, p: p, self.zero_params)
        wpos = modified_params(op, lambda n, p: clamp(xp, p, lo=0), self.zero_params)
        wneg = modified_params(op, lambda n, p: clamp(xp, p, hi=0), self.zero_params)
        z = op.forward([x], w) - op.forward([low], wpos) - op.forward([high], wneg)
        s = divide(xp, r, z, self.stabilizer)
        (a,), (b,), (c,) = (pullback(op, s, w, [x], xp), pullback(op, s, wpos, [low], xp),
                            pullback(op, s, wneg, [high], xp))
        return [a - b - c]


@dataclass(frozen=True)
class Flat(LinearRule):
    """Flat rule (Lapuschkin et al. 2019): input and weights replaced by ones, bias dropped:
    ``R_i = Σ_j [i ∈ RF(j)] R_j / n_j`` with ``n_j`` the receptive-field size. Independent of ``x`` and ``W``."""

    stabilizer: float = 1e-6
    zero_params: tuple = ()

    def apply(self, op, r, call):
        xp = call.xp
        ones = [xp.ones_like(x) for x in op.inputs]
        params = modified_params(op, lambda n, p: xp.ones_like(p), self.zero_params, drop_bias=True)
        s = divide(xp, r, op.forward(ones, params), self.stabilizer)
        return list(op.vjp(s, params))


@dataclass(frozen=True)
class WSquare(LinearRule):
    """w² rule (Montavon et al. 2017): ``R_i = Σ_j w_ij² R_j / (Σ_i' w_i'j² + b_j²)`` (zennit keeps ``b²``; add
    ``'bias'`` to ``zero_params`` to drop it). Independent of ``x``."""

    stabilizer: float = 1e-6
    zero_params: tuple = ()

    def apply(self, op, r, call):
        xp = call.xp
        ones = [xp.ones_like(x) for x in op.inputs]
        params = modified_params(op, lambda n, p: p * p, self.zero_params)
        s = divide(xp, r, op.forward(ones, params), self.stabilizer)
        return list(op.vjp(s, params))
