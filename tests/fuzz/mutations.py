"""Mutations of a valid ``ModelProto``, each drawing its choices from hypothesis's ``data`` (so failures shrink and
print as a list of drawn values).

``MUTATIONS`` maps a name to ``mutate(model, data) -> str`` (a description of what was changed, noted on failure).
They cover attribute values, initializer shapes/dtypes/values/raw bytes, graph input/output shapes, dtypes and
names, dropped or renamed tensors (dangling names), duplicate node names and outputs, cycles, unknown op types and
domains (``onnxlrp``'s own internal ops included), node order, and opset/IR versions.
"""
from __future__ import annotations

import numpy as np
import onnx
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

# ------------------------------------------------------------------------------------------------------- values
SMALL_INTS = st.integers(-3, 9)
EXTREME_INTS = st.sampled_from([0, -1, 2**31 - 1, -(2**31), 2**62, 1000])
INTS = st.one_of(SMALL_INTS, SMALL_INTS, SMALL_INTS, EXTREME_INTS)
FLOATS = st.one_of(st.floats(-10, 10, width=32),
                   st.sampled_from([0.0, -0.0, 1e-45, 1e38, -1e38, float("nan"), float("inf"), float("-inf")]))
STRINGS = st.sampled_from(["NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID", "constant", "reflect", "edge", "bogus", "",
                           "\u00e9\u00e8", "x" * 300])
ATTR_NAMES = ["kernel_shape", "strides", "pads", "group", "axis", "perm", "alpha", "beta", "transA", "transB",
              "dilations", "auto_pad", "keepdims", "epsilon", "ceil_mode", "count_include_pad", "storage_order",
              "axes", "mode", "min", "max", "momentum", "training_mode", "to", "allowzero", "p", "value",
              "value_float", "value_ints", "unknown_attr"]

ELEM_TYPES = [TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16, TensorProto.INT64,
              TensorProto.INT32, TensorProto.INT8, TensorProto.UINT8, TensorProto.BOOL, TensorProto.STRING,
              TensorProto.COMPLEX64, TensorProto.UNDEFINED, 999]
NUMPY_DTYPES = [np.float32, np.float64, np.float16, np.int64, np.int32, np.uint8, np.int8, np.bool_, np.complex64]

#: op types to swap in: ones with kernels, ONNX ops without one, control flow, made-up names
OP_TYPES = ["Relu", "Sigmoid", "Tanh", "Softmax", "LogSoftmax", "Identity", "Flatten", "MaxPool", "AveragePool",
            "GlobalAveragePool", "Conv", "ConvTranspose", "Gemm", "MatMul", "Add", "Mul", "Sub", "Div", "Concat",
            "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Pad", "Clip", "BatchNormalization", "LayerNormalization",
            "Gather", "Where", "Pow", "Sqrt", "Exp", "Log", "Erf", "Gelu", "Split", "Slice", "Expand", "Cast",
            "Dropout", "ReduceMean", "ReduceSum", "LeakyRelu", "PRelu", "Elu", "Selu", "HardSigmoid", "Softplus",
            "TopK", "ArgMax", "NonZero", "Resize", "LRN", "InstanceNormalization", "Einsum", "If", "Loop", "Scan",
            "FooBar", "", "relu", "Dense", "RowDense", "LayerNorm", "RMSNorm", "SiLU", "ErfGelu", "TanhGelu"]
DOMAINS = ["", "ai.onnx", "com.microsoft", "com.evil", "ai.onnx.ml", "onnxlrp", "ai.onnx.preview.training"]

TENSOR_NAMES = ["ghost", "", "x", "y", "h", "a", "c", "z", "w1", "shape", "onnxlrp::fc/weight", "input:x", "x#0"]


def _node(model, data, what="node"):
    nodes = model.graph.node
    if not nodes:
        return None
    return nodes[data.draw(st.integers(0, len(nodes) - 1), label=what)]


def _attr_value(data):
    kind = data.draw(st.sampled_from(["int", "ints", "float", "floats", "string", "empty", "tensor"]), label="kind")
    if kind == "int":
        return data.draw(INTS, label="int")
    if kind == "ints":
        return data.draw(st.lists(INTS, max_size=6), label="ints") or [0]
    if kind == "float":
        return data.draw(FLOATS, label="float")
    if kind == "floats":
        return data.draw(st.lists(FLOATS, min_size=1, max_size=4), label="floats")
    if kind == "string":
        return data.draw(STRINGS, label="string")
    if kind == "tensor":
        return numpy_helper.from_array(_array(data))
    return None  # an empty INTS list


def _array(data) -> np.ndarray:
    shape = tuple(data.draw(st.lists(st.integers(0, 4), max_size=4), label="shape"))
    dtype = data.draw(st.sampled_from(NUMPY_DTYPES), label="dtype")
    fill = data.draw(st.sampled_from(["normal", "zeros", "huge", "nan", "inf", "tiny"]), label="fill")
    return _filled(shape, dtype, fill, data.draw(st.integers(0, 2**16), label="seed"))


def _filled(shape, dtype, fill, seed) -> np.ndarray:
    values = np.random.default_rng(seed).normal(size=shape)
    values = {"zeros": np.zeros(shape), "huge": np.full(shape, 1e38), "tiny": np.full(shape, 1e-45),
              "normal": values}.get(fill, values)
    if fill in ("nan", "inf") and values.size:
        values = values.copy()
        values.flat[seed % values.size] = np.nan if fill == "nan" else -np.inf
    with np.errstate(all="ignore"):
        return values.astype(dtype)


# ---------------------------------------------------------------------------------------------------- mutations
def _typed_value(data, attr_type):
    """A value of the attribute's own type (so the checker passes and onnxruntime or the kernels see it)."""
    if attr_type == onnx.AttributeProto.INT:
        return data.draw(INTS, label="int")
    if attr_type == onnx.AttributeProto.INTS:
        return data.draw(st.lists(INTS, min_size=1, max_size=6), label="ints")
    if attr_type == onnx.AttributeProto.FLOAT:
        return data.draw(FLOATS, label="float")
    if attr_type == onnx.AttributeProto.FLOATS:
        return data.draw(st.lists(FLOATS, min_size=1, max_size=4), label="floats")
    if attr_type == onnx.AttributeProto.STRING:
        return data.draw(STRINGS, label="string")
    return _attr_value(data)


def set_attribute(model, data):
    """An attribute set to a value of its own type (mostly), or any attribute name to a value of any type."""
    node = _node(model, data)
    if node is None:
        return "no node"
    schema = None
    try:
        schema = onnx.defs.get_schema(node.op_type, 17, node.domain)
    except Exception:  # noqa: BLE001 - unknown op: no schema
        pass
    if schema is not None and schema.attributes and data.draw(st.integers(0, 3), label="typed") > 0:
        name = data.draw(st.sampled_from(sorted(schema.attributes)), label="attribute")
        value = _typed_value(data, schema.attributes[name].type)
    else:
        name = data.draw(st.sampled_from(ATTR_NAMES), label="attribute")
        value = _attr_value(data)
    kept = [a for a in node.attribute if a.name != name]
    del node.attribute[:]
    node.attribute.extend(kept)
    if value is None:
        node.attribute.append(helper.make_attribute(name, [], attr_type=onnx.AttributeProto.INTS))
    else:
        node.attribute.append(helper.make_attribute(name, value))
    return f"{node.name}.{name} = {value!r}"


def remove_attribute(model, data):
    node = _node(model, data)
    if node is None or not node.attribute:
        return "no attribute"
    k = data.draw(st.integers(0, len(node.attribute) - 1), label="attribute")
    name = node.attribute[k].name
    del node.attribute[k]
    return f"removed {node.name}.{name}"


def initializer_values(model, data):
    inits = model.graph.initializer
    if not inits:
        return "no initializer"
    k = data.draw(st.integers(0, len(inits) - 1), label="initializer")
    try:
        old = numpy_helper.to_array(inits[k])
    except Exception:  # noqa: BLE001 - already corrupted by an earlier mutation
        return "initializer cannot be decoded"
    fill = data.draw(st.sampled_from(["zeros", "huge", "nan", "inf", "tiny", "normal"]), label="fill")
    new = _filled(old.shape, old.dtype, fill, data.draw(st.integers(0, 2**16), label="seed"))
    inits[k].CopyFrom(numpy_helper.from_array(new, inits[k].name))
    return f"initializer {inits[k].name} filled with {fill}"


def initializer_array(model, data):
    """A new shape and/or dtype (empty dims, rank 0, ints, bools, complex)."""
    inits = model.graph.initializer
    if not inits:
        return "no initializer"
    k = data.draw(st.integers(0, len(inits) - 1), label="initializer")
    new = _array(data)
    inits[k].CopyFrom(numpy_helper.from_array(new, inits[k].name))
    return f"initializer {inits[k].name} := {new.dtype} {new.shape}"


def initializer_bytes(model, data):
    """Raw bytes that do not fill the dims, or an unknown data type code."""
    inits = model.graph.initializer
    if not inits:
        return "no initializer"
    tensor = inits[data.draw(st.integers(0, len(inits) - 1), label="initializer")]
    how = data.draw(st.sampled_from(["short", "long", "dtype", "dims"]), label="how")
    if how == "dtype":
        tensor.data_type = data.draw(st.sampled_from([0, 8, 999, TensorProto.FLOAT8E4M3FN]), label="code")
    elif how == "dims":
        tensor.dims[:] = data.draw(st.lists(st.integers(-2, 6), max_size=4), label="dims")
    else:
        try:
            raw = numpy_helper.to_array(tensor).tobytes()
        except Exception:  # noqa: BLE001 - already corrupted by an earlier mutation
            raw = tensor.raw_data or b"\x00" * 8
        tensor.ClearField("float_data")
        tensor.ClearField("double_data")
        tensor.ClearField("int64_data")
        tensor.raw_data = raw[: len(raw) // 2] if how == "short" else raw + b"\x00" * 7
    return f"initializer {tensor.name} bytes: {how}"


def drop_initializer(model, data):
    inits = model.graph.initializer
    if not inits:
        return "no initializer"
    k = data.draw(st.integers(0, len(inits) - 1), label="initializer")
    name = inits[k].name
    del inits[k]
    return f"dropped initializer {name}"


def _value_info(model, data):
    which = data.draw(st.sampled_from(["input", "output"]), label="which")
    values = model.graph.input if which == "input" else model.graph.output
    return (values[data.draw(st.integers(0, len(values) - 1), label=which)] if values else None), which


def io_shape(model, data):
    value, which = _value_info(model, data)
    if value is None:
        return "no value"
    dims = data.draw(st.lists(st.one_of(st.integers(-1, 9), st.sampled_from(["N", "M", "", None])), max_size=5),
                     label="dims")
    if data.draw(st.booleans(), label="drop shape"):
        value.type.tensor_type.ClearField("shape")
        return f"{which} {value.name}: no shape"
    shape = value.type.tensor_type.shape
    shape.ClearField("dim")
    for d in dims:
        dim = shape.dim.add()
        if isinstance(d, int):
            dim.dim_value = d
        elif d is not None:
            dim.dim_param = d
    return f"{which} {value.name} shape := {dims}"


def io_dtype(model, data):
    value, which = _value_info(model, data)
    if value is None:
        return "no value"
    elem = data.draw(st.sampled_from(ELEM_TYPES), label="elem type")
    value.type.tensor_type.elem_type = elem
    return f"{which} {value.name} elem type := {elem}"


def io_name(model, data):
    value, which = _value_info(model, data)
    if value is None:
        return "no value"
    name = data.draw(st.sampled_from(TENSOR_NAMES), label="name")
    old, value.name = value.name, name
    return f"{which} {old} renamed {name!r}"


def io_add_remove(model, data):
    how = data.draw(st.sampled_from(["extra input", "extra output", "duplicate output", "no outputs", "no inputs",
                                     "sequence output"]), label="how")
    graph = model.graph
    if how == "extra input":
        graph.input.append(helper.make_tensor_value_info(data.draw(st.sampled_from(TENSOR_NAMES), label="name"),
                                                         TensorProto.FLOAT, [1, 2]))
    elif how == "extra output":
        graph.output.append(helper.make_tensor_value_info(data.draw(st.sampled_from(TENSOR_NAMES), label="name"),
                                                          TensorProto.FLOAT, None))
    elif how == "duplicate output" and graph.output:
        graph.output.append(graph.output[0])
    elif how == "no outputs":
        del graph.output[:]
    elif how == "no inputs":
        del graph.input[:]
    elif how == "sequence output" and graph.output:
        seq = helper.make_tensor_sequence_value_info(graph.output[0].name, TensorProto.FLOAT, None)
        graph.output[0].CopyFrom(seq)
    return how


def drop_node(model, data):
    nodes = model.graph.node
    if not nodes:
        return "no node"
    k = data.draw(st.integers(0, len(nodes) - 1), label="node")
    name = nodes[k].name
    del nodes[k]
    return f"dropped node {name}"


def rename_tensor(model, data):
    """A node input or output renamed: to a dangling name, to nothing, or to another tensor (maybe a later one)."""
    node = _node(model, data)
    if node is None:
        return "no node"
    produced = [t for n in model.graph.node for t in n.output]
    names = TENSOR_NAMES + produced
    side = data.draw(st.sampled_from(["input", "output"]), label="side")
    ports = node.input if side == "input" else node.output
    if not ports:
        return "no port"
    port = data.draw(st.integers(0, len(ports) - 1), label="port")
    new = data.draw(st.sampled_from(names), label="name")
    old, ports[port] = ports[port], new
    return f"{node.name} {side} {port}: {old!r} -> {new!r}"


def add_ports(model, data):
    node = _node(model, data)
    if node is None:
        return "no node"
    extra = data.draw(st.lists(st.sampled_from(TENSOR_NAMES), min_size=1, max_size=3), label="extra")
    side = data.draw(st.sampled_from(["input", "output"]), label="side")
    (node.input if side == "input" else node.output).extend(extra)
    return f"{node.name} extra {side}s {extra}"


def node_names(model, data):
    how = data.draw(st.sampled_from(["all same", "two same", "all empty", "weird"]), label="how")
    nodes = model.graph.node
    for k, node in enumerate(nodes):
        if how == "all same" or (how == "two same" and k < 2):
            node.name = "dup"
        elif how == "all empty":
            node.name = ""
        elif how == "weird":
            node.name = ["a/b/c", "Relu_1", "input:x", "x", "\u00fcber", "a b"][k % 6]
    return f"node names: {how}"


def duplicate_node(model, data):
    node = _node(model, data)
    if node is None:
        return "no node"
    model.graph.node.append(node)
    return f"duplicated node {node.name}"


def cycle(model, data):
    """An earlier node reads a later node's output (or a node its own)."""
    nodes = model.graph.node
    if not nodes:
        return "no node"
    j = data.draw(st.integers(0, len(nodes) - 1), label="late")
    i = data.draw(st.integers(0, j), label="early")
    if not nodes[i].input or not nodes[j].output:
        return "no port"
    port = data.draw(st.integers(0, len(nodes[i].input) - 1), label="port")
    nodes[i].input[port] = nodes[j].output[0]
    return f"{nodes[i].name} input {port} := {nodes[j].name}'s output"


def op_type(model, data):
    node = _node(model, data)
    if node is None:
        return "no node"
    old = node.op_type
    node.op_type = data.draw(st.sampled_from(OP_TYPES), label="op type")
    if data.draw(st.booleans(), label="change domain"):
        node.domain = data.draw(st.sampled_from(DOMAINS), label="domain")
        if node.domain not in ("", "ai.onnx") and data.draw(st.booleans(), label="import domain"):
            model.opset_import.append(helper.make_opsetid(node.domain, data.draw(st.integers(1, 3), label="v")))
    return f"{node.name}: {old} -> {node.domain}::{node.op_type}"


def reorder(model, data):
    nodes = list(model.graph.node)
    order = data.draw(st.permutations(range(len(nodes))), label="order")
    del model.graph.node[:]
    model.graph.node.extend(nodes[k] for k in order)
    return f"node order {order}"


def opset(model, data):
    how = data.draw(st.sampled_from(["version", "version", "none", "twice", "ir"]), label="how")
    if how == "version":
        version = data.draw(st.integers(7, 21) | st.sampled_from([1, 5, 6, 22, 23, 24, 99]), label="opset")
        del model.opset_import[:]
        model.opset_import.append(helper.make_opsetid(data.draw(st.sampled_from(["", "ai.onnx"]), label="d"),
                                                      version))
        return f"opset {version}"
    if how == "none":
        del model.opset_import[:]
    elif how == "twice":
        model.opset_import.append(helper.make_opsetid("", data.draw(st.integers(7, 21), label="opset")))
    else:
        model.ir_version = data.draw(st.sampled_from([0, 3, 4, 7, 9, 10, 11, 99]), label="ir")
    return how


def constant_input(model, data):
    """A node input replaced by the output of a new Constant node holding any array."""
    node = _node(model, data)
    if node is None or not node.input:
        return "no port"
    port = data.draw(st.integers(0, len(node.input) - 1), label="port")
    value = _array(data)
    name = f"const_{port}_{node.name}"
    model.graph.node.insert(0, helper.make_node("Constant", [], [name], name=name,
                                                value=numpy_helper.from_array(value)))
    node.input[port] = name
    return f"{node.name} input {port} := Constant {value.dtype} {value.shape}"


MUTATIONS = {f.__name__: f for f in (
    set_attribute, remove_attribute, initializer_values, initializer_array, initializer_bytes, drop_initializer,
    io_shape, io_dtype, io_name, io_add_remove, drop_node, rename_tensor, add_ports, node_names, duplicate_node,
    cycle, op_type, reorder, opset, constant_input)}
