"""Contrastive LRP (CLRP, Gu, Yang & Tresp 2018) and softmax-gradient LRP (SGLRP, Iwana, Kuroki & Uchida 2019).

Both explain a class *against* a dual concept: ``R`` explains the target logit ``S_c``, ``R_dual`` explains a
virtual concept built from the final dense layer, and the map is their difference. The dual concept is spliced into
the graph with :func:`onnxlrp.contrast.splice_dense_head`: the final dense node (logits ``z = x W + b``) is replaced
by a per-sample ``RowDense`` head on the same input, and the forward pass is reused.

Dual heads (``c`` the target, ``w_k``/``b_k`` the column/bias of class ``k``):

* ``clrp1``, ``dual_seed="abs_logits"`` (the authors' code, default): the other classes ``k ≠ c``, each seeded with
  its own ``|z_k|``.
* ``clrp1``, ``dual_seed="uniform_target"`` (the paper): the other classes, each seeded with ``|S_c|/(C−1)``.
* ``clrp1``, ``dual_seed="splice_sum"``: one neuron ``Σ_{k≠c} w_k`` (bias ``Σ b_k``) seeded with ``|S_c|``.
* ``clrp2``: one neuron ``−w_c`` (bias ``−b_c``) seeded with ``|S_c|``. Under an ε-family rule at the head negating
  the row flips numerator and denominator together, so the normalised map is identically zero: rejected.
* ``contrast=Q`` (either method): "why c rather than Q": one neuron ``w_Q`` (bias ``b_Q``), seeded with ``|z_Q|``
  (``abs_logits``) or ``|S_c|``.

The target is seeded with ``|S_c|·e_c``. ``combine="norm_diff"`` (default, the code's ``visualize``):
``max(0, R/ΣR − R_dual/ΣR_dual)`` per sample (a zero sum makes its term zero); ``"raw_diff"``: ``max(0, R − R_dual)``.

Default rules (paper and code): the zᴮ box rule on the first Conv (``low``/``high``; ``None`` = each sample's input
minimum/maximum, the code uses the ImageNet range −2.1179…2.64) and bias-free z⁺ on every other Conv and dense layer,
the logit layer included; max-pooling routes to the arg-max (the code splits ties equally; ties do not occur in
real-valued activations). Any LRP preset can replace them (``preset=``).

SGLRP (the two-pass form): with ``p = softmax(z)``, the target is seeded with ``(p_t(1 − p_t) + 1e-8)·e_t`` and the
other classes with ``p_t p_n``; the map is ``R_t − R_dual·ΣR_t/ΣR_dual`` (sums to zero), optionally rectified.

Every contrast needs at least two classes: on a model with one output unit per sample (a regression or quality
score) the dual concept is empty, so the three methods raise :class:`~onnxlrp.errors.MethodError` instead of
returning an all-zero or non-contrastive map (:func:`require_two_classes`, also used by contrastive Grad-CAM).
"""
from __future__ import annotations

import math

from ..errors import MethodError
from ..lrp.assign import lrp_rules
from ..lrp.presets import PRESETS, LayerRules
from ..lrp.rules import Epsilon, StdxEpsilon, ZBox, ZPlus
from .base import Method, Result, with_overrides

DUAL_SEEDS = ("abs_logits", "uniform_target", "splice_sum")
COMBINES = ("norm_diff", "raw_diff")


def clrp_layer_rules(params) -> LayerRules:
    """zᴮ on the first Conv, bias-free z⁺ everywhere else (Gu et al.'s rules), or a named preset's rules."""
    preset = params["preset"]
    if preset == "clrp":
        zplus = ZPlus(stabilizer=params["stabilizer"], zero_params=("bias",))
        return LayerRules(conv=zplus, dense=zplus, first=ZBox(params["low"], params["high"], params["stabilizer"]),
                          first_categories=("conv",), stabilizer=params["stabilizer"])
    if preset not in PRESETS:
        raise MethodError(f"unknown preset {preset!r} for a contrastive method; use 'clrp' or one of: "
                          f"{', '.join(sorted(PRESETS))}")
    return PRESETS[preset].build({})


def contrast_units(shape) -> int | None:
    """Output units per sample of an output shaped ``shape`` (``None`` when a non-batch axis is not known)."""
    rest = tuple(shape)[1:]
    return math.prod(rest) if all(isinstance(d, int) and d > 0 for d in rest) else None


def require_two_classes(session, method: str, shape=None) -> None:
    """A contrast ("the target rather than the others / rather than Q") needs at least two classes: on a model with
    one output unit per sample (a regression or quality score) the dual concept is empty and the map would be all
    zero. ``shape`` is the output's actual shape; without it the model's declared shape decides (unknown passes)."""
    units = contrast_units(shape if shape is not None else session.output_shape)
    if units == 1:
        raise MethodError(f"{method} contrasts the explained class with other classes, but the output "
                          f"{session.output_name!r} has one unit per sample (a regression or score); a contrast "
                          "needs at least two classes: use a non-contrastive method (e.g. epsilon_plus, gradient)")


def _assign(session, params, head=None):
    nodes, categories, varying = (session.path.nodes, session.categories, session.path.varying) if head is None else (
        head.nodes, head.categories, head.varying)
    return lrp_rules(nodes, categories, varying, clrp_layer_rules(params))


def pick(xp, a, indices):
    """``a[i, indices[i]]`` for each row ``i`` of a 2-D ``a`` (written as ``GatherElements`` when compiling)."""
    if getattr(xp, "symbolic", False):
        return xp.pick(a, indices)
    return a[xp.arange(a.shape[0]), indices]


def one_hot(xp, indices, classes: int, dtype):
    """``(N, classes)`` zeros with 1 at each row's index (``OneHot`` when compiling)."""
    if getattr(xp, "symbolic", False):
        return xp.one_hot(indices, classes, dtype)
    out = xp.zeros((indices.shape[0], classes), dtype=dtype)
    out[xp.arange(indices.shape[0]), indices] = 1
    return out


def _dual_head(session, values, output, targets, variant: str, dual_seed: str, contrast):
    """Splice the dual concept's head; return ``(head, seed)`` with the seed on the head's output."""
    xp = session.xp
    dense = session.final_dense()
    w, b = session.dense_weights(dense, values)
    n, classes = output.shape[0], w.shape[1]
    t = xp.asarray(targets)
    score = xp.abs(pick(xp, output, t))
    if contrast is not None or variant == "clrp2" or dual_seed == "splice_sum":
        if contrast is not None:
            q = xp.asarray(session.class_indices(contrast, output, "contrast"))
            column, bias = xp.take(w.T, q, axis=0), (None if b is None else xp.take(b, q))
            seed = xp.abs(pick(xp, output, q)) if dual_seed == "abs_logits" else score
        elif variant == "clrp2":
            column, bias = -xp.take(w.T, t, axis=0), (None if b is None else -xp.take(b, t))
            seed = score
        else:
            column = w.sum(axis=1)[None, :] - xp.take(w.T, t, axis=0)
            bias = None if b is None else b.sum() - xp.take(b, t)
            seed = score
        weight = column[:, :, None]                                       # (N, D, 1)
        bias = None if bias is None else bias.reshape(n, 1)
        head = session.splice_dense_head(dense, weight, bias, "dual")
        return head, seed.reshape(n, 1)
    # the other classes: the layer's own columns (shared by all samples), the target's seed zero
    others = 1 - one_hot(xp, t, classes, output.dtype)
    head = session.splice_dense_head(dense, w[None], None if b is None else b[None], "dual")
    if dual_seed == "abs_logits":
        seed = xp.abs(output) * others
    else:
        seed = (score / (classes - 1))[:, None] * others
    return head, seed


def _combine(xp, r, r_dual, how: str):
    axes = tuple(range(1, r.ndim))
    if how == "raw_diff":
        difference = r - r_dual
    else:
        def normalised(a):
            total = a.sum(axis=axes, keepdims=True)
            return xp.where(total == 0, 0.0, a / xp.where(total == 0, 1.0, total))
        difference = normalised(r) - normalised(r_dual)
    return xp.maximum(difference, 0), difference


def _check_params(variant, params):
    if params["combine"] not in COMBINES:
        raise MethodError(f"combine must be one of {', '.join(COMBINES)}; got {params['combine']!r}")
    if variant == "clrp1" and params["dual_seed"] not in DUAL_SEEDS:
        raise MethodError(f"dual_seed must be one of {', '.join(DUAL_SEEDS)}; got {params['dual_seed']!r}")


def _clrp_runner(variant: str):
    def run(session, x, feeds, target, params, options):
        _check_params(variant, params)
        xp = session.xp
        values, output = session.forward(x, feeds)
        require_two_classes(session, variant, output.shape)
        targets = session.targets(output, target)
        dual_seed = params.get("dual_seed", "abs_logits")
        head, dual = _dual_head(session, values, output, targets, variant, dual_seed, params["contrast"])
        head_rules = with_overrides(session, _assign(session, params, head), options.get("rules"), head)
        head_node = head.nodes[-1].name
        if variant == "clrp2" and isinstance(head_rules[head_node], (Epsilon, StdxEpsilon)):
            raise MethodError(
                f"clrp2 with rule {head_rules[head_node].describe()} at the spliced logit layer gives an identically "
                "zero map (negating the target row flips numerator and denominator together); use a sign-selective "
                "rule there (z+, alpha-beta, box), e.g. the default preset 'clrp'")
        rules = with_overrides(session, _assign(session, params), options.get("rules"))
        seed = session.seed(output, targets, "logit")
        r, kept = session.propagate(values, rules, xp.abs(seed), options.get("keep", ()))
        r_dual, _ = session.propagate(values, head_rules, {head.output: dual}, head=head)
        result, difference = _combine(xp, r, r_dual, params["combine"])
        kept = {**kept, "target_relevance": r, "dual_relevance": r_dual, "difference": difference}
        return Result(result, output, targets, kept)

    return run


_CLRP_PARAMS = {"preset": "clrp", "low": None, "high": None, "stabilizer": 1e-6, "combine": "norm_diff",
                "contrast": None}


def _clrp_assign(session, params):
    return _assign(session, params)


def _sglrp(session, x, feeds, target, params, options):
    """Two-pass SGLRP with CLRP's default rules (or ``preset``)."""
    xp = session.xp
    values, output = session.forward(x, feeds)
    require_two_classes(session, "sglrp", output.shape)
    targets = session.targets(output, target)
    n = output.shape[0]
    t = xp.asarray(targets)
    flat = output.reshape(n, -1)
    p = xp.exp(flat - flat.max(axis=1, keepdims=True))
    p = p / p.sum(axis=1, keepdims=True)
    pt = pick(xp, p, t)
    target_entry = one_hot(xp, t, flat.shape[1], flat.dtype)
    seed = target_entry * (pt * (1 - pt) + 1e-8)[:, None]
    head, _ = _dual_head(session, values, output, targets, "clrp1", "abs_logits", None)
    dual = pt[:, None] * p * (1 - target_entry)
    rules = with_overrides(session, _assign(session, params), options.get("rules"))
    r, kept = session.propagate(values, rules, seed.reshape(output.shape), options.get("keep", ()))
    head_rules = with_overrides(session, _assign(session, params, head), options.get("rules"), head)
    r_dual, _ = session.propagate(values, head_rules, {head.output: dual}, head=head)
    axes = tuple(range(1, r.ndim))
    total, total_dual = r.sum(axis=axes, keepdims=True), r_dual.sum(axis=axes, keepdims=True)
    scale = xp.where(total_dual == 0, 0.0, total / xp.where(total_dual == 0, 1.0, total_dual))
    result = r - r_dual * scale
    if params["relu"]:
        result = xp.maximum(result, 0)
    return Result(result, output, targets, {**kept, "target_relevance": r, "dual_relevance": r_dual})


def _requires_dense_logits(name: str):
    def requires(session, params) -> None:
        session.final_dense()
        require_two_classes(session, name)

    return requires


METHODS = [
    Method("clrp1", "contrastive LRP, dual concept = all other classes (Gu et al. 2018)",
           {**_CLRP_PARAMS, "dual_seed": "abs_logits"}, "lrp", _clrp_runner("clrp1"), _clrp_assign,
           _requires_dense_logits("clrp1")),
    Method("clrp2", "contrastive LRP, dual concept = the negated target class (Gu et al. 2018)",
           dict(_CLRP_PARAMS), "lrp", _clrp_runner("clrp2"), _clrp_assign,
           _requires_dense_logits("clrp2")),
    Method("sglrp", "softmax-gradient LRP: the target's softmax gradient against the other classes (Iwana et al. "
           "2019)", {"preset": "clrp", "low": None, "high": None, "stabilizer": 1e-6, "relu": False}, "lrp", _sglrp,
           _clrp_assign, _requires_dense_logits("sglrp")),
]
