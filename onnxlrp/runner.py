"""Forward passes that expose the intermediate tensors the relevance kernels read.

``OrtRunner`` runs onnxruntime on a copy of the model whose graph outputs are extended with the needed
intermediates (onnxruntime returns graph outputs only). ``KernelRunner`` recomputes the relevance path with the
kernels' own numpy forward in float64 (onnxruntime lacks double kernels for several ops), taking only values off
the path (shape arithmetic, constant subgraphs) from an onnxruntime float32 run.
"""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort

from .errors import BackendUnavailableError, ModelCheckError
from .graph import Graph, Node
from .registry import Call, resolve


class OrtRunner:
    """onnxruntime session on a copy of ``graph.model`` returning ``outputs`` (any tensor names)."""

    def __init__(self, graph: Graph, outputs: list[str], device: str = "cpu", optimize: bool = False):
        model = onnx.ModelProto()
        model.CopyFrom(graph.model)
        existing = {o.name for o in model.graph.output}
        inputs = {i.name for i in model.graph.input}
        for name in outputs:
            if name in existing or name in inputs or name in graph.initializer_names:
                continue
            info = graph.tensor_info(name)
            elem = info.elem_type if info is not None and info.elem_type else onnx.TensorProto.FLOAT
            model.graph.output.append(onnx.helper.make_tensor_value_info(name, elem, None))
            existing.add(name)
        # tensors only: a sequence or map output (scikit-learn's ZipMap) is never read by a kernel
        self.outputs = [o.name for o in model.graph.output if o.type.WhichOneof("value") in (None, "tensor_type")]
        options = ort.SessionOptions()
        options.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_BASIC if optimize
                                            else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
        options.log_severity_level = 3
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
        values = self.session.run(self.outputs, feeds)
        return dict(zip(self.outputs, values))


class KernelRunner:
    """Forward pass of the relevance path through the kernels in ``dtype`` (float64 end to end on the path)."""

    def __init__(self, graph: Graph, path_nodes: list[Node], varying: set[str], constants: dict, external: list[str],
                 device: str = "cpu"):
        self.path_nodes = path_nodes
        self.varying = varying
        self.constants = constants
        self.external = external
        self.ort = OrtRunner(graph, external, device=device) if external else None

    def run(self, feeds: dict[str, np.ndarray], input_name: str, dtype) -> dict[str, np.ndarray]:
        values: dict[str, np.ndarray] = {}
        if self.ort is not None:
            ort_feeds = {k: (v.astype(np.float32) if v.dtype.kind == "f" else v) for k, v in feeds.items()}
            got = self.ort.run(ort_feeds)
            values.update({k: got[k] for k in self.external})
        values.update(feeds)
        for node in self.path_nodes:
            inputs = tuple(_lookup(values, self.constants, t, dtype) for t in node.inputs)
            flags = tuple(bool(t) and t in self.varying for t in node.inputs)
            call = Call(node=node, inputs=inputs, outputs=(), varying=flags, xp=np)
            outs = resolve(node).forward(call)
            for name, value in zip(node.outputs, outs):
                if name and value is not None:
                    values[name] = value
        return values


def _lookup(values, constants, name, dtype):
    if not name:
        return None
    if name in values:
        return values[name]
    value = constants[name]
    return value.astype(dtype) if value.dtype.kind == "f" else value
