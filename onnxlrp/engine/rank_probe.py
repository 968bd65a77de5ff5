"""Ranks that ONNX shape inference leaves unknown, read from one run of the model (the compiled backend).

ONNX shape inference cannot follow a shape computed at run time into a ``Reshape`` whose target length depends on
it (torchvision's ``MultiheadAttention`` unflattens its packed projection so), and every value after it has no rank.
The emitters need ranks (sizes may stay symbolic): :func:`fill_unknown_ranks` runs the model once in onnxruntime on
zeros, with every free dimension of its inputs set to 2, and records the rank of each value inference left
without a shape, its dimensions all unnamed (only known at run time). Ranks do not depend on the sizes. Best effort:
when the model cannot run so (inputs that must hold valid data), nothing is added.
"""
from __future__ import annotations

import numpy as np
import onnx

#: the size given to each free input dimension in the probe run
PROBE_SIZE = 2


def _unknown_values(proto: onnx.ModelProto) -> list[str]:
    """Node outputs (main graph) that have no inferred shape, in graph order."""
    known = {v.name for v in list(proto.graph.value_info) + list(proto.graph.output) + list(proto.graph.input)
             if v.type.HasField("tensor_type") and v.type.tensor_type.HasField("shape")}
    known |= {t.name for t in proto.graph.initializer}
    return [t for node in proto.graph.node for t in node.output if t and t not in known]


def _probe_feeds(proto: onnx.ModelProto) -> dict:
    initializers = {t.name for t in proto.graph.initializer}
    feeds = {}
    for value in proto.graph.input:
        if value.name in initializers:
            continue
        tensor = value.type.tensor_type
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type)
        shape = [d.dim_value if d.HasField("dim_value") else PROBE_SIZE for d in tensor.shape.dim]
        feeds[value.name] = np.zeros(shape, dtype=dtype)
    return feeds


def fill_unknown_ranks(proto: onnx.ModelProto) -> onnx.ModelProto:
    """``proto`` (shapes inferred) with a ``value_info`` of unnamed dimensions for each value of unknown rank."""
    missing = _unknown_values(proto)
    if not missing:
        return proto
    try:
        import onnxruntime as ort

        probe = onnx.ModelProto()
        probe.CopyFrom(proto)
        del probe.graph.output[:]
        probe.graph.output.extend(onnx.helper.ValueInfoProto(name=name) for name in missing)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        options.log_severity_level = 3
        session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
        values = session.run(missing, _probe_feeds(proto))
    except Exception:  # a model that cannot run on zeros keeps its unknown ranks (emitters then refuse)
        return proto
    for name, value in zip(missing, values):
        if not isinstance(value, np.ndarray):
            continue
        info = onnx.helper.make_tensor_value_info(name, onnx.helper.np_dtype_to_tensor_dtype(value.dtype),
                                                  [None] * value.ndim)
        proto.graph.value_info.append(info)
    return proto
