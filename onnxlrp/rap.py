"""Relative Attributing Propagation (RAP; Nam, Gur, Choi, Wolf & Lee, AAAI 2020, arXiv:1904.00605), computed as the
authors' code computes it (wjNam/Relative_Attributing_Propagation ``7fa9682``, ``modules/layers.py``
``RAP_relprop``; ALGORITHMS.md §4 gives the closed forms). Method name ``rap``; no parameters.

RAP separates relevant (positive) from irrelevant (negative) evidence by *relative influence* and keeps the
relevance conserved. Notation: ``⟦a/b⟧`` is RAP's safe division, ``a/b`` where ``b ≠ 0`` and 0 where ``b = 0``
(``rules.divide`` with ``ε = 0``); ``W⁺ = max(W, 0)``, ``|W⁻| = −min(W, 0)``. All sums are per sample.

* **Seed**: one-hot ``e_c`` with value exactly 1 (``relevance_init`` is ignored: RAP always seeds one-hot).
* **First step** (the dense node producing the logits, reached through reshapes): with ``x`` its input,
  ``z⁺⁺ = Σ x⁺w⁺``, ``z⁺⁻ = Σ x⁺w⁻``, ``z⁻⁺ = Σ x⁻w⁺``, ``z⁻⁻ = Σ x⁻w⁻`` (class ``c``), ``Pos = z⁺⁺ + z⁻⁻``,
  ``Neg = z⁺⁻ + z⁻⁺``: ``r_i = x_i w_ic + b_c(⟦Pos/(Pos+Neg)⟧⟦x⁺_i w⁺_ic / z⁺⁺⟧ + ⟦Neg/(Pos+Neg)⟧⟦x⁺_i w⁻_ic/z⁺⁻⟧)``
  (``Σ r = z_c``), then the absolute-influence normalisation ``A_i = |r_i| ⟦Σr / Σ|r|⟧`` (sums over the last axis,
  as the code's ``dim=-1``): every ``A_i`` has the sign of ``z_c`` and ``Σ A = z_c``.
* **Hidden Conv / dense** (bias ignored): for ``u = x⁺`` and, separately, ``u = |x⁻|``, with ``F = W⁺``,
  ``G = |W⁻|``, ``P = Fu``, ``N = Gu``, ``T = P + N``, ``q = ⟦N/T⟧``, ``R = R⁺ + R⁻``:
  ``C = u ⊙ [Fᵀ⟦R⁺[T≠0]/P⟧ + Gᵀ⟦R q/N⟧ + Hᵀ⟦R⁻[T≠0]/D⟧]`` with ``(H, D) = (G, N)`` on Conv and ``(F, P)`` on dense
  layers (the code's Linear/Conv asymmetry, kept), then the uniform shift over active neurons
  ``K = C − [C≠0]·⟦(ΣC − ΣR) / #{C≠0}⟧`` (sums over all non-batch axes on Conv, the last axis on dense layers, as the
  code), so ``ΣK = ΣR``. The layer returns the sum of both branches.
* **Input Conv** (every Conv with no Conv/dense node between it and the explained input): zᴮ without bias, bounds
  the per-sample minimum ``ℓ`` and maximum ``h`` of the Conv's input, ``s = ⟦R / (Wx − W⁺ℓ − W⁻h)⟧``,
  ``R_in = x⊙Wᵀs − ℓ⊙W⁺ᵀs − h⊙W⁻ᵀs``.
* **MaxPool, AveragePool, GlobalAveragePool, residual Add**: the z-rule ``R_in = x ⊙ Jᵀ⟦R/z⟧`` (max pooling: the
  arg-max takes ``R_j``; a window whose max is 0 drops it). Concat: the z-rule too (``R·[y≠0]`` routed back).
* **BatchNormalization**: ``R_in = R ⊙ [x·k ≠ 0]`` (the code's bias split and re-add reduce to this); ReLU and every
  other activation, Dropout, constant shifts/scalings: pass-through. Reshapes: their exact adjoint.
* **Fan-out**: contributions are summed (the walker's accumulators), so BasicBlock ResNets work.

Decisions on the code's quirks (ALGORITHMS.md §4):

* The first step is triggered at the node producing the logits, not by ``R.max() == 1``.
* The input layer is found on the graph, not by ``X.shape[1] == 3``: a 1-channel digits CNN gets zᴮ on its first
  Conv; a hidden Conv with 3 input channels does not. A first *dense* layer (MLP) gets the hidden dense rule, as in
  the code (its Linear never uses zᴮ).
* A logit layer without bias is treated as having bias 0 (the code would crash).
* Hidden-layer biases are ignored (the code's bias handling is commented out); BatchNorm's squared variance is
  harmless (only ``k ≠ 0`` matters) and kept as ``[x ≠ 0]·[γ ≠ 0]``.
* A hidden layer whose input has negative entries outputs ``2ΣR`` (both branches are conserved separately): kept,
  as in the code. On ReLU networks this never happens.
* Groups and dilation are honoured (the code's transposed convolutions assume 1); on ordinary convolutions the result
  is the same.
* The code's broken ``Clone`` (BasicBlock) is replaced by summing fan-out.
* **BatchNorm folding.** RAP is not invariant to folding a BatchNorm with a negative scale into the preceding layer
  (``W⁺`` and ``|W⁻|`` swap) and the code applies the BatchNorm mask before the convolution's shift. Where
  onnxlrp's canonizer folded a BatchNormalization into a Conv/Gemm/dense node, RAP "unfolds" it: the node's rule uses
  the original weight and bias from the model and masks its output relevance with ``[x_pre·k ≠ 0]``, which is
  exactly the code's BatchNorm step followed by its Conv step. When the *exporter* already folded BatchNorm (the
  legacy ``torch.onnx.export`` does in eval mode with ``do_constant_folding=True``) the original weights are gone;
  export with BatchNormalization kept (``training=TrainingMode.PRESERVE`` or ``do_constant_folding=False``) to match
  the authors' code on networks with negative BatchNorm scales.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import MethodError
from .methods import Method, register_method
from .presets import first_layers
from .registry import LinearOp, scatter_ports
from .rules import Gradient, LinearRule, Norm, Pass, Rule, divide

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
    per-channel ``[k ≠ 0]`` of the BatchNorm (``k = γ/√(σ²+ε)``: ``γ ≠ 0``), ``sign`` its sign; ``axis`` is ``"conv"`` (channels on
    axis 1) or ``"dense"`` (the last axis). ``weight is None`` means the original could not be located: the folded
    weight is then used with each channel's sign restored (``W'·sign(k)``, a positive rescaling of the original, to
    which RAP is invariant) and no pre-BatchNorm mask.
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
            conv = (lambda a: None if a is None else xp.asarray(a, dtype=dtype))
            self._cache[key] = (conv(self.weight), conv(self.bias), conv(self.keep.astype(np.float64)),
                                conv(self.sign))
        return self._cache[key]

    def channel_shape(self, ndim: int) -> tuple:
        return (1, -1) + (1,) * (ndim - 2) if self.axis == "conv" else (1,) * (ndim - 1) + (-1,)


def _const(ex, name):
    if not name:
        return None
    value = ex.graph.constants.get(name)
    return None if value is None else np.asarray(value, dtype=np.float64)


def _original_params(ex, pre) -> tuple[np.ndarray, np.ndarray | None] | None:
    """``(weight, bias)`` of the original node ``pre`` producing the BatchNorm's input, in the layout of the node the
    canonizer made of it, or ``None``."""
    if pre is None or pre.domain != "":
        return None
    if pre.op_type == "Conv":
        weight = _const(ex, pre.inputs[1])
        bias = _const(ex, pre.inputs[2]) if len(pre.inputs) > 2 else None
        return None if weight is None else (weight, bias)
    if pre.op_type == "Gemm":
        b = _const(ex, pre.inputs[1])
        c = _const(ex, pre.inputs[2]) if len(pre.inputs) > 2 else None
        if b is None or pre.attrs.get("transA", 0):
            return None
        weight = float(pre.attrs.get("alpha", 1.0)) * (b.T if pre.attrs.get("transB", 0) else b)
        bias = None if c is None else float(pre.attrs.get("beta", 1.0)) * np.broadcast_to(c, (weight.shape[1],))
        return weight, bias
    if pre.op_type == "Add":  # MatMul + Add fused into a dense layer by the canonizer
        for port in (0, 1):
            matmul = ex.graph.producer.get(pre.inputs[port])
            bias = _const(ex, pre.inputs[1 - port])
            if matmul is not None and matmul.op_type == "MatMul" and bias is not None:
                weight = _const(ex, matmul.inputs[1])
                if weight is not None and weight.ndim == 2:
                    return weight, np.broadcast_to(bias, (weight.shape[1],)).copy()
    return None


def unfolded(ex, node) -> Unfolded | None:
    """The BatchNormalization the canonizer folded into ``node`` (a Conv or dense node), or ``None``."""
    bn = ex.graph.producer.get(node.outputs[0]) if node.outputs else None
    if bn is None or bn.op_type != "BatchNormalization" or bn.domain != "" or node.op_type == "BatchNormalization":
        return None
    gamma = _const(ex, bn.inputs[1])
    if gamma is None:
        return None
    # the code's k = γ/√(σ⁴+ε) (variance squared) matters only through k ≠ 0, i.e. γ ≠ 0, and its sign, γ's
    axis = "conv" if node.op_type == "Conv" else "dense"
    original = _original_params(ex, ex.graph.producer.get(bn.inputs[0]))
    weight, bias = original if original is not None else (None, None)
    return Unfolded(batchnorm=bn.name, keep=gamma != 0, sign=np.sign(gamma), axis=axis, weight=weight, bias=bias)


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
            if not bool(xp.any(u)):
                continue  # C = 0 and the shift of 0 is 0
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


# ---------------------------------------------------------------------------------------------- assignment


def logit_node(ex):
    """The dense node producing the explained logits (through reshapes), where RAP's first step runs."""
    on_path = {n.name for n in ex.path.nodes}
    node = ex.cgraph.producer.get(ex.output_name)
    while (node is not None and node.name in on_path and node.op_type in _RESHAPES
           and ex.categories.get(node.name) == "structural"):
        node = ex.cgraph.producer.get(node.inputs[0])
    if node is None or node.name not in on_path or ex.categories.get(node.name) != "dense":
        found = "nothing" if node is None else f"{node.op_type} node {node.name!r}"
        raise MethodError(f"RAP needs the logits {ex.output_name!r} to come from a dense layer (Gemm, MatMul with "
                          f"constant weights), where its first step runs; they come from {found}")
    return node


def assign(ex, params) -> dict[str, Rule]:
    """RAP's rule for every node on the relevance path."""
    nodes, categories = ex.path.nodes, ex.categories
    logits = logit_node(ex).name
    inputs = first_layers(nodes, categories, ex.path.varying, ("conv",))
    z_rule, passing = Norm(0.0), Pass()
    rules: dict[str, Rule] = {}
    for node in nodes:
        category = categories[node.name]
        if category in ("conv", "dense"):
            unfold = unfolded(ex, node)
            if node.name == logits:
                rules[node.name] = RapFirst(unfold)
            elif node.name in inputs:
                rules[node.name] = RapInput(unfold)
            else:
                rules[node.name] = RapHidden("conv" if category == "conv" else "linear", unfold)
        elif category in ("avgpool", "sum"):
            rules[node.name] = z_rule
        elif category == "maxpool":
            rules[node.name] = RapMaxPool()
        elif category == "batchnorm":
            rules[node.name] = RapBatchNorm()
        elif category in ("activation", "affine", "softmax"):
            rules[node.name] = passing
        elif node.op_type == "Concat":
            rules[node.name] = RapConcat()
        else:
            rules[node.name] = Gradient()
    return rules


def run(ex, x, feeds, target, params, options):
    """Forward, one-hot seed (value 1) at the target, RAP's rules (plus user overrides), propagate."""
    rules = ex._rules(assign(ex, params), options)
    values, output = ex._forward(x, feeds)
    targets = ex._targets(output, target)
    seed = ex._seed(output, targets, "one_hot")
    relevance, kept = ex._propagate(values, rules, seed, options.get("keep", ()))
    return relevance, output, targets, kept


register_method(Method(
    "rap", "Relative Attributing Propagation (Nam et al. 2020) as the authors' code computes it: positive and "
    "negative relevance by relative influence, conserved (sums to the target logit)", {}, "lrp", run, assign))
