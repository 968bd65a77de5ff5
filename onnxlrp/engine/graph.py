"""ONNX model -> a networkx DAG of nodes, with constants resolved and the relevance path computed.

The graph is a ``networkx.MultiDiGraph`` whose vertices are unique node names and whose edges are keyed by the
tensor name they carry (so ``Add(x, x)`` keeps two edges). Graph inputs appear as pseudo-vertices ``input:<name>``.
The caller's ``ModelProto`` is never mutated: loading works on a copy.
"""
from __future__ import annotations

import copy
import functools
import os
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
import numpy as np
import onnx
from onnx import numpy_helper, shape_inference

from ..errors import (
    ExternalDataError,
    ModelCheckError,
    ModelCheckWarning,
    ModelLoadError,
    UnsupportedGraphError,
    join_lines,
)
from ..limits import check_file
from .control_flow import implicit_inputs, inline_fixed_ifs, sort_nodes

INPUT_PREFIX = "input:"


@dataclass(frozen=True)
class Node:
    """One ONNX node with its attributes parsed and schema defaults filled in.

    ``name`` is unique within the graph; ``since`` is the schema version the model's opset resolves to.
    ``attrs`` always holds every attribute that has a default in the schema of ``(domain, op_type, since)``: a node
    built in code (canonizer, splicing, tests) gets the missing ones filled on construction, so kernels read
    ``attrs[name]`` and never restate a default. Ops without an ONNX schema (``onnxlrp::``, ``com.microsoft``)
    get nothing filled: whoever creates such a node sets every attribute its kernel reads.
    """

    name: str
    op_type: str
    domain: str
    since: int
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: Mapping[str, Any]
    index: int
    #: outer-scope tensors the node's subgraphs read (``If``/``Loop``/``Scan``); they count as inputs for dependency
    implicit: tuple[str, ...] = ()

    def __post_init__(self):
        defaults = schema_defaults(self.op_type, self.since, self.domain)
        if any(name not in self.attrs for name in defaults):
            object.__setattr__(self, "attrs", {**{k: _attr_value(v) for k, v in defaults.items()}, **self.attrs})

    def __repr__(self) -> str:
        return f"Node({self.name!r}, {self.op_type})"


@dataclass(frozen=True)
class TensorInfo:
    """Element type and shape of a value; dynamic dimensions are ``None`` (or a symbolic name)."""

    name: str
    elem_type: int
    shape: tuple | None

    @property
    def dtype(self) -> np.dtype | None:
        try:
            return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(self.elem_type))
        except Exception:
            return None


def load_model(model: str | os.PathLike | bytes | onnx.ModelProto) -> onnx.ModelProto:
    """Read a model from a path, bytes or a ``ModelProto`` (copied), with clear errors for bad files."""
    if isinstance(model, onnx.ModelProto):
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        return copy
    if isinstance(model, (bytes, bytearray)):
        try:
            return onnx.load_model_from_string(bytes(model))
        except Exception as exc:
            raise ModelLoadError(f"cannot parse the given bytes as an ONNX model: {_short(exc)}") from exc
    if not isinstance(model, (str, os.PathLike)):
        raise ModelLoadError(f"the model must be a path, bytes or an onnx.ModelProto; got {type(model).__name__}")
    path = check_file(model, "model", ModelLoadError)
    try:
        proto = onnx.load(path, load_external_data=False)
    except Exception as exc:
        raise ModelLoadError(f"{path!r} is not a readable ONNX model (truncated or not ONNX): {_short(exc)}") from exc
    if not proto.graph.node and not proto.graph.input and not proto.graph.output:
        raise ModelLoadError(f"{path!r} is not an ONNX model: it parses to an empty graph")
    _load_external_data(proto, path)
    return proto


def _load_external_data(proto: onnx.ModelProto, path: str) -> None:
    """Load external tensor data, refusing locations outside the model's folder."""
    base = os.path.dirname(os.path.abspath(path))
    tensors = [t for t in _all_tensors(proto) if t.data_location == onnx.TensorProto.EXTERNAL]
    for tensor in tensors:
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        if not location or "\x00" in location:
            raise ExternalDataError(f"initializer {tensor.name!r} has an unusable external data location "
                                    f"{location!r}; refusing to read it")
        target = os.path.realpath(os.path.join(base, location))
        if os.path.isabs(location) or os.path.commonpath([target, os.path.realpath(base)]) != os.path.realpath(base):
            raise ExternalDataError(
                f"initializer {tensor.name!r} points to external data {location!r} outside the model's folder "
                f"{base!r}; "
                "refusing to read it")
        check_file(target, "external", ModelLoadError, f"external data file for initializer {tensor.name!r},")
    if tensors:
        try:
            onnx.external_data_helper.load_external_data_for_model(proto, base)
        except Exception as exc:
            raise ModelLoadError(f"cannot read external data of {path!r}: {_short(exc)}") from exc


def _initializer(tensor: onnx.TensorProto) -> np.ndarray:
    """An initializer's value, or a :class:`ModelCheckError` naming it when its data does not decode."""
    try:
        return numpy_helper.to_array(tensor)
    except Exception as exc:  # unknown data type, data that does not fill the dims, ...
        kind = onnx.TensorProto.DataType.Name(tensor.data_type) if tensor.data_type in \
            onnx.TensorProto.DataType.values() else f"unknown data type {tensor.data_type}"
        raise ModelCheckError(f"initializer {tensor.name!r} ({kind}, dims {list(tensor.dims)}) cannot be decoded: "
                              f"{_short(exc)}") from exc


def _loads_anyway(proto: onnx.ModelProto, finding: str, exc: BaseException) -> None:
    """What onnxruntime can load, we load: a checker or shape-inference finding becomes a
    :class:`ModelCheckWarning` when onnxruntime accepts the model, and stays a :class:`ModelCheckError` otherwise."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.log_severity_level = 4
    try:
        ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    except Exception:
        raise ModelCheckError(finding) from exc
    warnings.warn(ModelCheckWarning(f"{finding}; onnxruntime loads it, so it is explained anyway"), stacklevel=4)


def _all_tensors(proto: onnx.ModelProto) -> Iterable[onnx.TensorProto]:
    yield from proto.graph.initializer
    for node in proto.graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR:
                yield attr.t


def _float32_literal(value: float) -> float:
    """The shortest decimal that rounds to the same float32: ONNX stores float attributes (BatchNorm's ``epsilon``,
    LeakyRelu's ``alpha``) as float32, and this recovers the value the exporter was given (``1e-05``, not
    ``9.99999974e-06``), so float64 runs match a float64 peer exactly."""
    return float(str(np.float32(value)))


def _short(exc: BaseException) -> str:
    """The exception's message on one line (ONNX checker messages span several)."""
    text = " ".join(line.strip() for line in str(exc).strip().splitlines() if line.strip())
    return text or type(exc).__name__


def parse_attributes(node: onnx.NodeProto, schema: onnx.defs.OpSchema | None) -> dict[str, Any]:
    """Attributes as Python values, with the schema's defaults filled in (ONNX ``OpRun._load_attributes``)."""
    attrs: dict[str, Any] = {}
    if schema is not None:
        attrs.update((name, _attr_value(value)) for name, value in _defaults(schema).items())
    for attr in node.attribute:
        attrs[attr.name] = _attr_value(attr)
    return attrs


def _defaults(schema: onnx.defs.OpSchema) -> dict[str, onnx.AttributeProto]:
    return {name: spec.default_value for name, spec in schema.attributes.items()
            if spec.default_value is not None and spec.default_value.type != 0}


@functools.cache
def schema_defaults(op_type: str, since: int, domain: str = "") -> dict[str, onnx.AttributeProto]:
    """``name -> default`` of every attribute with a default in the op's schema at version ``since`` (the defaults
    change between versions: Softmax's ``axis`` is 1 before opset 13 and -1 from 13); empty without a schema."""
    schema = _schema(op_type, since, domain)
    return _defaults(schema) if schema is not None else {}


def _attr_value(attr: onnx.AttributeProto) -> Any:
    value = onnx.helper.get_attribute_value(attr)
    if attr.type == onnx.AttributeProto.FLOAT:
        return _float32_literal(value)
    if attr.type == onnx.AttributeProto.FLOATS:
        return [_float32_literal(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, onnx.TensorProto):
        return numpy_helper.to_array(value)
    if isinstance(value, list) and value and isinstance(value[0], bytes):
        return [v.decode("utf-8") for v in value]
    return value


class Graph:
    """The model's DAG plus everything static about it: constants, value infos, opsets.

    Attributes
    ----------
    model : onnx.ModelProto
        The model after shape inference (a private copy).
    nodes : list[Node]
        Nodes in topological order, names unique.
    constants : dict[str, numpy.ndarray]
        Initializers, ``Constant`` outputs and ``Identity`` of constants, by tensor name.
    dag : networkx.MultiDiGraph
        Vertices are node names (and ``input:<name>`` pseudo-nodes), edges keyed by tensor name.
    """

    def __init__(self, model: str | os.PathLike | bytes | onnx.ModelProto, *, check: bool = True):
        proto = load_model(model)
        #: rewrites applied to the model itself (inlined ``If`` nodes), one line each
        self.rewrites: list[str] = []
        sort_nodes(proto, self.rewrites)
        inline_fixed_ifs(proto, self.rewrites)
        if check:
            try:
                onnx.checker.check_model(proto)
            except Exception as exc:
                _loads_anyway(proto, f"the model fails the ONNX checker: {_short(exc)}", exc)
        try:
            proto = shape_inference.infer_shapes(proto)
        except Exception as exc:
            _loads_anyway(proto, f"ONNX shape inference failed on the model: {_short(exc)}", exc)
        self.model = proto
        self.opsets = {op.domain or "": op.version for op in proto.opset_import}
        if "ai.onnx" in self.opsets:
            self.opsets.setdefault("", self.opsets["ai.onnx"])
        self.initializer_names = {t.name for t in proto.graph.initializer}
        self.input_infos = [_tensor_info(v) for v in proto.graph.input if v.name not in self.initializer_names]
        self.output_infos = [_tensor_info(v) for v in proto.graph.output]
        self.value_infos = {v.name: _tensor_info(v) for v in
                            list(proto.graph.value_info) + list(proto.graph.input) + list(proto.graph.output)}
        for t in proto.graph.initializer:
            self.value_infos[t.name] = TensorInfo(t.name, t.data_type, tuple(t.dims))
        self.nodes = self._parse_nodes(proto)
        self._index()
        self.constants = self._fold_constants(proto)
        self.dag = self._build_dag()

    def _index(self) -> None:
        self.node_by_name = {n.name: n for n in self.nodes}
        self.producer = {out: n for n in self.nodes for out in n.outputs if out}
        self.consumers: dict[str, list[Node]] = {}
        for n in self.nodes:
            for t in n.inputs:
                if t:
                    self.consumers.setdefault(t, []).append(n)

    def with_nodes(self, nodes: list[Node], extra_constants: Mapping[str, np.ndarray]) -> Graph:
        """A copy of this graph with ``nodes`` replacing the node list (canonizer output) and extra constants."""
        other = copy.copy(self)
        other.nodes = list(nodes)
        other._index()
        other.constants = {**self.constants, **extra_constants}
        other.dag = other._build_dag()
        return other

    # ------------------------------------------------------------------ construction
    def _parse_nodes(self, proto: onnx.ModelProto) -> list[Node]:
        used: Counter[str] = Counter()
        nodes = []
        for k, n in enumerate(proto.graph.node):
            base = n.name or f"{n.op_type}_{k}"
            name, suffix = base, 0
            while name in used:
                suffix += 1
                name = f"{base}_{suffix}"
            used[name] += 1
            domain = n.domain if n.domain not in ("ai.onnx",) else ""
            if domain == "onnxlrp":  # kernels of this domain trust the attributes the canonizer sets
                raise ModelCheckError(f"node {name!r} ({n.op_type}) is in the domain 'onnxlrp', which onnxlrp "
                                      "reserves for the nodes it rewrites itself")
            opset = self.opsets.get(domain, 1)
            schema = _schema(n.op_type, opset, domain)
            nodes.append(Node(name=name, op_type=n.op_type, domain=domain,
                              since=schema.since_version if schema else opset,
                              inputs=tuple(n.input), outputs=tuple(n.output),
                              attrs=parse_attributes(n, schema), index=k, implicit=implicit_inputs(n)))
            _check_node(nodes[-1], n, schema)
        producers: dict[str, str] = {}
        for node in nodes:  # what kernels and the path rely on even with check=False: one producer per tensor
            for t in node.outputs:
                if t and producers.setdefault(t, node.name) != node.name:
                    raise ModelCheckError(f"tensor {t!r} is produced by two nodes, {producers[t]!r} and "
                                          f"{node.name!r}; every tensor of an ONNX graph has one producer")
        return nodes

    def _fold_constants(self, proto: onnx.ModelProto) -> dict[str, np.ndarray]:
        consts = {t.name: _initializer(t) for t in proto.graph.initializer}
        for n in self.nodes:
            if n.op_type == "Constant" and n.domain == "":
                value = _constant_value(n)
                if value is not None:
                    consts[n.outputs[0]] = value
            elif n.op_type == "Identity" and n.domain == "" and n.inputs and n.inputs[0] in consts:
                consts[n.outputs[0]] = consts[n.inputs[0]]
        return consts

    def _build_dag(self) -> nx.MultiDiGraph:
        dag = nx.MultiDiGraph()
        for info in self.input_infos:
            dag.add_node(INPUT_PREFIX + info.name, index=-1)
        for n in self.nodes:
            dag.add_node(n.name, index=n.index)
        for n in self.nodes:
            for port, t in enumerate(n.inputs):
                if not t or t in self.initializer_names:
                    continue
                src = self.producer.get(t)
                src_name = src.name if src is not None else INPUT_PREFIX + t
                if src_name not in dag:
                    continue
                dag.add_edge(src_name, n.name, key=f"{t}#{port}", tensor=t, dst_port=port)
            for t in n.implicit:  # read by a subgraph: an ordering edge, never a relevance port
                src = self.producer.get(t)
                if src is not None and src.name in dag:
                    dag.add_edge(src.name, n.name, key=f"{t}#implicit", tensor=t, dst_port=-1)
        if not nx.is_directed_acyclic_graph(dag):
            raise UnsupportedGraphError("the model graph has a cycle; ONNX graphs must be acyclic")
        return dag

    # ------------------------------------------------------------------ queries
    def tensor_info(self, name: str) -> TensorInfo | None:
        return self.value_infos.get(name)

    def depends_on(self, source: str) -> set[str]:
        """Tensor names whose value changes with graph input ``source`` (through any input port)."""
        varying = {source}
        for n in self.nodes:
            if any(t in varying for t in n.inputs + n.implicit if t) and not _is_shape_only(n):
                varying.update(t for t in n.outputs if t)
        return varying

    def op_histogram(self) -> dict[str, int]:
        return dict(Counter(n.op_type for n in self.nodes).most_common())


def _is_shape_only(node: Node) -> bool:
    """Ops whose output depends on the input's shape only, never on its values."""
    return node.op_type in ("Shape", "Size") and node.domain == ""


def _check_node(node: Node, proto: onnx.NodeProto, schema: onnx.defs.OpSchema | None) -> None:
    """What the ONNX checker refuses and kernels rely on, checked even with ``check=False``: the node's input and
    output counts fit its schema, every required attribute is set and every attribute has the schema's type."""
    if schema is None:
        return
    problem = next((f"has attribute {a.name!r} of type {_ATTR_TYPES.get(a.type, a.type)}, but its schema takes "
                    f"{_ATTR_TYPES.get(schema.attributes[a.name].type, '?')}" for a in proto.attribute
                    if a.name in schema.attributes and a.type != schema.attributes[a.name].type), "")
    for kind, count, low, high in (("inputs", len(node.inputs), schema.min_input, schema.max_input),
                                   ("outputs", len(node.outputs), schema.min_output, schema.max_output)):
        if not low <= count <= high and not problem:
            problem = f"has {count} {kind}, but its schema takes {low}" + (f" to {high}" if high != low else "")
    missing = sorted(a for a, spec in schema.attributes.items() if spec.required and a not in node.attrs)
    problem = problem or (f"lacks its required attribute {missing[0]!r}" if missing else "")
    if problem:
        raise ModelCheckError(f"node {node.name!r} ({node.op_type}, opset version {node.since}) {problem}")


_ATTR_TYPES = {v: k.lower() for k, v in onnx.AttributeProto.AttributeType.items()}


def _schema(op_type: str, opset: int, domain: str) -> onnx.defs.OpSchema | None:
    try:
        return onnx.defs.get_schema(op_type, opset, domain)
    except Exception:
        return None


def _constant_value(node: Node) -> np.ndarray | None:
    a = node.attrs
    for key in ("value", "value_float", "value_floats", "value_int", "value_ints"):
        if key in a and a[key] is not None:
            value = a[key]
            if key == "value":
                return np.asarray(value)
            dtype = np.float32 if "float" in key else np.int64
            return np.asarray(value, dtype=dtype)
    return None


def _tensor_info(value: onnx.ValueInfoProto) -> TensorInfo:
    t = value.type.tensor_type
    shape = None
    if t.HasField("shape"):
        shape = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim)
    return TensorInfo(value.name, t.elem_type, shape)


@dataclass
class RelevancePath:
    """Nodes between the explained input and output through data inputs, in topological order.

    ``varying`` holds the tensors that depend on the explained input: an input port carries relevance only if its
    tensor is in ``varying``. ``unsupported`` lists nodes whose op has no kernel (preflight reports them together).
    """

    nodes: list[Node]
    varying: set[str]
    unsupported: list[tuple[Node, str]] = field(default_factory=list)


def relevance_path(graph: Graph, input_name: str, output_name: str, data_inputs) -> RelevancePath:
    """Walk back from ``output_name`` through each node's declared data inputs (through every varying input of an
    unsupported node, so that one preflight error lists them all).

    ``data_inputs(node, varying) -> tuple[int, ...] | str`` gives the input ports a kernel propagates to, or a reason
    string when there is no kernel / the kernel cannot handle this use. Shape subgraphs are never entered because no
    kernel declares a shape operand as a data input.
    """
    varying = graph.depends_on(input_name)
    if output_name not in varying:
        raise UnsupportedGraphError(
            f"output {output_name!r} does not depend on input {input_name!r}; there is nothing to explain")
    seen: set[str] = set()
    stack = [output_name]
    on_path: dict[str, Node] = {}
    unsupported: list[tuple[Node, str]] = []
    while stack:
        tensor = stack.pop()
        if tensor in seen or tensor == input_name:
            continue
        seen.add(tensor)
        node = graph.producer.get(tensor)
        if node is None or node.name in on_path:
            continue
        on_path[node.name] = node
        ports = data_inputs(node, varying)
        if isinstance(ports, str):
            unsupported.append((node, ports))
            # keep exploring so preflight reports every unsupported op at once (an If's data comes through its
            # branches, not its condition)
            ports = () if node.op_type == "If" else range(len(node.inputs))
            stack.extend(t for t in node.implicit if t in varying)
        stack.extend(node.inputs[p] for p in ports if node.inputs[p] in varying)
    nodes = sorted(on_path.values(), key=lambda n: n.index)
    return RelevancePath(nodes=nodes, varying=varying, unsupported=unsupported)


def unsupported_message(model_label: str, unsupported: list[tuple[Node, str]]) -> str:
    """The preflight error: every unsupported op type on the path in one message, nodes named in the first line."""
    groups: dict[tuple[str, str, int, str], list[Node]] = {}
    for node, reason in unsupported:
        groups.setdefault((node.op_type, node.domain, node.since, reason), []).append(node)
    by_op: dict[str, list[Node]] = {}
    for (op, *_), nodes in groups.items():
        by_op.setdefault(op, []).extend(nodes)
    summary = ", ".join(f"{op} ({len(nodes)} node{'s' if len(nodes) != 1 else ''}, e.g. {nodes[0].name!r})"
                        for op, nodes in sorted(by_op.items()))
    kinds = len(by_op)
    lines = [f"onnxlrp cannot explain {model_label}: {kinds} op type{'s' if kinds != 1 else ''} on the relevance path "
             f"{'have' if kinds != 1 else 'has'} no usable kernel: {summary}."]
    for (op, domain, since, reason), nodes in sorted(groups.items(), key=lambda kv: kv[0][0]):
        count = f"{len(nodes)} node{'s' if len(nodes) != 1 else ''}"
        lines.append(f"  {op}  (domain {domain or 'ai.onnx'!r}, opset version {since})  {count}, "
                     f"e.g. {nodes[0].name!r}: {reason}")
    lines.append("Fix: export with ops that have kernels (`onnxlrp inspect MODEL` shows which are missing), or "
                 "register a kernel for the op (kernels/README.md).")
    return join_lines(*lines)
