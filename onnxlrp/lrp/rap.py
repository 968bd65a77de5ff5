"""Relative Attributing Propagation's rules (Nam et al., AAAI 2020), as the authors' code computes them.

See :mod:`onnxlrp.methods.rap` for the method, the assignment of these rules and the reference.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..engine.kernel import LinearOp, Rule, scatter_ports
from .core import divide
from .rules import LinearRule

#: ops a relevance seed passes through unchanged between the logit layer and the explained output
_RESHAPES = ("Flatten", "Reshape", "Squeeze", "Unsqueeze", "Identity", "Dropout")


def safe(xp, a, b):
    """RAP's ``safe_divide``: ``a / b`` where ``b ≠ 0``, 0 where ``b = 0``."""
    return divide(xp, a, b, 0)


# ---------------------------------------------------------------------------------------------- BatchNorm unfolding


@dataclass(frozen=True, eq=False)
class Unfolded:
    """A Conv/dense node's parameters before BatchNormalization ``batchnorm`` was folded into it.

    ``weight``/``bias`` are in the folded node's layout (Conv ``(O, I, k…)``, dense ``(K, M)``); ``keep`` is the
    per-channel ``[k ≠ 0]`` of the BatchNorm (``k = γ/√(σ²+ε)``: ``γ ≠ 0``), ``sign`` its sign; ``axis`` is
    ``"conv"`` (channels on axis 1) or ``"dense"`` (the last axis). ``weight is None`` means the original could not
    be located: the folded weight is then used with each channel's sign restored (``W'·sign(k)``, a positive
    rescaling of the original, to which RAP is invariant) and no pre-BatchNorm mask.
    """

    batchnorm: str
    keep: np.ndarray
    sign: np.ndarray
    axis: str
    weight: np.ndarray | None = None
    bias: np.ndarray | None = None
    _cache: dict = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:
        return f"BatchNorm({self.batchnorm!r})"

    def arrays(self, xp, dtype):
        key = (xp.__name__, np.dtype(dtype).str)
        if key not in self._cache:
            def conv(a):
                return None if a is None else xp.asarray(a, dtype=dtype)

            self._cache[key] = (conv(self.weight), conv(self.bias), conv(self.keep.astype(np.float64)),
                                conv(self.sign))
        return self._cache[key]

    def channel_shape(self, ndim: int) -> tuple:
        return (1, -1) + (1,) * (ndim - 2) if self.axis == "conv" else (1,) * (ndim - 1) + (-1,)



def _unfold(op: LinearOp, r, unfold: Unfolded | None, xp):
    """The op with its original (pre-folding) parameters and the relevance after the code's BatchNorm step."""
    if unfold is None:
        return op, r
    x = op.inputs[0]
    weight, bias, keep, sign = unfold.arrays(xp, x.dtype)
    if weight is None:
        folded = op.params["weight"]
        shape = (-1,) + (1,) * (folded.ndim - 1) if unfold.axis == "conv" else (1,) * (folded.ndim - 1) + (-1,)
        params = {**op.params, "weight": folded * sign.reshape(shape), "bias": None}
        return LinearOp(op.ports, op.inputs, params, op.forward, op.vjp), r * keep.reshape(unfold.channel_shape(r.ndim))
    params = {**op.params, "weight": weight, "bias": bias}
    pre = op.forward(op.inputs, params)  # the BatchNorm's input
    mask = (pre != 0) & (keep.reshape(unfold.channel_shape(pre.ndim)) != 0)
    return LinearOp(op.ports, op.inputs, params, op.forward, op.vjp), r * mask


def _parts(op: LinearOp, xp):
    """Bias-free parameter sets ``(W, W⁺, W⁻)``."""
    def with_weight(w):
        return {**op.params, "weight": w, "bias": None}

    w = op.params["weight"]
    return with_weight(w), with_weight(xp.maximum(w, 0)), with_weight(xp.minimum(w, 0))


def _vjp(op: LinearOp, s, params):
    return op.vjp(s, params)[0]


# ---------------------------------------------------------------------------------------------- rules


@dataclass(frozen=True)
class RapFirst(LinearRule):
    """RAP's first step at the logit layer: bias split over ``x⁺`` inputs by ``Pos``/``Neg``, then the
    absolute-influence normalisation ``A = |r|·Σr/Σ|r|`` (see the module docstring)."""

    applies_to = frozenset({"dense"})
    unfolded: Unfolded | None = None

    def apply(self, op, r, call):
        xp = call.xp
        op, pd = _unfold(op, r, self.unfolded, xp)
        return [redistribute(xp, first_contributions(xp, op, pd))]


def first_contributions(xp, op: LinearOp, pd):
    """The first step's raw contributions ``r`` (before the normalisation; ``Σr = z_c``) for the seed ``pd``."""
    x = op.inputs[0]
    _, wp, wn = _parts(op, xp)
    px, nx = xp.maximum(x, 0), xp.minimum(x, 0)
    z1, z2 = op.forward([px], wp), op.forward([px], wn)
    z3, z4 = op.forward([nx], wp), op.forward([nx], wn)
    pos = (z1 * pd + z4 * pd).sum(axis=-1, keepdims=True)
    neg = (z2 * pd + z3 * pd).sum(axis=-1, keepdims=True)
    bias = op.params.get("bias")
    bias = xp.zeros_like(pd) if bias is None else bias * pd  # a logit layer without bias: bias 0
    bp, bn = bias * safe(xp, pos, pos + neg), bias * safe(xp, neg, pos + neg)
    return (px * _vjp(op, safe(xp, z1 * pd, z1) + safe(xp, bp, z1), wp)
            + px * _vjp(op, safe(xp, z2 * pd, z2) + safe(xp, bn, z2), wn)
            + nx * _vjp(op, safe(xp, z3 * pd, z3), wp)
            + nx * _vjp(op, safe(xp, z4 * pd, z4), wn))


def redistribute(xp, r):
    """Absolute-influence normalisation over the last axis: ``|r|·⟦Σr / Σ|r|⟧``."""
    rp, rn = xp.maximum(r, 0), xp.minimum(r, 0)
    total = (rp - rn).sum(axis=-1, keepdims=True)
    net = (rp + rn).sum(axis=-1, keepdims=True)
    return safe(xp, rp, total) * net - safe(xp, rn, total) * net


def shift(xp, c, r, axes):
    """``shift_rel``: subtract ``(ΣC − ΣR)`` equally from every input with ``C ≠ 0`` (sums over ``axes``)."""
    active = c != 0
    excess = c.sum(axis=axes, keepdims=True) - r.sum(axis=axes, keepdims=True)
    return c - safe(xp, excess, active.sum(axis=axes, keepdims=True).astype(c.dtype)) * active


@dataclass(frozen=True)
class RapHidden(LinearRule):
    """RAP on a hidden Conv (``variant="conv"``) or dense layer (``variant="linear"``): positive/negative
    propagation along absolute contributions, then the uniform shift over active inputs, per input-sign branch."""

    applies_to = frozenset({"conv", "dense"})
    variant: str = "conv"
    unfolded: Unfolded | None = None

    def __post_init__(self):
        if self.variant not in ("conv", "linear"):
            raise ValueError(f"variant must be 'conv' or 'linear'; got {self.variant!r}")

    def apply(self, op, r, call):
        xp = call.xp
        op, r = _unfold(op, r, self.unfolded, xp)
        x = op.inputs[0]
        axes = tuple(range(1, x.ndim)) if self.variant == "conv" else (-1,)
        out = None
        for u in (xp.maximum(x, 0), -xp.minimum(x, 0)):  # branch x⁺, branch |x⁻|
            if not getattr(xp, "symbolic", False) and not bool(xp.any(u)):
                continue  # C = 0 and the shift of 0 is 0 (a shortcut; compiled, the branch is computed)
            c = shift(xp, branch_contributions(xp, op, r, u, self.variant), r, axes)
            out = c if out is None else out + c
        return [xp.zeros_like(x) if out is None else out]


def branch_contributions(xp, op: LinearOp, r, u, variant: str):
    """``C`` of one branch (input magnitudes ``u ≥ 0``) before the shift."""
    _, fp, wn = _parts(op, xp)
    gp = {**wn, "weight": -wn["weight"]}
    rp, rn = xp.maximum(r, 0), xp.minimum(r, 0)
    p, n = op.forward([u], fp), op.forward([u], gp)
    t = p + n
    active = (t != 0).astype(r.dtype)
    q = safe(xp, n, t)
    s_f = safe(xp, rp * active, p)
    s_g = safe(xp, rp * q, n) + safe(xp, rn * q, n)
    if variant == "linear":
        s_f = s_f + safe(xp, rn * active, p)  # negative relevance through the positive contributions
    else:
        s_g = s_g + safe(xp, rn * active, n)  # through the negative ones
    return u * (_vjp(op, s_f, fp) + _vjp(op, s_g, gp))


@dataclass(frozen=True)
class RapInput(LinearRule):
    """RAP's input layer: bias-free zᴮ with the per-sample minimum and maximum of the layer's input as bounds."""

    applies_to = frozenset({"conv", "dense"})
    unfolded: Unfolded | None = None

    def apply(self, op, r, call):
        xp = call.xp
        op, r = _unfold(op, r, self.unfolded, xp)
        x = op.inputs[0]
        axes = tuple(range(1, x.ndim))
        low = xp.broadcast_to(x.min(axis=axes, keepdims=True), x.shape)
        high = xp.broadcast_to(x.max(axis=axes, keepdims=True), x.shape)
        w, wp, wn = _parts(op, xp)
        z = op.forward([x], w) - op.forward([low], wp) - op.forward([high], wn)
        s = safe(xp, r, z)
        return [x * _vjp(op, s, w) - low * _vjp(op, s, wp) - high * _vjp(op, s, wn)]


@dataclass(frozen=True)
class RapMaxPool(Rule):
    """The z-rule on max pooling, ``R_in = x ⊙ Jᵀ⟦R/z⟧``: the arg-max takes ``R_j``; a window max of 0 drops it."""

    applies_to = frozenset({"maxpool"})

    def propagate(self, kernel, call, relevance):
        xp = call.xp
        z = call.outputs[0] if call.outputs and call.outputs[0] is not None else kernel.forward(call)[0]
        s = safe(xp, relevance[0], z)
        grads = (s,) + tuple(None for _ in call.node.outputs[1:])
        g = kernel.vjp(call, grads)[0]
        return scatter_ports(len(call.inputs), (0,), [call.inputs[0] * g])


@dataclass(frozen=True)
class RapBatchNorm(Rule):
    """RAP's BatchNorm: ``R_in = R ⊙ [x·k ≠ 0]`` (pass-through where the input and the scale are non-zero)."""

    applies_to = frozenset({"batchnorm"})

    def propagate(self, kernel, call, relevance):
        x, gamma = call.inputs[0], call.inputs[1]
        keep = (gamma != 0).reshape((1, -1) + (1,) * (x.ndim - 2))
        return scatter_ports(len(call.inputs), (0,), [relevance[0] * ((x != 0) & keep)])


@dataclass(frozen=True)
class RapConcat(Rule):
    """The z-rule on Concat (the code's ``Cat``): ``R`` routed back where the value is non-zero."""

    def propagate(self, kernel, call, relevance):
        y = call.outputs[0] if call.outputs and call.outputs[0] is not None else kernel.forward(call)[0]
        return kernel.vjp(call, (relevance[0] * (y != 0),))
