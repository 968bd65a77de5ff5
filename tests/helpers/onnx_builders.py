"""Small ONNX models built with onnx.helper for engine tests (no training framework needed)."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def make_model(nodes, inputs, outputs, initializers=(), opset=17, extra_opsets=()) -> onnx.ModelProto:
    """``inputs``/``outputs``: lists of ``(name, shape)`` (float32); ``initializers``: ``{name: array}`` or pairs."""
    items = initializers.items() if isinstance(initializers, dict) else initializers
    graph = helper.make_graph(
        nodes, "test",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs],
        [numpy_helper.from_array(np.asarray(v), name=k) for k, v in items])
    opsets = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, v) for d, v in extra_opsets]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    return model


def rng_weights(seed=0):
    return np.random.default_rng(seed)


def relu_cnn(seed=0, bias=True, pool="MaxPool", classes=5) -> onnx.ModelProto:
    """Conv-Relu-Pool-Conv-Relu-GlobalAveragePool-Flatten-Gemm on (N, 2, 8, 8)."""
    r = rng_weights(seed)
    init = {
        "w1": r.normal(size=(4, 2, 3, 3)).astype(np.float32), "w2": r.normal(size=(6, 4, 3, 3)).astype(np.float32),
        "w3": r.normal(size=(classes, 6)).astype(np.float32),
    }
    if bias:
        init.update(b1=r.normal(size=4).astype(np.float32) * 0.1, b2=r.normal(size=6).astype(np.float32) * 0.1,
                    b3=r.normal(size=classes).astype(np.float32) * 0.1)
    b = (lambda name: [name]) if bias else (lambda name: [])
    pool_node = (helper.make_node("MaxPool", ["a1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]) if pool == "MaxPool"
                 else helper.make_node("AveragePool", ["a1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]))
    nodes = [
        helper.make_node("Conv", ["x", "w1"] + b("b1"), ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["a1"]),
        pool_node,
        helper.make_node("Conv", ["p1", "w2"] + b("b2"), ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["a2"]),
        helper.make_node("GlobalAveragePool", ["a2"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "w3"] + b("b3"), ["y"], transB=1),
    ]
    return make_model(nodes, [("x", ["N", 2, 8, 8])], [("y", ["N", classes])], init)


def residual_net(seed=0, bias=True) -> onnx.ModelProto:
    """Conv-Relu, then a residual block ``relu(a + conv(relu(conv(a))))``, GAP, Gemm on (N, 3, 6, 6)."""
    r = rng_weights(seed)
    init = {"w1": r.normal(size=(4, 3, 3, 3)), "w2": r.normal(size=(4, 4, 3, 3)) * 0.5,
            "w3": r.normal(size=(4, 4, 1, 1)) * 0.5, "w4": r.normal(size=(3, 4))}
    if bias:
        init.update(b1=r.normal(size=4) * 0.1, b2=r.normal(size=4) * 0.1, b3=r.normal(size=4) * 0.1,
                    b4=r.normal(size=3) * 0.1)
    init = {k: v.astype(np.float32) for k, v in init.items()}
    b = (lambda name: [name]) if bias else (lambda name: [])
    nodes = [
        helper.make_node("Conv", ["x", "w1"] + b("b1"), ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["a"]),
        helper.make_node("Conv", ["a", "w2"] + b("b2"), ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["a2"]),
        helper.make_node("Conv", ["a2", "w3"] + b("b3"), ["c3"]),
        helper.make_node("Add", ["a", "c3"], ["s"]),
        helper.make_node("Relu", ["s"], ["a3"]),
        helper.make_node("GlobalAveragePool", ["a3"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "w4"] + b("b4"), ["y"], transB=1),
    ]
    return make_model(nodes, [("x", ["N", 3, 6, 6])], [("y", ["N", 3])], init)
