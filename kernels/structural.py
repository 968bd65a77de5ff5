"""Ops that only move values around. Relevance and gradients take the exact adjoint (conserving): reshapes are
undone, concatenations split, slices scattered back, constant pads cropped, edge/reflect/wrap pads summed back onto the
positions they copy."""
from __future__ import annotations

import math

import numpy as np

from onnxlrp.engine.kernel import CompileError, Kernel, UnsupportedOpError, scatter_ports
from onnxlrp.engine.registry import register_kernel

from ._axes import emit_scatter_axis, emit_slice_positions, gather_axis, scatter_axis


def _ints(value) -> list[int]:
    array = np.asarray(value)
    if array.dtype.kind not in "iu":  # shapes, axes, pads, starts are int64 tensors in ONNX
        raise ValueError(f"an integer tensor (shape, axes, pads) is of dtype {array.dtype}")
    return [int(v) for v in array.reshape(-1).tolist()]


def _host(value):
    """A small shape/axes operand as a host numpy array (CuPy arrays are copied back)."""
    return value.get() if hasattr(value, "get") else value


class _Reshaping(Kernel):
    """Ops whose VJP is ``g.reshape(x.shape)``; subclasses give the forward."""

    def vjp(self, call, grads):
        return scatter_ports(len(call.inputs), (0,), [grads[0].reshape(call.inputs[0].shape)])


@register_kernel("Identity", since=1)
class IdentityKernel(_Reshaping):
    """Identity."""

    def forward(self, call):
        return (call.inputs[0],)


@register_kernel("Dropout", since=1)
class DropoutKernel(_Reshaping):
    """Dropout in inference (identity; the mask output carries no relevance)."""

    def forward(self, call):
        return (call.inputs[0],) + (None,) * (len(call.node.outputs) - 1)


@register_kernel("Cast", since=1)
class CastKernel(_Reshaping):
    """Cast between floating types (identity for relevance)."""

    def data_inputs(self, node, varying):
        import onnx
        to = node.attrs["to"]  # required
        if to not in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16,
                      onnx.TensorProto.BFLOAT16):
            return "Cast to a non-floating type on the relevance path carries no relevance and is not supported"
        return super().data_inputs(node, varying)

    def forward(self, call):
        return (call.inputs[0],)


@register_kernel("Flatten", since=1)
class FlattenKernel(_Reshaping):
    """Flatten to 2-D around ``axis``."""

    def forward(self, call):
        x = call.inputs[0]
        axis = int(call.attrs["axis"]) % (x.ndim or 1) if x.ndim else 0
        return (x.reshape(math.prod(x.shape[:axis]), -1),)


@register_kernel("Reshape", since=5)
class ReshapeKernel(_Reshaping):
    """Reshape with ONNX semantics (``0`` copies a dimension unless ``allowzero``, ``-1`` is inferred)."""

    def forward(self, call):
        x = call.inputs[0]
        shape = _ints(_host(call.inputs[1]))
        if not call.attrs.get("allowzero", 0):  # attribute from opset 14 on (default 0); before, 0 always copies
            shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
        return (x.reshape(shape),)


@register_kernel("Squeeze", since=1)
class SqueezeKernel(_Reshaping):
    """Squeeze the given (or all size-1) axes."""

    def forward(self, call):
        x = call.inputs[0]
        axes = call.attrs.get("axes")  # before opset 13: optional, no default (absent: every size-1 axis)
        if len(call.inputs) > 1 and call.inputs[1] is not None:  # an optional input from opset 13
            axes = _ints(_host(call.inputs[1]))
        if axes is None:
            return (x.reshape([s for s in x.shape if s != 1]),)
        axes = {a % x.ndim for a in axes}
        return (x.reshape([s for i, s in enumerate(x.shape) if i not in axes]),)


@register_kernel("Unsqueeze", since=1)
class UnsqueezeKernel(_Reshaping):
    """Insert size-1 axes."""

    def forward(self, call):
        x = call.inputs[0]
        axes = call.attrs["axes"] if call.node.since < 13 else _ints(_host(call.inputs[1]))  # required either way
        rank = x.ndim + len(axes)
        axes = sorted(a % rank for a in axes)
        shape = list(x.shape)
        for a in axes:
            shape.insert(a, 1)
        return (x.reshape(shape),)


@register_kernel("Transpose", since=1)
class TransposeKernel(Kernel):
    """Transpose by ``perm`` (default: reverse); VJP transposes by the inverse permutation."""

    def _perm(self, call):
        perm = call.attrs.get("perm")  # optional, no default: absent reverses the axes
        return list(perm) if perm else list(range(call.inputs[0].ndim))[::-1]

    def forward(self, call):
        return (call.inputs[0].transpose(self._perm(call)),)

    def vjp(self, call, grads):
        inverse = np.argsort(self._perm(call)).tolist()
        return scatter_ports(len(call.inputs), (0,), [grads[0].transpose(inverse)])


@register_kernel("Concat", since=1)
class ConcatKernel(Kernel):
    """Concat along ``axis``; each varying input gets its slice of the output relevance."""

    def data_inputs(self, node, varying):
        return tuple(p for p, t in enumerate(node.inputs) if t in varying)

    def forward(self, call):
        return (call.xp.concatenate(call.inputs, axis=int(call.attrs["axis"])),)

    def vjp(self, call, grads):
        g = grads[0]
        axis = int(call.attrs["axis"]) % g.ndim
        out, start = [], 0
        for x, varying in zip(call.inputs, call.varying):
            size = x.shape[axis]
            out.append(g[(slice(None),) * axis + (slice(start, start + size),)] if varying else None)
            start += size
        return tuple(out)

    def emit_vjp(self, call, grads):
        """The VJP as ONNX: each varying input's ``Slice`` of ``g`` along ``axis``, its offset the sum of the sizes
        before it (sizes only known at run time read with ``Shape``)."""
        xp, g = call.xp, grads[0]
        axis = int(call.attrs["axis"]) % g.ndim
        sizes = [x.shape[axis] for x in call.inputs]
        if all(isinstance(size, int) for size in sizes):
            return self.vjp(call, grads)
        out, start = [], xp.ints([0])
        for x, size, varying in zip(call.inputs, sizes, call.varying):
            size = xp.ints([size]) if isinstance(size, int) else xp.take(xp.shape_of(x), xp.ints([axis]))
            end = start + size
            out.append(xp.node("Slice", [g, start, end, xp.ints([axis])], shape=tuple(x.shape)) if varying else None)
            start = end
        return tuple(out)


@register_kernel("Split", since=1)
class SplitKernel(Kernel):
    """Split along ``axis`` (sizes from the ``split`` input/attribute or ``num_outputs``); VJP concatenates."""

    def _sizes(self, call, length):
        split = call.attrs.get("split")  # before opset 13: optional, no default (absent: equal parts)
        if len(call.inputs) > 1 and call.inputs[1] is not None:  # an optional input from opset 13 (and in Split-1)
            split = _ints(_host(call.inputs[1]))
        n = len(call.node.outputs)
        if not split:
            chunk = -(-length // n)
            split = [min(chunk, length - i * chunk) for i in range(n)]
        return split

    @staticmethod
    def _axis(call, x):
        # Split-1 declares no default for axis (it is 0 from Split-2 on, filled in Node.attrs)
        return int(call.attrs.get("axis", 0)) % x.ndim

    def forward(self, call):
        x = call.inputs[0]
        axis = self._axis(call, x)
        bounds = np.cumsum(self._sizes(call, x.shape[axis]))[:-1].tolist()
        return tuple(call.xp.split(x, bounds, axis=axis))

    def vjp(self, call, grads):
        xp, x = call.xp, call.inputs[0]
        axis = self._axis(call, x)
        pieces = []
        for size, g in zip(self._sizes(call, x.shape[axis]), grads):
            if g is None:
                shape = list(x.shape)
                shape[axis] = size
                g = xp.zeros(shape, dtype=x.dtype)
            pieces.append(g)
        return scatter_ports(len(call.inputs), (0,), [xp.concatenate(pieces, axis=axis)])

    def emit_vjp(self, call, grads):
        """The VJP as ONNX: ``Concat`` of the parts' ``g`` (zeros shaped like a part that received none)."""
        xp, x = call.xp, call.inputs[0]
        if any(g is None for g in grads):
            outs = call.outputs if all(o is not None for o in call.outputs) else self.emit_forward(call)
            grads = [xp.zeros_like(o, dtype=x.dtype) if g is None else g for g, o in zip(grads, outs)]
        return scatter_ports(len(call.inputs), (0,), [xp.concatenate(list(grads), axis=self._axis(call, x))])


@register_kernel("Slice", since=1)
class SliceKernel(Kernel):
    """Slice (attributes before opset 10, inputs afterwards); VJP scatters into zeros."""

    def _index(self, call):
        x = call.inputs[0]
        if call.node.since < 10:
            starts, ends = call.attrs["starts"], call.attrs["ends"]
            axes, steps = call.attrs.get("axes"), None  # axes: optional, no default (absent: 0, 1, ...)
        else:
            starts, ends = _ints(_host(call.inputs[1])), _ints(_host(call.inputs[2]))
            axes = _ints(_host(call.inputs[3])) if len(call.inputs) > 3 and call.inputs[3] is not None else None
            steps = _ints(_host(call.inputs[4])) if len(call.inputs) > 4 and call.inputs[4] is not None else None
        axes = list(range(len(starts))) if axes is None else axes
        steps = [1] * len(starts) if steps is None else steps
        index = [slice(None)] * x.ndim
        for s, e, a, st in zip(starts, ends, axes, steps):
            start, stop, step = slice(int(s), int(e), int(st)).indices(x.shape[a % x.ndim])
            # a negative step that runs past position 0 stops at -1 here, which as a slice bound is the last element
            index[a % x.ndim] = slice(start, None if stop < 0 else stop, step)
        return tuple(index)

    def forward(self, call):
        return (call.inputs[0][self._index(call)],)

    def vjp(self, call, grads):
        x = call.inputs[0]
        dx = call.xp.zeros(x.shape, dtype=grads[0].dtype)
        dx[self._index(call)] = grads[0]
        return scatter_ports(len(call.inputs), (0,), [dx])

    def emit_vjp(self, call, grads):
        """The VJP as ONNX: per sliced axis, the positions read (``Slice`` of ``Range``, folded when constant) and
        ``g`` placed back there (``Pad`` for a constant contiguous range, else ``ScatterElements``)."""
        xp, x, g = call.xp, call.inputs[0], grads[0]
        if call.node.since < 10:
            starts, ends = call.attrs["starts"], call.attrs["ends"]
            axes = call.attrs.get("axes") or list(range(len(starts)))
            operands = [xp.ints(starts), xp.ints(ends), xp.ints(axes), xp.ints([1] * len(starts))]
        else:
            operands = [xp.astype(v, xp.int64) if v is not None else None for v in list(call.inputs[1:5]) +
                        [None] * (5 - len(call.inputs))]
        starts, ends, axes, steps = operands
        count = starts.shape[0]
        if axes is None:
            axes = xp.ints(range(count))
        if axes.const is None:
            raise CompileError(f"Slice node {call.node.name!r} slices axes only known at run time")
        steps = xp.ints([1] * count) if steps is None else steps
        for k, axis in enumerate(axes.const.reshape(-1).tolist()):
            part = [xp.getitem(v, slice(k, k + 1)) for v in (starts, ends, steps)]
            positions = emit_slice_positions(xp, x, int(axis) % x.ndim, *part)
            g = emit_scatter_axis(xp, g, x, int(axis) % x.ndim, positions)
        return scatter_ports(len(call.inputs), (0,), [g])


@register_kernel("Pad", since=1)
class PadKernel(Kernel):
    """Pad in every mode: ``constant``, ``reflect``, ``edge``, ``wrap`` (opset 19); negative pads crop.

    Constant padding's VJP crops the padding off; reflect/edge/wrap are gathers along each padded axis, whose VJP
    sums what lands on the same source position."""

    MODES = ("constant", "reflect", "edge", "wrap")

    def data_inputs(self, node, varying):
        if node.attrs["mode"] not in self.MODES:
            return f"Pad mode {node.attrs['mode']!r} is not supported (only {', '.join(self.MODES)})"
        if any(t in varying for t in node.inputs[1:] if t):
            return "Pad with pads, a constant value or axes that depend on the explained input is not supported"
        return super().data_inputs(node, varying)

    def _pads(self, call):
        x = call.inputs[0]
        if call.node.since < 11:  # an attribute (required; named ``paddings`` in Pad-1), an input from opset 11
            pads = call.attrs["pads" if call.node.since >= 2 else "paddings"]
        else:
            pads = _ints(_host(call.inputs[1]))
        axes = list(range(x.ndim))
        if len(call.inputs) > 3 and call.inputs[3] is not None:
            axes = [a % x.ndim for a in _ints(_host(call.inputs[3]))]
        begin, end = [0] * x.ndim, [0] * x.ndim
        for k, a in enumerate(axes):
            begin[a], end[a] = int(pads[k]), int(pads[k + len(axes)])
        return begin, end

    def _value(self, call):
        if call.node.since < 11:
            return float(call.attrs["value"])
        if len(call.inputs) > 2 and call.inputs[2] is not None and _host(call.inputs[2]).size:
            return float(_host(call.inputs[2]).reshape(-1)[0])
        return 0.0

    def _gathers(self, call):
        """``(axis, source index (O, 1), input length)`` per padded axis: negative pads crop first (as onnxruntime
        does), then the index vector is padded in the node's mode (``numpy.pad`` on ``arange``)."""
        xp, x = call.xp, call.inputs[0]
        mode = call.attrs["mode"]
        steps = []
        for axis, (b, e) in enumerate(zip(*self._pads(call))):
            if not b and not e:
                continue
            n = x.shape[axis]
            kept = np.arange(max(-b, 0), n - max(-e, 0))
            if kept.size == 0 and (b > 0 or e > 0):
                raise UnsupportedOpError(f"Pad node {call.node.name!r} pads an empty axis {axis} in mode {mode!r}")
            index = np.pad(kept, (max(b, 0), max(e, 0)), mode=mode)
            steps.append((axis, xp.asarray(index.reshape(-1, 1)), n))
        return steps

    def forward(self, call):
        xp, x = call.xp, call.inputs[0]
        if call.attrs["mode"] != "constant":
            for axis, index, _ in self._gathers(call):
                x = gather_axis(xp, x, axis, index)
            return (x,)
        begin, end = self._pads(call)
        widths = [(max(b, 0), max(e, 0)) for b, e in zip(begin, end)]
        y = xp.pad(x, widths, constant_values=self._value(call))
        crop = tuple(slice(max(-b, 0), y.shape[i] - max(-e, 0)) for i, (b, e) in enumerate(zip(begin, end)))
        return (y[crop],)

    def vjp(self, call, grads):
        xp, x, g = call.xp, call.inputs[0], grads[0]
        if call.attrs["mode"] != "constant":
            for axis, index, size in reversed(self._gathers(call)):
                g = scatter_axis(xp, g, axis, index, None, size)
            return scatter_ports(len(call.inputs), (0,), [g])
        begin, end = self._pads(call)
        dx = xp.zeros(x.shape, dtype=g.dtype)
        src = tuple(slice(max(b, 0), g.shape[i] - max(e, 0)) for i, (b, e) in enumerate(zip(begin, end)))
        dst = tuple(slice(max(-b, 0), x.shape[i] - max(-e, 0)) for i, (b, e) in enumerate(zip(begin, end)))
        dx[dst] = g[src]
        return scatter_ports(len(call.inputs), (0,), [dx])
