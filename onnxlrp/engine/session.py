"""The engine's one public object: a model opened for one explained input, output, device and dtype.

A :class:`Session` parses and canonizes the graph, finds the relevance path, resolves a kernel per node and chooses
the forward runner, once. Every method runs on it through public calls only::

    values, output = session.forward(x, feeds)            # every tensor the kernels read, and the logits
    targets = session.targets(output, target)             # explained class per sample
    seed = session.seed(output, targets, "logit")         # relevance at the output
    relevance, kept = session.propagate(values, rules, seed)

``rules`` maps node names to :class:`~onnxlrp.engine.kernel.Rule` objects (unassigned nodes use the gradient);
contrastive methods splice a new head into the path first (:meth:`splice_dense_head`, :meth:`splice_after_output`)
and pass it to :meth:`propagate`. The path, kernels and categories are read-only views.

Precision is decided here: ``float32`` runs the forward pass on onnxruntime (CPU or CUDA provider) and the kernels
in float32; ``float64`` recomputes the relevance path with the kernels' own forward in float64 on the session's
array module (numpy, or CuPy on ``cuda``), taking only values off the path from onnxruntime.
"""
from __future__ import annotations

import math
import numbers
import os
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import numpy as np
import onnx

from .. import limits
from ..errors import (
    InputDtypeError,
    InputShapeError,
    MemoryBudgetError,
    MethodError,
    NameSelectionError,
    NonFiniteError,
    UnsupportedGraphError,
    UnsupportedOpError,
)
from . import registry, seeds, splice
from .backend import get_xp, to_numpy
from .canonize import canonize
from .graph import Graph, Node, relevance_path, unsupported_message
from .kernel import Call, LinearOp
from .runner import KernelRunner, OrtRunner
from .walker import propagate

DTYPES = {"float32": np.float32, "float64": np.float64}
DEVICES = ("cpu", "cuda")


class Session:
    """A model opened for explanation.

    Parameters
    ----------
    model : path, bytes, onnx.ModelProto or Graph
        The model (never modified; an already parsed :class:`~onnxlrp.engine.graph.Graph` is used as it is).
    input_name, output_name : str, optional
        The explained input and output; required when the model has several. A final Softmax/LogSoftmax is
        skipped so the logits are explained, unless ``explain_softmax=True``.
    device : {"cpu", "cuda"}
        Where kernels run (numpy or CuPy) and onnxruntime's provider.
    dtype : {"float32", "float64"}
        Compute precision (see the module docstring).
    check : bool
        Run the ONNX checker on the model.
    memory_budget : int, optional
        Bytes one pass may plan to use (default ``ONNXLRP_MEMORY_BUDGET`` or half the available memory): a larger
        input is refused before anything is allocated (:meth:`check_budget`), and :meth:`chunks` sizes the batches
        of multi-pass methods to fit.
    """

    def __init__(self, model, input_name: str | None = None, output_name: str | None = None, *, device: str = "cpu",
                 dtype: str = "float32", explain_softmax: bool = False, check: bool = True,
                 memory_budget: int | None = None):
        if not isinstance(dtype, str) or dtype not in DTYPES:
            raise MethodError(f"dtype must be 'float32' or 'float64'; got {' '.join(repr(dtype).split())[:80]}")
        if memory_budget is not None and (isinstance(memory_budget, bool) or not isinstance(
                memory_budget, numbers.Real) or not math.isfinite(memory_budget) or memory_budget < 1):
            raise MethodError(f"memory_budget must be a positive number of bytes; got "
                              f"{' '.join(repr(memory_budget).split())[:80]}")
        registry.load_builtin_kernels()
        self.label = repr(os.fspath(model)) if isinstance(model, (str, os.PathLike)) else "the model"
        self.xp = get_xp(device)
        self.device = device
        self.dtype = np.dtype(DTYPES[dtype])
        self.graph = model if isinstance(model, Graph) else Graph(model, check=check)
        self.input_name = choose_name("input", input_name, [i.name for i in self.graph.input_infos])
        self.model_output_name = choose_name("output", output_name, [o.name for o in self.graph.output_infos],
                                         extra=set(self.graph.producer))
        self.output_name = self.model_output_name if explain_softmax else self._logits(self.model_output_name)
        nodes, extra, log = canonize(self.graph, {self.output_name})
        self.canonizer_log = tuple(self.graph.rewrites) + tuple(log)
        #: the graph the path is taken from: canonizers applied (BatchNorm folded, decomposed ops fused, ...)
        self.canonical = self.graph.with_nodes(nodes, extra)
        self.path = relevance_path(self.canonical, self.input_name, self.output_name, registry.data_inputs)
        if self.path.unsupported:
            raise UnsupportedOpError(unsupported_message(self.label, self.path.unsupported),
                                     unsupported=self.path.unsupported)
        kernels = {n.name: registry.resolve(n) for n in self.path.nodes}
        self._kernels = MappingProxyType(kernels)
        self._categories = MappingProxyType(
            {n.name: kernels[n.name].node_category(n, self.path.varying) for n in self.path.nodes})
        self._constants: dict[str, Any] = {}
        self._runner = None
        #: bytes one pass may plan to use (``ONNXLRP_MEMORY_BUDGET``, default half the available memory)
        self.memory_budget = limits.memory_budget(memory_budget)
        self._plans: dict[tuple, int | None] = {}

    # ------------------------------------------------------------------------------------------ read-only views
    @property
    def kernels(self) -> Mapping:
        """``node name -> kernel`` for every node on the relevance path."""
        return self._kernels

    @property
    def categories(self) -> Mapping[str, str]:
        """``node name -> category`` (``conv``, ``dense``, ``activation``, ...) for every node on the path."""
        return self._categories

    @property
    def input_info(self):
        return next(i for i in self.graph.input_infos if i.name == self.input_name)

    @property
    def input_shape(self) -> tuple:
        """The explained input's static shape, ``None`` for free dimensions."""
        return _static(self.input_info.shape)

    @property
    def input_dtype(self) -> np.dtype:
        return self.input_info.dtype

    @property
    def output_shape(self) -> tuple:
        info = self.graph.tensor_info(self.output_name)
        return _static(info.shape if info is not None else None)

    def static_shape(self, tensor: str) -> tuple | None:
        """A tensor's shape as the model declares it (``None`` when unknown)."""
        info = self.graph.tensor_info(tensor)
        return None if info is None or info.shape is None else tuple(info.shape)

    def node_varying(self, node: Node) -> tuple[bool, ...]:
        """Per input port: whether it depends on the explained input (and so may carry relevance)."""
        return tuple(bool(t) and t in self.path.varying for t in node.inputs)

    # ------------------------------------------------------------------------------------------ arrays
    def array(self, x):
        """``x`` as a backend array in the compute dtype."""
        return self.xp.asarray(x, dtype=self.dtype)

    @staticmethod
    def host(x) -> np.ndarray:
        """A host (numpy) copy of a backend array."""
        return to_numpy(x)

    def constant(self, name: str):
        """A constant of the canonical graph as a backend array (floats in the compute dtype), cached."""
        if name not in self._constants:
            value = self.canonical.constants[name]
            self._constants[name] = self.array(value) if value.dtype.kind == "f" else value
        return self._constants[name]

    def value(self, values: Mapping, name: str):
        """A tensor's forward value from ``values``, else the constant of that name."""
        return values[name] if name in values else self.constant(name)

    def chunks(self, total: int, internal_batch_size, per: int, sample_shape: tuple | None = None) -> list[range]:
        """Index ranges covering ``total`` rows in batches of a multiple of ``per`` rows, or of the model's fixed
        batch size. The batch is ``internal_batch_size`` when given, else as large as the memory budget allows for
        samples shaped ``sample_shape`` (all at once when that is unknown)."""
        static = self.input_shape[0] if self.input_shape else None
        if static:
            size = static
        else:
            size = internal_batch_size or self._rows_within_budget(sample_shape, total)
            size = max(per, (int(size) // per) * per)
        return [range(i, min(total, i + size)) for i in range(0, total, size)]

    def plan_bytes(self, shape: tuple) -> int | None:
        """Planned peak bytes of one pass on an input of ``shape``: the tensors the kernels read, from the model's
        shapes inferred for that input, times :data:`onnxlrp.limits.PASS_OVERHEAD`; ``None`` when shape inference
        cannot tell."""
        shape = tuple(int(d) for d in shape)
        if shape not in self._plans:
            sizes = infer_sizes(self.graph, self.input_name, shape)
            if sizes is None:
                self._plans[shape] = None
            else:
                wanted = set(self._needed()) | {t for n in self.path.nodes for t in n.outputs if t}
                elements = math.prod(shape) + sum(sizes.get(t, 0) for t in wanted)
                self._plans[shape] = elements * self.dtype.itemsize * limits.PASS_OVERHEAD
        return self._plans[shape]

    def check_budget(self, shape: tuple) -> None:
        """Refuse a pass whose planned memory exceeds the budget, before allocating anything."""
        planned = self.plan_bytes(shape)
        if planned is not None and planned > self.memory_budget:
            raise MemoryBudgetError(
                f"explaining an input of shape {tuple(shape)} would need about {_gib(planned)} (budget "
                f"{_gib(self.memory_budget)}); use a smaller batch or input size, or raise the budget "
                "(memory_budget=, --memory-budget, ONNXLRP_MEMORY_BUDGET)")

    def _rows_within_budget(self, sample_shape, total: int) -> int:
        if sample_shape is None:
            return total
        planned = self.plan_bytes((1, *tuple(sample_shape)[1:]))
        if not planned:
            return total
        return max(1, min(total, self.memory_budget // planned))

    # ------------------------------------------------------------------------------------------ validation
    def validate_input(self, x):
        """``x`` checked against the explained input's dtype kind, rank, static dimensions and finiteness."""
        if not isinstance(x, np.ndarray) and not hasattr(x, "__cuda_array_interface__"):
            try:
                x = np.asarray(x)
            except (TypeError, ValueError) as exc:
                raise InputDtypeError(f"input {self.input_name!r} must be an array; got {type(x).__name__}") from exc
        info = self.input_info
        if x.dtype.kind not in "f":
            raise InputDtypeError(f"input {self.input_name!r} expects floating-point values "
                                  f"({info.dtype}); got an array of dtype {x.dtype}: convert and normalise it first")
        expected = info.shape
        if expected is not None:
            if x.ndim != len(expected):
                raise InputShapeError(f"input {self.input_name!r} expects {len(expected)} dimensions "
                                      f"{_format_shape(expected)}; got shape {tuple(x.shape)}")
            for axis, (want, got) in enumerate(zip(expected, x.shape)):
                if isinstance(want, int) and want > 0 and want != got:
                    raise InputShapeError(f"input {self.input_name!r} expects shape {_format_shape(expected)}; got "
                                          f"{tuple(x.shape)} (axis {axis} is {got}, not {want})")
        if x.ndim == 0 or x.shape[0] == 0:
            raise InputShapeError(f"input {self.input_name!r} needs a batch of at least one sample; got shape "
                                  f"{tuple(x.shape)}")
        if not bool(np.isfinite(to_numpy(x)).all()):
            raise NonFiniteError(f"input {self.input_name!r} contains NaN or inf")
        return x

    def validate_feeds(self, feeds: Mapping | None) -> dict:
        """The other model inputs, held fixed: every one must be given, and nothing else."""
        if feeds is not None and not isinstance(feeds, Mapping):
            raise NameSelectionError(f"feeds must map input names to arrays; got {type(feeds).__name__}")
        feeds = dict(feeds or {})
        names = {i.name for i in self.graph.input_infos}
        unknown = sorted(set(feeds) - names)
        if unknown:
            raise NameSelectionError(f"feeds name {unknown[0]!r}, which is not a model input; inputs are: "
                                     f"{', '.join(sorted(names))}")
        missing = sorted(names - set(feeds) - {self.input_name})
        if missing:
            raise NameSelectionError(f"the model has other inputs that must be held fixed; pass feeds={{{missing[0]!r}"
                                     f": ...}} (missing: {', '.join(missing)})")
        return {k: np.asarray(v) for k, v in feeds.items()}

    # ------------------------------------------------------------------------------------------ the engine
    def forward(self, x, feeds: Mapping | None = None) -> tuple[dict, Any]:
        """``(values, output)``: backend arrays of every tensor the kernels read, and the explained output."""
        feeds = dict(feeds or {})
        self.check_budget(tuple(x.shape))
        x_host = np.asarray(to_numpy(x), dtype=self.dtype if self.dtype == np.float64 else self.input_dtype)
        all_feeds = {self.input_name: x_host, **feeds}
        values = self._forward_runner(all_feeds).run(all_feeds)
        xp = self.xp
        values = {k: (xp.asarray(v, dtype=self.dtype) if v.dtype.kind == "f" else v) for k, v in values.items()}
        output = values[self.output_name]
        if output.ndim == 0 or output.shape[0] != x_host.shape[0]:
            raise UnsupportedGraphError(
                f"output {self.output_name!r} has shape {tuple(output.shape)}, with no batch axis matching the "
                f"input's {x_host.shape[0]} samples; onnxlrp explains outputs shaped (N, ...): choose another output "
                "with output_name= (`onnxlrp inspect` lists them)")
        if output.size == 0:
            raise UnsupportedGraphError(f"output {self.output_name!r} has shape {tuple(output.shape)}, with no entry "
                                        "to explain")
        if not bool(xp.isfinite(output).all()):
            raise NonFiniteError(f"the model's output {self.output_name!r} contains NaN or inf for this input")
        return values, output

    def targets(self, output, target=None) -> np.ndarray:
        """The explained class per sample: ``target`` (an int or one per sample) checked, or the prediction."""
        return seeds.targets(output, target, self.output_name)

    def class_indices(self, value, output, what: str, error=MethodError) -> np.ndarray:
        """Another class index a method takes (``contrast``), validated as ``target`` is."""
        n, classes = output.shape[0], int(np.prod(output.shape[1:]))
        return seeds.class_indices(value, n, classes, self.output_name, what, error)

    def seed(self, output, targets, mode: str = "logit"):
        """Relevance at the output: the target logit (``"logit"``) or 1 (``"one_hot"``) at each sample's target."""
        if mode not in seeds.SEED_MODES:
            raise MethodError(f"relevance_init must be 'logit' or 'one_hot'; got {mode!r}")
        return seeds.seed(self.xp, output, targets, mode)

    def propagate(self, values: Mapping, rules: Mapping, seed, keep=(), head: splice.Head | None = None):
        """Walk the relevance path (or a spliced ``head``) back from ``seed``; ``(relevance at the input, kept)``.

        ``seed`` is an array for the explained output or a mapping ``tensor -> array``; ``keep`` names tensors whose
        relevance is returned in ``kept`` (or ``"all"``).
        """
        nodes = self.path.nodes if head is None else head.nodes
        kernels = self._kernels if head is None else {**self._kernels, **head.kernels}
        extra = {} if head is None else head.constants
        varying = self.path.varying if head is None else head.varying
        if not isinstance(seed, Mapping):
            seed = {self.output_name: seed}
        missing = object()

        def value(name, default=missing):
            if name in values:
                return values[name]
            if name in extra:
                return extra[name]
            if default is not missing and name not in self.canonical.constants:
                return default
            return self.constant(name)

        acc, kept = propagate(nodes, kernels, rules, value, varying, seed, self.xp, keep)
        relevance = acc.get(self.input_name)
        if relevance is None:
            relevance = self.xp.zeros(values[self.input_name].shape, dtype=self.dtype)
        return relevance, kept

    # ------------------------------------------------------------------------------------------ splicing
    def final_dense(self) -> Node:
        """The dense node producing the explained logits (a clear error otherwise)."""
        return splice.final_dense(self)

    def linear_op(self, node: Node, values: Mapping | None = None, dtype=None) -> LinearOp:
        """The kernel's linear view of ``node`` (on the path, or a node of the original model) with its inputs taken
        from ``values`` or the constants (floats in ``dtype``, default the compute dtype); a node that is not linear
        raises :class:`MethodError`."""
        values = values or {}
        kernel = registry.resolve(node)
        inputs = tuple(None if not t else values[t] if t in values else self._any_constant(t, dtype)
                       for t in node.inputs)
        op = None if kernel is None else kernel.linear_op(Call(node, inputs, (), self.node_varying(node), self.xp))
        if op is None:
            raise MethodError(f"{node.op_type} node {node.name!r} is not linear in its inputs")
        return op

    def dense_weights(self, node: Node, values: Mapping):
        """Effective ``(W (D, C), b (C,) or None)`` of a dense node on a 2-D input, ``z = x @ W + b``."""
        return splice.dense_weights(self, node, values)

    def splice_dense_head(self, dense: Node, weight, bias, tag: str) -> splice.Head:
        """Replace ``dense`` by a per-sample dense head (``onnxlrp::RowDense``); seed ``Head.output``."""
        return splice.splice_dense_head(self, dense, weight, bias, tag)

    def splice_after_output(self, op_type: str, attrs: dict, tag: str) -> splice.Head:
        """Append ``op_type`` (e.g. ``LogSoftmax``) consuming the explained output; seed ``Head.output``."""
        return splice.splice_after_output(self, op_type, attrs, tag)

    def path_head(self) -> splice.Head:
        """The relevance path itself as a :class:`~onnxlrp.engine.splice.Head` (to restrict or extend)."""
        return splice.Head(nodes=list(self.path.nodes), output=self.output_name, categories=dict(self._categories),
                           varying=set(self.path.varying))

    # ------------------------------------------------------------------------------------------ internals
    def _any_constant(self, name: str, dtype=None):
        if name in self.canonical.constants and dtype is None:
            return self.constant(name)
        value = self.canonical.constants.get(name, self.graph.constants.get(name))
        if value is None or value.dtype.kind != "f":
            return value
        return self.xp.asarray(value, dtype=dtype or self.dtype)

    def _logits(self, name: str) -> str:
        node = self.graph.producer.get(name)
        while node is not None and node.op_type in ("Identity",) and node.domain == "":
            node = self.graph.producer.get(node.inputs[0])
        if node is not None and node.op_type in ("Softmax", "LogSoftmax") and node.domain == "":
            return node.inputs[0]
        return name

    def _needed(self) -> list[str]:
        names = set()
        for n in self.path.nodes:
            names.update(t for t in n.inputs if t and t not in self.canonical.constants)
        names.add(self.output_name)
        return sorted(names - {self.input_name})

    def _forward_runner(self, feeds: Mapping):
        if self._runner is None:
            if self.dtype == np.float64:
                produced = {t for n in self.path.nodes for t in n.outputs}
                external = [t for t in self._needed() if t not in produced and t not in feeds]
                self._runner = KernelRunner(self.canonical, self.path.nodes, self.path.varying, external,
                                            self.device, self.xp, self.dtype)
            else:
                self._runner = OrtRunner(self.canonical, self._needed(), device=self.device)
        return self._runner


def _gib(n: int) -> str:
    return f"{n / 2**30:.3g} GiB"


def infer_sizes(graph: Graph, input_name: str, shape: tuple) -> dict[str, int] | None:
    """``tensor -> element count`` for every tensor whose shape ONNX shape inference derives when ``input_name``
    has ``shape`` (symbolic dimensions of other inputs stay unknown); ``None`` when inference fails."""
    source = graph.model
    model = onnx.ModelProto(ir_version=source.ir_version, opset_import=source.opset_import)
    model.graph.node.extend(source.graph.node)
    model.graph.input.extend(source.graph.input)
    model.graph.output.extend(source.graph.output)
    declared = {v.name for v in source.graph.input}
    for tensor in source.graph.initializer:  # large weights become typed inputs: their values never matter here
        if math.prod(tensor.dims) <= 4096:
            model.graph.initializer.append(tensor)
        elif tensor.name not in declared:
            model.graph.input.append(onnx.helper.make_tensor_value_info(tensor.name, tensor.data_type, tensor.dims))
    for value in model.graph.input:
        if value.name == input_name:
            dims = value.type.tensor_type.shape.dim
            if len(dims) != len(shape):
                return None
            for dim, size in zip(dims, shape):
                dim.Clear()
                dim.dim_value = size
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # custom domains, shapes inference cannot follow: no plan
        return None
    sizes = {}
    for value in list(inferred.graph.value_info) + list(inferred.graph.output):
        dims = value.type.tensor_type.shape.dim
        if value.type.HasField("tensor_type") and all(d.HasField("dim_value") for d in dims):
            sizes[value.name] = math.prod(d.dim_value for d in dims)
    return sizes


def choose_name(kind: str, name: str | None, names: list[str], extra: set[str] = frozenset()) -> str:
    """``name`` checked against ``names`` (the model's inputs or outputs, or ``extra`` tensors), or the only one."""
    if name is not None:
        if not isinstance(name, str):
            raise NameSelectionError(f"{kind}_name must be a tensor name (a string); got "
                                     f"{' '.join(repr(name).split())[:80]}")
        if name not in names and name not in extra:
            raise NameSelectionError(f"the model has no {kind} named {name!r}; its {kind}s are: "
                                     f"{', '.join(repr(n) for n in names)}")
        return name
    if len(names) == 1:
        return names[0]
    if not names:
        raise NameSelectionError(f"the model has no {kind}s")
    raise NameSelectionError(f"the model has {len(names)} {kind}s ({', '.join(repr(n) for n in names)}); choose one "
                             f"with {kind}_name=")


def _static(shape) -> tuple:
    return tuple(d if isinstance(d, int) and d > 0 else None for d in (shape or ()))


def _format_shape(shape) -> str:
    """``[1, 3, N, N]``: a declared shape with free dimensions shown as ``N``."""
    return "[" + ", ".join(str(d) if isinstance(d, int) and d > 0 else (str(d) if d else "N") for d in shape) + "]"
