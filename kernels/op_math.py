"""Elementwise math that decomposed operators are written with (LayerNorm's Pow/Sqrt, softmax's Exp, attention
masks' Where), for when the canonizer does not fuse them.

Unary ops (Exp, Log, Sqrt, Reciprocal, Neg, Pow by a constant exponent) are elementwise nonlinearities: category
``activation`` (the LRP presets and AttnLRP pass relevance through, the identity rule; gradient methods use the
exact derivative). ``Where`` with a condition that does not vary routes each element to the branch it came from
(category ``structural``: its exact adjoint); constant branches (attention masks) receive nothing.
"""
from __future__ import annotations

from onnxlrp.engine.kernel import ElementwiseKernel, Kernel, scatter_ports, unbroadcast
from onnxlrp.engine.registry import register_kernel


@register_kernel("Exp", since=1)
class ExpKernel(ElementwiseKernel):
    """``e^x``; derivative ``y``."""

    def fn(self, xp, x, call):
        return xp.exp(x)

    def derivative(self, xp, x, y, call):
        return y


@register_kernel("Log", since=1)
class LogKernel(ElementwiseKernel):
    """``log x``; derivative ``1/x``."""

    def fn(self, xp, x, call):
        return xp.log(x)

    def derivative(self, xp, x, y, call):
        return 1.0 / x


@register_kernel("Sqrt", since=1)
class SqrtKernel(ElementwiseKernel):
    """``√x``; derivative ``1/(2y)``."""

    def fn(self, xp, x, call):
        return xp.sqrt(x)

    def derivative(self, xp, x, y, call):
        return 0.5 / y


@register_kernel("Reciprocal", since=1)
class ReciprocalKernel(ElementwiseKernel):
    """``1/x``; derivative ``−1/x²``."""

    def fn(self, xp, x, call):
        return 1.0 / x

    def derivative(self, xp, x, y, call):
        return -y * y


@register_kernel("Neg", since=1)
class NegKernel(ElementwiseKernel):
    """``−x``; derivative ``−1``."""

    def fn(self, xp, x, call):
        return -x

    def derivative(self, xp, x, y, call):
        return xp.full_like(x, -1.0)


@register_kernel("Pow", since=1)
class PowKernel(ElementwiseKernel):
    """``x^p`` with a constant exponent ``p`` (input 1); derivative ``p·x^{p−1}``."""

    def data_inputs(self, node, varying):
        if len(node.inputs) > 1 and node.inputs[1] in varying:
            return "Pow with an exponent that depends on the explained input is not supported"
        return super().data_inputs(node, varying)

    def _p(self, call, x):
        return call.xp.asarray(call.inputs[1], dtype=x.dtype)

    def fn(self, xp, x, call):
        p = self._p(call, x)
        if p.size == 1 and float(p.reshape(-1)[0]) == 2.0:
            return x * x
        return xp.power(x, p)

    def derivative(self, xp, x, y, call):
        p = self._p(call, x)
        if p.size == 1 and float(p.reshape(-1)[0]) == 2.0:
            return 2 * x
        return p * xp.power(x, p - 1)


@register_kernel("Where", since=9)
class WhereKernel(Kernel):
    """``where(cond, a, b)``: relevance and gradients go to the branch each element was taken from (summed over
    broadcast axes). A condition that depends on the input is treated as fixed (piecewise routing)."""

    category = "structural"

    def data_inputs(self, node, varying):
        return tuple(p for p in (1, 2) if node.inputs[p] in varying)

    def forward(self, call):
        cond, a, b = call.inputs
        return (call.xp.where(cond, a, b),)

    def vjp(self, call, grads):
        xp, g = call.xp, grads[0]
        cond, a, b = call.inputs
        cond = xp.asarray(cond, dtype=bool)
        out = [None, None, None]
        if call.varying[1]:
            out[1] = unbroadcast(xp, xp.where(cond, g, 0.0).astype(g.dtype, copy=False), a.shape)
        if call.varying[2]:
            out[2] = unbroadcast(xp, xp.where(cond, 0.0, g).astype(g.dtype, copy=False), b.shape)
        return scatter_ports(3, (0, 1, 2), out)
