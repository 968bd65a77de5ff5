"""LRP presets (zennit's composites, same names and defaults) and their assignment of rules to nodes.

Nodes are grouped by category (see ``onnxlrp.registry.Kernel``). Every LRP preset shares zennit's base map:
activations, BatchNorm (when not folded) and constant shifts/scalings pass relevance through (``Pass``), residual
sums and average pooling split it proportionally (``Norm``), max-pooling and reshapes use the gradient. For the
transformer parts zennit has no rule, so the presets take AttnLRP's (``onnxlrp.attnlrp``): products of two
activations (attention, gates) split relevance evenly, Softmax/LogSoftmax use the softmax rule of Prop. 3.1 and
LayerNorm/RMSNorm treat their normalisation as constant. (Passing relevance through an attention Softmax and then
splitting the product ``QKᵀ`` divides by near-zero attention scores: relevance diverges, up to 1e8 on MiniLM.)
The preset picks the rules for convolutions, dense layers and the first layer.

"First layer" is defined on the graph: a Conv/dense node with no other Conv/dense node between it and the explained
input (several nodes in a multi-stem network).
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Callable, Mapping

from .errors import MethodError, RuleNotApplicableError
from .graph import Node
from .rules import (AlphaBeta, Epsilon, Flat, Gamma, Gradient, Norm, Pass, Rule, RULES, StdxEpsilon, WSquare,
                    ZBox, ZPlus)

LINEAR_CATEGORIES = ("conv", "dense")


@dataclass(frozen=True)
class LayerRules:
    """What an LRP preset decides: rules for conv and dense nodes, and the first-layer rule with its categories."""

    conv: Rule
    dense: Rule
    first: Rule | None = None
    first_categories: tuple[str, ...] = LINEAR_CATEGORIES
    stabilizer: float = 1e-6


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    params: Mapping[str, object]
    build: Callable[[dict], LayerRules]


def _zp(p):
    return tuple(p["zero_params"] or ())


PRESETS: dict[str, Preset] = {}


def register_preset(name: str, description: str, params: dict, build: Callable[[dict], LayerRules]) -> None:
    if name in PRESETS:
        raise ValueError(f"preset {name!r} is already registered")
    PRESETS[name] = Preset(name, description, {**params}, build)


_COMMON = {"epsilon": 1e-6, "stabilizer": 1e-6, "zero_params": ()}

register_preset(
    "lrp0", "LRP-0 on every layer (equals gradient x input on ReLU networks)", {"zero_params": ()},
    lambda p: LayerRules(Epsilon(0.0, _zp(p)), Epsilon(0.0, _zp(p)), stabilizer=0.0))
register_preset(
    "epsilon", "LRP-epsilon on every Conv and dense layer", dict(_COMMON),
    lambda p: LayerRules(Epsilon(p["epsilon"], _zp(p)), Epsilon(p["epsilon"], _zp(p)), stabilizer=p["stabilizer"]))
register_preset(
    "epsilon_plus", "zennit EpsilonPlus: z+ on Conv, epsilon on dense layers", dict(_COMMON),
    lambda p: LayerRules(ZPlus(stabilizer=p["stabilizer"], zero_params=_zp(p)), Epsilon(p["epsilon"], _zp(p)),
                         stabilizer=p["stabilizer"]))
register_preset(
    "epsilon_plus_flat", "zennit EpsilonPlusFlat: flat on the first layer, z+ on Conv, epsilon on dense", dict(_COMMON),
    lambda p: LayerRules(ZPlus(stabilizer=p["stabilizer"], zero_params=_zp(p)), Epsilon(p["epsilon"], _zp(p)),
                         first=Flat(p["stabilizer"], _zp(p)), stabilizer=p["stabilizer"]))
register_preset(
    "epsilon_gamma_box",
    "zennit EpsilonGammaBox: zB box rule on the first Conv, gamma on Conv, epsilon on dense "
    "(low/high default to each sample's input min/max)",
    {**_COMMON, "gamma": 0.25, "low": None, "high": None},
    lambda p: LayerRules(Gamma(p["gamma"], p["stabilizer"], _zp(p)), Epsilon(p["epsilon"], _zp(p)),
                         first=ZBox(p["low"], p["high"], p["stabilizer"], _zp(p)), first_categories=("conv",),
                         stabilizer=p["stabilizer"]))
register_preset(
    "epsilon_alpha2_beta1", "zennit EpsilonAlpha2Beta1: alpha2-beta1 on Conv, epsilon on dense", dict(_COMMON),
    lambda p: LayerRules(AlphaBeta(2.0, 1.0, p["stabilizer"], _zp(p)), Epsilon(p["epsilon"], _zp(p)),
                         stabilizer=p["stabilizer"]))
register_preset(
    "epsilon_alpha2_beta1_flat", "zennit EpsilonAlpha2Beta1Flat: flat first layer, alpha2-beta1 on Conv, epsilon dense",
    dict(_COMMON),
    lambda p: LayerRules(AlphaBeta(2.0, 1.0, p["stabilizer"], _zp(p)), Epsilon(p["epsilon"], _zp(p)),
                         first=Flat(p["stabilizer"], _zp(p)), stabilizer=p["stabilizer"]))
register_preset(
    "alpha_beta", "LRP-alpha-beta on every Conv and dense layer", {"alpha": 1.0, "beta": 0.0, "stabilizer": 1e-6,
                                                                  "zero_params": ()},
    lambda p: LayerRules(*(AlphaBeta(p["alpha"], p["beta"], p["stabilizer"], _zp(p)),) * 2, stabilizer=p["stabilizer"]))
register_preset(
    "zplus", "z+ (alpha1-beta0) on every Conv and dense layer", {"stabilizer": 1e-6, "zero_params": ()},
    lambda p: LayerRules(*(ZPlus(stabilizer=p["stabilizer"], zero_params=_zp(p)),) * 2, stabilizer=p["stabilizer"]))
register_preset(
    "gamma", "LRP-gamma on every Conv and dense layer", {"gamma": 0.25, "stabilizer": 1e-6, "zero_params": ()},
    lambda p: LayerRules(*(Gamma(p["gamma"], p["stabilizer"], _zp(p)),) * 2, stabilizer=p["stabilizer"]))
register_preset(
    "stdx_epsilon", "epsilon rule with epsilon = stdfactor x std(layer input) per sample, on every layer",
    {"stdfactor": 0.25, "stabilizer": 1e-6, "zero_params": ()},
    lambda p: LayerRules(*(StdxEpsilon(p["stdfactor"], _zp(p)),) * 2, stabilizer=p["stabilizer"]))
register_preset(
    "flat", "flat rule on every Conv and dense layer", {"stabilizer": 1e-6, "zero_params": ()},
    lambda p: LayerRules(*(Flat(p["stabilizer"], _zp(p)),) * 2, stabilizer=p["stabilizer"]))
register_preset(
    "wsquare", "w-square on the first layer, epsilon elsewhere", dict(_COMMON),
    lambda p: LayerRules(Epsilon(p["epsilon"], _zp(p)), Epsilon(p["epsilon"], _zp(p)),
                         first=WSquare(p["stabilizer"], _zp(p)), stabilizer=p["stabilizer"]))


def first_layers(nodes: list[Node], categories: Mapping[str, str], varying: set[str],
                 first_categories=LINEAR_CATEGORIES) -> set[str]:
    """Nodes of ``first_categories`` with no Conv/dense node between them and the explained input."""
    producer = {t: n for n in nodes for t in n.outputs if t}
    linear_upstream: dict[str, bool] = {}
    firsts = set()
    for node in nodes:
        upstream = False
        for t in node.inputs:
            prev = producer.get(t)
            if prev is not None and t in varying:
                upstream |= linear_upstream[prev.name] or categories[prev.name] in LINEAR_CATEGORIES
        linear_upstream[node.name] = upstream
        if not upstream and categories[node.name] in first_categories:
            firsts.add(node.name)
    return firsts


def lrp_rules(nodes, categories, varying, layer_rules: LayerRules) -> dict[str, Rule]:
    """Assign rules to every node on the path (zennit's base map plus the preset's layer rules)."""
    from .attnlrp import LayerNormEpsilon, SoftmaxDT, UniformProduct  # attnlrp imports this module
    norm = Norm(layer_rules.stabilizer)
    base = {"activation": Pass(), "batchnorm": Pass(), "affine": Pass(), "softmax": SoftmaxDT(),
            "sum": norm, "avgpool": norm, "conv": layer_rules.conv, "dense": layer_rules.dense,
            "bilinear": UniformProduct(), "layernorm": LayerNormEpsilon(layer_rules.stabilizer)}
    firsts = (first_layers(nodes, categories, varying, layer_rules.first_categories)
              if layer_rules.first is not None else set())
    rules = {}
    for node in nodes:
        if node.name in firsts:
            rules[node.name] = layer_rules.first
        else:
            rules[node.name] = base.get(categories[node.name], Gradient())
    return rules


def parse_rule(spec) -> Rule:
    """A rule from a ``Rule`` instance, a rule name, or ``(name, {params})``."""
    if isinstance(spec, Rule):
        return spec
    name, params = (spec, {}) if isinstance(spec, str) else (spec[0], dict(spec[1]))
    if name not in RULES:
        raise MethodError(f"unknown rule {name!r}; rules are: {', '.join(sorted(RULES))}")
    try:
        return RULES[name](**params)
    except TypeError as exc:
        raise MethodError(f"bad parameters for rule {name!r}: {exc}") from exc


def apply_overrides(nodes, categories, rules: dict[str, Rule], overrides: Mapping | None) -> dict[str, Rule]:
    """Per-node overrides keyed by op type (``'Gemm'``) or a node-name glob (``'/features.0/*'``); the first
    matching key (in the mapping's order) wins. Each rule must apply to the node's category."""
    if not overrides:
        return rules
    parsed = [(key, parse_rule(spec)) for key, spec in overrides.items()]
    out = dict(rules)
    matched = {key: 0 for key, _ in parsed}
    for node in nodes:
        aliases = (node.op_type, node.name) + tuple(node.attrs.get("replaces", ()))  # spliced heads: see contrast
        for key, rule in parsed:
            if key in aliases or any(fnmatch.fnmatchcase(name, key) for name in aliases[1:]):
                out[node.name] = rule
                matched[key] += 1
                break
    unmatched = [k for k, count in matched.items() if count == 0]
    if unmatched:
        raise MethodError(f"rule override {unmatched[0]!r} matches no node on the relevance path (keys are op types "
                          "or node-name patterns)")
    return out


def check_applicable(nodes, categories, rules: Mapping[str, Rule]) -> None:
    """Raise one error listing nodes whose category the assigned rule cannot handle."""
    bad = [(n, rules[n.name]) for n in nodes if n.name in rules and rules[n.name].applies_to is not None
           and categories[n.name] not in rules[n.name].applies_to]
    if bad:
        node, rule = bad[0]
        raise RuleNotApplicableError(
            f"rule {rule.describe()} cannot be applied to {len(bad)} node(s), e.g. {node.name!r} ({node.op_type}, "
            f"a {categories[node.name]} node); it applies to: {', '.join(sorted(rule.applies_to))}")
