"""ConvTranspose (1-D/2-D/3-D; groups, strides, dilations, pads, output_padding, output_shape, auto_pad) as a linear
op: the adjoint of a Conv, built from ``op_conv``'s machinery.

A ConvTranspose with weight ``W (C, M/group, *K)`` maps ``x (N, C, *S)`` to ``y (N, M, *Y)``; it is the transpose of
the Conv with the same weight (``C`` output and ``M`` input channels), strides, dilations and pads that maps
``(N, M, *Y)`` to ``(N, C, *S)``. So the forward is ``op_conv.conv_vjp`` (a stride-1 transposed convolution runs as a
Conv with the flipped kernel, the faster form; strided ones as GEMM + col2im) and the VJP is ``op_conv.conv_forward``.
``output_padding`` adds positions at the end that no input reaches (they hold the bias only). Category ``conv``: the
presets' convolution rules apply with ``weight`` and ``bias`` as parameters.
"""
from __future__ import annotations

from onnxlrp.engine.kernel import LinearKernel, LinearOp, UnsupportedOpError
from onnxlrp.engine.registry import register_kernel

from ._windows import geometry
from .op_conv import conv_forward, conv_vjp


def transposed_layout(attrs, spatial, kernel):
    """``(conv_attrs, out_spatial)``: the attributes of the Conv whose transpose this node is, and the output's
    spatial shape, from ``pads``/``output_padding``/``output_shape``/``auto_pad`` (onnxruntime's semantics: with
    ``output_shape`` or ``SAME_*`` the total padding is split evenly, the odd one at the end for ``SAME_UPPER`` and
    at the beginning otherwise)."""
    nd = len(spatial)
    strides = list(attrs.get("strides") or [1] * nd)        # optional, no default: 1 per spatial axis
    dilations = list(attrs.get("dilations") or [1] * nd)    # optional, no default: 1 per spatial axis
    extra = list(attrs.get("output_padding") or [0] * nd)   # optional, no default: none
    shape = attrs.get("output_shape")                       # optional, no default: computed from pads
    auto_pad = attrs["auto_pad"]
    span = [d * (k - 1) + 1 for k, d in zip(kernel, dilations)]
    full = [st * (s - 1) + op + sp for s, st, op, sp in zip(spatial, strides, extra, span)]
    if shape or auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        out = [int(o) for o in shape[-nd:]] if shape else [s * st for s, st in zip(spatial, strides)]
        total = [f - o for f, o in zip(full, out)]
        if min(total) < 0:
            raise UnsupportedOpError(f"ConvTranspose output_shape {out} is larger than the transposed convolution's "
                                     f"extent {full}")
        small, big = [t // 2 for t in total], [t - t // 2 for t in total]
        begin, end = (small, big) if auto_pad == "SAME_UPPER" else (big, small)
    elif auto_pad == "VALID":
        begin, end = [0] * nd, [0] * nd
    else:
        pads = list(attrs.get("pads") or [0] * (2 * nd))  # NOTSET: explicit pads, optional, none if absent
        begin, end = pads[:nd], pads[nd:]
    out = [f - b - e for f, b, e in zip(full, begin, end)]
    if min(out) < 1:
        raise UnsupportedOpError(f"ConvTranspose pads {begin + end} leave no output (extent {full})")
    conv = {"auto_pad": "NOTSET", "pads": list(begin) + list(end), "strides": strides, "dilations": dilations,
            "group": int(attrs["group"])}
    geom = geometry(conv, tuple(out), tuple(kernel))
    if geom.out != tuple(spatial):
        raise UnsupportedOpError(f"ConvTranspose output_padding {extra} must be smaller than the strides {strides} "
                                 "(or the dilations)")
    return conv, tuple(out)


@register_kernel("ConvTranspose", since=1)
class ConvTransposeKernel(LinearKernel):
    """ConvTranspose: data input 0, parameters ``weight`` (input 1, ``(C, M/group, *K)``) and ``bias`` (input 2)."""

    category = "conv"

    def data_inputs(self, node, varying):
        if any(t in varying for t in node.inputs[1:] if t):
            return "a ConvTranspose whose weights or bias depend on the explained input is not supported"
        return super().data_inputs(node, varying)

    def linear_op(self, call):
        xp, x, weight = call.xp, call.inputs[0], call.inputs[1]
        bias = call.inputs[2] if len(call.inputs) > 2 else None
        kernel = tuple(call.attrs.get("kernel_shape") or weight.shape[2:])  # optional: the weight's shape
        conv, out = transposed_layout(call.attrs, tuple(x.shape[2:]), kernel)
        group = conv["group"]
        y_shape = (x.shape[0], weight.shape[1] * group) + out

        def forward(xs, p):
            y = conv_vjp(xp, xs[0], p["weight"], y_shape, conv)
            if p["bias"] is not None:
                y = y + p["bias"].reshape((1, -1) + (1,) * len(out))
            return y

        def vjp(g, p):
            return [conv_forward(xp, g, p["weight"], None, conv)]

        return LinearOp(ports=(0,), inputs=[x], params={"weight": weight, "bias": bias}, forward=forward, vjp=vjp)
