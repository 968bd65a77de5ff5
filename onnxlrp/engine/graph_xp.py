"""The symbolic array module itself (:class:`GraphXP`): numpy's functions, each appending ONNX nodes.

See :mod:`onnxlrp.engine.symbolic` for what a symbolic value is and what is refused.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx

from ..errors import CompileError
from .graph_xp_shapes import ShapeOps
from .symbolic import Sym, SymDim, broadcast_shapes, static


def _elem_type(dtype) -> int:
    return onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))


def _is_scalar(v) -> bool:
    return isinstance(v, (int, float, bool, np.number, np.bool_))


class GraphXP(ShapeOps):
    """The array module handed to kernels and rules when compiling (``call.xp``); see the module docstring.

    ``builder`` appends nodes and initializers (:class:`onnxlrp.engine.compiled.Builder`); ``dtype`` is the float
    type of the relevance computation; ``opset`` the ``ai.onnx`` version the nodes are written for.
    """

    #: tells array code it is being compiled (a rule's numpy-only shortcut is skipped)
    symbolic = True
    float32 = np.float32
    float64 = np.float64
    bool_ = np.bool_
    int64 = np.int64
    newaxis = None

    def __init__(self, builder, dtype, opset: int):
        self.builder = builder
        self.dtype = np.dtype(dtype)
        self.opset = opset

    # ---------------------------------------------------------------------------------------- making values
    def const(self, array, source=None) -> Sym:
        array = np.asarray(array)
        return Sym(self, dtype=array.dtype, shape=array.shape, const=array, source=source)

    def wrap(self, value, dtype, shape) -> Sym:
        return Sym(self, value, dtype=dtype, shape=shape)

    def _operand(self, v, like: Sym | None = None) -> Sym:
        if isinstance(v, Sym):
            return v
        if _is_scalar(v) or isinstance(v, np.ndarray):
            array = np.asarray(v)
            if like is not None and array.dtype.kind in "fiub" and like.dtype.kind == "f":
                array = array.astype(like.dtype)
            elif array.dtype == np.float64 and self.dtype != np.float64:
                array = array.astype(self.dtype)
            return self.const(array)
        raise CompileError(f"an operand of type {type(v).__name__}")

    def node(self, op_type: str, inputs: Sequence, attrs: dict | None = None, *, dtype=None, shape=None,
             outputs: int = 1, domain: str = ""):
        """Append ``op_type(inputs, attrs)``; returns a :class:`Sym` (or a list for ``outputs > 1``) of ``dtype``
        (default: the first input's) and ``shape`` (``None`` when unknown)."""
        values = [None if v is None else self._operand(v).value for v in inputs]
        first = next((v for v in inputs if isinstance(v, Sym)), None)
        dtype = dtype if dtype is not None else (first.dtype if first is not None else self.dtype)
        outs = self.builder.node(op_type, values, attrs or {}, outputs, domain)
        syms = [Sym(self, v, dtype=dtype, shape=shape) for v in outs]
        return syms if outputs > 1 else syms[0]

    def ints(self, values) -> Sym:
        return self.const(np.asarray(list(values), dtype=np.int64))

    def shape_of(self, x: Sym) -> Sym:
        """``Shape(x)`` (a constant when ``x``'s shape is static)."""
        if x._shape is not None and static(x._shape):
            return self.ints(x._shape)
        return self.node("Shape", [x], dtype=np.int64, shape=(len(x.shape),))

    # ---------------------------------------------------------------------------------------- elementwise
    def _fold(self, fn, *args):
        if all(not isinstance(a, Sym) or a.const is not None for a in args):
            values = [a.const if isinstance(a, Sym) else a for a in args]
            with np.errstate(all="ignore"):
                return self.const(np.asarray(fn(*values)))
        return None

    _NUMPY = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide, "Pow": np.power,
              "Greater": np.greater, "Less": np.less, "GreaterOrEqual": np.greater_equal,
              "LessOrEqual": np.less_equal, "Equal": np.equal, "And": np.logical_and, "Or": np.logical_or,
              "Max": np.maximum, "Min": np.minimum}
    _UNARY = {"Neg": np.negative, "Abs": np.abs, "Exp": np.exp, "Log": np.log, "Tanh": np.tanh, "Sqrt": np.sqrt,
              "Sign": np.sign, "Not": np.logical_not, "Reciprocal": np.reciprocal, "Round": np.rint}
    _LOGICAL = {"Greater", "Less", "GreaterOrEqual", "LessOrEqual", "Equal", "And", "Or"}

    def binary(self, op: str, a, b) -> Sym:
        like = a if isinstance(a, Sym) else b
        a, b = self._operand(a, like), self._operand(b, like)
        folded = self._fold(self._NUMPY[op], a, b)
        if folded is not None:
            return folded
        known = self._known(op, a, b)
        if known is not None:
            return known
        if op in ("And", "Or"):
            a, b = self.astype(a, np.bool_), self.astype(b, np.bool_)
            dtype = np.bool_
        else:
            dtype = np.result_type(a.dtype, b.dtype) if a.dtype != b.dtype else a.dtype
            if dtype.kind == "f" and dtype != self.dtype and {a.dtype, b.dtype} - {dtype}:
                dtype = max(a.dtype, b.dtype, key=lambda d: (d.kind == "f", d.itemsize))
            a, b = self.astype(a, dtype), self.astype(b, dtype)
            if op in self._LOGICAL:
                dtype = np.bool_
        return self.node(op, [a, b], dtype=dtype, shape=broadcast_shapes(a._shape, b._shape))

    def _known(self, op: str, a: Sym, b: Sym) -> Sym | None:
        """What the signs known at compile time decide without a node: ``max(x, 0) = x`` and ``min(x, 0) = 0`` for
        ``x ≥ 0``; ``x + 0 = x``, ``x − 0 = x``, ``x · 1 = x`` (when the constant does not broadcast ``x``)."""
        def is_const(v: Sym, value) -> bool:
            return v.const is not None and v.const.size <= 1 and bool(np.all(v.const == value))

        def keeps_shape(v: Sym, other: Sym) -> bool:
            return v._shape is not None and broadcast_shapes(v._shape, other._shape) == tuple(v._shape)

        if op in ("Max", "Min") and a.non_negative and is_const(b, 0):
            if op == "Max":
                return a
            zero = self.zeros_like(a)
            zero.zero = zero.non_negative = True
            return zero
        if op in ("Add", "Sub") and (b.zero or is_const(b, 0)) and keeps_shape(a, b) and a.dtype == b.dtype:
            return a
        if op == "Add" and (a.zero or is_const(a, 0)) and keeps_shape(b, a) and a.dtype == b.dtype:
            return b
        if op == "Mul" and is_const(b, 1) and keeps_shape(a, b) and a.dtype == b.dtype:
            return a
        return None

    def unary(self, op: str, a) -> Sym:
        a = self._operand(a)
        folded = self._fold(self._UNARY[op], a)
        if folded is not None:
            return folded.astype(a.dtype) if op != "Not" else folded
        return self.node(op, [a], shape=a._shape)

    def astype(self, a, dtype) -> Sym:
        a, dtype = self._operand(a), np.dtype(dtype)
        if a.dtype == dtype:
            return a
        if a.const is not None:
            return self.const(a.const.astype(dtype))
        return self.node("Cast", [a], {"to": _elem_type(dtype)}, dtype=dtype, shape=a._shape)

    def asarray(self, a, dtype=None):
        if isinstance(a, Sym):
            return a if dtype is None else self.astype(a, dtype)
        return self.const(np.asarray(a, dtype=dtype))

    def where(self, cond, a, b) -> Sym:
        like = a if isinstance(a, Sym) else b if isinstance(b, Sym) else None
        cond = self.astype(self._operand(cond), np.bool_)
        a, b = self._operand(a, like), self._operand(b, like)
        folded = self._fold(np.where, cond, a, b)
        if folded is not None:
            return folded
        if a.dtype != b.dtype:  # two Python numbers: the compute dtype, as numpy's float64 is cast back anyway
            dtype = self.dtype if a.dtype.kind != "f" or b.dtype.kind != "f" else max(a.dtype, b.dtype,
                                                                                    key=lambda d: d.itemsize)
            a, b = self.astype(a, dtype), self.astype(b, dtype)
        shape = broadcast_shapes(broadcast_shapes(cond._shape, a._shape), b._shape)
        return self.node("Where", [cond, a, b], dtype=a.dtype, shape=shape)

    def maximum(self, a, b) -> Sym:
        return self.binary("Max", a, b)

    def minimum(self, a, b) -> Sym:
        return self.binary("Min", a, b)

    def clip(self, a, lo, hi) -> Sym:
        out = a if lo is None else self.maximum(a, lo)
        return out if hi is None else self.minimum(out, hi)

    def exp(self, a):
        return self.unary("Exp", a)

    def log(self, a):
        return self.unary("Log", a)

    def tanh(self, a):
        return self.unary("Tanh", a)

    def sqrt(self, a):
        return self.unary("Sqrt", a)

    def abs(self, a):
        return self.unary("Abs", a)

    def sign(self, a):
        return self.unary("Sign", a)

    def rint(self, a):
        """Round half to even, as ``numpy.rint`` and ONNX ``Round`` do."""
        return self.unary("Round", a)

    def logical_not(self, a):
        return self.unary("Not", a)

    def logaddexp(self, a, b):
        """``log(eᵃ + eᵇ) = max(a, b) + log(1 + e^{−|a − b|})``."""
        big = self.maximum(a, b)
        return big + self.log(1.0 + self.exp(-self.abs(self._operand(a, big) - b)))

    def copysign(self, *args, **kwargs):
        raise CompileError("copysign (use a sign test); this is a bug in a rule's symbolic path")

    def arange(self, n, dtype=np.int64):
        return self.const(np.arange(int(n), dtype=dtype))

    def zeros_like(self, a, dtype=None):
        return self.full_like(a, 0, dtype)

    def ones_like(self, a, dtype=None):
        return self.full_like(a, 1, dtype)

    def full_like(self, a, value, dtype=None):
        a = self._operand(a)
        dtype = np.dtype(dtype or a.dtype)
        if a.const is not None:
            return self.const(np.full_like(a.const, value, dtype=dtype))
        return self.node("Expand", [self.const(np.asarray(value, dtype=dtype)), self.shape_of(a)], dtype=dtype,
                         shape=a._shape)

    def zeros(self, shape, dtype=None):
        return self._filled(shape, 0, dtype)

    def ones(self, shape, dtype=None):
        return self._filled(shape, 1, dtype)

    def _filled(self, shape, value, dtype):
        dtype = np.dtype(dtype or self.dtype)
        if static(shape):
            return self.const(np.full(tuple(shape), value, dtype=dtype))
        value = self.const(np.asarray(value, dtype=dtype))
        return self.node("Expand", [value, self._expand_shape(value, shape)], dtype=dtype, shape=tuple(shape))

    def broadcast_to(self, a, shape):
        a = self._operand(a)
        if a.const is not None and static(shape):
            return self.const(np.broadcast_to(a.const, tuple(shape)))
        return self.node("Expand", [a, self._expand_shape(a, shape)], shape=tuple(shape))

    def _expand_shape(self, a: Sym, shape) -> Sym:
        """The shape operand of ``Expand(a, ·)``: ``Shape(origin)`` for a :class:`SymShape`, else a run-time
        dimension that ``a`` already has at that (right-aligned) position becomes 1 (``Expand`` keeps it)."""
        if static(shape) or getattr(shape, "origin", None) is not None:
            return self.shape_value(shape)
        own = (1,) * (len(shape) - a.ndim) + tuple(a.shape)
        dims = []
        for d, mine in zip(shape, own):
            if isinstance(d, SymDim) and mine != d:
                raise CompileError(f"an array broadcast to {tuple(shape)}, whose run-time sizes are not known")
            dims.append(1 if isinstance(d, SymDim) else d)
        return self.ints(dims)

    def reduce(self, op: str, a, axis=None, keepdims=False) -> Sym:
        a = self._operand(a)
        if a.dtype == np.bool_:  # numpy counts booleans (sum: int64, mean: float)
            a = self.astype(a, self.dtype if op == "ReduceMean" else np.int64)
        axes = list(range(a.ndim)) if axis is None else [int(x) % a.ndim for x in
                                                         ([axis] if isinstance(axis, (int, np.integer)) else axis)]
        if a.const is not None:
            fn = {"ReduceSum": np.sum, "ReduceMean": np.mean, "ReduceMax": np.max, "ReduceMin": np.min}[op]
            return self.const(np.asarray(fn(a.const, axis=tuple(axes), keepdims=keepdims), dtype=a.dtype))
        shape = tuple(1 if i in axes else d for i, d in enumerate(a.shape)) if keepdims else \
            tuple(d for i, d in enumerate(a.shape) if i not in axes)
        if not axes:
            return a
        attrs = {"keepdims": int(bool(keepdims))}
        if op == "ReduceSum" or self.opset >= 18:
            return self.node(op, [a, self.ints(axes)], attrs, shape=shape)
        return self.node(op, [a], {**attrs, "axes": axes}, shape=shape)

    def sum(self, a, axis=None, keepdims=False):
        return self.reduce("ReduceSum", a, axis, keepdims)

    def take(self, a, indices, axis=0) -> Sym:
        """``Gather(a, indices, axis)``."""
        a, indices = self._operand(a), self._operand(indices)
        folded = self._fold(lambda u, i: np.take(u, i, axis=axis), a, indices)
        if folded is not None:
            return folded
        axis = axis % a.ndim
        shape = tuple(a.shape[:axis]) + tuple(indices.shape) + tuple(a.shape[axis + 1:])
        return self.node("Gather", [a, self.astype(indices, np.int64)], {"axis": axis}, shape=shape)

    def pick(self, a, indices) -> Sym:
        """``a[i, indices[i]]`` for each row ``i`` of a 2-D ``a``: ``GatherElements`` along axis 1."""
        column = self.expand_dims(self.astype(indices, np.int64), 1)
        picked = self.node("GatherElements", [a, column], {"axis": 1}, shape=(a.shape[0], 1))
        return self.squeeze(picked, 1)

    def one_hot(self, indices, classes: int, dtype=None) -> Sym:
        """``(N, classes)`` with 1 at each row's index."""
        dtype = np.dtype(dtype or self.dtype)
        return self.node("OneHot", [indices, self.ints([classes]), self.const(np.asarray([0, 1], dtype=dtype))],
                         {"axis": -1}, dtype=dtype, shape=(indices.shape[0], classes))

    def ascontiguousarray(self, a):
        return a

    def concatenate(self, parts, axis=0) -> Sym:
        parts = [self._operand(p) for p in parts]
        if len(parts) == 1:
            return parts[0]
        axis = axis % parts[0].ndim
        shape = list(parts[0].shape)
        sizes = [p.shape[axis] for p in parts]
        shape[axis] = sum(sizes) if all(isinstance(s, int) for s in sizes) else SymDim()
        if all(p.const is not None for p in parts):
            return self.const(np.concatenate([p.const for p in parts], axis=axis))
        return self.node("Concat", parts, {"axis": axis}, shape=tuple(shape))

    def matmul(self, a, b) -> Sym:
        a, b = self._operand(a), self._operand(b)
        folded = self._fold(np.matmul, a, b)
        if folded is not None:
            return folded
        if a.ndim < 2 or b.ndim < 2:
            raise CompileError("a matrix product with a vector operand")
        batch = broadcast_shapes(a.shape[:-2], b.shape[:-2])
        return self.node("MatMul", [a, self.astype(b, a.dtype)], shape=batch + (a.shape[-2], b.shape[-1]))

    def isinf(self, a) -> Sym:
        """``IsInf(a)`` (either sign)."""
        a = self._operand(a)
        if a.const is not None:
            return self.const(np.isinf(a.const))
        return self.node("IsInf", [a], dtype=np.bool_, shape=a._shape)

    def split(self, a, bounds, axis=0) -> list:
        """``numpy.split(a, bounds, axis)`` with static ``bounds`` (``Slice`` per part; a constant folds)."""
        a = self._operand(a)
        axis = axis % a.ndim
        edges = [0] + [int(b) for b in bounds] + [None]
        return [self.getitem(a, (slice(None),) * axis + (slice(lo, hi),)) for lo, hi in zip(edges[:-1], edges[1:])]
