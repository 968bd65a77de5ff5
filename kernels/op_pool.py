"""Pooling and reductions.

Average pooling, GlobalAveragePool, ReduceMean and ReduceSum are linear without parameters (zennit maps them to
``Norm``: a proportional split). MaxPool and GlobalMaxPool route relevance to the window's arg-max (the gradient,
winner-take-all; ties go to the first maximum in scan order, as in PyTorch).
"""
from __future__ import annotations

import math

import numpy as np

from onnxlrp.engine.kernel import Kernel, LinearKernel, LinearOp, emitted_attrs, scatter_ports
from onnxlrp.engine.registry import register_kernel

from ._windows import crop, emit_transposed, geometry, pad, scatter_windows, window_view


def _pool_geometry(call, x_shape):
    a = call.attrs
    ceil_mode = a.get("ceil_mode", 0)  # attribute from opset 10 on (default 0); earlier versions always floor
    return geometry(a, tuple(x_shape[2:]), tuple(a["kernel_shape"]), ceil_mode=bool(ceil_mode))


def _average_divisor(xp, call, spatial, geom, dtype):
    """``d_j`` per output position ``(1, 1, *O)``: the window size, less the padding unless ``count_include_pad``."""
    counted = xp.ones((1, 1) + tuple(spatial), dtype=dtype)
    # count_include_pad: an attribute from opset 7 on (default 0); AveragePool-1 always excludes the padding
    if call.attrs.get("count_include_pad", 0):
        widths = [(0, 0), (0, 0)] + list(zip(geom.pads_begin, geom.pads_end))
        counted = xp.pad(counted, widths, constant_values=1.0)
        counted = xp.pad(counted, [(0, 0), (0, 0)] + [(0, o) for o in geom.overhang])
    else:
        counted = pad(xp, counted, geom)
    return window_view(xp, counted, geom).sum(axis=tuple(range(-len(geom.kernel), 0)))


@register_kernel("AveragePool", since=1)
class AveragePoolKernel(LinearKernel):
    """AveragePool ``z_j = Σ_{i∈RF(j)} x_i / d_j``; ``d_j`` counts padding iff ``count_include_pad``."""

    category = "avgpool"

    def linear_op(self, call):
        xp = call.xp
        x = call.inputs[0]
        geom = _pool_geometry(call, x.shape)
        divisor = _average_divisor(xp, call, x.shape[2:], geom, x.dtype)
        nd = len(geom.kernel)

        def forward(xs, p):
            windows = window_view(xp, pad(xp, xs[0], geom), geom)
            return windows.sum(axis=tuple(range(-nd, 0))) / divisor

        def vjp(g, p):
            cols = xp.broadcast_to((g / divisor).reshape(g.shape + (1,) * nd), g.shape + geom.kernel)
            return [crop(scatter_windows(xp, cols, geom, g.dtype), geom)]

        return LinearOp(ports=(0,), inputs=[x], params={}, forward=forward, vjp=vjp)

    def emit_linear_op(self, call):
        """AveragePool as ONNX: the node itself forward; the VJP ``ConvTranspose(g / d)`` with a ones kernel per
        channel, the divisor map ``d`` computed at compile time (spatial size and channels must be static)."""
        xp, node = call.xp, call.node
        x = call.inputs[0]
        geom = _pool_geometry(call, x.shape)
        divisor = _average_divisor(np, call, x.shape[2:], geom, x.dtype)
        channels = x.shape[1]
        ones = np.ones((int(channels), 1) + geom.kernel, dtype=x.dtype)
        out = call.outputs[0] if call.outputs else None

        def forward(xs, p):
            return xp.node("AveragePool", [xs[0]], emitted_attrs(node), shape=None if out is None else out.shape)

        def vjp(g, p):
            return [emit_transposed(xp, g / xp.const(divisor), xp.const(ones), geom, channels, x.shape)]

        return LinearOp(ports=(0,), inputs=[x], params={}, forward=forward, vjp=vjp)


def _reduce_axes(call, ndim):
    """Axes of a Reduce* node (attribute before opset 18 / 13 for ReduceSum, input afterwards)."""
    axes = call.attrs.get("axes")  # optional, no default (absent: every axis); an input in the newer versions
    if len(call.inputs) > 1 and call.inputs[1] is not None:
        axes = [int(a) for a in call.inputs[1].reshape(-1).tolist()]
    if not axes:
        # the attribute exists only where axes is an input (ReduceSum 13, ReduceMean 18; default 0)
        if call.attrs.get("noop_with_empty_axes", 0):
            return ()
        return tuple(range(ndim))
    return tuple(sorted(a % ndim for a in axes))


class _LinearReduce(LinearKernel):
    """Shared ReduceMean/ReduceSum/GlobalAveragePool; ``mean`` selects the divisor."""

    category = "avgpool"
    mean = True

    def axes(self, call, ndim):
        return _reduce_axes(call, ndim)

    def keepdims(self, call):
        return bool(call.attrs["keepdims"])

    def linear_op(self, call):
        xp = call.xp
        x = call.inputs[0]
        axes, keep = self.axes(call, x.ndim), self.keepdims(call)
        count = math.prod(x.shape[a] for a in axes) if self.mean else 1
        kept_shape = tuple(1 if i in axes else s for i, s in enumerate(x.shape))

        def forward(xs, p):
            z = xs[0].sum(axis=axes, keepdims=keep)
            return z / count if self.mean else z

        def vjp(g, p):
            g = g.reshape(kept_shape)
            return [xp.broadcast_to(g / count if self.mean else g, x.shape)]

        return LinearOp(ports=(0,), inputs=[x], params={}, forward=forward, vjp=vjp)


@register_kernel("ReduceMean", since=1)
class ReduceMeanKernel(_LinearReduce):
    """ReduceMean over the given axes (a global average pool when the axes are spatial)."""


@register_kernel("ReduceSum", since=1)
class ReduceSumKernel(_LinearReduce):
    """ReduceSum over the given axes (sum pooling)."""

    mean = False


@register_kernel("GlobalAveragePool", since=1)
class GlobalAveragePoolKernel(_LinearReduce):
    """GlobalAveragePool: mean over all spatial axes, kept as size-1 axes."""

    def axes(self, call, ndim):
        return tuple(range(2, ndim))

    def keepdims(self, call):
        return True


@register_kernel("MaxPool", since=1)
class MaxPoolKernel(Kernel):
    """MaxPool; relevance and gradient go to the first maximum of each window (``Indices`` output unsupported)."""

    category = "maxpool"

    def _argmax(self, call):
        xp = call.xp
        x = call.inputs[0]
        geom = _pool_geometry(call, x.shape)
        fill = xp.finfo(x.dtype).min if x.dtype.kind == "f" else xp.iinfo(x.dtype).min
        windows = window_view(xp, pad(xp, x, geom, value=fill), geom)
        flat = windows.reshape(windows.shape[:-len(geom.kernel)] + (-1,))
        arg = flat.argmax(axis=-1)
        return geom, flat, arg

    def forward(self, call):
        xp = call.xp
        _, flat, arg = self._argmax(call)
        y = xp.take_along_axis(flat, arg[..., None], axis=-1)[..., 0]
        return (y,) + (None,) * (len(call.node.outputs) - 1)

    def vjp(self, call, grads):
        xp = call.xp
        x, g = call.inputs[0], grads[0]
        geom, _, arg = self._argmax(call)
        taps = xp.unravel_index(arg, geom.kernel)
        n, c = x.shape[:2]
        flat_index = (xp.arange(n).reshape((n, 1) + (1,) * len(geom.out)) * c
                      + xp.arange(c).reshape((1, c) + (1,) * len(geom.out)))
        for axis, (tap, st, d, size) in enumerate(zip(taps, geom.strides, geom.dilations, geom.padded)):
            shape = [1] * (2 + len(geom.out))
            shape[2 + axis] = geom.out[axis]
            position = xp.arange(geom.out[axis]).reshape(shape) * st + tap * d
            flat_index = flat_index * size + position
        total = n * c * math.prod(geom.padded)
        dx = xp.bincount(flat_index.reshape(-1), weights=g.reshape(-1), minlength=total)
        dx = crop(dx.astype(g.dtype, copy=False).reshape((n, c) + geom.padded), geom)
        return scatter_ports(len(call.inputs), (0,), [dx])

    def emit_vjp(self, call, grads):
        """The VJP as ONNX: ``MaxPool`` re-run for its ``Indices`` (flat positions in the whole input; the first
        maximum of a window wins, as here), then ``ScatterElements(reduction="add")`` of ``g`` onto them."""
        xp, node = call.xp, call.node
        x, g = call.inputs[0], grads[0]
        attrs = {k: v for k, v in emitted_attrs(node).items() if k != "storage_order"}
        _, indices = xp.node("MaxPool", [x], attrs, outputs=2, shape=g.shape)
        indices.dtype = np.dtype(np.int64)
        flat = xp.reshape(xp.zeros_like(x), (-1,))
        dx = xp.node("ScatterElements", [flat, xp.reshape(indices, (-1,)), xp.reshape(g, (-1,))],
                     {"axis": 0, "reduction": "add"}, shape=flat.shape)
        return scatter_ports(len(call.inputs), (0,), [xp.reshape(dx, x.shape)])


@register_kernel("GlobalMaxPool", since=1)
class GlobalMaxPoolKernel(Kernel):
    """GlobalMaxPool; relevance goes to the first maximum over the spatial axes."""

    category = "maxpool"

    def forward(self, call):
        x = call.inputs[0]
        return (x.max(axis=tuple(range(2, x.ndim)), keepdims=True),)

    def vjp(self, call, grads):
        xp = call.xp
        x, g = call.inputs[0], grads[0]
        flat = x.reshape(x.shape[:2] + (-1,))
        arg = flat.argmax(axis=-1)
        onehot = xp.arange(flat.shape[-1]).reshape(1, 1, -1) == arg[..., None]
        return scatter_ports(len(call.inputs), (0,), [(onehot * g.reshape(x.shape[:2] + (1,))).reshape(x.shape)])
