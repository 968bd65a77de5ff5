"""Shape operations of the symbolic array module: reshape, transpose, axes, broadcasting and basic indexing,
keeping dimensions only known at run time (the batch) symbolic. Mixed into :class:`~onnxlrp.engine.graph_xp.GraphXP`.
"""
from __future__ import annotations

import numpy as np

from ..errors import CompileError
from .symbolic import Sym, SymDim, SymShape, inferred_size, static


class ShapeOps:
    """Methods of :class:`~onnxlrp.engine.graph_xp.GraphXP` that move values around (no arithmetic)."""

    def shape_value(self, shape) -> Sym:
        """A shape as an int64 tensor: constant when static; ``Shape(origin)`` for a :class:`SymShape`;
        otherwise each symbolic entry is read from a tensor that has it."""
        origin = getattr(shape, "origin", None)
        shape = tuple(shape)
        if static(shape):
            return self.ints(shape)
        if origin is not None:
            return self.shape_of(origin)
        symbolic = [d for d in shape if isinstance(d, SymDim)]
        if len(symbolic) == 1:
            return self.ints([-1 if isinstance(d, SymDim) else d for d in shape])
        raise CompileError(f"a shape {shape} with several dimensions only known at run time")

    def reshape(self, a, shape) -> Sym:
        a = self._operand(a)
        shape = shape if isinstance(shape, SymShape) else tuple(int(d) if isinstance(d, np.integer) else d
                                                                for d in shape)
        if a.const is not None and static(shape):
            return self.const(a.const.reshape(tuple(shape)))
        if a._shape is not None and tuple(a._shape) == tuple(shape):
            return a
        out_shape = tuple(shape)
        if -1 in out_shape:
            inferred = inferred_size(a._shape, out_shape)
            out_shape = tuple((SymDim() if inferred is None else inferred) if d == -1 else d for d in out_shape)
        return self.node("Reshape", [a, self._target_shape(a, shape)], shape=out_shape)

    def _target_shape(self, a: Sym, shape) -> Sym:
        """The shape operand of a ``Reshape`` of ``a``: constant when static; ``Shape(origin)`` for a
        :class:`SymShape`; a run-time dimension kept in place is ``0`` (copy), a lone other one ``-1``."""
        if static(shape) or getattr(shape, "origin", None) is not None:
            return self.shape_value(shape)
        dims, free = [], sum(isinstance(d, SymDim) for d in shape)
        for i, d in enumerate(shape):
            if not isinstance(d, SymDim):
                dims.append(d)
            elif a._shape is not None and i < len(a._shape) and a._shape[i] == d:
                dims.append(0)
            elif free == 1 and -1 not in shape:
                dims.append(-1)
            else:
                raise CompileError(f"a reshape of {tuple(a._shape or ())} to {tuple(shape)}, whose run-time sizes "
                                   "cannot be placed")
        return self.ints(dims)

    def transpose(self, a, axes=None) -> Sym:
        a = self._operand(a)
        axes = list(range(a.ndim))[::-1] if axes is None else [int(x) % a.ndim for x in axes]
        if a.const is not None:
            return self.const(a.const.transpose(axes))
        if axes == list(range(a.ndim)):
            return a
        return self.node("Transpose", [a], {"perm": axes}, shape=tuple(a.shape[i] for i in axes))

    def expand_dims(self, a, axis):
        a = self._operand(a)
        axes = [axis] if isinstance(axis, int) else list(axis)
        rank = a.ndim + len(axes)
        axes = sorted(x % rank for x in axes)
        shape = list(a.shape)
        for x in axes:
            shape.insert(x, 1)
        if a.const is not None:
            return self.const(a.const.reshape(shape))
        return self.node("Unsqueeze", [a, self.ints(axes)], shape=tuple(shape))

    def squeeze(self, a, axis):
        a = self._operand(a)
        axes = sorted(x % a.ndim for x in ([axis] if isinstance(axis, int) else axis))
        shape = tuple(d for i, d in enumerate(a.shape) if i not in axes)
        if a.const is not None:
            return self.const(a.const.reshape(shape))
        return self.node("Squeeze", [a, self.ints(axes)], shape=shape)

    def getitem(self, a: Sym, key) -> Sym:
        """Basic indexing: slices with static bounds and any step, integers, ``None`` and ``...``."""
        key = key if isinstance(key, tuple) else (key,)
        if a.const is not None:
            return self.const(a.const[key])
        if any(isinstance(k, (Sym, np.ndarray, list)) for k in key):
            raise CompileError("advanced (array) indexing")
        if Ellipsis in key:
            at = key.index(Ellipsis)
            fill = a.ndim - (len(key) - 1 - sum(k is None for k in key))
            key = key[:at] + (slice(None),) * fill + key[at + 1:]
        starts, ends, axes, steps, squeeze, unsqueeze, shape = [], [], [], [], [], [], []
        axis = out_axis = 0
        for k in key:
            if k is None:
                unsqueeze.append(out_axis)
                shape.append(1)
                out_axis += 1
                continue
            size = a.shape[axis]
            if isinstance(k, (int, np.integer)):
                start = int(k)
                starts.append(start)
                ends.append(start + 1 if start != -1 else np.iinfo(np.int64).max)
                axes.append(axis)
                steps.append(1)
                squeeze.append(axis)
            elif isinstance(k, slice):
                if k != slice(None):
                    step = 1 if k.step is None else int(k.step)
                    big = np.iinfo(np.int64).max
                    start = k.start if k.start is not None else (0 if step > 0 else -1)
                    end = k.stop if k.stop is not None else (big if step > 0 else -big)
                    starts.append(int(start))
                    ends.append(int(end))
                    axes.append(axis)
                    steps.append(step)
                    size = len(range(*k.indices(size))) if isinstance(size, int) else SymDim()
                shape.append(size)
                out_axis += 1
            else:
                raise CompileError(f"an index of type {type(k).__name__}")
            axis += 1
        shape.extend(a.shape[axis:])
        out = a
        if axes:
            sliced = [d for i, d in enumerate(a.shape)]
            for ax, st, en, sp in zip(axes, starts, ends, steps):
                if isinstance(sliced[ax], int):
                    sliced[ax] = len(range(*slice(st, en, sp).indices(sliced[ax])))
                else:
                    sliced[ax] = SymDim()
            out = self.node("Slice", [a, self.ints(starts), self.ints(ends), self.ints(axes), self.ints(steps)],
                            shape=tuple(sliced))
        if squeeze:
            out = self.squeeze(out, squeeze)
        if unsqueeze:
            out = self.expand_dims(out, unsqueeze)
        return out

    def unbroadcast(self, g, shape) -> Sym:
        """``g`` summed over the axes broadcasting added or stretched to reach ``g.shape`` from ``shape`` (the kernel
        protocol's ``unbroadcast``). An axis whose size in ``shape`` is only known at run time (and not provably
        ``g``'s) is summed when it is 1 there: ``ReduceSum`` with axes computed from ``Shape`` (``Compress`` of the
        candidate axes where the size is 1; no axis, no sum). The result is reshaped to ``shape``."""
        g = self._operand(g)
        origin = getattr(shape, "origin", None)
        dims = tuple(shape)
        if g._shape is not None and tuple(g.shape) == dims:
            return g
        extra = g.ndim - len(dims)
        if extra > 0:
            g = self.reduce("ReduceSum", g, tuple(range(extra)))
        stretched, maybe = [], []
        for i, (gs, s) in enumerate(zip(g.shape, dims)):
            if gs == s or (isinstance(s, SymDim) and gs == 1):
                continue
            if isinstance(s, SymDim):
                maybe.append(i)
            elif s == 1:
                stretched.append(i)
        if stretched:
            g = self.reduce("ReduceSum", g, stretched, keepdims=True)
        if maybe:
            if origin is None:
                raise CompileError(f"a sum of a gradient of shape {tuple(g.shape)} back to {dims}, whose run-time "
                                   "sizes are not known")
            sizes = self.take(self.shape_of(origin), self.ints(maybe))
            axes = self.node("Compress", [self.ints(maybe), self.binary("Equal", sizes, self.ints([1] * len(maybe)))],
                             {"axis": 0}, dtype=np.int64, shape=(SymDim(),))
            g = self.node("ReduceSum", [g, axes], {"keepdims": 1, "noop_with_empty_axes": 1},
                          shape=tuple(1 if i in maybe else d for i, d in enumerate(g.shape)))
        return self.reshape(g, shape if origin is not None else dims)
