"""The kernel protocol: what the walker hands a kernel (:class:`Call`), the kernel base classes, and the rule base.

A *kernel* knows one ONNX op: which inputs carry relevance, how to recompute the forward pass, its vector-Jacobian
product (VJP), and, for ops linear in their data inputs, a :class:`LinearOp` (forward + VJP with named parameters)
that every LRP rule can use. A kernel never knows which method runs; a *rule* (:mod:`onnxlrp.lrp`) never knows ONNX.

A *rule* (:class:`Rule`) is the policy the walker applies at one node; the engine knows only the base class and
:class:`Gradient` (the exact VJP, the default). The LRP rules live in :mod:`onnxlrp.lrp`.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from types import MappingProxyType, ModuleType
from typing import Any

import numpy as np

# protocol: a kernel raises UnsupportedOpError for a use it cannot handle, an emitter CompileError for one ONNX
# cannot express
from ..errors import CompileError, UnsupportedOpError  # noqa: F401
from .graph import Node

Array = Any  # numpy.ndarray or cupy.ndarray


@dataclass(frozen=True)
class Call:
    """What a kernel sees of one node at propagation time.

    ``inputs``/``outputs`` hold forward values (``None`` for omitted optional inputs or values not kept);
    ``varying[k]`` says whether input ``k`` depends on the explained input (and so may receive relevance).
    """

    node: Node
    inputs: tuple
    outputs: tuple
    varying: tuple[bool, ...]
    xp: ModuleType

    @property
    def attrs(self):
        """The node's attributes, every schema default filled in (:class:`~onnxlrp.engine.graph.Node`): read
        ``attrs[name]``; ``attrs.get(name)`` only for attributes without a default (optional ones whose absence
        means something, or ones missing from the node's opset version)."""
        return self.node.attrs


@dataclass
class LinearOp:
    """An op that is linear in its data inputs given its parameters: ``z = forward(xs, params)``.

    ``vjp(g, params)`` returns the transpose applied to ``g`` for each data input (bias excluded, as in autograd).
    ``params`` maps ``'weight'``/``'bias'`` (and op-specific names) to arrays or ``None``; rules modify them.
    ``ports`` are the node input indices of ``inputs``.
    """

    ports: tuple[int, ...]
    inputs: list
    params: dict
    forward: Callable[[list, dict], Array]
    vjp: Callable[[Array, dict], list]


class Kernel:
    """Base kernel. Subclasses set ``category`` and implement :meth:`forward` and :meth:`vjp`.

    ``category`` groups ops for presets: ``conv``, ``dense``, ``avgpool``, ``sum`` (residual sum of varying
    tensors), ``batchnorm``, ``affine`` (scaling/shift by a constant), ``activation``, ``maxpool``, ``structural``,
    ``softmax``, ``layernorm``, ``bilinear`` (product of two varying tensors), ``recurrent`` (LSTM/GRU/RNN).

    What rules may use of a kernel (its protocol; nothing else, and no underscored member):

    * every kernel: :meth:`forward`, :meth:`vjp`, :meth:`linear_op`, :meth:`data_inputs`, :meth:`node_category`;
    * ``bilinear`` kernels: ``product``, how the two factors combine (``"elementwise"``, ``"quotient"`` for
      ``a/b``, or ``"matmul"``);
    * ``softmax`` kernels: ``axis_view(call, x) -> (v, axis)`` (``x`` as the op sees it, a reshape, and the one
      axis it normalises), ``softmax(xp, v, axis)`` (``exp(v − max v) / Σ exp(v − max v)`` along ``axis``) and
      ``log`` (``True`` for LogSoftmax); see ``onnxlrp.kernels.op_softmax``.
    * ``recurrent`` kernels: ``cell`` (``"lstm"``, ``"gru"``, ``"rnn"``) and ``unroll(call)``, the layer recomputed
      per direction (gates, states, pre-activations) with ``split``/``join`` between the node's tensors and its
      steps; see ``onnxlrp.kernels.op_recurrent``.
    """

    op_type: str = ""
    domain: str = ""
    category: str = "structural"
    #: when :meth:`node_category` depends on the node (which inputs vary): every category it can return mapped to
    #: when that applies, e.g. ``{"sum": "two or more operands vary", "affine": "one operand varies"}``
    #: (``docs/supported-ops.md`` lists one row per entry); empty when it is always ``category``
    category_cases: Mapping[str, str] = MappingProxyType({})
    #: node input ports that may carry relevance (those that also vary with the input do)
    data_ports: tuple[int, ...] = (0,)

    def data_inputs(self, node: Node, varying: set[str]) -> tuple[int, ...] | str:
        """Input ports relevance flows to, or a reason string if this use of the op is not supported."""
        return tuple(p for p in self.data_ports if p < len(node.inputs) and node.inputs[p] in varying)

    def node_category(self, node: Node, varying: set[str]) -> str:
        """The category of this node (it picks the node's rule): ``category``, unless it depends on which inputs
        vary (declare the cases in ``category_cases`` then)."""
        return self.category

    def forward(self, call: Call) -> tuple:
        raise NotImplementedError

    def vjp(self, call: Call, grads: tuple) -> tuple:
        raise NotImplementedError

    def linear_op(self, call: Call) -> LinearOp | None:
        """The linear view of this node, or ``None`` when the op is not linear in its data inputs."""
        return None

    # -------------------------------------------------------------------------- emitters (the compiled backend)
    # When compiling (``onnxlrp compile``), ``call.xp`` is a symbolic array module whose arrays append ONNX nodes
    # (:mod:`onnxlrp.engine.symbolic`). Array code written against ``xp`` alone is emitted as it is; a kernel whose
    # numpy code is not (window views, in-place scatters) overrides these with native ONNX ops.

    def emit_forward(self, call: Call) -> tuple:
        """The forward pass as ONNX: by default the node itself, re-emitted (standard-domain ops)."""
        xp, node = call.xp, call.node
        known = call.outputs[0] if call.outputs and call.outputs[0] is not None else None
        outs = xp.node(node.op_type, call.inputs, emitted_attrs(node), outputs=len(node.outputs), domain=node.domain,
                       shape=None if known is None else tuple(known.shape))
        return tuple(outs) if len(node.outputs) > 1 else (outs,)

    def emit_vjp(self, call: Call, grads: tuple) -> tuple:
        """The VJP as ONNX: by default :meth:`vjp` run on the symbolic array module."""
        return self.vjp(call, grads)

    def emit_linear_op(self, call: Call) -> LinearOp | None:
        """The linear view as ONNX: by default :meth:`linear_op` run on the symbolic array module."""
        return self.linear_op(call)


def emitted_attrs(node: Node) -> dict:
    """A node's attributes as ONNX takes them back (``None`` values dropped)."""
    return {k: v for k, v in node.attrs.items() if v is not None}


class LinearKernel(Kernel):
    """Kernel of an op linear in its data inputs: forward and VJP come from :meth:`linear_op`."""

    def linear_op(self, call: Call) -> LinearOp:
        raise NotImplementedError

    def forward(self, call: Call) -> tuple:
        op = self.linear_op(call)
        return (op.forward(op.inputs, op.params),)

    def vjp(self, call: Call, grads: tuple) -> tuple:
        op = self.linear_op(call)
        return scatter_ports(len(call.inputs), op.ports, op.vjp(grads[0], op.params))

    def emit_vjp(self, call: Call, grads: tuple) -> tuple:
        op = self.emit_linear_op(call)
        if op is None:  # a use that is not linear (a product of two activations): the kernel's own array code
            return self.vjp(call, grads)
        return scatter_ports(len(call.inputs), op.ports, op.vjp(grads[0], op.params))

    def emit_forward(self, call: Call) -> tuple:
        op = self.emit_linear_op(call)
        if op is None:
            return self.forward(call)
        return (op.forward(op.inputs, op.params),)


class ElementwiseKernel(Kernel):
    """Unary elementwise activation ``y = f(x)``; LRP presets pass relevance through (zennit ``Pass``)."""

    category = "activation"

    def fn(self, xp, x, call: Call):
        raise NotImplementedError

    def derivative(self, xp, x, y, call: Call):
        raise NotImplementedError

    def forward(self, call: Call) -> tuple:
        return (self.fn(call.xp, call.inputs[0], call),)

    def vjp(self, call: Call, grads: tuple) -> tuple:
        x = call.inputs[0]
        y = call.outputs[0] if call.outputs and call.outputs[0] is not None else self.fn(call.xp, x, call)
        return scatter_ports(len(call.inputs), (0,), [grads[0] * self.derivative(call.xp, x, y, call)])


def scatter_ports(n_inputs: int, ports: Sequence[int], values: Sequence) -> tuple:
    """A tuple with one entry per node input, ``values`` placed at ``ports`` and ``None`` elsewhere."""
    out = [None] * n_inputs
    for p, v in zip(ports, values):
        out[p] = v
    return tuple(out)


def unbroadcast(xp: ModuleType, g, shape: tuple) -> Array:
    """Sum ``g`` over the axes that numpy broadcasting added or stretched to reach ``g.shape`` from ``shape``."""
    if getattr(xp, "symbolic", False):  # the compiled backend: sizes known at run time only are tested there
        return xp.unbroadcast(g, shape)
    shape = tuple(shape)
    if g.shape == shape:
        return g
    extra = g.ndim - len(shape)
    if extra > 0:
        g = g.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, (gs, s) in enumerate(zip(g.shape, shape)) if s == 1 and gs != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    return g.reshape(shape)


def as_float(value, dtype) -> np.ndarray:
    """A parameter as an array of the compute dtype."""
    return np.asarray(value, dtype=dtype)


# ---------------------------------------------------------------------------------------------- rules


class Rule:
    """A relevance policy for one node. ``propagate`` returns one entry per node input (``None`` = nothing)."""

    #: categories of node this rule may be assigned to (``None`` = any)
    applies_to: frozenset | None = None

    def propagate(self, kernel: Kernel, call: Call, relevance: tuple) -> tuple:
        raise NotImplementedError

    def describe(self) -> str:
        args = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self))
        return f"{type(self).__name__}({args})"


@dataclass(frozen=True)
class Gradient(Rule):
    """The op's exact vector-Jacobian product: ``R_in = Jᵀ R_out`` (gradient methods; max-pool and reshapes in LRP)."""

    def propagate(self, kernel, call, relevance):
        return kernel.vjp(call, relevance)


#: the rule of every node a method leaves unassigned
GRADIENT = Gradient()
