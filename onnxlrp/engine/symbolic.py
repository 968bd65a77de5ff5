"""A symbolic array module: the kernels' and rules' array code run on ONNX values emits an ONNX graph.

The compiled backend (:mod:`onnxlrp.engine.compiled`) hands kernels and rules a :class:`GraphXP` where they expect
numpy (``call.xp``) and :class:`Sym` values where they expect arrays. Every operation then appends ONNX nodes to the
model being built (with ``onnx_ir``, the ONNX project's in-memory IR) instead of computing numbers; operations on
constants only (a rule's ``W⁺ = max(W, 0)``) are computed at once in numpy and become initializers, so modified
weights are folded at compile time and unmodified ones are the model's own initializers (shared, not copied).

What the symbolic values cannot do is refused with :class:`~onnxlrp.errors.CompileError`, never approximated: a
Python branch on array data (``bool(sym)``), a host copy, in-place assignment, a size computed from a dimension
only known at run time (the batch), or a numpy function applied to a symbolic value.

Shapes are tuples of ``int`` and :class:`SymDim` (a dimension known by name only, such as the batch ``N``);
``Sym.shape`` is a :class:`SymShape` that remembers its tensor, so ``g.reshape(x.shape)`` becomes
``Reshape(g, Shape(x))`` and keeps the batch symbolic.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
import onnx

from ..errors import CompileError

_counter = itertools.count()


class SymDim:
    """A dimension known by name only (``N``); equal to the same name, never to an int. Arithmetic on it is
    refused: a size computed from the batch cannot be a compile-time constant."""

    __slots__ = ("name",)

    def __init__(self, name: str | None = None):
        self.name = name or f"unk{next(_counter)}"

    def __eq__(self, other):
        return isinstance(other, SymDim) and other.name == self.name

    def __hash__(self):
        return hash(("SymDim", self.name))

    def __repr__(self):
        return self.name

    def _refuse(self, *args):
        raise CompileError(f"a size computed from the dimension {self.name!r}, which is only known at run time")

    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = __floordiv__ = __mod__ = _refuse
    __index__ = __int__ = __lt__ = __gt__ = __le__ = __ge__ = _refuse


class SymShape(tuple):
    """A :class:`Sym`'s shape; ``origin`` is the tensor it was read from (for ``Shape(origin)``)."""

    origin: Sym | None = None

    def __new__(cls, dims, origin=None):
        shape = super().__new__(cls, dims)
        shape.origin = origin
        return shape


def static(shape) -> bool:
    return shape is not None and all(isinstance(d, (int, np.integer)) for d in shape)


def broadcast_shapes(a, b):
    """numpy broadcasting on shapes with symbolic dimensions (``None`` when a rank is unknown)."""
    if a is None or b is None:
        return None
    n = max(len(a), len(b))
    a, b = (1,) * (n - len(a)) + tuple(a), (1,) * (n - len(b)) + tuple(b)
    out = []
    for x, y in zip(a, b):
        if x == y or y == 1:
            out.append(x)
        elif x == 1:
            out.append(y)
        elif isinstance(x, (int, np.integer)) and isinstance(y, (int, np.integer)):
            raise CompileError(f"shapes {a} and {b} do not broadcast")
        else:  # a static size wins over an unknown one (which must be 1 or equal); two unknowns stay unknown
            out.append(x if isinstance(x, (int, np.integer)) else y if isinstance(y, (int, np.integer)) else SymDim())
    return tuple(int(d) if isinstance(d, np.integer) else d for d in out)


class Sym:
    """A tensor of the graph being built (or a compile-time constant, ``const``)."""

    __array_ufunc__ = None  # numpy ufuncs on a Sym raise TypeError instead of making an object array
    __hash__ = object.__hash__

    def __init__(self, xp: GraphXP, value=None, *, dtype, shape, const: np.ndarray | None = None, source=None):
        self.xp = xp
        self._value = value
        self.dtype = np.dtype(dtype)
        self._shape = None if shape is None else tuple(shape)
        self.const = const
        #: the initializer name a constant came from (reused instead of copied)
        self.source = source

    # ---------------------------------------------------------------------------------------- what it is
    @property
    def value(self):
        """The ``onnx_ir`` value (a constant becomes an initializer on first use)."""
        if self._value is None:
            self._value = self.xp.builder.initializer(self.const, self.source)
        return self._value

    @property
    def shape(self) -> SymShape:
        if self._shape is None:
            raise CompileError("a tensor whose rank is unknown at compile time")
        return SymShape(self._shape, self)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self):
        return math.prod(self.shape)

    @property
    def T(self):
        return self.transpose()

    def __repr__(self):
        kind = "const" if self.const is not None else "sym"
        return f"Sym({kind}, {self.dtype}, {self._shape})"

    def __bool__(self):
        raise CompileError("a decision on array values (a Python branch on data cannot be compiled)")

    def __array__(self, *args, **kwargs):
        raise CompileError("a host copy of a value only known at run time")

    def __float__(self):
        raise CompileError("a Python number read from a value only known at run time")

    __int__ = __index__ = __float__

    def __setitem__(self, key, value):
        raise CompileError("in-place assignment into an array")

    def __len__(self):
        return self.shape[0]

    # ---------------------------------------------------------------------------------------- arithmetic
    def __add__(self, o):
        return self.xp.binary("Add", self, o)

    def __radd__(self, o):
        return self.xp.binary("Add", o, self)

    def __sub__(self, o):
        return self.xp.binary("Sub", self, o)

    def __rsub__(self, o):
        return self.xp.binary("Sub", o, self)

    def __mul__(self, o):
        return self.xp.binary("Mul", self, o)

    def __rmul__(self, o):
        return self.xp.binary("Mul", o, self)

    def __truediv__(self, o):
        return self.xp.binary("Div", self, o)

    def __rtruediv__(self, o):
        return self.xp.binary("Div", o, self)

    def __pow__(self, o):
        return self.xp.binary("Pow", self, o)

    def __neg__(self):
        return self.xp.unary("Neg", self)

    def __abs__(self):
        return self.xp.unary("Abs", self)

    def __gt__(self, o):
        return self.xp.binary("Greater", self, o)

    def __lt__(self, o):
        return self.xp.binary("Less", self, o)

    def __ge__(self, o):
        return self.xp.binary("GreaterOrEqual", self, o)

    def __le__(self, o):
        return self.xp.binary("LessOrEqual", self, o)

    def __eq__(self, o):
        return self.xp.binary("Equal", self, o)

    def __ne__(self, o):
        return ~self.xp.binary("Equal", self, o)

    def __and__(self, o):
        return self.xp.binary("And", self, o)

    def __or__(self, o):
        return self.xp.binary("Or", self, o)

    def __invert__(self):
        return self.xp.unary("Not", self)

    def __matmul__(self, o):
        return self.xp.matmul(self, o)

    def __rmatmul__(self, o):
        return self.xp.matmul(o, self)

    # ---------------------------------------------------------------------------------------- array methods
    def astype(self, dtype, copy=True):
        return self.xp.astype(self, dtype)

    def reshape(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = shape[0]
        return self.xp.reshape(self, shape)

    def transpose(self, *axes):
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = axes[0]
        return self.xp.transpose(self, axes or None)

    def swapaxes(self, a, b):
        perm = list(range(self.ndim))
        perm[a], perm[b] = perm[b], perm[a]
        return self.xp.transpose(self, perm)

    def sum(self, axis=None, keepdims=False, dtype=None):
        return self.xp.reduce("ReduceSum", self, axis, keepdims)

    def mean(self, axis=None, keepdims=False, dtype=None):
        return self.xp.reduce("ReduceMean", self, axis, keepdims)

    def max(self, axis=None, keepdims=False):
        return self.xp.reduce("ReduceMax", self, axis, keepdims)

    def min(self, axis=None, keepdims=False):
        return self.xp.reduce("ReduceMin", self, axis, keepdims)

    def std(self, axis=None, keepdims=False):
        centred = self - self.mean(axis=axis, keepdims=True)
        return self.xp.sqrt((centred * centred).mean(axis=axis, keepdims=keepdims))

    def argmax(self, axis=None):
        if axis is None:
            return self.reshape(-1).argmax(0)
        axis = int(axis) % self.ndim
        return self.xp.node("ArgMax", [self], {"axis": axis, "keepdims": 0}, dtype=np.int64,
                            shape=tuple(d for i, d in enumerate(self.shape) if i != axis))

    def any(self, *args, **kwargs):
        raise CompileError("a test of array values (any/all) at compile time")

    all = any

    def __getitem__(self, key):
        return self.xp.getitem(self, key)


def _np_dtype(elem_type: int) -> np.dtype:
    return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type))


def _elem_type(dtype) -> int:
    return onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))


def _is_scalar(v) -> bool:
    return isinstance(v, (int, float, bool, np.number, np.bool_))


class GraphXP:
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
              "Sign": np.sign, "Not": np.logical_not, "Reciprocal": np.reciprocal}
    _LOGICAL = {"Greater", "Less", "GreaterOrEqual", "LessOrEqual", "Equal", "And", "Or"}

    def binary(self, op: str, a, b) -> Sym:
        like = a if isinstance(a, Sym) else b
        a, b = self._operand(a, like), self._operand(b, like)
        folded = self._fold(self._NUMPY[op], a, b)
        if folded is not None:
            return folded
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

    # ---------------------------------------------------------------------------------------- shapes
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
        if static(shape) and -1 in shape and a._shape is not None and static(a._shape):
            out_shape = np.empty(a._shape, dtype=np.bool_).reshape(shape).shape
        else:
            out_shape = tuple(SymDim() if d == -1 else d for d in shape)
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

    def reduce(self, op: str, a, axis=None, keepdims=False) -> Sym:
        a = self._operand(a)
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
