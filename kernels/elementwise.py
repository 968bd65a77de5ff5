"""Unary elementwise activations: ``y = f(x)``, VJP ``g·f'(x)``. LRP presets pass relevance through them."""
from __future__ import annotations

from onnxlrp.registry import ElementwiseKernel, register_kernel


def _sigmoid(xp, x):
    return 1.0 / (1.0 + xp.exp(-x))


@register_kernel("Relu", since=1)
class ReluKernel(ElementwiseKernel):
    """``max(x, 0)``; derivative ``1[x > 0]``."""

    def fn(self, xp, x, call):
        return xp.maximum(x, 0)

    def derivative(self, xp, x, y, call):
        return (x > 0).astype(x.dtype)


@register_kernel("LeakyRelu", since=1)
class LeakyReluKernel(ElementwiseKernel):
    """``x if x > 0 else alpha·x``."""

    def fn(self, xp, x, call):
        return xp.where(x > 0, x, x * call.attrs.get("alpha", 0.01))

    def derivative(self, xp, x, y, call):
        return xp.where(x > 0, 1.0, call.attrs.get("alpha", 0.01)).astype(x.dtype)


@register_kernel("PRelu", since=1)
class PReluKernel(ElementwiseKernel):
    """``x if x > 0 else slope·x`` with a constant, broadcast ``slope`` (input 1)."""

    def fn(self, xp, x, call):
        return xp.where(x > 0, x, x * call.inputs[1])

    def derivative(self, xp, x, y, call):
        return xp.where(x > 0, 1.0, call.inputs[1]).astype(x.dtype)


@register_kernel("Clip", since=1)
class ClipKernel(ElementwiseKernel):
    """``clip(x, min, max)`` (ReLU6 as exported by PyTorch); bounds from attributes (opset < 11) or inputs."""

    def _bounds(self, call):
        lo, hi = call.attrs.get("min"), call.attrs.get("max")
        if len(call.inputs) > 1 and call.inputs[1] is not None:
            lo = call.inputs[1]
        if len(call.inputs) > 2 and call.inputs[2] is not None:
            hi = call.inputs[2]
        return lo, hi

    def fn(self, xp, x, call):
        lo, hi = self._bounds(call)
        y = x if lo is None else xp.maximum(x, xp.asarray(lo, dtype=x.dtype))
        return y if hi is None else xp.minimum(y, xp.asarray(hi, dtype=x.dtype))

    def derivative(self, xp, x, y, call):
        lo, hi = self._bounds(call)
        inside = xp.ones(x.shape, dtype=bool)
        if lo is not None:
            inside &= x > lo
        if hi is not None:
            inside &= x < hi
        return inside.astype(x.dtype)


@register_kernel("Sigmoid", since=1)
class SigmoidKernel(ElementwiseKernel):
    """``1/(1+e^{-x})``; derivative ``y(1−y)``."""

    def fn(self, xp, x, call):
        return _sigmoid(xp, x)

    def derivative(self, xp, x, y, call):
        return y * (1 - y)


@register_kernel("Tanh", since=1)
class TanhKernel(ElementwiseKernel):
    """``tanh(x)``; derivative ``1−y²``."""

    def fn(self, xp, x, call):
        return xp.tanh(x)

    def derivative(self, xp, x, y, call):
        return 1 - y * y


@register_kernel("HardSigmoid", since=1)
class HardSigmoidKernel(ElementwiseKernel):
    """``max(0, min(1, alpha·x + beta))``; derivative ``alpha`` inside the linear part."""

    def fn(self, xp, x, call):
        a, b = call.attrs.get("alpha", 0.2), call.attrs.get("beta", 0.5)
        return xp.clip(a * x + b, 0, 1).astype(x.dtype, copy=False)

    def derivative(self, xp, x, y, call):
        a, b = call.attrs.get("alpha", 0.2), call.attrs.get("beta", 0.5)
        u = a * x + b
        return (a * ((u > 0) & (u < 1))).astype(x.dtype)


@register_kernel("HardSwish", since=14)
class HardSwishKernel(ElementwiseKernel):
    """``x·max(0, min(1, x/6 + 1/2))``; derivative as PyTorch: 0 for x ≤ −3, 1 for x ≥ 3, ``x/3 + 1/2`` between."""

    def fn(self, xp, x, call):
        return x * xp.clip(x / 6 + 0.5, 0, 1).astype(x.dtype, copy=False)

    def derivative(self, xp, x, y, call):
        return xp.where(x <= -3, 0.0, xp.where(x < 3, x / 3 + 0.5, 1.0)).astype(x.dtype)


@register_kernel("Elu", since=1)
class EluKernel(ElementwiseKernel):
    """``x if x > 0 else alpha(e^x − 1)``."""

    def fn(self, xp, x, call):
        a = call.attrs.get("alpha", 1.0)
        return xp.where(x > 0, x, a * (xp.exp(xp.minimum(x, 0)) - 1)).astype(x.dtype, copy=False)

    def derivative(self, xp, x, y, call):
        a = call.attrs.get("alpha", 1.0)
        return xp.where(x > 0, 1.0, a * xp.exp(xp.minimum(x, 0))).astype(x.dtype)


@register_kernel("Softplus", since=1)
class SoftplusKernel(ElementwiseKernel):
    """``log(1 + e^x)``; derivative ``sigmoid(x)``."""

    def fn(self, xp, x, call):
        return xp.logaddexp(0, x).astype(x.dtype, copy=False)

    def derivative(self, xp, x, y, call):
        return _sigmoid(xp, x)
