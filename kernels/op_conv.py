"""Conv (1-D, 2-D, 3-D; groups incl. depthwise, strides, dilations, pads, auto_pad) as a linear op.

Forward ``z = W ⋆ x + b`` by im2col and one batched GEMM per group; VJP ``Wᵀ ⋆ g`` (a transposed convolution) by
GEMM into columns and :func:`scatter_windows` (col2im). Large batches are processed in chunks so the column buffer
stays bounded.
"""
from __future__ import annotations

import math

from onnxlrp.registry import LinearKernel, LinearOp, register_kernel

from ._windows import crop, geometry, pad, scatter_windows, window_view

#: upper bound on the elements of one im2col buffer; batches are chunked to stay below it
COLUMN_BUDGET = 1 << 26


def _chunks(n: int, per_sample: int):
    step = max(1, COLUMN_BUDGET // max(per_sample, 1))
    return [slice(i, min(n, i + step)) for i in range(0, n, step)]


def conv_forward(xp, x, weight, bias, attrs):
    """ONNX Conv on ``x (N, C, *S)`` with ``weight (M, C/group, *K)`` and optional ``bias (M,)``."""
    n, c = x.shape[:2]
    m, cg = weight.shape[:2]
    kernel = tuple(weight.shape[2:])
    group = int(attrs.get("group", 1))
    geom = geometry(attrs, x.shape[2:], kernel)
    nd, p, kc, mg = len(kernel), math.prod(geom.out), cg * math.prod(kernel), m // group
    w = weight.reshape(group, mg, kc).transpose(0, 2, 1)                  # (g, Kc, Mg)
    perm = (1, 0) + tuple(range(3, 3 + nd)) + (2,) + tuple(range(3 + nd, 3 + 2 * nd))
    parts = []
    for sl in _chunks(n, p * kc * group):
        xs = x[sl]
        b = xs.shape[0]
        view = window_view(xp, pad(xp, xs, geom), geom).reshape((b, group, cg) + geom.out + kernel)
        cols = view.transpose(perm).reshape(group, b * p, kc)            # im2col (copy)
        z = cols @ w                                                      # (g, b*P, Mg)
        z = z.reshape((group, b, p, mg)).transpose(1, 0, 3, 2).reshape((b, m) + geom.out)
        parts.append(z)
    z = parts[0] if len(parts) == 1 else xp.concatenate(parts, axis=0)
    if bias is not None:
        z = z + bias.reshape((1, m) + (1,) * nd)
    return z


def conv_vjp(xp, g, weight, x_shape, attrs):
    """Transpose of :func:`conv_forward` (bias excluded) applied to ``g (N, M, *O)``; returns ``(N, C, *S)``."""
    n, c = x_shape[:2]
    m, cg = weight.shape[:2]
    kernel = tuple(weight.shape[2:])
    group = int(attrs.get("group", 1))
    geom = geometry(attrs, tuple(x_shape[2:]), kernel)
    nd, p, kc, mg = len(kernel), math.prod(geom.out), cg * math.prod(kernel), m // group
    w = weight.reshape(group, mg, kc)                                     # (g, Mg, Kc)
    # (g, b, *O, Cg, *K) -> (b, g, Cg, *O, *K)
    perm = (1, 0, 2 + nd) + tuple(range(2, 2 + nd)) + tuple(range(3 + nd, 3 + 2 * nd))
    parts = []
    for sl in _chunks(n, p * kc * group):
        gs = g[sl]
        b = gs.shape[0]
        gm = gs.reshape(b, group, mg, p).transpose(1, 0, 3, 2).reshape(group, b * p, mg)
        cols = (gm @ w).reshape((group, b) + geom.out + (cg,) + kernel)
        cols = cols.transpose(perm).reshape((b, c) + geom.out + kernel)
        parts.append(crop(scatter_windows(xp, cols, geom, g.dtype), geom))
    return parts[0] if len(parts) == 1 else xp.concatenate(parts, axis=0)


@register_kernel("Conv", since=1)
class ConvKernel(LinearKernel):
    """Conv: data input 0, parameters ``weight`` (input 1) and ``bias`` (input 2, optional)."""

    category = "conv"

    def data_inputs(self, node, varying):
        if len(node.inputs) > 1 and node.inputs[1] in varying:
            return "a Conv whose weights depend on the explained input is not supported"
        return super().data_inputs(node, varying)

    def linear_op(self, call):
        xp, attrs = call.xp, call.attrs
        x = call.inputs[0]
        bias = call.inputs[2] if len(call.inputs) > 2 else None
        return LinearOp(
            ports=(0,), inputs=[x], params={"weight": call.inputs[1], "bias": bias},
            forward=lambda xs, p: conv_forward(xp, xs[0], p["weight"], p["bias"], attrs),
            vjp=lambda g, p: [conv_vjp(xp, g, p["weight"], x.shape, attrs)])
