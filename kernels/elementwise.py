"""Unary elementwise activations: ``y = f(x)``, VJP ``g·f'(x)``. LRP presets pass relevance through them."""
from __future__ import annotations

import math

from onnxlrp.engine.kernel import ElementwiseKernel
from onnxlrp.engine.registry import register_kernel


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
        return xp.where(x > 0, x, x * call.attrs["alpha"])

    def derivative(self, xp, x, y, call):
        return xp.where(x > 0, 1.0, call.attrs["alpha"]).astype(x.dtype)


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

    def data_inputs(self, node, varying):
        if any(t in varying for t in node.inputs[1:] if t):
            return ("Clip whose min or max depends on the explained input is not supported (Max/Min of varying "
                    "tensors are)")
        return super().data_inputs(node, varying)

    def _bounds(self, call):
        # attributes before opset 11, inputs from 11: optional, absent means unbounded (Clip-1 has no default;
        # Clip-6's ±FLT_MAX defaults are filled in Node.attrs and bound nothing)
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
        a, b = call.attrs["alpha"], call.attrs["beta"]
        return xp.clip(a * x + b, 0, 1).astype(x.dtype, copy=False)

    def derivative(self, xp, x, y, call):
        a, b = call.attrs["alpha"], call.attrs["beta"]
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
        a = call.attrs["alpha"]
        return xp.where(x > 0, x, a * (xp.exp(xp.minimum(x, 0)) - 1)).astype(x.dtype, copy=False)

    def derivative(self, xp, x, y, call):
        a = call.attrs["alpha"]
        return xp.where(x > 0, 1.0, a * xp.exp(xp.minimum(x, 0))).astype(x.dtype)


@register_kernel("Softplus", since=1)
class SoftplusKernel(ElementwiseKernel):
    """``log(1 + e^x)``; derivative ``sigmoid(x)``."""

    def fn(self, xp, x, call):
        return xp.logaddexp(0, x).astype(x.dtype, copy=False)

    def derivative(self, xp, x, y, call):
        return _sigmoid(xp, x)


def _erf(xp, x):
    """erf in double precision from array operations only (numpy has no erf ufunc, and scipy is not a dependency):
    the Maclaurin series ``2/√π Σ (−1)ⁿ x^{2n+1}/(n!(2n+1))`` (48 terms) for ``|x| ≤ 2.5`` and ``1 − erfc`` from
    erfc's continued fraction ``e^{−x²}/√π · 1/(x + ½/(x + 1/(x + 3/2/(x + …))))`` (depth 60) above; max. absolute
    error 8e-15 on [−8, 8]. The loops run over series terms, each step one vectorised operation.

    Compiled (symbolic ``xp``) in float32, ONNX's own ``Erf`` (onnxruntime's: max. absolute error 6e-8); in float64,
    which onnxruntime's ``Erf`` lacks, these same series."""
    if getattr(xp, "symbolic", False) and x.dtype == xp.float32:
        return xp.node("Erf", [x], shape=x.shape)
    a = xp.abs(xp.asarray(x, dtype=xp.float64))
    small = xp.minimum(a, 2.5)
    square, term = small * small, small
    series = small
    for n in range(1, 48):
        term = term * (-square) / n
        series = series + term / (2 * n + 1)
    series = series * (2 / math.sqrt(math.pi))
    big = xp.maximum(a, 2.5)
    fraction = big
    for k in range(60, 0, -1):
        fraction = big + (k / 2) / fraction
    tail = 1 - xp.exp(-big * big) / (math.sqrt(math.pi) * fraction)
    return (xp.sign(x) * xp.where(a <= 2.5, series, tail)).astype(x.dtype, copy=False)


_SQRT_2_OVER_PI = 0.7978845608028654
_INV_SQRT_2PI = 0.3989422804014327


@register_kernel("Erf", since=9)
class ErfKernel(ElementwiseKernel):
    """``erf(x)``; derivative ``2/√π · e^{−x²}``."""

    def fn(self, xp, x, call):
        return _erf(xp, x).astype(x.dtype, copy=False)

    def derivative(self, xp, x, y, call):
        return 2 * _INV_SQRT_2PI * 1.4142135623730951 * xp.exp(-x * x)


@register_kernel("Gelu", since=20)
class GeluKernel(ElementwiseKernel):
    """``x·Φ(x)`` (``approximate="none"``) or the tanh approximation ``x/2·(1 + tanh(√(2/π)(x + 0.044715x³)))``."""

    def fn(self, xp, x, call):
        if call.attrs["approximate"] == "tanh":
            return 0.5 * x * (1 + xp.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x ** 3)))
        return (0.5 * x * (1 + _erf(xp, x / 1.4142135623730951))).astype(x.dtype, copy=False)

    def derivative(self, xp, x, y, call):
        if call.attrs["approximate"] == "tanh":
            t = xp.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x ** 3))
            return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * _SQRT_2_OVER_PI * (1 + 3 * 0.044715 * x * x)
        cdf = 0.5 * (1 + _erf(xp, x / 1.4142135623730951))
        return (cdf + x * _INV_SQRT_2PI * xp.exp(-0.5 * x * x)).astype(x.dtype, copy=False)


@register_kernel("ErfGelu", domain="onnxlrp", since=1)
class ErfGeluKernel(ElementwiseKernel):
    """``onnxlrp::ErfGelu(x) = scale_x·x · (erf_mul·erf(x/divisor) + erf_add)``: an exporter's Erf-based GELU
    (``x·0.5·(1 + erf(x/√2))`` in any order of its constant factors), fused by the canonizer so the rules see one
    activation. No schema: the four attributes are required (the canonizer sets them)."""

    def _consts(self, call):
        a = call.attrs
        return float(a["divisor"]), float(a["scale_x"]), float(a["erf_mul"]), float(a["erf_add"])

    def fn(self, xp, x, call):
        c, k, m, b = self._consts(call)
        return (k * x * (m * _erf(xp, x / c) + b)).astype(x.dtype, copy=False)

    def derivative(self, xp, x, y, call):
        c, k, m, b = self._consts(call)
        u = x / c
        d_erf = 2 * _INV_SQRT_2PI * 1.4142135623730951 * xp.exp(-u * u) / c
        return (k * (m * _erf(xp, u) + b) + k * x * m * d_erf).astype(x.dtype, copy=False)


@register_kernel("TanhGelu", domain="onnxlrp", since=1)
class TanhGeluKernel(ElementwiseKernel):
    """``onnxlrp::TanhGelu(x) = scale·x·(1 + tanh(linear·x + cubic·x³))``: a tanh-approximated GELU written out as
    arithmetic (HF ``gelu_new``, torch ``approximate="tanh"`` before opset 20), fused by the canonizer with the
    constants as the exporter wrote them (``scale = 0.5``, ``linear = √(2/π)``, ``cubic = 0.044715·√(2/π)``). No
    schema: the three attributes are required (the canonizer sets them)."""

    def _consts(self, call):
        a = call.attrs
        return float(a["scale"]), float(a["linear"]), float(a["cubic"])

    def fn(self, xp, x, call):
        s, a, b = self._consts(call)
        return s * x * (1 + xp.tanh(a * x + b * x ** 3))

    def derivative(self, xp, x, y, call):
        s, a, b = self._consts(call)
        t = xp.tanh(a * x + b * x ** 3)
        return s * (1 + t) + s * x * (1 - t * t) * (a + 3 * b * x * x)


@register_kernel("SiLU", domain="onnxlrp", since=1)
class SiLUKernel(ElementwiseKernel):
    """``onnxlrp::SiLU(x) = x·sigmoid(alpha·x)`` (SiLU / Swish), fused by the canonizer from ``Mul(x, Sigmoid(x))``
    or ``Mul(x, Sigmoid(α·x))`` (QuickGELU, α = 1.702). Attribute ``alpha`` required (the canonizer sets it, 1 for
    SiLU)."""

    def fn(self, xp, x, call):
        return x * _sigmoid(xp, float(call.attrs["alpha"]) * x)

    def derivative(self, xp, x, y, call):
        a = float(call.attrs["alpha"])
        s = _sigmoid(xp, a * x)
        return s + a * x * s * (1 - s)
