"""Quantised and reduced-precision graphs rewritten into the float computation they stand for (run first by
:func:`onnxlrp.engine.canonize.canonize`, so the later canonizers see float weights).

A quantised model is explained as its **dequantised computation**: the forward values stay onnxruntime's (the real
quantised activations), and relevance and gradients flow through float Conv/MatMul/Gemm on dequantised weights.

* ``fold_constants``: ``DequantizeLinear`` of a constant (quantised weights and biases; per tensor, per axis, per
  block) becomes a float constant; ``Cast`` of a constant becomes a constant; float16 and bfloat16 constants are
  cast up to float32 (the kernels compute in float32 or float64).
* ``rewrite_integer_ops``: ``QLinearConv``, ``QLinearMatMul``, ``QGemm``, ``QLinearAdd``, ``QLinearMul``,
  ``QLinearGlobalAveragePool``, ``QLinearAveragePool``, ``QLinearConcat``, ``QLinearLeakyRelu``,
  ``QLinearSigmoid``, ``QLinearSoftmax`` (QOperator format) become ``DequantizeLinear`` → float op →
  ``QuantizeLinear`` (kernels in ``kernels/op_quant.py``: straight-through for relevance and gradients);
  ``MatMulInteger``/``ConvInteger`` followed by ``Cast`` and the ``Mul`` by ``a_scale · b_scale`` (onnxruntime's
  dynamic quantisation, with ``DynamicQuantizeLinear``) become ``DequantizeLinear`` → ``MatMul``/``Conv`` on the
  dequantised weights, ending at the ``Mul``'s output; elsewhere they become the same op on zero-point-shifted
  integers (held as floats) and their consumers read that instead. ``MatMulNBits`` (4-bit weight-only) becomes a
  ``MatMul`` on the dequantised weights. ``com.microsoft`` Quantize/DequantizeLinear become the ONNX ops.

New tensors are named ``<node>::<part>``; the forward runner computes them with the kernels from onnxruntime's
values (:class:`onnxlrp.engine.runner.OrtRunner`). The rewritten node's outputs keep their names.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import onnx

from .graph import Node
from .kernel import Call
from .registry import resolve

#: op types rewritten here, for the documentation (``tools/support_table.py``)
REWRITES = {
    "DequantizeLinear (of a constant)": "folded into a float constant (per tensor, axis or block)",
    "QLinearConv, QLinearMatMul, QGemm": "DequantizeLinear → Conv / MatMul / Gemm on dequantised weights → "
                                         "QuantizeLinear",
    "QLinearAdd, QLinearMul, QLinearConcat, QLinearGlobalAveragePool, QLinearAveragePool, QLinearLeakyRelu, "
    "QLinearSigmoid, QLinearSoftmax": "DequantizeLinear → the float op → QuantizeLinear",
    "MatMulInteger, ConvInteger (+ Cast, Mul by the scales)": "DequantizeLinear → MatMul / Conv on dequantised "
                                                              "weights",
    "MatMulNBits": "MatMul on the dequantised 4-bit weights",
    "Cast (of a constant); float16 / bfloat16 constants": "folded; cast up to float32",
}

_FLOATS = {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16}
_LOW = ("float16", "bfloat16")


def dequantize(graph, nodes, constants, protected, log) -> list[Node]:
    nodes = fold_constants(graph, nodes, constants, protected, log)
    return rewrite_integer_ops(graph, nodes, constants, protected, log)


def _const(graph, constants, name):
    if not name:
        return None
    return constants.get(name, graph.constants.get(name))


def _run(op_type: str, inputs: tuple, attrs: dict, since: int):
    """Run the registered kernel of a standard op on numpy arrays (constant folding)."""
    node = Node(name="fold", op_type=op_type, domain="", since=since, inputs=tuple(f"i{k}" for k in
                range(len(inputs))), outputs=("y",), attrs=attrs, index=0)
    return resolve(node).forward(Call(node, inputs, (), (False,) * len(inputs), np))[0]


def dequantized_constant(q, scale, zp=None, axis: int = 1, block_size: int = 0) -> np.ndarray:
    """``(q − zp)·scale`` computed in the scale's dtype as onnxruntime does, then as float32 or float64."""
    attrs = {"axis": axis, "block_size": block_size}
    value = _run("DequantizeLinear", (np.asarray(q), np.asarray(scale), None if zp is None else np.asarray(zp)),
                 attrs, 21)
    return np.asarray(value, dtype=np.float64 if value.dtype == np.float64 else np.float32)


# ---------------------------------------------------------------------------------------------- constants
def fold_constants(graph, nodes, constants, protected, log) -> list[Node]:
    out, folded, casts = [], 0, 0
    for n in nodes:
        if n.op_type == "DequantizeLinear" and n.domain in ("", "com.microsoft") and n.outputs[0] not in protected:
            values = [_const(graph, constants, t) for t in n.inputs]
            if values[0] is not None and values[1] is not None and (len(values) < 3 or not n.inputs[2]
                                                                    or values[2] is not None):
                zp = values[2] if len(values) > 2 else None
                constants[n.outputs[0]] = dequantized_constant(
                    values[0], values[1], zp, int(n.attrs.get("axis", 1)), int(n.attrs.get("block_size", 0) or 0))
                folded += 1
                continue
        if n.op_type == "Cast" and n.domain == "" and n.outputs[0] not in protected:
            value = _const(graph, constants, n.inputs[0])
            target = _np_type(n.attrs.get("to"))
            if value is not None and target is not None and value.dtype.kind in "fiubV":
                cast = np.asarray(value).astype(target)
                constants[n.outputs[0]] = cast.astype(np.float32) if cast.dtype.name in _LOW else cast
                casts += 1
                continue
        out.append(n)
    low = [name for name, v in graph.constants.items() if v.dtype.name in _LOW and name not in constants]
    for name in low:
        constants[name] = np.asarray(graph.constants[name]).astype(np.float32)
    if folded:
        log.append(f"dequantized {folded} constant tensor(s) (DequantizeLinear of weights and biases)")
    if casts:
        log.append(f"folded {casts} Cast(s) of constants")
    if low:
        log.append(f"cast {len(low)} float16/bfloat16 constant(s) up to float32")
    return out


def _np_type(code):
    if code is None:
        return None
    try:
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(int(code)))
    except Exception:
        return None
    return dtype if dtype.kind in "fiu" or dtype.name in _LOW else None


# ---------------------------------------------------------------------------------------------- integer ops
class NodeBuilder:
    """New nodes replacing ``node``: inserted just before its position, the last one taking its place."""

    def __init__(self, graph, constants, node):
        self.graph, self.constants, self.node = graph, constants, node
        self.nodes: list[Node] = []

    def const(self, name):
        return _const(self.graph, self.constants, name)

    def constant(self, tag, value) -> str:
        name = f"onnxlrp::{self.node.name}/{tag}"
        self.constants[name] = value
        return name

    def add(self, op_type, inputs, outputs, attrs=None, since=13, domain="") -> str:
        k = len(self.nodes)
        self.nodes.append(Node(name=f"{self.node.name}::{op_type}{k}", op_type=op_type, domain=domain, since=since,
                               inputs=tuple(inputs), outputs=tuple(outputs), attrs=dict(attrs or {}),
                               index=self.node.index - 0.5 + k * 1e-4))
        return outputs[0]

    def float_of(self, q, scale, zp, tag, axis=1) -> str:
        """A float tensor holding ``DequantizeLinear(q, scale, zp)``: a constant when all three are, else a node."""
        values = [self.const(q), self.const(scale), self.const(zp)]
        if values[0] is not None and values[1] is not None and (not zp or values[2] is not None):
            return self.constant(tag, dequantized_constant(values[0], values[1], values[2], axis))
        return self.add("DequantizeLinear", [q, scale, zp or ""], [f"{self.node.name}::{tag}"], {"axis": axis})

    def quantize(self, x, scale, zp, out):
        return self.add("QuantizeLinear", [x, scale, zp or ""], [out])

    def done(self) -> list[Node]:
        last = self.nodes[-1]
        self.nodes[-1] = replace(last, name=self.node.name, index=self.node.index)
        return self.nodes


def _arg(node, k):
    return node.inputs[k] if len(node.inputs) > k else ""


def _qlinear(b: NodeBuilder, float_op, operands, y_scale, y_zp, attrs=None, since=13):
    """``operands``: ``(q, scale, zp, axis)`` per float input; the float op, then QuantizeLinear to the output."""
    node = b.node
    xs = [b.float_of(q, s, z, f"in{k}", axis) for k, (q, s, z, axis) in enumerate(operands)]
    y = b.add(float_op, xs, [f"{node.name}::float"], attrs, since)
    b.quantize(y, y_scale, y_zp, node.outputs[0])


def _rewrite_qlinear(b: NodeBuilder):  # noqa: C901 - one branch per op
    n, a = b.node, b.node.attrs
    i = n.inputs
    if n.op_type == "QLinearConv":
        xf = b.float_of(i[0], i[1], i[2], "x")
        wf = b.float_of(i[3], i[4], i[5], "w", axis=0)
        ins = [xf, wf]
        if _arg(n, 8):
            bias, xs, ws = b.const(i[8]), b.const(i[1]), b.const(i[4])
            if bias is None or xs is None or ws is None:
                return "its bias or scales are not constants"
            ins.append(b.constant("bias", dequantized_constant(bias, np.asarray(xs, np.float32) *
                                                               np.asarray(ws, np.float32), None, 0)))
        conv_attrs = {k: v for k, v in a.items() if k in ("auto_pad", "dilations", "group", "kernel_shape", "pads",
                                                          "strides")}
        y = b.add("Conv", ins, [f"{n.name}::float"], conv_attrs, since=11)
        b.quantize(y, i[6], i[7], n.outputs[0])
    elif n.op_type == "QLinearMatMul":
        _qlinear(b, "MatMul", [(i[0], i[1], i[2], -2), (i[3], i[4], i[5], -1)], i[6], i[7])
    elif n.op_type == "QGemm":
        alpha, trans_b = float(a.get("alpha", 1.0)), int(a.get("transB", 0))
        af = b.float_of(i[0], i[1], i[2], "a")
        bf = b.float_of(i[3], i[4], i[5], "b", axis=0 if trans_b else 1)
        ins = [af, bf]
        if _arg(n, 6):
            c, s_a, s_b = b.const(i[6]), b.const(i[1]), b.const(i[4])
            if c is None or s_a is None or s_b is None:
                return "its bias C or scales are not constants"
            ins.append(b.constant("c", np.asarray(c, np.float64) * alpha * np.asarray(s_a, np.float64) *
                                  np.asarray(s_b, np.float64)))
        gemm = {"alpha": alpha, "beta": 1.0, "transA": int(a.get("transA", 0)), "transB": trans_b}
        if _arg(n, 7):
            y = b.add("Gemm", ins, [f"{n.name}::float"], gemm)
            b.quantize(y, i[7], _arg(n, 8), n.outputs[0])
        else:
            b.add("Gemm", ins, [n.outputs[0]], gemm)
    elif n.op_type in ("QLinearAdd", "QLinearMul"):
        _qlinear(b, n.op_type[7:], [(i[0], i[1], i[2], 1), (i[3], i[4], i[5], 1)], i[6], _arg(n, 7), since=14)
    elif n.op_type in ("QLinearGlobalAveragePool", "QLinearAveragePool", "QLinearLeakyRelu", "QLinearSigmoid",
                       "QLinearSoftmax"):
        if a.get("channels_last", 0):
            return "channels_last=1 is not supported"
        op = n.op_type[7:]
        keep = {"AveragePool": ("auto_pad", "ceil_mode", "count_include_pad", "kernel_shape", "pads", "strides"),
                "LeakyRelu": ("alpha",), "Softmax": ("axis",)}.get(op, ())
        attrs = {k: v for k, v in a.items() if k in keep}
        since = {"AveragePool": 11, "LeakyRelu": 16, "GlobalAveragePool": 1, "Sigmoid": 13}.get(op, 13)
        if op == "Softmax" and int(a.get("opset", 13)) < 13:
            since = 11
        _qlinear(b, op, [(i[0], i[1], i[2], 1)], i[3], _arg(n, 4), attrs, since)
    elif n.op_type == "QLinearConcat":
        triples = [(i[k], i[k + 1], i[k + 2], 1) for k in range(2, len(i), 3)]
        _qlinear(b, "Concat", triples, i[0], i[1], {"axis": int(a["axis"])})
    return None


_QLINEAR = {"QLinearConv": "", "QLinearMatMul": "", "QGemm": "com.microsoft", "QLinearAdd": "com.microsoft",
            "QLinearMul": "com.microsoft", "QLinearGlobalAveragePool": "com.microsoft",
            "QLinearAveragePool": "com.microsoft", "QLinearLeakyRelu": "com.microsoft",
            "QLinearSigmoid": "com.microsoft", "QLinearSoftmax": "com.microsoft", "QLinearConcat": "com.microsoft"}


def rewrite_integer_ops(graph, nodes, constants, protected, log) -> list[Node]:
    out: list[Node] = []
    renamed: dict[str, str] = {}
    dropped: set[str] = set()
    consumers: dict[str, list[Node]] = {}
    producer = {t: n for n in nodes for t in n.outputs if t}
    for n in nodes:
        for t in n.inputs:
            consumers.setdefault(t, []).append(n)
    for n in nodes:
        if n.name in dropped:
            continue
        new = None
        if n.op_type in ("QuantizeLinear", "DequantizeLinear") and n.domain == "com.microsoft":
            new = [replace(n, domain="", since=13, attrs={"axis": int(n.attrs.get("axis", 1))})]
        elif _QLINEAR.get(n.op_type) == n.domain:
            b = NodeBuilder(graph, constants, n)
            reason = _rewrite_qlinear(b)
            if reason is None:
                new = b.done()
                log.append(f"rewrote {n.op_type} {n.name!r} as its dequantized float computation")
            else:
                log.append(f"left {n.op_type} {n.name!r} as it is: {reason}")
        elif n.op_type in ("MatMulInteger", "ConvInteger") and n.domain == "":
            new = _integer_op(graph, constants, n, consumers, producer, protected, dropped, renamed, log)
        elif n.op_type == "MatMulNBits" and n.domain == "com.microsoft":
            new = _matmul_nbits(graph, constants, n, log)
        out.extend(new if new is not None else [n])
    if renamed:
        out = [replace(m, inputs=tuple(renamed.get(t, t) for t in m.inputs)) for m in out]
    return sorted(out, key=lambda m: m.index)


def _integer_op(graph, constants, n, consumers, producer, protected, dropped, renamed, log):
    """MatMulInteger / ConvInteger: with the rescaling ``Cast → Mul(a_scale·b_scale)`` after it, the dequantised
    float op ending at the Mul; otherwise the op on zero-point-shifted integers held as floats."""
    b = NodeBuilder(graph, constants, n)
    a_q, w_q, a_zp, w_zp = n.inputs[0], n.inputs[1], _arg(n, 2), _arg(n, 3)
    conv = n.op_type == "ConvInteger"
    op, since = ("Conv", 11) if conv else ("MatMul", 13)
    attrs = {k: v for k, v in n.attrs.items() if k in ("auto_pad", "dilations", "group", "kernel_shape", "pads",
                                                        "strides")} if conv else {}
    axis = 0 if conv else -1
    scales = _rescale(graph, constants, n, consumers, producer, protected)
    if scales is not None:
        cast, mul, a_scale, w_scale = scales
        xf = b.float_of(a_q, a_scale, a_zp, "a")
        wf = b.float_of(w_q, w_scale, w_zp, "w", axis=axis)
        b.add(op, [xf, wf], [mul.outputs[0]], attrs, since)
        dropped.update((cast.name, mul.name))
        log.append(f"rewrote {n.op_type} {n.name!r} with its rescaling {mul.name!r} as its dequantized float "
                   "computation")
        return b.done()
    one = b.constant("one", np.float32(1.0))
    xf = b.float_of(a_q, one, a_zp, "a")
    wf = b.float_of(w_q, one, w_zp, "w", axis=axis)
    renamed[n.outputs[0]] = b.add(op, [xf, wf], [f"{n.name}::float"], attrs, since)
    log.append(f"rewrote {n.op_type} {n.name!r} on zero-point-shifted integers held as floats")
    return b.done()


def _rescale(graph, constants, n, consumers, producer, protected):
    """``(cast, mul, a_scale, w_scale)`` when ``n``'s output is read only by a Cast to float whose output is read
    only by a Mul with ``a_scale · w_scale`` (``w_scale`` a constant), else ``None``."""
    users = consumers.get(n.outputs[0], [])
    if len(users) != 1 or users[0].op_type != "Cast" or users[0].attrs.get("to") not in _FLOATS:
        return None
    cast = users[0]
    users = consumers.get(cast.outputs[0], [])
    if len(users) != 1 or users[0].op_type != "Mul" or cast.outputs[0] in protected or n.outputs[0] in protected:
        return None
    mul = users[0]
    scale = mul.inputs[1] if mul.inputs[0] == cast.outputs[0] else mul.inputs[0]
    value = _const(graph, constants, scale)
    if value is not None:
        return cast, mul, scale, np.float32(1.0)
    prod = producer.get(scale)
    if prod is None or prod.op_type != "Mul" or prod.domain != "":
        return None
    for a_s, w_s in ((prod.inputs[0], prod.inputs[1]), (prod.inputs[1], prod.inputs[0])):
        w_value = _const(graph, constants, w_s)
        if w_value is not None and _const(graph, constants, a_s) is None:
            return cast, mul, a_s, w_s
    return None


def _matmul_nbits(graph, constants, n, log):
    """``MatMulNBits(A, B, scales, zero_points?, g_idx?, bias?)``: ``A @ Wᵀ (+ bias)`` with ``W`` (N, K) unpacked
    from ``bits``-bit blocks of ``block_size`` along K."""
    a = n.attrs
    values = [_const(graph, constants, _arg(n, k)) for k in (1, 2, 3)]
    k, cols, bits, block = int(a["K"]), int(a["N"]), int(a.get("bits", 4)), int(a["block_size"])
    if values[0] is None or values[1] is None or bits != 4 or _arg(n, 4):
        log.append(f"left MatMulNBits {n.name!r} as it is: only constant 4-bit weights without g_idx are supported")
        return None
    packed = np.asarray(values[0], dtype=np.uint8).reshape(cols, -1)
    q = np.stack([packed & 0x0F, packed >> 4], axis=-1).reshape(cols, -1)[:, :k].astype(np.float32)
    blocks = -(-k // block)
    scales = np.asarray(values[1], dtype=np.float32).reshape(cols, blocks)
    zp = values[2]
    if zp is None:
        zp = np.full((cols, blocks), 8.0, dtype=np.float32)
    elif zp.dtype == np.uint8:
        zp = np.stack([zp & 0x0F, zp >> 4], axis=-1).reshape(cols, -1)[:, :blocks].astype(np.float32)
    else:
        zp = np.asarray(zp, dtype=np.float32).reshape(cols, blocks)
    expand = lambda v: np.repeat(v, block, axis=1)[:, :k]  # noqa: E731
    weight = ((q - expand(zp)) * expand(scales)).T
    b = NodeBuilder(graph, constants, n)
    w = b.constant("weight", weight)
    if _arg(n, 5):
        y = b.add("MatMul", [n.inputs[0], w], [f"{n.name}::float"])
        b.add("Add", [y, n.inputs[5]], [n.outputs[0]], since=14)
    else:
        b.add("MatMul", [n.inputs[0], w], [n.outputs[0]])
    log.append(f"rewrote MatMulNBits {n.name!r} as a MatMul on its dequantized weights")
    return b.done()
