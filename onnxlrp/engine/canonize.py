"""Pure graph rewrites applied before propagation (the caller's model is never touched).

* ``fold_batchnorm``: a BatchNormalization whose input comes from a Conv, Gemm or fused Dense that has no other
  consumer is folded into it (zennit ``SequentialMergeBatchNorm``): ``W' = W·s`` per output channel,
  ``b' = (b − μ)·s + β`` with ``s = γ/√(σ²+ε)``.
* ``fuse_matmul_add``: ``MatMul(x, W)`` followed by ``Add(·, b)`` with constant ``W``, ``b`` becomes one
  ``onnxlrp::Dense`` node so LRP rules see the bias as a dense layer's bias (Keras/tf2onnx style dense layers).

Quantised graphs, float16/bfloat16 constants (:mod:`.dequantize`) and onnxruntime's ``com.microsoft`` fused ops
(:mod:`.contrib`) are rewritten first into the float ops they stand for.

Decomposed operators (LayerNorm, RMSNorm, GELU, SiLU, softmax) are then fused by :mod:`.fusions`.

Rewritten nodes keep the output tensor of the last original node, so the forward runner's values still apply.
New parameters are stored as constants named ``onnxlrp::<node>/<param>``.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from .contrib import decompose_contrib
from .dequantize import dequantize
from .fusions import fuse_erf_gelu, fuse_norms, fuse_silu, fuse_softmax, fuse_tanh_gelu
from .graph import Graph, Node


def canonize(graph: Graph, protected: set[str]) -> tuple[list[Node], dict[str, np.ndarray], list[str]]:
    """Return ``(nodes, extra_constants, log)``; tensors in ``protected`` (e.g. the explained output's producers'
    intermediate outputs the user asked for) are never fused away."""
    nodes = list(graph.nodes)
    constants: dict[str, np.ndarray] = {}
    log: list[str] = []
    for lower in (dequantize, decompose_contrib):  # quantised, reduced-precision and com.microsoft fused ops
        nodes = lower(graph, nodes, constants, protected, log)
    nodes = _fuse_matmul_add(graph, nodes, constants, protected, log)
    nodes = _fold_batchnorm(graph, nodes, constants, protected, log)
    for fuse in (fuse_norms, fuse_erf_gelu, fuse_tanh_gelu, fuse_silu, fuse_softmax):
        nodes = fuse(graph, nodes, constants, protected, log)
    return nodes, constants, log


def _consumers(nodes: list[Node], tensor: str) -> list[Node]:
    return [n for n in nodes if tensor in n.inputs]


def _const(graph: Graph, extra: dict, name: str):
    if not name:
        return None
    return extra.get(name, graph.constants.get(name))


def _fuse_matmul_add(graph, nodes, constants, protected, log):
    out = []
    skip = set()
    by_name = {n.name: n for n in nodes}
    for n in nodes:
        if n.name in skip:
            continue
        if n.op_type == "MatMul" and n.domain == "" and n.outputs[0] not in protected:
            weight = _const(graph, constants, n.inputs[1])
            users = _consumers(nodes, n.outputs[0])
            if (weight is not None and weight.ndim == 2 and n.inputs[0] not in graph.constants and len(users) == 1
                    and users[0].op_type == "Add" and users[0].domain == ""):
                add = users[0]
                other = add.inputs[1] if add.inputs[0] == n.outputs[0] else add.inputs[0]
                bias = _const(graph, constants, other)
                # skl2onnx writes the bias as (1, N); a bias of higher rank or (N, 1) would change the Add's shape
                if bias is not None and bias.ndim <= 2 and all(d == 1 for d in bias.shape[:-1]) \
                        and bias.size in (1, weight.shape[1]):
                    name = f"{add.name}"
                    w_name, b_name = f"onnxlrp::{name}/weight", f"onnxlrp::{name}/bias"
                    constants[w_name] = weight
                    constants[b_name] = np.broadcast_to(bias.reshape(-1), (weight.shape[1],)).copy()
                    out.append(Node(name=name, op_type="Dense", domain="onnxlrp", since=1,
                                    inputs=(n.inputs[0], w_name, b_name), outputs=add.outputs, attrs={},
                                    index=add.index))
                    skip.add(by_name[add.name].name)
                    log.append(f"fused MatMul {n.name!r} + Add {add.name!r} into a dense layer")
                    continue
        out.append(n)
    return sorted(out, key=lambda m: m.index)


def _fold_batchnorm(graph, nodes, constants, protected, log):
    producer = {t: n for n in nodes for t in n.outputs if t}
    replaced: dict[str, Node] = {}
    dropped: set[str] = set()
    for bn in nodes:
        if bn.op_type != "BatchNormalization" or bn.domain != "" or bn.attrs.get("training_mode", 0):
            continue
        prev = producer.get(bn.inputs[0])
        if prev is None or prev.name in dropped or bn.inputs[0] in protected:
            continue
        if len(_consumers(nodes, bn.inputs[0])) != 1:
            continue
        stats = [_const(graph, constants, t) for t in bn.inputs[1:5]]
        if any(s is None or s.ndim != 1 or s.dtype.kind not in "fiu" or s.shape != stats[0].shape for s in stats):
            continue  # missing or malformed statistics: left to onnxruntime to refuse
        scale, beta, mean, var = (np.asarray(s, dtype=np.float64) for s in stats)
        s = scale / np.sqrt(var + float(bn.attrs.get("epsilon", 1e-5)))
        folded = _fold_into(graph, constants, prev, s, beta, mean)
        if folded is None:
            continue
        w_name, b_name, op_type, domain, attrs, since = folded
        prev = replaced.get(prev.name, prev)
        node = replace(prev, name=prev.name, op_type=op_type, domain=domain, attrs=attrs, since=since,
                       inputs=(prev.inputs[0], w_name, b_name), outputs=bn.outputs, index=bn.index)
        replaced[prev.name] = node
        dropped.add(bn.name)
        log.append(f"folded BatchNormalization {bn.name!r} into {prev.op_type} {prev.name!r}")
    out = [replaced.get(n.name, n) for n in nodes if n.name not in dropped]
    return sorted(out, key=lambda m: m.index)


def _fold_into(graph, constants, prev: Node, s, beta, mean):
    """New (weight, bias) constant names for ``prev`` with the BN folded in, or ``None`` if not foldable."""
    weight = _const(graph, constants, prev.inputs[1]) if len(prev.inputs) > 1 else None
    bias_name = prev.inputs[2] if len(prev.inputs) > 2 else ""
    bias = _const(graph, constants, bias_name)
    if weight is None or (bias_name and bias is None):
        return None
    channels = s.shape[0]
    if weight.dtype.kind not in "fiu" or weight.ndim < 2 or (bias is not None and (
            bias.dtype.kind not in "fiu" or bias.size not in (1, channels))):
        return None  # malformed parameters: left to onnxruntime to refuse
    weight = np.asarray(weight, dtype=np.float64)
    if prev.op_type == "Conv" and prev.domain == "":
        if weight.shape[0] != channels:
            return None
        new_w = weight * s.reshape((-1,) + (1,) * (weight.ndim - 1))
        op_type, domain, attrs, since = "Conv", "", prev.attrs, prev.since
    elif prev.op_type == "Gemm" and prev.domain == "" and not prev.attrs.get("transA", 0):
        w = float(prev.attrs.get("alpha", 1.0)) * (weight.T if prev.attrs.get("transB", 0) else weight)
        if w.ndim != 2 or w.shape[1] != channels:
            return None
        if bias is not None:  # C may be (N,), (1, N) or a scalar
            bias = float(prev.attrs.get("beta", 1.0)) * np.broadcast_to(bias.reshape(-1), (channels,))
        new_w = w * s.reshape(1, -1)
        op_type, domain, attrs, since = "Dense", "onnxlrp", {}, 1
    elif prev.op_type == "Dense" and prev.domain == "onnxlrp":
        if weight.ndim != 2 or weight.shape[1] != channels:
            return None
        new_w = weight * s.reshape(1, -1)
        op_type, domain, attrs, since = "Dense", "onnxlrp", {}, 1
    else:
        return None
    b = np.zeros_like(s) if bias is None else np.asarray(bias, dtype=np.float64).reshape(-1)
    new_b = (b - mean) * s + beta
    w_name, b_name = f"onnxlrp::{prev.name}/weight", f"onnxlrp::{prev.name}/bias"
    constants[w_name], constants[b_name] = new_w, new_b
    return w_name, b_name, op_type, domain, attrs, since
