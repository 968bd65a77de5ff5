"""What a method is, and the one driver every method's pass goes through.

A :class:`Method` runs on an :class:`~onnxlrp.engine.session.Session` only: ``run(session, x, feeds, target,
params, options)`` returns a :class:`Result`; ``options`` carries ``rules`` (user overrides by op type or node-name
glob), ``relevance_init`` and ``keep``. ``check(session)`` says, without running the model, whether the method can
explain it and if not why.

The pass itself (rules with the user's overrides → forward → targets → seed → propagate) is written once, in
:func:`propagate_target`; methods differ only in the rules they assign, the seed mode, and what they do around it.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, NamedTuple

from ..errors import OnnxLrpError
from ..lrp.assign import apply_overrides, check_applicable, lrp_rules
from .params import PARAMS, check_params


class Result(NamedTuple):
    """A method's output as backend arrays: relevance shaped like ``x``, the explained output, the explained class
    per sample, and the kept intermediates (``keep=``, plus method extras such as CLRP's two maps)."""

    relevance: Any
    output: Any
    targets: Any
    kept: dict


@dataclass(frozen=True)
class Check:
    """Whether a method can explain a model: ``ok``, and when not, ``reason`` (one line)."""

    ok: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.ok


@dataclass(frozen=True)
class Method:
    """A named method.

    ``run(session, x, feeds, target, params, options) -> Result``. ``assign(session, params) -> {node: Rule}`` for
    methods that assign rules (LRP-style; ``onnxlrp inspect`` shows them). ``requires(session, params)`` raises an
    :class:`~onnxlrp.errors.OnnxLrpError` when the model lacks something the method needs beyond its rules (e.g. a
    spatial feature map for Grad-CAM).
    """

    name: str
    description: str
    params: Mapping[str, object]
    kind: str
    run: Callable
    assign: Callable | None = None
    requires: Callable | None = field(default=None, compare=False)
    #: the method's steps for the compiled backend when ``run`` cannot be traced as it is (e.g. integrated
    #: gradients batches its steps in the graph instead of in Python); same signature as ``run``
    compiled: Callable | None = field(default=None, compare=False)

    def rules(self, session, params: Mapping, overrides: Mapping | None = None) -> dict:
        """The rule of every node this method assigns one to, with ``overrides`` applied and checked (``params``
        are checked against their declarations first: ``onnxlrp inspect --set`` passes them unchecked)."""
        params = check_params(self.name, dict(params))
        assigned = self.assign(session, params) if self.assign is not None else {}
        return with_overrides(session, assigned, overrides)

    def check(self, session, params: Mapping | None = None) -> Check:
        """Can this method explain ``session``'s model with ``params`` (defaults for the rest)? Decided without
        running the model; parameters that have no default (``contrast=``) are not needed for the answer."""
        full = {**self.params, **(params or {})}
        try:
            self.rules(session, full)
            if self.requires is not None:
                self.requires(session, full)
        except OnnxLrpError as exc:
            text = str(exc).strip()
            return Check(False, text.splitlines()[0] if text else type(exc).__name__)
        return Check(True)


@dataclass(frozen=True)
class MethodFamily:
    """Methods named by a grammar rather than one by one (e.g. signxai's ``lrpsign_epsilon_0_1_std_x``).

    ``parse(name)`` returns the :class:`Method` for a name of this family, or ``None``; ``pattern`` and
    ``examples`` are what ``onnxlrp methods`` lists.
    """

    pattern: str
    description: str
    examples: tuple[str, ...]
    parse: Callable[[str], Method | None]


def with_overrides(session, rules: Mapping, overrides: Mapping | None, head=None) -> dict:
    """A method's rules with the user's ``overrides`` on top (on the path, or a spliced ``head``), each checked for
    applicability to its node's category."""
    nodes, categories = (session.path.nodes, session.categories) if head is None else (head.nodes, head.categories)
    assigned = apply_overrides(nodes, categories, dict(rules), overrides)
    for name, rule in assigned.items():  # a rule's parameters are checked as the methods' are (epsilon >= 0, ...)
        if rule is not rules.get(name) and is_dataclass(rule):
            check_params(f"{type(rule).__name__} rule override",
                         {f.name: getattr(rule, f.name) for f in fields(rule) if f.name in PARAMS})
    check_applicable(nodes, categories, assigned)
    return assigned


def propagate_target(session, x, feeds, target, rules: Mapping, options: Mapping, mode: str | None = None) -> Result:
    """The pass every method shares: ``rules`` plus the user's overrides, the forward pass, the explained class,
    the seed (``mode``, default ``options["relevance_init"]``) and the backward walk."""
    rules = with_overrides(session, rules, options.get("rules"))
    values, output = session.forward(x, feeds)
    targets = session.targets(output, target)
    seed = session.seed(output, targets, mode or options.get("relevance_init", "logit"))
    relevance, kept = session.propagate(values, rules, seed, options.get("keep", ()))
    return Result(relevance, output, targets, kept)


def lrp_method(name: str, description: str, params: Mapping, assign: Callable) -> Method:
    """A method that runs one :func:`propagate_target` pass with the rules ``assign(session, params)`` gives."""
    def run(session, x, feeds, target, full, options):
        return propagate_target(session, x, feeds, target, assign(session, full), options)

    return Method(name, description, params, "lrp", run, assign)


def layer_rule_assigner(build: Callable[[dict], Any]) -> Callable:
    """``assign(session, params)`` from ``build(params) -> LayerRules`` (an LRP preset's choice of layer rules)."""
    def assign(session, params):
        return lrp_rules(session.path.nodes, session.categories, session.path.varying, build(params))

    return assign
