"""Quantised and reduced-precision models explain as the float model does.

A small ResNet-style CNN (torch, opset 17) is quantised by onnxruntime (``quantize_static`` to QDQ and QOperator
format with a tiny calibration reader, ``quantize_dynamic``) and converted to float16 (onnxruntime's
``convert_float_to_float16``, the converter of onnxconverter-common) and to bfloat16 weights. The explanation of a
quantised model is the one of its dequantised computation (``onnxlrp/engine/dequantize.py``,
``kernels/op_quant.py``): its maps correlate with the float model's, per sample (Spearman rank correlation).

Measured (4 samples; the lowest per-sample Spearman over epsilon_plus_flat, gradient and integrated_gradients, in
float32 and float64): QDQ 0.990, QOperator 0.989, dynamic 0.989; float16 0.9998 (float16 inputs or float32 inputs
with Casts), bfloat16 weights 0.991 (epsilon_plus_flat is the lowest everywhere). The floors are about 0.1 below.
"""
from __future__ import annotations

import functools
import io
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxlrp
from tests.helpers.compare import assert_close, within

torch = pytest.importorskip("torch")

METHODS = {"epsilon_plus_flat": {}, "gradient": {}, "integrated_gradients": {"steps": 8}}
QUANTISED_FLOOR = 0.88
REDUCED_PRECISION_FLOOR = 0.9


@functools.cache
def resnet_cnn() -> bytes:
    """Conv-BN-ReLU stem, max-pool, one residual block (two Conv-BN, ReLU after the sum), global mean, Linear; the
    TorchScript exporter at opset 17 (BatchNorm folded by torch), dynamic batch."""
    from torch import nn

    class Block(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.c1, self.b1 = nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c)
            self.c2, self.b2 = nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c)

        def forward(self, x):
            return torch.relu(x + self.b2(self.c2(torch.relu(self.b1(self.c1(x))))))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem, self.bn, self.pool = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.MaxPool2d(2)
            self.block, self.fc = Block(8), nn.Linear(8, 5)

        def forward(self, x):
            return self.fc(self.block(self.pool(torch.relu(self.bn(self.stem(x))))).mean((2, 3)))

    torch.manual_seed(0)
    net = Net().eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.randn(2, 3, 16, 16),), buffer, dynamo=False, opset_version=17,
                          input_names=["x"], output_names=["logits"], dynamic_axes={"x": {0: "N"}, "logits": {0: "N"}})
    return buffer.getvalue()


def quantize(model: bytes, tmp_path, fmt: str, shape=(1, 3, 16, 16)) -> bytes:
    """onnxruntime's quantisation of ``model``: ``QDQ`` (per-channel weights) or ``QOperator`` static quantisation
    calibrated on four random inputs, or ``dynamic``."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_dynamic, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{"x": np.random.default_rng(k).normal(size=shape).astype(np.float32)}
                               for k in range(4)])

        def get_next(self):
            return next(self.items, None)

    source, target = tmp_path / f"float_{fmt}.onnx", tmp_path / f"{fmt}.onnx"
    source.write_bytes(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import logging
        logging.getLogger().setLevel(logging.ERROR)  # the quantiser's advice to pre-process first
        if fmt == "dynamic":
            quantize_dynamic(str(source), str(target))
        else:
            quantize_static(str(source), str(target), Reader(), quant_format=getattr(QuantFormat, fmt),
                            per_channel=fmt == "QDQ")
    return target.read_bytes()


def spearman(a, b) -> np.ndarray:
    """Per-sample Spearman rank correlation of two maps (ranks by argsort; ties are improbable in float maps)."""
    out = []
    for u, v in zip(a.reshape(len(a), -1), b.reshape(len(b), -1)):
        ru, rv = np.argsort(np.argsort(u)).astype(float), np.argsort(np.argsort(v)).astype(float)
        out.append(np.corrcoef(ru, rv)[0, 1])
    return np.array(out)


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(11).normal(size=(4, 3, 16, 16)).astype(np.float32)


@functools.cache
def _float_maps(dtype: str) -> dict:
    x = np.random.default_rng(11).normal(size=(4, 3, 16, 16)).astype(np.float32)
    ex = onnxlrp.Explainer(resnet_cnn(), dtype=dtype)
    return {m: ex.explain(x, method=m, target=0, **kw).relevance for m, kw in METHODS.items()}


def _assert_maps_correlate(model, x, dtype, floor, label):
    ex = onnxlrp.Explainer(model, dtype=dtype)
    reference = _float_maps(dtype)
    for method, kwargs in METHODS.items():
        res = ex.explain(x, method=method, target=0, **kwargs)
        rho = spearman(res.relevance, reference[method])
        assert within(1 - rho.min(), 1 - floor, f"{label} {method} {dtype}: 1 - Spearman"), (method, rho)
    return ex


@pytest.mark.parametrize("fmt", ["QDQ", "QOperator", "dynamic"])
def test_quantised_cnn_maps_correlate_with_the_float_model(fmt, x, tmp_path):
    model = quantize(resnet_cnn(), tmp_path, fmt)
    ops = {n.op_type for n in onnx.load_from_string(model).graph.node}
    assert {"QDQ": {"QuantizeLinear", "DequantizeLinear"}, "QOperator": {"QLinearConv", "QLinearAdd", "QGemm"},
            "dynamic": {"DynamicQuantizeLinear", "ConvInteger", "MatMulInteger"}}[fmt] <= ops
    expected = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    for dtype in ("float32", "float64"):
        ex = _assert_maps_correlate(model, x, dtype, QUANTISED_FLOOR, fmt)
        on_path = {op for _, op in ex.path_nodes()}
        assert not on_path & {"QLinearConv", "QLinearAdd", "QGemm", "ConvInteger", "MatMulInteger"}
        assert on_path & {"Conv", "Dense", "Gemm", "MatMul"}
        output = ex.explain(x, method="gradient", target=0).output
        # float32: onnxruntime's quantised logits; float64: recomputed by the kernels (a rounding tie may flip)
        assert_close(output, expected, rtol=0, atol=1e-6, label=f"{fmt} {dtype}")


def test_dequantized_weights_are_constants(tmp_path):
    """The QDQ model's weight DequantizeLinear nodes are folded (per-channel scales), so Conv sees a constant
    weight and the BatchNorm-free Gemm becomes a dense layer; activations keep Q → DQ pairs on the path."""
    model = quantize(resnet_cnn(), tmp_path, "QDQ")
    ex = onnxlrp.Explainer(model)
    assert any("dequantized" in line for line in ex.session.canonizer_log)
    ops = [op for _, op in ex.path_nodes()]
    assert ops.count("Conv") == 3 and ops.count("QuantizeLinear") == ops.count("DequantizeLinear") >= 1
    proto = onnx.load_from_string(model)
    initial = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    node = next(n for n in proto.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in initial
                and initial[n.input[0]].ndim == 4)
    q, s, z = (initial[t] for t in node.input)
    folded = ex.session.canonical.constants[node.output[0]]
    expected = (q.astype(np.float32) - z.reshape(-1, 1, 1, 1)) * s.reshape(-1, 1, 1, 1)
    np.testing.assert_array_equal(folded, expected)


def _topological(model: onnx.ModelProto) -> onnx.ModelProto:
    """The nodes in dependency order (onnxruntime's float16 converter appends the input Casts at the end)."""
    produced = {i.name for i in model.graph.input} | {t.name for t in model.graph.initializer}
    pending, ordered = list(model.graph.node), []
    while pending:
        ready = [n for n in pending if all(not t or t in produced for t in n.input)]
        for n in ready:
            produced.update(n.output)
            ordered.append(n)
        pending = [n for n in pending if n not in ready]
    del model.graph.node[:]
    model.graph.node.extend(ordered)
    return model


def _float16(keep_io_types: bool) -> bytes:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load_from_string(resnet_cnn()), keep_io_types=keep_io_types)
    return _topological(model).SerializeToString()


def _bfloat16_weights() -> bytes:
    """Every weight stored as bfloat16 and cast to float32 by a Cast node before use."""
    model = onnx.load_from_string(resnet_cnn())
    casts, kept = [], []
    for t in model.graph.initializer:
        value = numpy_helper.to_array(t)
        if value.dtype != np.float32:
            kept.append(t)
            continue
        kept.append(helper.make_tensor(t.name + "_bf16", TensorProto.BFLOAT16, value.shape,
                                       value.reshape(-1).tolist()))
        casts.append(helper.make_node("Cast", [t.name + "_bf16"], [t.name], to=TensorProto.FLOAT))
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    nodes = casts + list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model.SerializeToString()


@pytest.mark.parametrize("variant", ["float16", "float16_io_float32", "bfloat16_weights"])
def test_reduced_precision_cnn_maps_correlate_with_float32(variant, x):
    model = {"float16": lambda: _float16(False), "float16_io_float32": lambda: _float16(True),
             "bfloat16_weights": _bfloat16_weights}[variant]()
    feed_type = np.float16 if variant == "float16" else np.float32
    options = ort.SessionOptions()  # onnxruntime's optimiser would drop the float16 round trips of the Casts
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    expected = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"]).run(
        None, {"x": x.astype(feed_type)})[0]
    for dtype in ("float32", "float64"):
        ex = _assert_maps_correlate(model, x, dtype, REDUCED_PRECISION_FLOOR, variant)
        output = ex.explain(x, method="gradient", target=0).output
        assert output.dtype == np.dtype(dtype)
        # float32 reads onnxruntime's values, but asking for an intermediate float16 tensor keeps its rounding,
        # which onnxruntime skips when it computes a float16 op in float32 internally (a Cast pair it removes)
        tol = 1e-6 if variant == "bfloat16_weights" else 1e-3 if dtype == "float32" else 2e-3
        assert_close(output, expected, rtol=0, atol=tol, label=f"{variant} {dtype}")
    if variant == "float16":  # float16 input arrays are accepted as they are
        res = onnxlrp.Explainer(model).explain(x.astype(np.float16), method="gradient", target=0)
        assert res.relevance.dtype == np.float32 and np.isfinite(res.relevance).all()


def test_float16_model_in_float64_reads_off_path_values_from_onnxruntime():
    """A float16 model whose path reads a value computed off the path (a Shape → Reshape): the float64 pass asks
    onnxruntime for it, feeding the input as float16."""
    nodes = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("Reshape", ["r", "s"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT16, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT16, ["N", 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    x = np.abs(np.random.default_rng(0).normal(size=(3, 4))) + 0.1
    res = onnxlrp.Explainer(model, dtype="float64").explain(x, method="gradient", target=1)
    np.testing.assert_array_equal(res.relevance, np.eye(4)[[1, 1, 1]])
