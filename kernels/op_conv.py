"""Conv (1-D, 2-D, 3-D; groups incl. depthwise, strides, dilations, pads, auto_pad) as a linear op.

Forward ``z = W ⋆ x + b`` and VJP ``Wᵀ ⋆ g`` (a transposed convolution), by the fastest of three BLAS-backed
schemes, all batched:

* stride 1, one group: *flat shift*. With the padded input laid out ``(C, N·ΠS_pad)``, the input of kernel tap
  ``t`` for every output position is the contiguous slice starting at ``offset(t)``, so the columns are ``ΠK``
  plain slice copies (no strided gather) and the convolution one GEMM. Outputs are computed on the padded grid
  and cropped.
* depthwise (one input and one output channel per group): a multiply-add per tap over the whole tensor.
* otherwise: im2col (strided window view, one batched GEMM per group), chunked over the batch.

The VJP of a stride-1 convolution is itself a stride-1 convolution of ``g`` with the flipped kernel (input and
output channels swapped) and complementary padding; strided VJPs use GEMM into columns and col2im.
"""
from __future__ import annotations

import math

from onnxlrp.engine.kernel import LinearKernel, LinearOp
from onnxlrp.engine.registry import register_kernel

from ._windows import Geometry, crop, emit_transposed, geometry, pad, scatter_windows, window_view

#: upper bound on the elements of one im2col buffer; batches are chunked to stay below it
COLUMN_BUDGET = 1 << 26


def _chunks(n: int, per_sample: int):
    step = max(1, COLUMN_BUDGET // max(per_sample, 1))
    return [slice(i, min(n, i + step)) for i in range(0, n, step)]


def _flat_shift_conv(xp, x, weight, geom: Geometry):
    """Stride-1, single-group convolution: with the padded input flattened to ``(C, N·ΠS_pad)``, each kernel tap's
    input is one contiguous column range, copied into a tap-major column buffer for a single GEMM."""
    n, c = x.shape[:2]
    m = weight.shape[0]
    nd, taps = len(geom.kernel), math.prod(geom.kernel)
    padded = geom.padded
    axis_strides = [math.prod(padded[i + 1:]) for i in range(nd)]
    offsets = [sum(t * d * st for t, d, st in zip(tap, geom.dilations, axis_strides)) for tap in _taps(geom.kernel)]
    w = weight.reshape(m, c, taps).transpose(0, 2, 1).reshape(m, taps * c)   # tap-major, matching the columns
    crop_out = (slice(None), slice(None)) + tuple(slice(0, o) for o in geom.out)
    parts = []
    for sl in _chunks(n, taps * c * math.prod(padded)):
        xpad = pad(xp, x[sl], geom)
        b = xpad.shape[0]
        flat = xp.ascontiguousarray(xpad.transpose((1, 0) + tuple(range(2, 2 + nd)))).reshape(c, -1)
        length = flat.shape[1] - max(offsets)
        cols = xp.empty((taps, c, length), dtype=x.dtype)
        for k, off in enumerate(offsets):
            cols[k] = flat[:, off:off + length]
        out = xp.zeros((m, flat.shape[1]), dtype=x.dtype)
        out[:, :length] = w @ cols.reshape(taps * c, length)
        parts.append(out.reshape((m, b) + padded)[crop_out].transpose((1, 0) + tuple(range(2, 2 + nd))))
    return parts[0] if len(parts) == 1 else xp.concatenate(parts, axis=0)


def _taps(kernel):
    import itertools
    return itertools.product(*(range(k) for k in kernel))


def _depthwise_conv(xp, x, weight, geom: Geometry):
    """Depthwise convolution (group = C = M): a multiply-add per kernel tap over the whole batch."""
    view = window_view(xp, pad(xp, x, geom), geom)                         # (N, C, *O, *K)
    nd = len(geom.kernel)
    out = None
    for tap in _taps(geom.kernel):
        w = weight[(slice(None), 0) + tap].reshape((1, -1) + (1,) * nd)
        term = view[(Ellipsis,) + tap] * w
        out = term if out is None else out + term
    return out


def _im2col_conv(xp, x, weight, geom: Geometry, group: int):
    n, c = x.shape[:2]
    m, cg = weight.shape[:2]
    kernel = geom.kernel
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
        parts.append(z.reshape((group, b, p, mg)).transpose(1, 0, 3, 2).reshape((b, m) + geom.out))
    return parts[0] if len(parts) == 1 else xp.concatenate(parts, axis=0)


def _is_depthwise(weight, group, c):
    return group == c and weight.shape[0] == c and weight.shape[1] == 1 and group > 1


def conv_forward(xp, x, weight, bias, attrs):
    """ONNX Conv on ``x (N, C, *S)`` with ``weight (M, C/group, *K)`` and optional ``bias (M,)``; ``attrs`` are the
    node's (``Node.attrs``: ``group`` and ``auto_pad`` always present, schema defaults filled)."""
    group = int(attrs["group"])
    geom = geometry(attrs, x.shape[2:], tuple(weight.shape[2:]))
    if group == 1 and all(st == 1 for st in geom.strides):
        z = _flat_shift_conv(xp, x, weight, geom)
    elif _is_depthwise(weight, group, x.shape[1]):
        z = _depthwise_conv(xp, x, weight, geom)
    else:
        z = _im2col_conv(xp, x, weight, geom, group)
    if bias is not None:
        z = z + bias.reshape((1, -1) + (1,) * len(geom.kernel))
    return z


def conv_vjp(xp, g, weight, x_shape, attrs):
    """Transpose of :func:`conv_forward` (bias excluded) applied to ``g (N, M, *O)``; returns ``(N, C, *S)``."""
    n, c = x_shape[:2]
    m, cg = weight.shape[:2]
    kernel = tuple(weight.shape[2:])
    group = int(attrs["group"])
    geom = geometry(attrs, tuple(x_shape[2:]), kernel)
    transposed = _transposed_as_conv(xp, g, weight, geom, group, c)
    if transposed is not None:
        return transposed
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


def _transposed_as_conv(xp, g, weight, geom: Geometry, group: int, c: int):
    """For stride 1: ``Wᵀ ⋆ g`` = ``g ⋆ flip(W)`` with channels swapped and padding ``d(k−1) − p`` (``None`` when
    that padding would be negative, or for grouped convolutions other than depthwise)."""
    if any(st != 1 for st in geom.strides) or any(geom.overhang):
        return None
    span = [d * (k - 1) for k, d in zip(geom.kernel, geom.dilations)]
    begin = [sp - b for sp, b in zip(span, geom.pads_begin)]
    end = [sp - e for sp, e in zip(span, geom.pads_end)]
    if min(begin + end) < 0:
        return None
    nd = len(geom.kernel)
    flipped = weight[(slice(None), slice(None)) + (slice(None, None, -1),) * nd]
    attrs = {"auto_pad": "NOTSET", "pads": begin + end, "dilations": list(geom.dilations), "strides": [1] * nd}
    inner = geometry(attrs, tuple(g.shape[2:]), geom.kernel)
    if group == 1:
        return _flat_shift_conv(xp, g, xp.ascontiguousarray(flipped.swapaxes(0, 1)), inner)
    if _is_depthwise(weight, group, c):
        return _depthwise_conv(xp, g, flipped, inner)
    return None


def emit_conv_vjp(xp, g, weight, x_shape, attrs):
    """:func:`conv_vjp` as ONNX: for stride 1, a ``Conv`` of ``g`` with the flipped, channel-swapped kernel (faster
    in onnxruntime than ``ConvTranspose``); otherwise ``ConvTranspose`` with the forward weight itself."""
    group = int(attrs["group"])
    kernel = tuple(weight.shape[2:])
    geom = geometry(attrs, tuple(x_shape[2:]), kernel)
    nd = len(kernel)
    if all(st == 1 for st in geom.strides) and not any(geom.overhang) and (
            group == 1 or _is_depthwise(weight, group, x_shape[1])):
        span = [d * (k - 1) for k, d in zip(kernel, geom.dilations)]
        pads = [sp - b for sp, b in zip(span, geom.pads_begin)] + [sp - e for sp, e in zip(span, geom.pads_end)]
        if min(pads) >= 0:
            flipped = weight[(slice(None), slice(None)) + (slice(None, None, -1),) * nd]
            attrs = {"pads": pads, "dilations": list(geom.dilations), "strides": [1] * nd, "group": group,
                     "kernel_shape": list(kernel)}
            return xp.node("Conv", [g, flipped.swapaxes(0, 1) if group == 1 else flipped], attrs,
                           shape=tuple(x_shape))
    return emit_transposed(xp, g, weight, geom, group, x_shape)


def conv_attrs(attrs) -> dict:
    """The Conv attributes a re-emitted Conv needs (``None`` values dropped)."""
    return {k: attrs[k] for k in ("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides")
            if attrs.get(k) is not None}


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

    def emit_linear_op(self, call):
        xp, attrs = call.xp, call.attrs
        x = call.inputs[0]
        bias = call.inputs[2] if len(call.inputs) > 2 else None
        out = call.outputs[0] if call.outputs else None

        def forward(xs, p):
            inputs = [xs[0], p["weight"]] + ([p["bias"]] if p["bias"] is not None else [])
            return xp.node("Conv", inputs, conv_attrs(attrs), shape=None if out is None else tuple(out.shape))

        return LinearOp(ports=(0,), inputs=[x], params={"weight": call.inputs[1], "bias": bias}, forward=forward,
                        vjp=lambda g, p: [emit_conv_vjp(xp, g, p["weight"], x.shape, attrs)])
