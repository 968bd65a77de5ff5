"""Gradient methods on the kernels' VJPs: ``gradient``, ``input_x_gradient``, ``guided_backprop``, ``deconvnet``,
``integrated_gradients`` (Sundararajan et al. 2017) and ``smoothgrad`` (Smilkov et al. 2017)."""
from __future__ import annotations

import numpy as np

from ..errors import MethodError
from ..lrp.rules import DeconvNet, GuidedBackprop
from .base import Method, Result, propagate_target


def _gradient(session, x, feeds, target, options, rules=None) -> Result:
    """Gradient of the target logit w.r.t. the input (optionally with ReLU rules): a one-hot seeded pass."""
    return propagate_target(session, x, feeds, target, rules or {}, options, mode="one_hot")


def _input_x_gradient(session, x, feeds, target, params, options) -> Result:
    grad = _gradient(session, x, feeds, target, options)
    return grad._replace(relevance=session.array(x) * grad.relevance)


def relu_rules(session, rule) -> dict:
    """``rule`` on every Relu of the path (guided backprop, DeconvNet)."""
    return {n.name: rule for n in session.path.nodes if n.op_type == "Relu"}


def _relu_rule_method(name: str, description: str, rule) -> Method:
    """A gradient method whose ReLUs use ``rule``."""
    def assign(session, params):
        return relu_rules(session, rule)

    def run(session, x, feeds, target, params, options):
        return _gradient(session, x, feeds, target, options, assign(session, params))

    return Method(name, description, {}, "gradient", run, assign)


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


def _integrated_gradients(session, x, feeds, target, params, options):
    """IG (Sundararajan et al. 2017): ``(x − x̄) ⊙ Σ_k w_k ∇f(x̄ + α_k(x − x̄))``, batched over steps."""
    xp = session.xp
    x = session.array(x)
    _, output = session.forward(x, feeds)
    targets = session.targets(output, target)
    baseline = params["baseline"]
    baseline = xp.zeros_like(x) if baseline is None else _broadcast(xp, baseline, x, "baseline")
    alphas, weights = integration_points(int(params["steps"]), params["integration"])
    total = xp.zeros_like(x)
    for chunk in session.chunks(len(alphas) * x.shape[0], params["internal_batch_size"], x.shape[0], x.shape):
        ks = sorted({i // x.shape[0] for i in chunk})
        batch = xp.concatenate([baseline + float(alphas[k]) * (x - baseline) for k in ks])
        grads = _gradient(session, batch, _tile(feeds, len(ks)), np.tile(targets, len(ks)), {}).relevance
        grads = grads.reshape((len(ks),) + x.shape)
        for j, k in enumerate(ks):
            total = total + float(weights[k]) * grads[j]
    return Result((x - baseline) * total, output, targets, {})


def _integrated_gradients_compiled(session, x, feeds, target, params, options):
    """IG written as one graph: the ``steps`` interpolated copies of the batch stacked into one batch of
    ``steps·N`` (step-major), one forward and one backward pass over it, and the weighted sum over the steps."""
    xp = session.xp
    _, output = session.forward(x, feeds)
    targets = session.targets(output, target)
    baseline = params["baseline"]
    baseline = xp.zeros_like(x) if baseline is None else xp.broadcast_to(
        xp.asarray(np.asarray(baseline, dtype=x.dtype)), x.shape)
    alphas, weights = integration_points(int(params["steps"]), params["integration"])
    per_step = (len(alphas),) + (1,) * x.ndim
    difference = x - baseline
    steps = xp.expand_dims(baseline, 0) + xp.asarray(alphas.astype(x.dtype).reshape(per_step)) * \
        xp.expand_dims(difference, 0)
    grads = _steps_gradient(session, steps, targets, x, options)
    total = (grads * xp.asarray(weights.astype(x.dtype).reshape(per_step))).sum(axis=0)
    return Result(difference * total, output, targets, {})


def _steps_gradient(session, steps, targets, x, options):
    """The gradient of each sample's target at ``steps`` ``(S, N, ...)``, as one batch of ``S·N``."""
    xp = session.xp
    count = steps.shape[0]
    batch = xp.reshape(steps, (-1,) + tuple(x.shape[1:]))
    tiled = xp.node("Tile", [targets, xp.ints([count])], dtype=np.int64, shape=(batch.shape[0],))
    grads = _gradient(session, batch, {}, tiled, options).relevance
    return xp.reshape(grads, (count, -1) + tuple(x.shape[1:]))


def _smoothgrad_compiled(session, x, feeds, target, params, options):
    """SmoothGrad written as one graph whose ``noise`` input ``(samples, *x.shape)`` is added to the batch (draw
    it with :func:`smoothgrad_noise` to reproduce a run); the gradients of the noisy copies are averaged."""
    xp = session.xp
    _, output = session.forward(x, feeds)
    targets = session.targets(output, target)
    samples = int(params["samples"])
    if samples < 1:
        raise MethodError(f"samples must be at least 1; got {samples}")
    noise = session.add_input("noise", x.dtype, (samples,) + tuple(x.shape))
    grads = _steps_gradient(session, xp.expand_dims(x, 0) + noise, targets, x, options)
    return Result(grads.sum(axis=0) / float(samples), output, targets, {})


def _broadcast(xp, value, x, name: str):
    """``value`` broadcast to ``x``'s shape, or a :class:`MethodError` naming the parameter."""
    array = xp.asarray(value, dtype=x.dtype)
    try:
        return xp.broadcast_to(array, x.shape)
    except ValueError:
        raise MethodError(f"{name} of shape {tuple(array.shape)} cannot be broadcast to the input's shape "
                          f"{tuple(x.shape)}") from None


def _tile(feeds, times):
    return {k: np.concatenate([v] * times) for k, v in (feeds or {}).items()}



def _smoothgrad(session, x, feeds, target, params, options):
    """SmoothGrad (Smilkov et al. 2017): the mean gradient over ``samples`` noisy copies, noise std
    ``noise_level · (max(x) − min(x))`` per sample (zennit's convention)."""
    xp = session.xp
    x = session.array(x)
    _, output = session.forward(x, feeds)
    targets = session.targets(output, target)
    samples = int(params["samples"])
    if samples < 1:
        raise MethodError(f"samples must be at least 1; got {samples}")
    noise = smoothgrad_noise(session.host(x), float(params["noise_level"]), samples, params["random_state"])
    total = xp.zeros_like(x)
    for chunk in session.chunks(samples * x.shape[0], params["internal_batch_size"], x.shape[0], x.shape):
        ks = sorted({i // x.shape[0] for i in chunk})
        batch = xp.concatenate([x + xp.asarray(noise[k], dtype=x.dtype) for k in ks])
        grads = _gradient(session, batch, _tile(feeds, len(ks)), np.tile(targets, len(ks)), {}).relevance
        total = total + grads.reshape((len(ks),) + x.shape).sum(axis=0)
    return Result(total / samples, output, targets, {})



def smoothgrad_noise(x: np.ndarray, noise_level: float, samples: int, random_state) -> np.ndarray:
    """The noise :func:`_smoothgrad` adds, shape ``(samples, *x.shape)`` (for reproducing it elsewhere)."""
    rng = np.random.default_rng(random_state)
    host = np.asarray(x, dtype=np.float64)
    axes = tuple(range(1, host.ndim))
    std = noise_level * (host.max(axis=axes, keepdims=True) - host.min(axis=axes, keepdims=True))
    return rng.standard_normal((samples,) + host.shape) * std


METHODS = [
    Method("gradient", "gradient of the target logit with respect to the input (saliency, not absolute)", {},
           "gradient", lambda session, x, feeds, target, params, options: _gradient(session, x, feeds, target,
                                                                                      options)),
    Method("input_x_gradient", "input times gradient", {}, "gradient", _input_x_gradient),
    _relu_rule_method("guided_backprop", "guided backpropagation (ReLU passes positive gradients where the input "
                      "was positive)", GuidedBackprop()),
    _relu_rule_method("deconvnet", "DeconvNet (ReLU passes positive gradients, ignoring the forward mask)",
                      DeconvNet()),
    Method("integrated_gradients", "integrated gradients from a baseline (default zeros), batched over the steps",
           {"baseline": None, "steps": 50, "integration": "gausslegendre", "internal_batch_size": None}, "gradient",
           _integrated_gradients, compiled=_integrated_gradients_compiled),
    Method("smoothgrad", "SmoothGrad: gradient averaged over noisy copies of the input",
           {"noise_level": 0.1, "samples": 20, "random_state": None, "internal_batch_size": None}, "gradient",
           _smoothgrad, compiled=_smoothgrad_compiled),
]
