"""Rule assignment: the LRP base map plus a preset's layer rules, first layers, the rule catalogue, user overrides
by op type or node-name glob, and the applicability check.

"First layer" is defined on the graph: a Conv/dense node with no other Conv/dense (or recurrent) node between it and
the explained input (several nodes in a multi-stem network).
"""
from __future__ import annotations

import fnmatch
from collections.abc import Mapping

from ..engine.kernel import Gradient, Node, Rule
from ..errors import MethodError, RuleNotApplicableError
from .presets import LINEAR_CATEGORIES, LayerRules
from .recurrent import RecurrentEpsilon
from .rules import (
    AlphaBeta,
    DeconvNet,
    Epsilon,
    Flat,
    Gamma,
    GuidedBackprop,
    Norm,
    Pass,
    StdxEpsilon,
    WSquare,
    ZBox,
    ZPlus,
)
from .sign import AlphaBetaINN, Sign, SignMu, Z
from .transformer import LayerNormEpsilon, SoftmaxDT, Stop, UniformProduct

#: every rule by the name ``rules=`` overrides use (``{"Gemm": "epsilon"}``, ``{"/fc*": ("gamma", {"gamma": 1})}``)
RULES: dict[str, type[Rule]] = {
    "gradient": Gradient, "pass": Pass, "epsilon": Epsilon, "norm": Norm, "stdx_epsilon": StdxEpsilon,
    "alpha_beta": AlphaBeta, "zplus": ZPlus, "gamma": Gamma, "zbox": ZBox, "flat": Flat, "wsquare": WSquare,
    "guided_backprop": GuidedBackprop, "deconvnet": DeconvNet,
    "sign": Sign, "sign_mu": SignMu, "z": Z, "alpha_beta_inn": AlphaBetaINN,
    "uniform_product": UniformProduct, "softmax_dt": SoftmaxDT, "stop": Stop, "layernorm_epsilon": LayerNormEpsilon,
    "recurrent_epsilon": RecurrentEpsilon,
}

#: categories whose nodes contain weighted layers: a Conv/dense node after one is not a "first layer"
WEIGHTED_CATEGORIES = LINEAR_CATEGORIES + ("recurrent",)


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
                upstream |= linear_upstream[prev.name] or categories[prev.name] in WEIGHTED_CATEGORIES
        linear_upstream[node.name] = upstream
        if not upstream and categories[node.name] in first_categories:
            firsts.add(node.name)
    return firsts


def lrp_rules(nodes, categories, varying, layer_rules: LayerRules) -> dict[str, Rule]:
    """Assign rules to every node on the path (zennit's base map plus the preset's layer rules)."""
    norm = Norm(layer_rules.stabilizer)
    # recurrent layers: Arras et al.'s LSTM rule with the preset's epsilon (its dense rule's; else the stabiliser)
    recurrent = RecurrentEpsilon(float(getattr(layer_rules.dense, "epsilon", layer_rules.stabilizer)))
    base = {"activation": Pass(), "batchnorm": Pass(), "affine": Pass(), "softmax": SoftmaxDT(),
            "sum": norm, "avgpool": norm, "conv": layer_rules.conv, "dense": layer_rules.dense,
            "bilinear": UniformProduct(), "layernorm": LayerNormEpsilon(layer_rules.stabilizer),
            "recurrent": recurrent}
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
    if isinstance(spec, str):
        name, params = spec, {}
    elif isinstance(spec, (tuple, list)) and len(spec) == 2 and isinstance(spec[0], str) \
            and isinstance(spec[1], Mapping):
        name, params = spec[0], dict(spec[1])
    else:
        raise MethodError(f"a rule override must be a rule name, (name, {{params}}) or a Rule; got "
                          f"{' '.join(repr(spec).split())[:80]}")
    if name not in RULES:
        raise MethodError(f"unknown rule {name!r}; rules are: {', '.join(sorted(RULES))}")
    try:
        return RULES[name](**params)
    except (TypeError, ValueError) as exc:  # an unknown parameter, or a value the rule refuses
        raise MethodError(f"bad parameters for rule {name!r}: {exc}") from exc


def apply_overrides(nodes, categories, rules: dict[str, Rule], overrides: Mapping | None) -> dict[str, Rule]:
    """Per-node overrides keyed by op type (``'Gemm'``) or a node-name glob (``'/features.0/*'``); the first
    matching key (in the mapping's order) wins. Each rule must apply to the node's category."""
    if overrides is None or (isinstance(overrides, (Mapping, list, tuple, str)) and not overrides):
        return rules
    if not isinstance(overrides, Mapping) or not all(isinstance(key, str) for key in overrides):
        raise MethodError(f"rules must map op types or node-name patterns to rules, e.g. {{'Gemm': 'epsilon'}}; "
                          f"got {' '.join(repr(overrides).split())[:80]}")
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
