"""The method registry: every explanation method by name, with its parameters and defaults.

LRP methods are the presets of :mod:`onnxlrp.presets`; gradient methods reuse the same kernels' VJPs
(``gradient``, ``input_x_gradient``, ``integrated_gradients``, ``smoothgrad``, ``guided_backprop``, ``deconvnet``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

from .errors import MethodError
from .presets import PRESETS, apply_overrides, check_applicable, lrp_rules
from .rules import DeconvNet, GuidedBackprop


@dataclass(frozen=True)
class Method:
    """A named method. ``run(explainer, x, feeds, target, params, options)`` returns ``(relevance, output, target)``
    as backend arrays; ``options`` carries ``rules`` (overrides), ``relevance_init`` and ``keep``."""

    name: str
    description: str
    params: Mapping[str, object]
    kind: str
    run: Callable
    #: ``assign(explainer, params) -> {node name: Rule}`` for methods that assign rules (LRP-style)
    assign: Callable | None = None


METHODS: dict[str, Method] = {}


def register_method(method: Method) -> Method:
    if method.name in METHODS:
        raise ValueError(f"method {method.name!r} is already registered")
    METHODS[method.name] = method
    return method


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


FAMILIES: list[MethodFamily] = []


def register_family(family: MethodFamily) -> MethodFamily:
    FAMILIES.append(family)
    return family


def methods() -> dict[str, dict]:
    """``name -> {"params": {name: default}, "description": str, "kind": ...}``; method families appear under
    their pattern (``kind: "family"``) with example names."""
    listed = {name: {"params": dict(m.params), "description": m.description, "kind": m.kind}
              for name, m in METHODS.items()}
    for family in FAMILIES:
        listed[family.pattern] = {"params": {}, "description": family.description, "kind": "family",
                                  "examples": list(family.examples)}
    return listed


def find_method(name: str) -> Method | None:
    """A registered method, or one parsed from a family's grammar."""
    if name in METHODS:
        return METHODS[name]
    for family in FAMILIES:
        method = family.parse(name)
        if method is not None:
            return method
    return None


def resolve_method(name: str, params: Mapping[str, object]) -> tuple[Method, dict]:
    """The method and its full parameter dict (defaults filled), with clear errors for unknown names."""
    method = find_method(name)
    if method is None:
        families = "".join(f"; or a name of the form {f.pattern}" for f in FAMILIES)
        raise MethodError(f"unknown method {name!r}; methods are: {', '.join(sorted(METHODS))}{families}")
    unknown = sorted(set(params) - set(method.params))
    if unknown:
        valid = ", ".join(sorted(method.params)) or "none"
        raise MethodError(f"method {name!r} has no parameter {unknown[0]!r}; its parameters are: {valid}")
    return method, {**method.params, **params}


# ---------------------------------------------------------------------------------------------- LRP


def preset_assigner(preset_name: str):
    """``assign(ex, params)`` for an LRP preset: its layer rules on the relevance path."""
    def assign(ex, params):
        try:
            layer_rules = PRESETS[preset_name].build(params)
        except (TypeError, ValueError) as exc:
            raise MethodError(f"bad parameters for method {preset_name!r}: {exc}") from exc
        return lrp_rules(ex.path.nodes, ex.categories, ex.path.varying, layer_rules)

    return assign


def run_lrp(ex, x, feeds, target, params, options, assign):
    """One LRP pass: forward, seed on the target logit (or one-hot), rules from ``assign`` plus user overrides."""
    rules = ex._rules(assign(ex, params), options)
    values, output = ex._forward(x, feeds)
    targets = ex._targets(output, target)
    seed = ex._seed(output, targets, options.get("relevance_init", "logit"))
    relevance, kept = ex._propagate(values, rules, seed, options.get("keep", ()))
    return relevance, output, targets, kept


def lrp_method(name: str, description: str, params: Mapping, assign) -> Method:
    """A method that runs :func:`run_lrp` with the rules ``assign`` gives."""
    def run(ex, x, feeds, target, full, options):
        return run_lrp(ex, x, feeds, target, full, options, assign)

    return Method(name, description, params, "lrp", run, assign)


for _name, _preset in PRESETS.items():
    register_method(lrp_method(_name, _preset.description, _preset.params, preset_assigner(_name)))


# ---------------------------------------------------------------------------------------------- gradients


def _gradient(ex, x, feeds, target, rules=None, options=None):
    """Gradient of the target logit w.r.t. the input (optionally with ReLU rules), plus output and targets."""
    values, output = ex._forward(x, feeds)
    targets = ex._targets(output, target)
    relevance, kept = ex._propagate(values, ex._rules(rules or {}, options or {}),
                                    ex._seed(output, targets, "one_hot"), (options or {}).get("keep", ()))
    return relevance, output, targets, kept


def _relu_rule(ex, rule):
    return {n.name: rule for n in ex.path.nodes if n.op_type == "Relu"}


register_method(Method(
    "gradient", "gradient of the target logit with respect to the input (saliency, not absolute)", {}, "gradient",
    lambda ex, x, feeds, target, params, options: _gradient(ex, x, feeds, target, options=options)))


def _input_x_gradient(ex, x, feeds, target, params, options):
    grad, output, targets, kept = _gradient(ex, x, feeds, target, options=options)
    return ex._array(x) * grad, output, targets, kept


register_method(Method("input_x_gradient", "input times gradient", {}, "gradient", _input_x_gradient))

def _relu_rule_method(name: str, description: str, rule) -> Method:
    """A gradient method whose ReLUs use ``rule`` (guided backprop, DeconvNet)."""
    def assign(ex, params):
        return _relu_rule(ex, rule)

    def run(ex, x, feeds, target, params, options):
        return _gradient(ex, x, feeds, target, assign(ex, params), options)

    return Method(name, description, {}, "gradient", run, assign)


register_method(_relu_rule_method(
    "guided_backprop", "guided backpropagation (ReLU passes positive gradients where the input was positive)",
    GuidedBackprop()))
register_method(_relu_rule_method(
    "deconvnet", "DeconvNet (ReLU passes positive gradients, ignoring the forward mask)", DeconvNet()))


def integration_points(steps: int, integration: str) -> tuple[np.ndarray, np.ndarray]:
    """``(alphas, weights)`` of the path integral over ``[0, 1]`` (Captum's approximation methods)."""
    if steps < 1:
        raise MethodError(f"steps must be at least 1; got {steps}")
    if integration == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return 0.5 * (nodes + 1), 0.5 * weights
    if integration == "riemann_trapezoid":
        if steps < 2:
            raise MethodError("riemann_trapezoid needs at least 2 steps")
        weights = np.full(steps, 1.0 / (steps - 1))
        weights[[0, -1]] /= 2
        return np.linspace(0, 1, steps), weights
    offsets = {"riemann_left": 0.0, "riemann_right": 1.0, "riemann_middle": 0.5}
    if integration not in offsets:
        raise MethodError(f"unknown integration {integration!r}; use gausslegendre, riemann_trapezoid, riemann_left, "
                          "riemann_right or riemann_middle")
    return (np.arange(steps) + offsets[integration]) / steps, np.full(steps, 1.0 / steps)


def _integrated_gradients(ex, x, feeds, target, params, options):
    """IG (Sundararajan et al. 2017): ``(x − x̄) ⊙ Σ_k w_k ∇f(x̄ + α_k(x − x̄))``, batched over steps."""
    xp = ex.xp
    x = ex._array(x)
    _, output = ex._forward(x, feeds)
    targets = ex._targets(output, target)
    baseline = params["baseline"]
    baseline = xp.zeros_like(x) if baseline is None else xp.broadcast_to(xp.asarray(baseline, dtype=x.dtype), x.shape)
    alphas, weights = integration_points(int(params["steps"]), params["integration"])
    total = xp.zeros_like(x)
    for chunk in ex._chunks(len(alphas) * x.shape[0], params["internal_batch_size"], x.shape[0]):
        ks = sorted({i // x.shape[0] for i in chunk})
        batch = xp.concatenate([baseline + float(alphas[k]) * (x - baseline) for k in ks])
        grads, _, _, _ = _gradient(ex, batch, _tile(feeds, len(ks)), np.tile(targets, len(ks)), options={})
        grads = grads.reshape((len(ks),) + x.shape)
        for j, k in enumerate(ks):
            total = total + float(weights[k]) * grads[j]
    return (x - baseline) * total, output, targets, {}


def _tile(feeds, times):
    return {k: np.concatenate([v] * times) for k, v in (feeds or {}).items()}


register_method(Method(
    "integrated_gradients", "integrated gradients from a baseline (default zeros), batched over the steps",
    {"baseline": None, "steps": 50, "integration": "gausslegendre", "internal_batch_size": None}, "gradient",
    _integrated_gradients))


def _smoothgrad(ex, x, feeds, target, params, options):
    """SmoothGrad (Smilkov et al. 2017): the mean gradient over ``samples`` noisy copies, noise std
    ``noise_level · (max(x) − min(x))`` per sample (zennit's convention)."""
    xp = ex.xp
    x = ex._array(x)
    _, output = ex._forward(x, feeds)
    targets = ex._targets(output, target)
    samples = int(params["samples"])
    if samples < 1:
        raise MethodError(f"samples must be at least 1; got {samples}")
    noise = smoothgrad_noise(ex._host(x), float(params["noise_level"]), samples, params["random_state"])
    total = xp.zeros_like(x)
    for chunk in ex._chunks(samples * x.shape[0], params["internal_batch_size"], x.shape[0]):
        ks = sorted({i // x.shape[0] for i in chunk})
        batch = xp.concatenate([x + xp.asarray(noise[k], dtype=x.dtype) for k in ks])
        grads, _, _, _ = _gradient(ex, batch, _tile(feeds, len(ks)), np.tile(targets, len(ks)), options={})
        total = total + grads.reshape((len(ks),) + x.shape).sum(axis=0)
    return total / samples, output, targets, {}


register_method(Method(
    "smoothgrad", "SmoothGrad: gradient averaged over noisy copies of the input",
    {"noise_level": 0.1, "samples": 20, "random_state": None, "internal_batch_size": None}, "gradient", _smoothgrad))


def smoothgrad_noise(x: np.ndarray, noise_level: float, samples: int, random_state) -> np.ndarray:
    """The noise :func:`_smoothgrad` adds, shape ``(samples, *x.shape)`` (for reproducing it elsewhere)."""
    rng = np.random.default_rng(random_state)
    host = np.asarray(x, dtype=np.float64)
    axes = tuple(range(1, host.ndim))
    std = noise_level * (host.max(axis=axes, keepdims=True) - host.min(axis=axes, keepdims=True))
    return rng.standard_normal((samples,) + host.shape) * std


def apply_method_overrides(ex, rules, options, head=None):
    """User rule overrides on top of a method's assignment (on the path, or a spliced ``head``), checked for
    applicability."""
    nodes, categories = (ex.path.nodes, ex.categories) if head is None else (head.nodes, head.categories)
    rules = apply_overrides(nodes, categories, rules, options.get("rules"))
    check_applicable(nodes, categories, rules)
    return rules
