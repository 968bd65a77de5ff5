"""Forward passes that expose the intermediate tensors the relevance kernels read.

``OrtRunner`` runs onnxruntime on a copy of the model whose graph outputs are extended with the needed
intermediates (onnxruntime returns graph outputs only); given a canonical graph, it computes the tensors the
canonizer created (decomposed com.microsoft ops, dequantised integer ops) with the kernels, in float64, from
onnxruntime's values of their inputs. ``KernelRunner`` recomputes the relevance path with the
kernels' own numpy forward in float64 (onnxruntime lacks double kernels for several ops), taking only values off
the path (shape arithmetic, constant subgraphs) from an onnxruntime float32 run.
"""
from __future__ import annotations

import re

import numpy as np
import onnx
import onnxruntime as ort

from ..errors import BackendUnavailableError, ModelCheckError, ModelRunError
from .graph import Graph, Node
from .kernel import Call
from .registry import resolve


class OrtRunner:
    """onnxruntime session on a copy of ``graph.model`` returning ``outputs`` (any tensor names)."""

    def __init__(self, graph: Graph, outputs: list[str], device: str = "cpu", optimize: bool = False):
        model = onnx.ModelProto()
        model.CopyFrom(graph.model)
        existing = {o.name for o in model.graph.output}
        inputs = {i.name for i in model.graph.input}
        #: canonizer nodes (a canonical ``graph``) computing requested tensors the model does not have
        self.derived = derivation(graph, outputs, inputs)
        #: the tensors they compute (never asked of onnxruntime)
        self.made = {t for n in self.derived for t in n.outputs if t}
        self.constants = graph.constants
        outputs = list(outputs) + [t for n in self.derived for t in n.inputs
                                   if t and t not in self.made and t not in graph.constants]
        for name in outputs:
            if name in existing or name in inputs or name in graph.initializer_names or name in self.made:
                continue
            info = graph.tensor_info(name)
            if info is not None and info.elem_type:
                model.graph.output.append(onnx.helper.make_tensor_value_info(name, info.elem_type, None))
            else:  # no type known (an output of a com.microsoft op): onnxruntime infers it
                model.graph.output.append(onnx.ValueInfoProto(name=name))
            existing.add(name)
        # tensors only: a sequence or map output (scikit-learn's ZipMap) is never read by a kernel
        self.outputs = [o.name for o in model.graph.output if o.type.WhichOneof("value") in (None, "tensor_type")]
        options = ort.SessionOptions()
        options.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_BASIC if optimize
                                            else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
        options.log_severity_level = 4  # failures are raised as one-line errors, not logged
        providers = ["CPUExecutionProvider"]
        if device in ("cuda", "gpu"):
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise BackendUnavailableError(
                    "device='cuda' needs onnxruntime's CUDA provider; install onnxruntime-gpu (`pip install "
                    "onnxlrp[gpu]`)")
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        try:
            self.session = ort.InferenceSession(model.SerializeToString(), options, providers=providers)
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelCheckError(f"onnxruntime cannot load the model: {first}") from exc

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The requested tensors, plus the feeds themselves; an onnxruntime failure becomes :class:`ModelRunError`
        naming the node."""
        try:
            values = self.session.run(self.outputs, feeds)
        except Exception as exc:  # onnxruntime raises its own pybind exception types
            raise ModelRunError(run_failure(exc, feeds)) from exc
        values = {**dict(zip(self.outputs, values)), **feeds}
        for node in self.derived:  # in float64 from onnxruntime's values; the session casts to its dtype
            inputs = tuple(self._derived_input(values, t) for t in node.inputs)
            flags = tuple(bool(t) and t not in self.constants for t in node.inputs)
            outs = resolve(node).forward(Call(node=node, inputs=inputs, outputs=(), varying=flags, xp=np))
            values.update((t, v) for t, v in zip(node.outputs, outs) if t and v is not None)
        return values

    def _derived_input(self, values, name):
        if not name:
            return None
        value = values[name] if name in values else self.constants[name]
        value = np.asarray(value)
        return value.astype(np.float64) if value.dtype.kind == "f" or value.dtype.name == "bfloat16" else value


def derivation(graph: Graph, outputs, inputs) -> list[Node]:
    """The nodes of a canonical ``graph`` (canonizer rewrites: decomposed fused ops, dequantised integer ops) that
    compute the tensors of ``outputs`` the model itself does not produce, with the ones they need, in order."""
    produced = {t for n in graph.model.graph.node for t in n.output if t} | set(inputs) | graph.initializer_names
    found: dict[str, Node] = {}
    stack = [t for t in outputs if t and t not in produced]
    while stack:
        tensor = stack.pop()
        node = graph.producer.get(tensor)
        if tensor in produced or tensor in graph.constants or node is None or node.name in found:
            continue
        found[node.name] = node
        stack.extend(t for t in node.inputs if t)
    return sorted(found.values(), key=lambda n: n.index)


def run_failure(exc: BaseException, feeds: dict) -> str:
    """One line: the node onnxruntime names in ``exc`` (``... node. Name:'conv1' Status Message: ...``), its
    message, and the shapes that were fed."""
    text = " ".join(str(exc).split())
    node = re.search(r"running (\w+) node\. Name:'([^']*)'", text)
    status = text.split("Status Message:", 1)[1].strip() if "Status Message:" in text else text
    shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in feeds.items())
    if node is None:
        where = "while running the model"
    else:
        op, name = node.group(1), node.group(2)
        where = f"at node {name!r} ({op})" if name else f"at an unnamed {op} node"
    return (f"onnxruntime failed {where}: {status[:300]} (inputs: {shapes}); the model is malformed or the input "
            "does not fit it (e.g. smaller than a pooling window)")


def _check_declared(name: str, value, declared) -> None:
    """A ``ValueError`` when ``value``'s shape contradicts the static dimensions declared for tensor ``name``."""
    if declared is not None and (len(declared) != value.ndim or any(
            isinstance(d, int) and d > 0 and d != s for d, s in zip(declared, value.shape))):
        raise ValueError(f"it computed {name!r} of shape {tuple(value.shape)}, but the model declares "
                         f"{[d if isinstance(d, int) and d > 0 else 'N' for d in declared]}")


class KernelRunner:
    """Forward pass of the relevance path through the kernels in ``dtype`` on the array module ``xp`` (float64 end
    to end on the path, on the GPU when ``xp`` is CuPy); values off the path come from an onnxruntime run."""

    def __init__(self, graph: Graph, path_nodes: list[Node], varying: set[str], external: list[str],
                 device: str, xp, dtype):
        self.path_nodes = path_nodes
        self.varying = varying
        self.constants = graph.constants
        #: static shapes ONNX shape inference found: no onnxruntime checks this pass, so a malformed model that
        #: numpy broadcasting lets through is caught by comparing each result with them
        self.declared = {name: info.shape for name, info in graph.value_infos.items() if info.shape is not None}
        self.external = external
        self.xp, self.dtype = xp, dtype
        self._constants: dict = {}
        self.ort = OrtRunner(graph, external, device=device) if external else None
        #: the model's own input types (float16 models are fed float16)
        self.input_dtypes = {i.name: i.dtype for i in graph.input_infos if i.dtype is not None}

    def run(self, feeds: dict[str, np.ndarray]) -> dict:
        """Every tensor on the path (backend arrays), the off-path values it reads, and the feeds."""
        xp = self.xp
        values: dict = {}
        if self.ort is not None:
            ort_feeds = {k: (v.astype(self.input_dtypes.get(k, np.float32)) if v.dtype.kind == "f" else v)
                         for k, v in feeds.items()}
            got = self.ort.run(ort_feeds)
            values.update({k: self._array(got[k]) for k in self.external})
        values.update({k: self._array(v) for k, v in feeds.items()})
        for node in self.path_nodes:
            inputs = tuple(self._lookup(values, t) for t in node.inputs)
            flags = tuple(bool(t) and t in self.varying for t in node.inputs)
            try:
                outs = resolve(node).forward(Call(node=node, inputs=inputs, outputs=(), varying=flags, xp=xp))
                for name, value in zip(node.outputs, outs):
                    if name and value is not None:
                        _check_declared(name, value, self.declared.get(name))
                        values[name] = value
            except (ArithmeticError, LookupError, TypeError, ValueError) as exc:  # values that do not fit the node
                # (numpy's shape, broadcast, axis and dtype errors; a zero group): onnxruntime refuses such a model
                shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in feeds.items())
                raise ModelRunError(
                    f"the float64 forward pass failed at node {node.name!r} ({node.op_type}): "
                    f"{' '.join(str(exc).split())[:300]} (inputs: {shapes}); the model is malformed or the input does "
                    "not fit it (e.g. smaller than a pooling window)") from exc
        return values

    def _array(self, value):
        return self.xp.asarray(value, dtype=self.dtype) if value.dtype.kind == "f" else value

    def _lookup(self, values, name):
        if not name:
            return None
        if name in values:
            return values[name]
        if name not in self._constants:
            value = self.constants[name]
            if value.dtype.kind not in "fiub":  # onnxruntime refuses such a model; this pass runs without it
                raise ModelRunError(f"constant {name!r} has dtype {value.dtype}, which the float64 forward pass "
                                    "cannot compute with; the model is malformed")
            self._constants[name] = self._array(value)
        return self._constants[name]
