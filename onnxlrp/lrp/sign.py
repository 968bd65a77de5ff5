"""The SIGN and SIGN-μ input rules (Gumpp et al. 2024), signxai2's Z and innvestigate's alpha-beta, and their
safe divisions. The method names that use them are parsed in :mod:`onnxlrp.methods.sign`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .core import add_terms, broadcast_param, clamp, forward_or_zero, modified_params, pullback, stabilize
from .rules import LinearRule

DIVISIONS = ("safe", "innvestigate")

# -------------------------------------------------------------------------------------------- helpers


def safe_divide(xp, r, z, division: str = "safe"):
    """``r / z`` without a stabiliser: ``"safe"`` gives 0 where ``z = 0``; ``"innvestigate"`` computes
    ``r / (z + 1e-7·[z = 0])`` (iNNvestigate ``SafeDivide``)."""
    zero = z == 0
    if division == "innvestigate":
        return r / (z + zero.astype(z.dtype) * 1e-7)
    if division != "safe":
        raise ValueError(f"division must be one of {', '.join(DIVISIONS)}; got {division!r}")
    return xp.where(zero, 0.0, r / xp.where(zero, 1.0, z)).astype(r.dtype, copy=False)


def sign_mu(xp, x, mu=0.0):
    """``S_μ(x) = +1 if x ≥ μ else −1`` (``mu=0``: ``sgn0``, zero counts as positive); ``mu`` may be an array
    broadcast against ``x`` (e.g. one threshold per feature)."""
    threshold = broadcast_param(xp, mu, x, "mu")
    return xp.where(x >= threshold, 1.0, -1.0).astype(x.dtype, copy=False)


def _check_division(division: str) -> None:
    if division not in DIVISIONS:
        raise ValueError(f"division must be one of {', '.join(DIVISIONS)}; got {division!r}")


# -------------------------------------------------------------------------------------------- rules


@dataclass(frozen=True)
class Z(LinearRule):
    """LRP-z with the bias, no ε (iNNvestigate ``ZRule``): ``R_i = x_i (Wᵀ s)_i``, ``s = R / z``, ``z = Wx + b``;
    outputs with ``z = 0`` per ``division`` (``"safe"``: dropped; ``"innvestigate"``: ``R/1e-7``)."""

    division: str = "safe"
    zero_params: tuple = ()

    def __post_init__(self):
        _check_division(self.division)

    def apply(self, op, r, call):
        xp = call.xp
        params = modified_params(op, lambda n, p: p, self.zero_params)
        z = op.forward(op.inputs, params)
        return pullback(op, safe_divide(xp, r, z, self.division), params, op.inputs, xp)


@dataclass(frozen=True)
class Sign(LinearRule):
    """SIGN input-layer rule (Gumpfer et al. 2023): ``R_i = sgn0(x_i)·(Wᵀ s)_i``, ``s = R / z``, ``z = Wx + b``.

    No ε by default (signxai TensorFlow). ``epsilon`` / ``stdfactor`` stabilise the denominator with
    ``ε = epsilon + stdfactor·std(x)`` (per sample) as signxai2's PyTorch hooks do; ``division`` handles ``z = 0``
    when there is no ε.
    """

    epsilon: float = 0.0
    stdfactor: float = 0.0
    division: str = "safe"
    zero_params: tuple = ()

    applies_to = frozenset({"conv", "dense"})

    def __post_init__(self):
        _check_division(self.division)
        if self.epsilon < 0 or self.stdfactor < 0:
            raise ValueError(f"epsilon and stdfactor must be non-negative; got {self.epsilon}, {self.stdfactor}")

    def signs(self, xp, x):
        return sign_mu(xp, x, 0.0)

    def apply(self, op, r, call):
        xp = call.xp
        params = modified_params(op, lambda n, p: p, self.zero_params)
        z = op.forward(op.inputs, params)
        if self.epsilon == 0 and self.stdfactor == 0:
            s = safe_divide(xp, r, z, self.division)
        else:
            x = op.inputs[0]
            eps = self.epsilon
            if self.stdfactor:
                std = x.std(axis=tuple(range(1, x.ndim)), keepdims=True)
                eps = eps + (self.stdfactor * std).reshape((x.shape[0],) + (1,) * (r.ndim - 1))
            s = r / stabilize(xp, z, eps)
        return [self.signs(xp, x) * g for x, g in zip(op.inputs, op.vjp(s, params))]


@dataclass(frozen=True)
class SignMu(Sign):
    """SIGN-μ input-layer rule: :class:`Sign` with ``S_μ(x) = +1 if x ≥ μ else −1`` in place of ``sgn0``; ``mu`` is
    a number or a sequence broadcast against the layer input (one threshold per feature)."""

    mu: Any = 0.0

    def signs(self, xp, x):
        return sign_mu(xp, x, self.mu)


@dataclass(frozen=True)
class AlphaBetaINN(LinearRule):
    """LRP-αβ with iNNvestigate's semantics (``AlphaBetaRule``): ``R = α R^α − β R^β`` with
    ``R^α = x⁺⊙W⁺ᵀs^α + x⁻⊙W⁻ᵀs^α``, ``s^α = R / (W⁺x⁺ + W⁻x⁻ + b)`` and
    ``R^β = x⁺⊙W⁻ᵀs^β + x⁻⊙W⁺ᵀs^β``, ``s^β = R / (W⁻x⁺ + W⁺x⁻ + b)``: with ``bias=True`` both denominators carry the
    full bias (``bias=False``: none). Requires ``β ≥ 0`` and ``α − β = 1``; no ε (``division`` for ``z = 0``)."""

    alpha: float = 1.0
    beta: float = 0.0
    bias: bool = True
    division: str = "safe"

    def __post_init__(self):
        _check_division(self.division)
        if self.beta < 0 or abs((self.alpha - self.beta) - 1.0) > 1e-12:
            raise ValueError(f"alpha-beta needs beta >= 0 and alpha - beta = 1; got alpha={self.alpha}, "
                             f"beta={self.beta}")

    def apply(self, op, r, call):
        xp = call.xp
        xpos = [clamp(xp, x, lo=0) for x in op.inputs]
        xneg = [clamp(xp, x, hi=0) for x in op.inputs]
        wpos = modified_params(op, lambda n, p: clamp(xp, p, lo=0), drop_bias=not self.bias)
        wneg = modified_params(op, lambda n, p: clamp(xp, p, hi=0), drop_bias=not self.bias)

        def part(w_for_pos, w_for_neg):
            z = forward_or_zero(op, xpos, w_for_pos, xp) + forward_or_zero(op, xneg, w_for_neg, xp)
            if not hasattr(z, "shape"):  # both halves skipped: all-zero inputs, no bias
                z = xp.zeros_like(r) + z
            s = safe_divide(xp, r, z, self.division)
            return add_terms(pullback(op, s, w_for_pos, xpos, xp), pullback(op, s, w_for_neg, xneg, xp))

        activator = part(wpos, wneg)
        if self.beta == 0:
            return [self.alpha * a for a in activator] if self.alpha != 1 else activator
        inhibitor = part(wneg, wpos)
        return [self.alpha * a - self.beta * b for a, b in zip(activator, inhibitor)]
