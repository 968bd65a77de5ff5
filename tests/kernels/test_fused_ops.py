"""Conformance of what deployed graphs contain: quantisation (QuantizeLinear, DequantizeLinear,
DynamicQuantizeLinear, the QOperator ops, MatMulNBits), onnxruntime's com.microsoft fused ops (decomposed by
``onnxlrp/engine/contrib.py``) and ai.onnx.ml's affine preprocessing.

Each single-node model runs through a float64 Session: its forward (the decomposition, recomputed by the kernels)
equals onnxruntime's, its VJP is the adjoint of that forward (central differences along a random direction), and a
float32 Session (onnxruntime's values, the canonizer's new tensors filled in by the kernels) gives onnxruntime's
output. An optimised BERT (``onnxruntime.transformers.optimizer``) is explained as its unoptimised export is, and a
scikit-learn pipeline's gradient is the analytic one.
"""
from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxlrp
from onnxlrp.engine.graph import Graph
from onnxlrp.engine.kernel import Call
from onnxlrp.engine.registry import resolve
from onnxlrp.engine.session import Session
from tests.helpers.compare import assert_close, assert_rel, within

#: kernels registered by kernels/op_quant.py, op_fused.py and op_ml.py, each covered by a test in this module
COVERED = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "onnxlrp::AttentionMask",
           "ai.onnx.ml::Scaler", "ai.onnx.ml::Imputer"}
MS = "com.microsoft"
#: ONNX's checker has no schema for onnxruntime's SimplifiedLayerNormalization (in the default domain)
pytestmark = pytest.mark.filterwarnings("ignore:the model fails the ONNX checker:onnxlrp.errors.ModelCheckWarning")


@dataclass
class Op:
    """A single-node model: ``data`` are graph inputs (the first is explained; the others are held fixed),
    ``consts`` initializers; ``inputs`` the node's input order (default: data, then consts)."""

    id: str
    op: str
    data: dict
    consts: dict = field(default_factory=dict)
    attrs: dict = field(default_factory=dict)
    domain: str = MS
    inputs: list | None = None
    outputs: tuple = ("y",)
    opset: int = 17


r = np.random.default_rng(0)
F = lambda *s: r.normal(size=s).astype(np.float32)  # noqa: E731
I32 = lambda *v: np.array(v, dtype=np.int32)  # noqa: E731
MASK = np.array([[1, 1, 1], [1, 1, 0]], dtype=np.int32)

ANGLES = np.arange(8)[:, None] * (1.0 / 10000 ** (np.arange(4) / 4))[None, :]
COS, SIN = np.cos(ANGLES).astype(np.float32), np.sin(ANGLES).astype(np.float32)
POS = np.array([[0, 1, 2], [3, 4, 5]], dtype=np.int64)

OPS = [
    Op("attention", "Attention", {"x": F(2, 3, 8)}, {"w": F(8, 24), "b": F(24)}, {"num_heads": 2}),
    Op("attention_lengths", "Attention", {"x": F(2, 3, 8), "m": I32(3, 2)}, {"w": F(8, 24), "b": F(24)},
       {"num_heads": 2}, inputs=["x", "w", "b", "m"]),
    Op("attention_raw_mask", "Attention", {"x": F(2, 3, 8), "m": MASK}, {"w": F(8, 24), "b": F(24)},
       {"num_heads": 2, "mask_filter_value": -1e4}, inputs=["x", "w", "b", "m"]),
    Op("attention_causal_scale", "Attention", {"x": F(2, 3, 8)}, {"w": F(8, 24), "b": F(24)},
       {"num_heads": 2, "unidirectional": 1, "scale": 0.3}),
    Op("attention_qkv_sizes_bias", "Attention", {"x": F(2, 3, 8), "ab": F(1, 2, 3, 3)},
       {"w": F(8, 20), "b": F(20)}, {"num_heads": 2, "qkv_hidden_sizes": [6, 6, 8]},
       inputs=["x", "w", "b", "", "", "ab"]),
    Op("mha_self", "MultiHeadAttention", {"x": F(2, 3, 8)}, {"b": F(24)}, {"num_heads": 2},
       inputs=["x", "x", "x", "b"]),
    Op("mha_cross_padding", "MultiHeadAttention", {"q": F(2, 3, 8), "kv": F(2, 4, 8),
                                                    "m": np.array([[1, 1, 1, 0], [1, 1, 1, 1]], np.int32)},
       {}, {"num_heads": 4}, inputs=["q", "kv", "kv", "", "m"]),
    Op("rotary_3d", "RotaryEmbedding", {"x": F(2, 3, 16), "pos": POS}, {"cos": COS, "sin": SIN}, {"num_heads": 2}),
    Op("rotary_4d_interleaved", "RotaryEmbedding", {"x": F(2, 2, 3, 8), "pos": POS}, {"cos": COS, "sin": SIN},
       {"interleaved": 1}),
    Op("rotary_partial", "RotaryEmbedding", {"x": F(2, 3, 24), "pos": POS}, {"cos": COS[:, :2], "sin": SIN[:, :2]},
       {"num_heads": 2, "rotary_embedding_dim": 4}),
    Op("rotary_onnx23", "RotaryEmbedding", {"x": F(2, 2, 3, 8), "pos": POS}, {"cos": COS, "sin": SIN}, {},
       domain="", inputs=["x", "cos", "sin", "pos"], opset=23),
    Op("skip_layernorm", "SkipLayerNormalization", {"x": F(2, 3, 8), "s": F(2, 3, 8)},
       {"g": F(8), "be": F(8), "bias": F(8)}, {"epsilon": 1e-5}, outputs=("y", "", "", "sum")),
    Op("skip_simplified_layernorm", "SkipSimplifiedLayerNormalization", {"x": F(2, 3, 8), "s": F(2, 3, 8)},
       {"g": F(8)}, {"epsilon": 1e-5}),
    Op("simplified_layernorm", "SimplifiedLayerNormalization", {"x": F(2, 3, 8)}, {"g": F(8)},
       {"epsilon": 1e-5, "axis": -1}, domain=""),
    Op("gelu", "Gelu", {"x": F(2, 7)}),
    Op("bias_gelu", "BiasGelu", {"x": F(2, 3, 7)}, {"b": F(7)}),
    Op("fast_gelu", "FastGelu", {"x": F(2, 3, 7)}, {"b": F(7)}),
    Op("fast_gelu_no_bias", "FastGelu", {"x": F(2, 7)}),
    Op("quick_gelu", "QuickGelu", {"x": F(2, 7)}, attrs={"alpha": 1.5}),
    Op("fused_conv_leaky", "FusedConv", {"x": F(2, 2, 5, 5)}, {"w": F(3, 2, 3, 3), "b": F(3)},
       {"activation": "LeakyRelu", "activation_params": [0.1], "pads": [1, 1, 1, 1]}),
    Op("fused_conv_relu", "FusedConv", {"x": F(2, 2, 5, 5)}, {"w": F(3, 2, 3, 3)}, {"activation": "Relu"}),
    Op("fused_gemm_relu", "FusedGemm", {"x": F(3, 4)}, {"w": F(5, 4), "b": F(5)},
       {"activation": "Relu", "transB": 1, "alpha": 0.5}),
    Op("fused_matmul", "FusedMatMul", {"x": F(2, 3, 4)}, {"w": F(5, 4)}, {"transB": 1, "alpha": 0.5}),
    Op("fused_matmul_trans_a", "FusedMatMul", {"x": F(2, 4, 3)}, {"w": F(4, 5)}, {"transA": 1}),
]


def build(case: Op, shapes: bool = True) -> onnx.ModelProto:
    names = case.inputs or list(case.data) + list(case.consts)
    node = helper.make_node(case.op, names, list(case.outputs), domain=case.domain, **case.attrs)
    kinds = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.int32): TensorProto.INT32,
             np.dtype(np.int64): TensorProto.INT64}
    graph = helper.make_graph(
        [node], case.id, [helper.make_tensor_value_info(k, kinds[v.dtype], v.shape) for k, v in case.data.items()],
        [helper.make_tensor_value_info(o, _label_type(case) if o == "label" else TensorProto.FLOAT, None)
         for o in case.outputs if o],
        [numpy_helper.from_array(v, k) for k, v in case.consts.items()])
    opsets = [helper.make_opsetid("", case.opset), helper.make_opsetid(MS, 1), helper.make_opsetid("ai.onnx.ml", 3)]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    if not shapes:
        return model
    # the outputs' shapes (the checker wants them; shape inference does not know com.microsoft ops)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for info, value in zip(model.graph.output, session.run(None, case.data)):
        info.CopyFrom(helper.make_tensor_value_info(info.name, info.type.tensor_type.elem_type, value.shape))
    return model


def _label_type(case: Op):
    return TensorProto.STRING if "classlabels_strings" in case.attrs else TensorProto.INT64


def check_session(model, data: dict, output: str, expected, rtol=1e-5, atol=1e-5, fd=True):
    """The float64 forward equals ``expected`` (onnxruntime's), the VJP is the adjoint of the float64 forward, and
    float32 (onnxruntime + filled-in tensors) gives ``expected`` too. Returns the float64 session."""
    name = next(iter(data))
    x, feeds = data[name].astype(np.float64), {k: v for k, v in data.items() if k != name}
    session = Session(model, input_name=name, output_name=output, dtype="float64")
    assert all(n.domain in ("", "onnxlrp", "ai.onnx.ml") for n in session.path.nodes), session.path.nodes
    values, out = session.forward(x, feeds)
    assert_close(out, expected, rtol=rtol, atol=atol, label="float64 forward vs onnxruntime")
    if fd:
        g = np.random.default_rng(1)
        seed, v, h = g.normal(size=out.shape), g.normal(size=x.shape), 1e-6
        relevance, _ = session.propagate(values, {}, seed)
        plus = session.forward(x + h * v, feeds)[1]
        minus = session.forward(x - h * v, feeds)[1]
        lhs, rhs = float(np.sum(seed * (plus - minus))) / (2 * h), float(np.sum(relevance * v))
        assert within(abs(lhs - rhs) / max(abs(rhs), 1e-12), 3e-8, "VJP vs central difference")
    s32 = Session(model, input_name=name, output_name=output, dtype="float32")
    out32 = s32.forward(x.astype(np.float32), feeds)[1]
    assert_close(out32, expected, rtol=rtol, atol=atol, label="float32 forward vs onnxruntime")
    return session


@pytest.mark.parametrize("case", OPS, ids=lambda c: c.id)
def test_com_microsoft_op_is_decomposed_and_conforms(case):
    model = build(case)
    expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        [case.outputs[0]], case.data)[0]
    check_session(model, case.data, case.outputs[0], expected)


@pytest.mark.parametrize("op", ["BiasAdd", "GemmFastGelu"])
def test_cuda_only_fused_ops_equal_their_formula(op):
    """onnxruntime runs these on CUDA only; the float64 pass needs no onnxruntime run, so check it against the
    formula (``x + bias + skip``; ``gelu_tanh(x @ W + b)``)."""
    x, b, w = F(2, 3, 4), F(4), F(4, 4)
    skip = F(2, 3, 4)
    case = (Op("bias_add", "BiasAdd", {"x": x}, {"b": b, "s": skip}) if op == "BiasAdd"
            else Op("gemm_fast_gelu", "GemmFastGelu", {"x": x}, {"w": w, "b": b}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no output shape: the checker's finding is a warning
        session = Session(build(case, shapes=False), dtype="float64", check=False)
    out = session.forward(x.astype(np.float64))[1]
    if op == "BiasAdd":
        expected = x + b + skip
    else:
        z = x.astype(np.float64) @ w + b
        expected = 0.5 * z * (1 + np.tanh(math.sqrt(2 / math.pi) * (z + 0.044715 * z ** 3)))
    assert_close(out, expected, rtol=1e-6, atol=1e-6)


def test_attention_mask_kernel_formats():
    """onnxlrp::AttentionMask: lengths (B), end/start (2B), raw (B, L) and (B, S, L) masks, causal; an additive
    constant (VJP the identity)."""
    from onnxlrp.engine.graph import Node
    scores = np.random.default_rng(2).normal(size=(2, 1, 3, 4))
    node = Node("m", "AttentionMask", "onnxlrp", 1, ("s", "mask"), ("y",), {"causal": 0, "mask_filter_value": -9.0},
                0)
    kernel = resolve(node)
    masks = {"lengths": (np.array([2, 4]), [[1, 1, 0, 0], [1, 1, 1, 1]]),
             "end_start": (np.array([3, 4, 1, 0]), [[0, 1, 1, 0], [1, 1, 1, 1]]),
             "raw": (np.array([[1, 0, 1, 1], [1, 1, 1, 0]]), [[1, 0, 1, 1], [1, 1, 1, 0]])}
    for mask, keep in masks.values():
        (y,) = kernel.forward(Call(node, (scores, mask), (), (True, False), np))
        np.testing.assert_allclose(y - scores, np.broadcast_to(
            np.where(np.array(keep)[:, None, None, :], 0.0, -9.0), y.shape))
    raw3 = np.random.default_rng(3).integers(0, 2, size=(2, 3, 4))
    (y,) = kernel.forward(Call(node, (scores, raw3), (), (True, False), np))
    np.testing.assert_allclose(y - scores, np.where(raw3[:, None] > 0, 0.0, -9.0))
    causal = Node("c", "AttentionMask", "onnxlrp", 1, ("s", ""), ("y",), {"causal": 1, "mask_filter_value": -9.0}, 0)
    (y,) = resolve(causal).forward(Call(causal, (scores, None), (), (True, False), np))
    np.testing.assert_allclose(y - scores, np.broadcast_to(
        np.where(np.tril(np.ones((3, 4)), 1)[None, None] > 0, 0.0, -9.0), y.shape))
    g = np.ones_like(scores)
    assert resolve(causal).vjp(Call(causal, (scores, None), (), (True, False), np), (g,))[0] is g


# ---------------------------------------------------------------------------------------------- quantisation
@dataclass
class Q:
    id: str
    op: str
    x: np.ndarray
    consts: dict
    attrs: dict = field(default_factory=dict)
    opset: int = 13


def _u8(*s, lo=0, hi=256):
    return np.random.default_rng(4).integers(lo, hi, size=s).astype(np.uint8)


def _i8(*s):
    return np.random.default_rng(5).integers(-128, 128, size=s).astype(np.int8)


QUANT = [
    Q("dq_per_tensor_opset10", "DequantizeLinear", _u8(2, 3, 4), {"s": np.float32(0.05), "z": np.uint8(128)},
      opset=10),
    Q("dq_per_axis_int8", "DequantizeLinear", _i8(2, 3, 4), {"s": np.abs(F(3)) + 0.01, "z": np.zeros(3, np.int8)}),
    Q("dq_axis2_no_zp", "DequantizeLinear", _i8(2, 3, 4), {"s": np.abs(F(4)) + 0.01}, {"axis": 2}, opset=19),
    Q("dq_blocked", "DequantizeLinear", _i8(2, 6), {"s": np.abs(F(2, 3)) + 0.01, "z": np.zeros((2, 3), np.int8)},
      {"axis": 1, "block_size": 2}, opset=21),
    Q("q_per_tensor_uint8", "QuantizeLinear", F(2, 3, 4) * 3, {"s": np.float32(0.02), "z": np.uint8(120)}),
    Q("q_per_axis_int8", "QuantizeLinear", F(2, 3, 4), {"s": np.abs(F(3)) * 0.01 + 0.005, "z": np.zeros(3, np.int8)},
      opset=13),
    Q("q_relu_range_no_zp", "QuantizeLinear", F(2, 5), {"s": np.float32(0.01)}, opset=10),
]


def _quant_model(case: Q):
    names = ["x"] + list(case.consts)
    node = helper.make_node(case.op, names, ["y"], **case.attrs)
    kind = helper.np_dtype_to_tensor_dtype(case.x.dtype)
    graph = helper.make_graph([node], case.id, [helper.make_tensor_value_info("x", kind, case.x.shape)],
                              [helper.make_tensor_value_info("y", TensorProto.UNDEFINED, None)],
                              [numpy_helper.from_array(np.asarray(v), k) for k, v in case.consts.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", case.opset)])
    model.ir_version = 10
    return onnx.shape_inference.infer_shapes(model)


@pytest.mark.parametrize("case", QUANT, ids=lambda c: c.id)
def test_quantize_dequantize_forward_equals_onnxruntime_and_vjp_is_straight_through(case):
    model = _quant_model(case)
    expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"x": case.x})[0]
    node = Graph(model).nodes[0]
    kernel = resolve(node)
    consts = [np.asarray(v) for v in case.consts.values()]
    call = Call(node, (case.x,) + tuple(consts), (), (True,) + (False,) * len(consts), np)
    (y,) = kernel.forward(call)
    assert y.dtype == expected.dtype
    np.testing.assert_allclose(np.asarray(y, np.float64), np.asarray(expected, np.float64), rtol=1e-6, atol=1e-7)
    g = np.random.default_rng(6).normal(size=y.shape)
    (dx,) = kernel.vjp(call, (g,))[:1]
    scale = kernel.dequantize(call)[1] if case.op == "DequantizeLinear" else None
    if case.op == "DequantizeLinear":  # linear in q: the adjoint of the forward on float q (in float64)
        v = np.random.default_rng(7).normal(size=case.x.shape)
        wide = tuple(c.astype(np.float64) if c.dtype.kind == "f" else c for c in consts)
        lin = Call(node, (v,) + wide, (), call.varying, np)
        zero = Call(node, (np.zeros_like(v),) + wide, (), call.varying, np)
        jv = kernel.forward(lin)[0] - kernel.forward(zero)[0]
        assert float(np.sum(dx * v)) == pytest.approx(float(np.sum(g * jv)))
        np.testing.assert_allclose(dx, g * scale)
    else:  # straight through: g / s, and nothing below 0 where the range starts at 0 (a removed ReLU)
        s = np.asarray(consts[0], np.float64).reshape((-1, 1) if np.ndim(consts[0]) else ())
        zp = consts[1] if len(consts) > 1 else np.uint8(0)
        floor = np.asarray(zp == np.iinfo(zp.dtype).min).reshape((-1, 1) if np.ndim(zp) else ())
        np.testing.assert_allclose(dx, g / s * ~(floor & (case.x < 0)))


def test_dynamic_quantize_linear_equals_onnxruntime():
    x = F(3, 5) * 2
    graph = helper.make_graph([helper.make_node("DynamicQuantizeLinear", ["x"], ["y", "s", "z"])], "dql",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
                              [helper.make_tensor_value_info("y", TensorProto.UINT8, x.shape),
                               helper.make_tensor_value_info("s", TensorProto.FLOAT, ()),
                               helper.make_tensor_value_info("z", TensorProto.UINT8, ())])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    model.ir_version = 8
    expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    node = Graph(model).nodes[0]
    call = Call(node, (x,), (), (True,), np)
    got = resolve(node).forward(call)
    np.testing.assert_array_equal(got[0], expected[0])
    assert float(got[1]) == pytest.approx(float(expected[1]), rel=1e-6) and int(got[2]) == int(expected[2])
    g = np.ones_like(x)
    np.testing.assert_allclose(resolve(node).vjp(call, (g, None, None))[0], g / float(got[1]))


def _torch_ops_model():
    """Conv, LeakyReLU, Sigmoid, a product, AveragePool, Concat, GlobalAveragePool, a MatMul: quantised to QOperator
    format they become QLinearConv, QLinearLeakyRelu, QLinearSigmoid, QLinearMul, QLinearAveragePool,
    QLinearConcat, QLinearGlobalAveragePool, QLinearMatMul."""
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(3, 4, 3, padding=1)
            self.w = nn.Parameter(torch.randn(8, 5) * 0.3)

        def forward(self, x):
            a = nn.functional.leaky_relu(self.a(x), 0.1)
            b = torch.sigmoid(self.b(x))
            c = torch.cat([nn.functional.avg_pool2d(a, 2), nn.functional.avg_pool2d(b * a, 2)], 1)
            return nn.functional.adaptive_avg_pool2d(c, 1).flatten(1) @ self.w

    torch.manual_seed(0)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Net().eval(), (torch.randn(2, 3, 8, 8),), buffer, dynamo=False, opset_version=17,
                          input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "N"}})
    return buffer.getvalue()


def test_qoperator_ops_rewritten_to_the_dequantized_computation(tmp_path):
    from tests.engine.test_quantised import quantize

    model = quantize(_torch_ops_model(), tmp_path, "QOperator", shape=(1, 3, 8, 8))
    ops = {n.op_type for n in onnx.load_from_string(model).graph.node}
    assert {"QLinearConv", "QLinearLeakyRelu", "QLinearSigmoid", "QLinearMul", "QLinearAveragePool", "QLinearConcat",
            "QLinearGlobalAveragePool", "QLinearMatMul"} <= ops
    x = np.random.default_rng(5).normal(size=(3, 3, 8, 8)).astype(np.float32)
    expected = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    session = check_session(model, {"x": x}, "y", expected, rtol=0, atol=1e-6, fd=False)
    assert not any(n.op_type.startswith("QLinear") for n in session.path.nodes)
    for method in ("gradient", "epsilon_plus_flat"):
        assert np.isfinite(onnxlrp.Explainer(model).explain(x, method=method, target=0).relevance).all()


def test_matmul_nbits_is_a_matmul_on_dequantized_weights():
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    w, b = F(40, 16), F(16)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Add", ["m", "b"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 40])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 16])],
                              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    quantizer = MatMulNBitsQuantizer(model, block_size=16, is_symmetric=True)
    quantizer.process()
    packed = quantizer.model.model
    node = next(n for n in packed.graph.node if n.op_type == "MatMulNBits")
    # with explicit zero points too: 4-bit, two per byte, ceil(3 blocks / 2) bytes per column
    with_zp = onnx.ModelProto()
    with_zp.CopyFrom(packed)
    zp = np.random.default_rng(8).integers(0, 256, size=(16 * 2,)).astype(np.uint8)
    with_zp.graph.initializer.append(numpy_helper.from_array(zp, "zp"))
    zp_node = next(n for n in with_zp.graph.node if n.op_type == "MatMulNBits")
    zp_node.input.extend(["zp"])
    x = F(3, 40)
    for m in (packed, with_zp):
        expected = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None,
                                                                                                         {"x": x})[0]
        check_session(m, {"x": x}, "y", expected, rtol=1e-5, atol=1e-5)
    assert node.domain == MS


# ---------------------------------------------------------------------------------------------- ai.onnx.ml
ML_OPS = [
    Op("scaler", "Scaler", {"x": F(4, 3)}, attrs={"offset": [0.5, -1.0, 2.0], "scale": [2.0, 0.5, 1.5]},
       domain="ai.onnx.ml"),
    Op("scaler_broadcast", "Scaler", {"x": F(4, 3)}, attrs={"offset": [0.5], "scale": [3.0]}, domain="ai.onnx.ml"),
    Op("imputer", "Imputer", {"x": F(4, 3)}, attrs={"imputed_value_floats": [1.0, 2.0, 3.0],
                                                    "replaced_value_float": float("nan")}, domain="ai.onnx.ml"),
    Op("linear_regressor", "LinearRegressor", {"x": F(4, 3)},
       attrs={"coefficients": list(F(6).astype(float)), "intercepts": [0.1, -0.2], "targets": 2},
       domain="ai.onnx.ml"),
    Op("linear_classifier_softmax", "LinearClassifier", {"x": F(4, 3)},
       attrs={"coefficients": list(F(9).astype(float)), "intercepts": [0.1, -0.2, 0.3],
              "classlabels_ints": [0, 1, 2], "post_transform": "SOFTMAX"}, domain="ai.onnx.ml",
       outputs=("label", "y")),
    Op("linear_classifier_logistic", "LinearClassifier", {"x": F(4, 3)},
       attrs={"coefficients": list(F(6).astype(float)), "intercepts": [0.1, -0.1], "classlabels_ints": [0, 1],
              "post_transform": "LOGISTIC"}, domain="ai.onnx.ml", outputs=("label", "y")),
    Op("linear_classifier_none", "LinearClassifier", {"x": F(4, 3)},
       attrs={"coefficients": list(F(6).astype(float)), "intercepts": [0.1, -0.1],
              "classlabels_strings": ["a", "b"]}, domain="ai.onnx.ml", outputs=("label", "y")),
]


@pytest.mark.parametrize("case", ML_OPS, ids=lambda c: c.id)
def test_ml_op_conforms(case):
    model = build(case)
    output = case.outputs[-1]
    x = case.data["x"]
    expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run([output],
                                                                                                       {"x": x})[0]
    check_session(model, case.data, output, expected)


def test_imputer_passes_nothing_to_replaced_values():
    case = ML_OPS[2]
    x = case.data["x"].astype(np.float64)
    x[1, 2] = np.nan
    node = Graph(build(case)).nodes[0]
    call = Call(node, (x,), (), (True,), np)
    (y,) = resolve(node).forward(call)
    assert y[1, 2] == 3.0 and np.isfinite(y).all()
    g = np.ones_like(x)
    dx = resolve(node).vjp(call, (g,))[0]
    assert dx[1, 2] == 0 and dx.sum() == x.size - 1


def test_sklearn_pipeline_scaler_mlp_gradient_is_analytic():
    """StandardScaler → MLPClassifier exported by skl2onnx: ``gradient`` equals ``scale · W1 (1[z > 0] ⊙ W2[:, t])``
    and ``epsilon`` runs (the Scaler is an affine map, passed through)."""
    pytest.importorskip("skl2onnx")
    from skl2onnx import to_onnx
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from tests.helpers.exporter_models import sklearn_mlp

    _, X = sklearn_mlp()
    X = X[:300] * 16.0  # raw pixel values: the scaler matters
    y = np.random.default_rng(0).integers(0, 3, size=len(X))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe = make_pipeline(StandardScaler(), MLPClassifier((12,), max_iter=30, random_state=0)).fit(X, y)
        model = to_onnx(pipe, X[:1], options={id(pipe.steps[-1][1]): {"zipmap": False}})
    ex = onnxlrp.Explainer(model.SerializeToString(), output_name="probabilities", dtype="float64")
    assert "Scaler" in [op for _, op in ex.path_nodes()]
    x = X[:4].astype(np.float64)
    target = np.array([0, 1, 2, 1])
    res = ex.explain(x, method="gradient", target=target)
    scaler, mlp = pipe.steps[0][1], pipe.steps[1][1]
    (w1, w2), (b1, _) = [np.asarray(w, np.float64) for w in mlp.coefs_], mlp.intercepts_
    scale = 1.0 / np.asarray(scaler.scale_, np.float32).astype(np.float64)
    z = ((x - scaler.mean_.astype(np.float32)) * scale) @ w1.astype(np.float32) + b1.astype(np.float32)
    analytic = scale * (((z > 0) * w2[:, target].T) @ w1.T)
    assert_rel(res.relevance, analytic, 1e-6, "gradient vs analytic")
    eps = ex.explain(x, method="epsilon", target=target)
    assert np.isfinite(eps.relevance).all() and eps.relevance.shape == x.shape


# ---------------------------------------------------------------------------------------------- optimised BERT
def _bert(hidden_act: str):
    """A tiny random BERT classifier (2 layers, hidden 32) exported from ``inputs_embeds`` (and an attention mask),
    and the same file after ``onnxruntime.transformers.optimizer.optimize_model(model_type="bert")``."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from onnxruntime.transformers.optimizer import optimize_model

    config = transformers.BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                     vocab_size=50, max_position_embeddings=16, num_labels=3, hidden_act=hidden_act,
                                     attn_implementation="eager")
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(config).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # distinct LayerNorm parameters and biases (the optimiser merges identical initializers)
        for name, p in model.named_parameters():
            if "LayerNorm" in name or name.endswith("bias"):
                p.copy_(p + 0.1 * torch.randn(p.shape, generator=g))

    class Logits(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, embeds, mask):
            return self.model(inputs_embeds=embeds, attention_mask=mask).logits

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Logits(), (torch.randn(2, 6, 32), torch.ones(2, 6, dtype=torch.int64)), buffer,
                          dynamo=False, opset_version=17, input_names=["embeds", "attention_mask"],
                          output_names=["logits"], dynamic_axes={"embeds": {0: "N", 1: "S"},
                                                                 "attention_mask": {0: "N", 1: "S"}})
        plain = onnx.load_from_string(buffer.getvalue())
        optimised = optimize_model(plain, model_type="bert", num_heads=2, hidden_size=32).model
    return buffer.getvalue(), optimised.SerializeToString()


@pytest.mark.parametrize("hidden_act,fused", [("gelu_new", "FastGelu"), ("gelu", "BiasGelu")])
def test_optimised_bert_explains_as_its_export(hidden_act, fused):
    """Attention, SkipLayerNormalization and FastGelu/BiasGelu decomposed: AttnLRP and the gradient equal the
    unoptimised export's in float64 (measured 5e-11; with the erf GELU the export keeps a trailing ``Mul`` by 0.5
    that AttnLRP's ε touches, so ε = 1e-12 there), and float32 runs agree to float32 precision."""
    plain, optimised = _bert(hidden_act)
    ops = {n.op_type for n in onnx.load_from_string(optimised).graph.node}
    assert {"Attention", "SkipLayerNormalization", fused} <= ops
    rng = np.random.default_rng(0)
    embeds = rng.normal(size=(2, 6, 32))
    feeds = {"attention_mask": np.array([[1] * 6, [1] * 4 + [0] * 2], dtype=np.int64)}
    params = {"epsilon": 1e-12} if hidden_act == "gelu" else {}
    for dtype, tol, out_tol in (("float64", 1e-9, 3e-11), ("float32", 1e-5, 1e-5)):
        results = {}
        for name, model in (("plain", plain), ("optimised", optimised)):
            ex = onnxlrp.Explainer(model, input_name="embeds", dtype=dtype)
            for method in ("attnlrp", "gradient"):
                kwargs = params if method == "attnlrp" else {}
                results[name, method] = ex.explain(embeds, method=method, target=1, feeds=feeds, **kwargs)
        for method in ("attnlrp", "gradient"):
            a, b = results["plain", method], results["optimised", method]
            assert_rel(b.relevance, a.relevance, tol, f"{method} {dtype}: optimised vs plain")
            assert_close(b.output, a.output, rtol=out_tol, atol=out_tol)


def test_matmul_integer_without_rescaling_runs_on_shifted_integers():
    """A MatMulInteger read by something other than the Cast → Mul(scales) pattern: the product of the
    zero-point-shifted integers, held as floats, and its consumers read that."""
    w = np.random.default_rng(9).integers(-128, 128, size=(6, 4)).astype(np.int8)
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
             helper.make_node("MatMulInteger", ["q", "w", "z", "wz"], ["i"]),
             helper.make_node("Cast", ["i"], ["y"], to=TensorProto.FLOAT)]
    init = {"s": np.float32(0.05), "z": np.uint8(100), "w": w, "wz": np.int8(3)}
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
                              [numpy_helper.from_array(np.asarray(v), k) for k, v in init.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    x = F(3, 6)
    expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None,
                                                                                                       {"x": x})[0]
    session = check_session(model, {"x": x}, "y", expected, rtol=0, atol=1e-9, fd=False)
    assert "MatMulInteger" not in {n.op_type for n in session.path.nodes}
    res = onnxlrp.Explainer(model, dtype="float64").explain(x, method="gradient", target=2)
    np.testing.assert_allclose(res.relevance, np.broadcast_to((w[:, 2] - 3.0) / 0.05, x.shape))


def test_fused_op_that_cannot_be_decomposed_is_reported_by_name():
    """An Attention with rotary embedding inside (``do_rotary``) stays as it is: the preflight names the node."""
    from onnxlrp.errors import UnsupportedOpError

    case = Op("attention_rotary", "Attention", {"x": F(2, 3, 8)}, {"w": F(8, 24), "b": F(24)},
              {"num_heads": 2, "do_rotary": 1})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(UnsupportedOpError, match="Attention"):
            Session(build(case, shapes=False), check=False)
