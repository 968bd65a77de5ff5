"""Softmax and LogSoftmax. By default the explainer explains the logits feeding a final Softmax; these kernels are
used inside a graph (attention) or when the probabilities themselves are explained (gradient methods use the exact
VJP; the LRP presets and AttnLRP use the softmax rule ``onnxlrp.lrp.transformer.SoftmaxDT``, category ``softmax``).

Beyond ``forward``/``vjp``, a kernel of category ``softmax`` offers the rules three protocol hooks (the softmax
rule is written against them, not against ONNX attributes or opset versions): :meth:`SoftmaxBase.axis_view`,
:meth:`SoftmaxBase.softmax` and the class attribute ``log``.
"""
from __future__ import annotations

import math

from onnxlrp.engine.kernel import Kernel, scatter_ports
from onnxlrp.engine.registry import register_kernel


def _as_2d(x, axis):
    """Opset < 13 semantics: flatten to ``(prod(shape[:axis]), prod(shape[axis:]))``."""
    return x.reshape(math.prod(x.shape[:axis]), -1)


class SoftmaxBase(Kernel):
    """Shared by Softmax and LogSoftmax: ``y = softmax(x)`` or ``y = log softmax(x)`` along one axis.

    Protocol for rules (category ``softmax``): ``v, axis = axis_view(call, x)``, ``s = softmax(xp, v, axis)``,
    and ``log`` (``True`` when the node outputs ``log s``). Relevance computed on ``v`` is reshaped back to
    ``x.shape`` (``v`` is ``x`` or a reshape of it).
    """

    category = "softmax"
    #: the node outputs ``log softmax(x)`` (LogSoftmax) rather than ``softmax(x)``
    log = False

    def axis_view(self, call, x):
        """``(v, axis)``: ``x`` seen as the op sees it, and the one axis the softmax normalises over.

        From opset 13 ``v`` is ``x`` and ``axis`` the node's ``axis`` attribute made non-negative; before opset 13
        the op coerces ``x`` to 2-D, so ``v = x.reshape(prod(shape[:axis]), prod(shape[axis:]))`` and ``axis = 1``.
        ``v`` is a reshape of ``x`` (same elements, same order): ``r.reshape(x.shape)`` maps back.
        """
        axis = int(call.attrs["axis"])  # schema default: 1 before opset 13, -1 from 13 (filled in Node.attrs)
        axis %= x.ndim
        if call.node.since >= 13:
            return x, axis
        return _as_2d(x, axis), 1

    def softmax(self, xp, v, axis):
        """``s = exp(v − max v) / Σ exp(v − max v)`` along ``axis`` (keepdims reductions, so ``s.shape == v.shape``;
        shifting by the maximum keeps it finite, ``−inf`` entries give 0). ``v``/``axis`` come from
        :meth:`axis_view`; ``xp`` is the array module (numpy or CuPy)."""
        e = xp.exp(v - v.max(axis=axis, keepdims=True))
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
class SoftmaxKernel(SoftmaxBase):
    """``softmax(x)`` along ``axis``; VJP ``s ⊙ (g − Σ g s)``."""


@register_kernel("LogSoftmax", since=1)
class LogSoftmaxKernel(SoftmaxBase):
    """``log softmax(x)``; VJP ``g − s Σ g``."""

    log = True
