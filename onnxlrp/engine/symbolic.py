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

import numpy as np

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


def inferred_size(source, target):
    """The size a ``-1`` in ``target`` stands for when reshaping ``source`` (run-time dimensions that appear in both
    cancel out), or ``None`` when it is only known at run time."""
    if source is None:
        return None
    remaining = list(source)
    for d in target:
        if isinstance(d, SymDim):
            if d not in remaining:
                return None
            remaining.remove(d)
    if not static(remaining):
        return None
    rest = math.prod(d for d in target if not isinstance(d, SymDim) and d != -1)
    return math.prod(remaining) // rest if rest else None


class Sym:
    """A tensor of the graph being built (or a compile-time constant, ``const``)."""

    __array_ufunc__ = None  # numpy ufuncs on a Sym raise TypeError instead of making an object array
    __hash__ = object.__hash__
    #: known at compile time to be ≥ 0 everywhere (a ReLU's output), or to be 0 everywhere (``min(x⁺, 0)``): what
    #: lets rules skip terms the numpy kernels skip after testing the values
    non_negative = False
    zero = False

    def __init__(self, xp, value=None, *, dtype, shape, const: np.ndarray | None = None, source=None):
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

    def tolist(self):
        """A constant's values (axes, shapes); a value only known at run time is refused."""
        if self.const is None:
            raise CompileError("a Python list read from a value only known at run time")
        return self.const.tolist()

    def any(self, *args, **kwargs):
        raise CompileError("a test of array values (any/all) at compile time")

    all = any

    def __getitem__(self, key):
        return self.xp.getitem(self, key)
