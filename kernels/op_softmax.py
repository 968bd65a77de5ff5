"""Softmax and LogSoftmax. By default the explainer explains the logits feeding a final Softmax; these kernels are
used inside a graph (attention) or when the probabilities themselves are explained (gradient methods use the exact
VJP; the LRP presets and AttnLRP use the softmax rule ``onnxlrp.attnlrp.SoftmaxDT``, category ``softmax``)."""
from __future__ import annotations

import math

from onnxlrp.engine.kernel import Kernel, scatter_ports
from onnxlrp.engine.registry import register_kernel


def _as_2d(x, axis):
    """Opset < 13 semantics: flatten to ``(prod(shape[:axis]), prod(shape[axis:]))``."""
    return x.reshape(math.prod(x.shape[:axis]), -1)


class _SoftmaxBase(Kernel):
    category = "softmax"
    log = False

    def axis_view(self, call, x):
        axis = int(call.attrs.get("axis", -1 if call.node.since >= 13 else 1))
        axis %= x.ndim
        if call.node.since >= 13:
            return x, axis
        return _as_2d(x, axis), 1

    def softmax(self, xp, x, axis):
        e = xp.exp(x - x.max(axis=axis, keepdims=True))
        return e / e.sum(axis=axis, keepdims=True)

    def forward(self, call):
        xp, x = call.xp, call.inputs[0]
        v, axis = self.axis_view(call, x)
        s = self.softmax(xp, v, axis)
        return ((xp.log(s) if self.log else s).reshape(x.shape),)

    def vjp(self, call, grads):
        xp, x = call.xp, call.inputs[0]
        v, axis = self.axis_view(call, x)
        g = grads[0].reshape(v.shape)
        s = self.softmax(xp, v, axis)
        if self.log:
            gx = g - s * g.sum(axis=axis, keepdims=True)
        else:
            gx = s * (g - (g * s).sum(axis=axis, keepdims=True))
        return scatter_ports(len(call.inputs), (0,), [gx.reshape(x.shape)])


@register_kernel("Softmax", since=1)
class SoftmaxKernel(_SoftmaxBase):
    """``softmax(x)`` along ``axis``; VJP ``s ⊙ (g − Σ g s)``."""


@register_kernel("LogSoftmax", since=1)
class LogSoftmaxKernel(_SoftmaxBase):
    """``log softmax(x)``; VJP ``g − s Σ g``."""

    log = True
