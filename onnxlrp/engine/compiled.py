"""The compiled backend: a :class:`~onnxlrp.engine.session.Session` whose passes write ONNX instead of computing.

:class:`CompiledSession` has the Session's public calls (``forward``, ``targets``, ``seed``, ``propagate``), so a
method runs on it unchanged; but its values are :class:`~onnxlrp.engine.symbolic.Sym` tensors of the model being
built, and every kernel and rule writes its part of the backward pass as ONNX nodes appended to the model's own
graph (the forward pass is the model itself; its weights are shared with the backward nodes, not copied). The
result is one standard ONNX model that takes the model's inputs plus ``target`` (int64, one per sample; negative:
the predicted class) and returns the model's outputs plus ``relevance``.

The graph is built with ``onnx_ir``, the ONNX project's in-memory IR (the one the PyTorch exporter and onnxscript
use): it loads the model as it is, lets nodes be appended that read its values by reference, and serialises with
external data for models over 2 GB. Nothing of onnxlrp is needed to run the result.
"""
from __future__ import annotations

import itertools
from collections.abc import Mapping

import numpy as np
import onnx

from ..errors import CompileError, MissingDependencyError, OnnxLrpError
from .graph_xp import GraphXP
from .kernel import GRADIENT, Call
from .rank_probe import fill_unknown_ranks
from .registry import resolve
from .session import Session
from .symbolic import Sym, SymDim, static
from .walker import take_relevance

#: the ``ai.onnx`` opset compiled models use at least
MIN_OPSET = 17
#: the name of the compiled model's batch dimension when the model leaves it free
BATCH = "N"


def _ir():
    try:
        import onnx_ir
    except ImportError as exc:
        raise MissingDependencyError("compiling needs the onnx-ir package: pip install 'onnxlrp[compile]'") from exc
    return onnx_ir


class Builder:
    """Appends nodes and initializers to a model loaded into ``onnx_ir``; hands out fresh names."""

    def __init__(self, proto: onnx.ModelProto):
        ir = self.ir = _ir()
        self.model = ir.serde.deserialize_model(proto)
        self.graph = self.model.graph
        self.values = ir.convenience.create_value_mapping(self.graph, include_subgraphs=False)
        self._names = itertools.count()
        self._constants: dict = {}

    def fresh(self, hint: str = "t") -> str:
        return f"onnxlrp/{hint}{next(self._names)}"

    def initializer(self, array: np.ndarray, source: str | None = None):
        """The value of a constant: the model's own tensor of that name when it has one of that dtype (shared),
        else a new initializer (cached per array)."""
        existing = self.values.get(source) if source else None
        if existing is not None and existing.dtype is not None and \
                existing.dtype.numpy() == array.dtype and tuple(existing.shape or ()) == tuple(array.shape):
            return existing
        key = _content_key(array)  # equal constants (W⁺ with and without its bias, their flips) stored once
        if key not in self._constants:
            value = self.ir.Value(name=self.fresh("c"), const_value=self.ir.tensor(np.array(array, order="C")),
                                  shape=self.ir.Shape(array.shape), type=self.ir.TensorType(
                                      self.ir.DataType.from_numpy(array.dtype)))
            self.graph.register_initializer(value)
            self._constants[key] = value
        return self._constants[key]

    def node(self, op_type: str, inputs: list, attrs: Mapping, outputs: int, domain: str = ""):
        ir = self.ir
        node = ir.Node(domain, op_type, inputs, attributes=ir.convenience.convert_attributes(dict(attrs)),
                       num_outputs=outputs, name=self.fresh(op_type + "_"))
        for value in node.outputs:
            value.name = self.fresh()
        self.graph.append(node)
        return list(node.outputs)

    def claim(self, name: str) -> None:
        """Make ``name`` free for a new input or output: a tensor inside the model that has it is renamed (nothing
        outside sees it); a model input or output of that name is a clash the caller must resolve."""
        existing = self.values.get(name)
        if existing is None:
            return
        if existing.is_graph_input() or existing.is_graph_output():
            raise CompileError(f"the model already has an input or output named {name!r}, which the compiled model "
                               "adds; rename it in the model first")
        if existing.name == name:  # ``values`` keeps mapping the model's names to its tensors
            existing.name = self.fresh(name + "_")

    def add_input(self, name: str, dtype, shape):
        self.claim(name)
        value = self.ir.Value(name=name, shape=self.ir.Shape(shape),
                              type=self.ir.TensorType(self.ir.DataType.from_numpy(np.dtype(dtype))))
        self.graph.inputs.append(value)
        return value

    def add_output(self, sym: Sym, name: str, shape) -> None:
        value = sym.value
        if value.name in self.values or value.is_graph_output() or value.is_graph_input() or \
                value.producer() is None:  # a tensor of the model keeps its name: the output is a copy
            value = self.node("Identity", [value], {}, 1)[0]
        self.claim(name)
        value.name = name
        value.dtype = self.ir.DataType.from_numpy(sym.dtype)
        value.shape = self.ir.Shape([d.name if isinstance(d, SymDim) else d for d in shape])
        self.graph.outputs.append(value)

    def to_proto(self) -> onnx.ModelProto:
        return self.ir.serde.serialize_model(self.model)


def _content_key(array: np.ndarray) -> tuple:
    """A key equal for equal constants: dtype, shape and a digest of the bytes."""
    import hashlib
    data = np.ascontiguousarray(array)
    return array.dtype.str, array.shape, hashlib.blake2b(data.tobytes(), digest_size=20).digest()


#: ops whose output is never negative, and ops that keep their data input's sign (so a non-negative input gives a
#: non-negative output): what lets z⁺-type rules skip the x⁻ terms after a ReLU, as the numpy kernels do at run time
NON_NEGATIVE_OPS = frozenset({"Relu", "Sigmoid", "Softmax", "Exp", "Abs", "Softplus", "HardSigmoid"})
SIGN_KEEPING_OPS = frozenset({"MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Reshape", "Flatten",
                              "Transpose", "Identity", "Dropout", "Squeeze", "Unsqueeze", "Concat", "Slice", "Split",
                              "Gather", "Resize", "Upsample", "ReduceMax", "ReduceMean", "ReduceSum", "Expand",
                              "Tile", "DepthToSpace", "SpaceToDepth", "Cast"})


def non_negative(value, memo: dict) -> bool:
    """Whether an ``onnx_ir`` value is non-negative by construction (its producers' op types say so)."""
    if value in memo:
        return memo[value]
    memo[value] = False  # cycles cannot occur; this guards against deep recursion on the same value
    node = value.producer()
    result = False
    if node is not None and node.domain in ("", "ai.onnx"):
        if node.op_type in NON_NEGATIVE_OPS:
            result = True
        elif node.op_type == "Clip":
            low = node.inputs[1] if len(node.inputs) > 1 else None
            result = low is not None and low.const_value is not None and float(
                np.min(low.const_value.numpy())) >= 0
        elif node.op_type in SIGN_KEEPING_OPS and node.inputs and node.inputs[0] is not None:
            data = [v for v in node.inputs[:1 if node.op_type != "Concat" else len(node.inputs)] if v is not None]
            result = all(non_negative(v, memo) for v in data)
    memo[value] = result
    return result


def _dims(shape) -> tuple | None:
    """An ``onnx_ir`` shape as ints and :class:`SymDim` (unnamed free dimensions get unique names)."""
    if shape is None:
        return None
    out = []
    for d in shape:
        if isinstance(d, int):
            out.append(d)
        else:
            name = getattr(d, "value", None)
            out.append(SymDim(name) if isinstance(name, str) else SymDim())
    return tuple(out)


class CompiledSession(Session):
    """A :class:`Session` that builds one ONNX graph per :meth:`begin` … :meth:`finish`.

    Opened on a model already at opset ≥ 17 (:func:`onnxlrp.compiler.compile` converts older ones first).
    """

    def begin(self):
        """Start a new compiled model: the model itself, its explained input's batch dimension named, shapes
        inferred, and the ``target`` input added. Returns ``(x, target)``, the two symbolic inputs."""
        proto = onnx.ModelProto()
        proto.CopyFrom(self.graph.model)
        _name_batch(proto, self.input_name)
        del proto.graph.value_info[:]  # inferred afresh, so that the batch is named the same everywhere
        try:
            proto = onnx.shape_inference.infer_shapes(proto)
        except Exception:  # shapes stay unknown where inference fails; emitters then refuse what needs them
            pass
        proto = fill_unknown_ranks(proto)
        self.builder = Builder(proto)
        self.xp = GraphXP(self.builder, self.dtype, _opset(proto))
        self._model_nodes = list(self.builder.graph)
        self._signs: dict = {}
        self._values = _Values(self)
        x = self.symbol(self.input_name)
        batch = self._batch = x.shape[0]
        self.target_input = self.xp.wrap(self.builder.add_input("target", np.int64, [_dim_name(batch)]),
                                         np.int64, (batch,))
        self.input_sym = x
        return x, self.target_input

    def add_input(self, name: str, dtype, shape) -> Sym:
        """Another input of the compiled model (SmoothGrad's ``noise``, a ``contrast`` class per sample)."""
        value = self.builder.add_input(name, dtype, [_dim_name(d) for d in shape])
        return self.xp.wrap(value, dtype, tuple(shape))

    def finish(self, relevance: Sym, extra: Mapping[str, Sym] | None = None) -> onnx.ModelProto:
        """The model with ``relevance`` (and ``extra`` named outputs) added."""
        x = self.input_sym
        relevance = self.xp.astype(self.xp.broadcast_to(relevance, x.shape) if relevance.ndim == 0 else relevance,
                                   x.dtype)
        self.builder.add_output(relevance, "relevance", x.shape)
        for name, sym in (extra or {}).items():
            self.builder.add_output(sym, name, sym.shape)
        return self.builder.to_proto()

    # ------------------------------------------------------------------------------------------ values
    def symbol(self, name: str) -> Sym:
        """The symbolic value of a tensor of the model (an existing value, or a canonical constant)."""
        return self._values[name]

    def constant(self, name: str):
        value = self.canonical.constants[name]
        if value.dtype.kind == "f":
            value = value.astype(self.dtype)
        return self.xp.const(value, source=name)

    def lookup(self, name: str, values: _Values) -> Sym:
        """``name`` in the forward pass ``values`` (the model's own, or a copy on another batch)."""
        if name in self.canonical.constants and name != self.input_name:
            return self.constant(name)
        value = self.builder.values.get(name)
        if value is None:
            return self._made(name, values)
        dtype = value.dtype.numpy() if value.dtype is not None else self.dtype
        shape = _dims(value.shape)
        if value in values.renamed:
            value = values.renamed[value]
            shape = None if shape is None else tuple(values.batch if d == self._batch else d for d in shape)
        sym = self.xp.wrap(value, dtype, shape)
        if sym.dtype.kind == "f" and sym.dtype != self.dtype and name != self.input_name:
            sym = self.xp.astype(sym, self.dtype)  # a float16 model's values, computed on in the session dtype
        sym.non_negative = non_negative(value, self._signs)
        return sym

    def _made(self, name: str, values: _Values) -> Sym:
        """A tensor the canonizer created (a fused op's output): its node's forward, emitted."""
        node = self.canonical.producer.get(name)
        if node is None:
            raise CompileError(f"tensor {name!r} is neither in the model nor made by a canonical node")
        call = Call(node, tuple(values[t] if t else None for t in node.inputs), (), self.node_varying(node), self.xp)
        outs = resolve(node).emit_forward(call)
        for t, sym in zip(node.outputs, outs):
            if t and t != name:
                values.cache[t] = sym
        return outs[list(node.outputs).index(name)]

    def _copy_forward(self, x: Sym) -> _Values:
        """The model's forward pass on another batch ``x`` (integrated gradients' steps, SmoothGrad's noisy
        copies): every node that depends on the explained input copied, reading ``x``."""
        ir = self.builder.ir
        if len(self.graph.input_infos) > 1:
            raise CompileError("a batched copy of the forward pass of a model with several inputs")
        renamed = {self.input_sym.value: x.value}
        for node in self._model_nodes:
            if not any(v in renamed for v in node.inputs if v is not None):
                continue
            if any(a.type in (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS) for a in node.attributes.values()):
                raise CompileError(f"a batched copy of {node.op_type} node {node.name!r}, which has subgraphs")
            copy = ir.Node(node.domain, node.op_type, [renamed.get(v, v) for v in node.inputs],
                           attributes=[ir.Attr(a.name, a.type, a.value) for a in node.attributes.values()],
                           num_outputs=len(node.outputs), name=self.builder.fresh(node.op_type + "_copy"),
                           version=node.version)
            for old, new in zip(node.outputs, copy.outputs):
                new.name = self.builder.fresh()
                renamed[old] = new
            self.builder.graph.append(copy)
        return _Values(self, renamed, x.shape[0])

    def array(self, x):
        return self.xp.astype(x, self.dtype) if isinstance(x, Sym) else self.xp.const(np.asarray(x, self.dtype))

    @staticmethod
    def host(x):
        raise CompileError("a method step that copies values to the host (not expressible in the graph)")

    def check_budget(self, shape):
        return None

    def chunks(self, *args, **kwargs):
        raise CompileError("a method that splits the batch into chunks in Python")

    # ------------------------------------------------------------------------------------------ the passes
    def forward(self, x, feeds=None):
        """The model's values: its own forward pass for the explained input, a copy of it for another batch."""
        if x is self.input_sym:
            values = self._values
        elif isinstance(x, Sym):
            values = self._copy_forward(x)
        else:
            raise CompileError("a forward pass on a fixed array baked into the graph")
        return values, values[self.output_name]

    def targets(self, output, target=None):
        """The ``target`` input, with negative entries replaced by the predicted class."""
        if target is None or isinstance(target, Sym):
            xp = self.xp
            flat = xp.reshape(output, (output.shape[0], -1))
            predicted = xp.node("ArgMax", [flat], {"axis": 1, "keepdims": 0}, dtype=np.int64,
                                shape=(output.shape[0],))
            if target is None:
                return predicted
            return xp.where(target < 0, predicted, target)
        raise CompileError("a fixed target baked into the graph (the compiled model takes `target` as an input)")

    def class_indices(self, value, output, what, error=None):
        if isinstance(value, Sym):
            return value
        raise CompileError(f"a fixed {what} baked into the graph (compile with the {what} as an input)")

    def seed(self, output, targets, mode: str = "logit"):
        """``onehot(target)`` (``"one_hot"``), times the output (``"logit"``), shaped like the output."""
        xp = self.xp
        flat = xp.reshape(output, (output.shape[0], -1))
        classes = flat.shape[1]
        depth = xp.ints([classes]) if isinstance(classes, int) else xp.getitem(xp.shape_of(flat), slice(1, 2))
        onehot = xp.node("OneHot", [targets, depth, xp.const(np.asarray([0, 1], dtype=flat.dtype))],
                         {"axis": -1}, dtype=flat.dtype, shape=flat.shape)
        out = onehot * flat if mode == "logit" else onehot
        return xp.reshape(out, output.shape)

    def propagate(self, values, rules: Mapping, seed, keep=(), head=None):
        """The backward walk written as ONNX: the walker's accumulation, with each node's rule emitting its part."""
        nodes = self.path.nodes if head is None else head.nodes
        kernels = self.kernels if head is None else {**self.kernels, **head.kernels}
        varying = self.path.varying if head is None else head.varying
        extra = {} if head is None else head.constants
        xp = self.xp
        acc = dict(seed) if isinstance(seed, Mapping) else {self.output_name: seed}
        kept: dict = {}
        keep = "all" if keep == "all" else set(keep)

        def value(t):
            if t in extra:
                extra_value = extra[t]
                return extra_value if isinstance(extra_value, Sym) else xp.const(np.asarray(extra_value))
            return values[t]

        if head is not None:  # the spliced nodes' forward values: emitted once, before the walk reads them
            for node in nodes:
                if node.name in head.kernels and any(t and t not in values.cache for t in node.outputs):
                    call = Call(node, tuple(value(t) if t else None for t in node.inputs), (),
                                tuple(bool(t) and t in varying for t in node.inputs), xp)
                    outs = head.kernels[node.name].emit_forward(call)
                    values.cache.update((t, o) for t, o in zip(node.outputs, outs) if t)
        for node in reversed(nodes):
            r_out = take_relevance(acc, node, kept, keep)
            if r_out is None:
                continue
            flags = tuple(bool(t) and t in varying for t in node.inputs)
            call = Call(node=node, inputs=tuple(value(t) if t else None for t in node.inputs),
                        outputs=tuple(value(t) if t and t in varying else None for t in node.outputs),
                        varying=flags, xp=xp)
            r_out = tuple(xp.zeros_like(call.outputs[k]) if r is None and call.outputs[k] is not None else r
                          for k, r in enumerate(r_out))
            rule = rules.get(node.name, GRADIENT)
            try:
                r_in = rule.propagate(_Emitting(kernels[node.name]), call, r_out)
            except CompileError as exc:
                raise CompileError(f"node {node.name!r} ({node.op_type}) under rule {rule.describe()} cannot be "
                                   f"compiled: {exc}") from exc
            except OnnxLrpError:
                raise
            except (TypeError, AttributeError, ValueError, NotImplementedError) as exc:
                raise CompileError(f"node {node.name!r} ({node.op_type}) under rule {rule.describe()} has no ONNX "
                                   f"form yet ({type(exc).__name__}: {exc})") from exc
            for port, (tensor, r) in enumerate(zip(node.inputs, r_in)):
                if r is None or not flags[port]:
                    continue
                if not isinstance(r, Sym) or r.ndim == 0:
                    r = xp.broadcast_to(xp._operand(r, call.inputs[port]), call.inputs[port].shape)
                acc[tensor] = acc[tensor] + r if tensor in acc else r
        relevance = acc.get(self.input_name)
        if relevance is None:
            relevance = xp.zeros_like(self.input_sym)
        return relevance, kept


class _Values(Mapping):
    """The forward values of a compiled session, every tensor of the model as a symbol on demand; ``renamed`` maps
    the model's values to their copies when the forward pass was copied for another batch (of size ``batch``)."""

    def __init__(self, session: CompiledSession, renamed: dict | None = None, batch=None):
        self._session = session
        self.renamed = renamed or {}
        self.batch = batch
        self.cache: dict[str, Sym] = {}

    def __getitem__(self, name):
        if name not in self.cache:
            self.cache[name] = self._session.lookup(name, self)
        return self.cache[name]

    def __contains__(self, name):
        return True

    def __iter__(self):
        return iter(())

    def __len__(self):
        return 0

    def __bool__(self):
        return True


class _Emitting:
    """A kernel as rules see it when compiling: its emitters stand in for its numpy forward, VJP and linear view."""

    def __init__(self, kernel):
        self._kernel = kernel

    def __getattr__(self, name):
        return getattr(self._kernel, name)

    def forward(self, call):
        return self._kernel.emit_forward(call)

    def vjp(self, call, grads):
        return self._kernel.emit_vjp(call, grads)

    def linear_op(self, call):
        return self._kernel.emit_linear_op(call)


def _opset(proto: onnx.ModelProto) -> int:
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), MIN_OPSET)


def _dim_name(dim) -> str | int:
    return dim.name if isinstance(dim, SymDim) else dim


def _name_batch(proto: onnx.ModelProto, input_name: str) -> None:
    """Give the explained input's free batch dimension the name :data:`BATCH` (shape inference carries it)."""
    for value in proto.graph.input:
        if value.name == input_name:
            dims = value.type.tensor_type.shape.dim
            if dims and not dims[0].HasField("dim_value"):
                old = dims[0].dim_param
                for other in list(proto.graph.input) + list(proto.graph.output):
                    other_dims = other.type.tensor_type.shape.dim
                    if other_dims and old and other_dims[0].dim_param == old:
                        other_dims[0].dim_param = BATCH
                dims[0].dim_param = BATCH


__all__ = ["Builder", "CompiledSession", "MIN_OPSET", "static"]
