"""Tiny valid ONNX graphs built with onnx.helper: the bases the mutation fuzzer starts from.

Each base covers a family of ops and attributes: a dense MLP (Gemm, MatMul+Add), conv + pooling (Conv, LeakyRelu,
MaxPool, AveragePool, Flatten), a residual block (BatchNormalization, Add, GlobalAveragePool), a softmax head
(Softmax over logits), a reshape mix (Transpose, Reshape, Concat, Pad, Clip, Sigmoid) and a grouped, strided,
dilated conv (Conv group/strides/dilations, GlobalMaxPool). ``BASES`` maps a name to ``(builder, sample shape)``;
a builder takes the element type of the graph's float tensors (``TensorProto.FLOAT`` or ``DOUBLE``).
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def _weights(elem: int, seed: int, **shapes) -> dict[str, np.ndarray]:
    dtype = helper.tensor_dtype_to_np_dtype(elem)
    rng = np.random.default_rng(seed)
    return {name: (rng.normal(size=shape) * 0.5).astype(dtype) for name, shape in shapes.items()}


def model(nodes, inputs, outputs, initializers, elem=TensorProto.FLOAT, opset=OPSET) -> onnx.ModelProto:
    """``inputs``/``outputs``: ``(name, shape)`` of ``elem`` tensors; ``initializers``: ``{name: array}``."""
    graph = helper.make_graph(
        nodes, "fuzz",
        [helper.make_tensor_value_info(n, elem, s) for n, s in inputs],
        [helper.make_tensor_value_info(n, elem, s) for n, s in outputs],
        [numpy_helper.from_array(np.asarray(v), name=k) for k, v in initializers.items()])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="fuzz")
    proto.ir_version = 8
    return proto


def mlp(elem=TensorProto.FLOAT) -> onnx.ModelProto:
    """(N, 6) -> Gemm -> Relu -> MatMul + Add (fused into a dense layer) -> (N, 5)."""
    init = _weights(elem, 1, w1=(8, 6), b1=(8,), w2=(8, 5), b2=(5,))
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], name="fc1", transB=1, alpha=1.0, beta=1.0),
        helper.make_node("Relu", ["h"], ["a"], name="relu1"),
        helper.make_node("MatMul", ["a", "w2"], ["m"], name="fc2"),
        helper.make_node("Add", ["m", "b2"], ["y"], name="fc2_bias"),
    ]
    return model(nodes, [("x", ["N", 6])], [("y", ["N", 5])], init, elem)


def conv_pool(elem=TensorProto.FLOAT) -> onnx.ModelProto:
    """(N, 2, 6, 6) -> Conv -> LeakyRelu -> MaxPool -> AveragePool -> Flatten -> Gemm -> (N, 4)."""
    init = _weights(elem, 2, wc=(3, 2, 3, 3), bc=(3,), wf=(4, 3), bf=(4,))
    nodes = [
        helper.make_node("Conv", ["x", "wc", "bc"], ["c"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                         strides=[1, 1]),
        helper.make_node("LeakyRelu", ["c"], ["a"], name="act", alpha=0.1),
        helper.make_node("MaxPool", ["a"], ["p"], name="maxpool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("AveragePool", ["p"], ["q"], name="avgpool", kernel_shape=[3, 3], strides=[1, 1],
                         count_include_pad=0),
        helper.make_node("Flatten", ["q"], ["f"], name="flatten", axis=1),
        helper.make_node("Gemm", ["f", "wf", "bf"], ["y"], name="fc", transB=1),
    ]
    return model(nodes, [("x", ["N", 2, 6, 6])], [("y", ["N", 4])], init, elem)


def residual(elem=TensorProto.FLOAT) -> onnx.ModelProto:
    """(N, 2, 5, 5) -> Conv -> BatchNorm -> Relu -> Conv -> Add (skip) -> Relu -> GAP -> Flatten -> Gemm -> (N, 3)."""
    init = _weights(elem, 3, w1=(3, 2, 3, 3), w2=(3, 3, 3, 3), b2=(3,), wf=(3, 3), bf=(3,),
                    gamma=(3,), beta=(3,), mean=(3,))
    init["var"] = np.abs(init["gamma"]) + 0.5
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", "gamma", "beta", "mean", "var"], ["n1"], name="bn",
                         epsilon=1e-5),
        helper.make_node("Relu", ["n1"], ["a1"], name="relu1"),
        helper.make_node("Conv", ["a1", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["a1", "c2"], ["s"], name="skip"),
        helper.make_node("Relu", ["s"], ["a2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["a2"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "wf", "bf"], ["y"], name="fc", transB=1),
    ]
    return model(nodes, [("x", ["N", 2, 5, 5])], [("y", ["N", 3])], init, elem)


def softmax_head(elem=TensorProto.FLOAT) -> onnx.ModelProto:
    """(N, 6) -> Gemm -> Tanh -> Gemm -> Softmax -> (N, 4) probabilities (the logits are explained)."""
    init = _weights(elem, 4, w1=(6, 5), b1=(5,), w2=(5, 4), b2=(4,))
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], name="fc1"),
        helper.make_node("Tanh", ["h"], ["a"], name="tanh"),
        helper.make_node("Gemm", ["a", "w2", "b2"], ["z"], name="fc2"),
        helper.make_node("Softmax", ["z"], ["y"], name="softmax", axis=1),
    ]
    return model(nodes, [("x", ["N", 6])], [("y", ["N", 4])], init, elem)


def reshape_mix(elem=TensorProto.FLOAT) -> onnx.ModelProto:
    """(N, 2, 3, 4) -> Transpose -> Pad -> Reshape -> Concat with Clip of itself -> Gemm -> Sigmoid -> (N, 3)."""
    init = _weights(elem, 5, wf=(3, 60), bf=(3,))
    init["shape"] = np.array([-1, 30], dtype=np.int64)
    init["pads"] = np.array([0, 0, 0, 0, 0, 0, 1, 0], dtype=np.int64)
    nodes = [
        helper.make_node("Transpose", ["x"], ["t"], name="transpose", perm=[0, 1, 3, 2]),
        helper.make_node("Pad", ["t", "pads"], ["p"], name="pad", mode="constant"),
        helper.make_node("Reshape", ["p", "shape"], ["r"], name="reshape"),
        helper.make_node("Clip", ["r"], ["k"], name="clip"),
        helper.make_node("Concat", ["r", "k"], ["cat"], name="concat", axis=1),
        helper.make_node("Gemm", ["cat", "wf", "bf"], ["z"], name="fc", transB=1),
        helper.make_node("Sigmoid", ["z"], ["y"], name="sigmoid"),
    ]
    return model(nodes, [("x", ["N", 2, 3, 4])], [("y", ["N", 3])], init, elem)


def grouped_conv(elem=TensorProto.FLOAT) -> onnx.ModelProto:
    """(N, 4, 7, 7) -> Conv (group 2, stride 2, dilation 1) -> Relu -> Conv 1x1 -> GlobalMaxPool -> Flatten ->
    (N, 3)."""
    init = _weights(elem, 6, w1=(4, 2, 3, 3), b1=(4,), w2=(3, 4, 1, 1))
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="gconv", group=2, strides=[2, 2], dilations=[1, 1],
                         pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["a1"], name="relu"),
        helper.make_node("Conv", ["a1", "w2"], ["c2"], name="pointwise"),
        helper.make_node("GlobalMaxPool", ["c2"], ["g"], name="gmp"),
        helper.make_node("Flatten", ["g"], ["y"], name="flatten"),
    ]
    return model(nodes, [("x", ["N", 4, 7, 7])], [("y", ["N", 3])], init, elem)


#: name -> (builder, shape of one sample without the batch axis)
BASES = {
    "mlp": (mlp, (6,)),
    "conv_pool": (conv_pool, (2, 6, 6)),
    "residual": (residual, (2, 5, 5)),
    "softmax_head": (softmax_head, (6,)),
    "reshape_mix": (reshape_mix, (2, 3, 4)),
    "grouped_conv": (grouped_conv, (4, 7, 7)),
}
