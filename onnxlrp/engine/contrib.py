"""onnxruntime's ``com.microsoft`` fused ops (``onnxruntime.transformers.optimizer``, ORT graph optimisations)
decomposed into the standard ops they fuse, so that the kernels and the transformer rules (AttnLRP: softmax,
bilinear products, LayerNorm) apply unchanged and an optimised model is explained as its unoptimised export is.

* ``Attention`` (packed QKV weights) and ``MultiHeadAttention`` (separate query, key, value): per-part
  ``onnxlrp::Dense`` (or ``Add`` of the bias), heads split by ``Reshape``/``Transpose``, ``MatMul(Q, Kᵀ)``, ``Mul``
  by the scale, ``onnxlrp::AttentionMask`` (``mask_index``/``key_padding_mask``, ``unidirectional``), ``Add`` of an
  attention bias, ``Softmax``, ``MatMul(·, V)``, heads merged. Not with a key-value cache (``past``), rotary
  ``do_rotary`` or packed query/key/value inputs.
* ``SkipLayerNormalization`` → ``Add`` (bias) → ``Add`` (skip) → ``LayerNormalization``;
  ``SkipSimplifiedLayerNormalization`` and ``SimplifiedLayerNormalization`` → ``RMSNormalization``; a
  ``LayerNormalization`` below opset 17 (onnxruntime's contrib schema) → the opset-17 op.
* ``Gelu``, ``BiasGelu`` (``Add`` → erf ``Gelu``), ``FastGelu``, ``GemmFastGelu`` (tanh ``Gelu``), ``QuickGelu``
  (``onnxlrp::SiLU``), ``BiasAdd``; ``FusedConv``, ``FusedGemm`` (the op, then its activation), ``FusedMatMul``.

``ai.onnx.ml``'s ``LinearClassifier`` (its score output) and ``LinearRegressor`` become an ``onnxlrp::Dense`` and
their post-transform (``Softmax``, ``Sigmoid``). ``RotaryEmbedding`` (com.microsoft and ONNX opset 23) becomes
ONNX's reference formula on the halves or even/odd entries of each head, with ``Gather`` of the cos/sin caches at
the position ids (not with a start offset for position ids, ``scale`` or packed batching).
``EmbedLayerNormalization`` is not decomposed (see ``NOT_DECOMPOSED``).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from .dequantize import NodeBuilder
from .graph import Node

#: op types decomposed here, for the documentation (``tools/support_table.py``)
REWRITES = {
    "Attention, MultiHeadAttention (com.microsoft)": "Dense per part → heads → MatMul(Q, Kᵀ) → scale → mask "
                                                     "(onnxlrp::AttentionMask) → Softmax → MatMul(·, V) → merge",
    "SkipLayerNormalization, SkipSimplifiedLayerNormalization (com.microsoft)": "Add (bias) → Add (skip) → "
                                                                               "LayerNormalization / RMSNormalization",
    "SimplifiedLayerNormalization; LayerNormalization below opset 17": "RMSNormalization; LayerNormalization-17",
    "Gelu, BiasGelu, FastGelu, GemmFastGelu, QuickGelu, BiasAdd (com.microsoft)": "[MatMul →] [Add →] Gelu (erf or "
                                                                                  "tanh) / onnxlrp::SiLU",
    "FusedConv, FusedGemm, FusedMatMul (com.microsoft)": "Conv / Gemm / MatMul, then the activation",
    "RotaryEmbedding (com.microsoft; ONNX opset 23)": "halves (or even/odd entries) of each head: Mul by the cos/sin "
                                                      "rows gathered at the position ids, Sub / Add, Concat",
    "LinearClassifier, LinearRegressor (ai.onnx.ml)": "onnxlrp::Dense, then Softmax / Sigmoid (post_transform); "
                                                      "a classifier's scores output",
}

#: fused ops left as they are, with the reason (an unsupported-op error names the node)
NOT_DECOMPOSED = {
    "EmbedLayerNormalization": "it reads integer token ids and hides the embedding Gather that integer inputs are "
                               "explained at; optimise with FusionOptions.enable_embed_layer_norm = False, or export "
                               "from inputs_embeds",
}

_MS = "com.microsoft"


def decompose_contrib(graph, nodes, constants, protected, log) -> list[Node]:
    out: list[Node] = []
    consumers: dict[str, int] = {}
    for n in nodes:
        for t in n.inputs:
            consumers[t] = consumers.get(t, 0) + 1
    for n in nodes:
        handler = _HANDLERS.get((n.domain, n.op_type))
        if n.domain == "" and n.op_type == "LayerNormalization" and n.since < 17:
            out.append(replace(n, since=17, attrs={k: v for k, v in n.attrs.items() if k in ("axis", "epsilon")}))
            continue
        if handler is None:
            out.append(n)
            continue
        b = NodeBuilder(graph, constants, n)
        read = [t for t in n.outputs[1:] if t and (consumers.get(t) or t in protected)]
        reason = handler(b) if not _extra_outputs_read(n, read) else "an optional output of it is read"
        if reason is None:
            out.extend(b.done())
            log.append(f"decomposed {n.op_type} {n.name!r} into standard ops")
        else:
            out.append(n)
            log.append(f"left {n.op_type} {n.name!r} as it is: {reason}")
    return sorted(out, key=lambda m: m.index)


def _extra_outputs_read(n, read) -> bool:
    """Outputs other than the first that something reads, and that the decomposition does not rebuild
    (SkipLayerNorm's sum; a LinearClassifier's scores, its label staying onnxruntime's)."""
    if n.op_type == "LinearClassifier":
        return False
    allowed = {n.outputs[3]} if n.op_type.startswith("Skip") and len(n.outputs) > 3 else set()
    return any(t not in allowed for t in read)


def _arg(node, k):
    return node.inputs[k] if len(node.inputs) > k else ""


def _static_last_dim(graph, tensor):
    info = graph.tensor_info(tensor)
    if info is None or not info.shape or not isinstance(info.shape[-1], int) or info.shape[-1] <= 0:
        return None
    return int(info.shape[-1])


# ---------------------------------------------------------------------------------------------- attention
def _attention(b: NodeBuilder):
    n, a = b.node, b.node.attrs
    if _arg(n, 4) or _arg(n, 6) or len(n.outputs) > 1 and n.outputs[1]:
        return "a key-value cache (past/present) is not supported"
    if a.get("do_rotary", 0):
        return "do_rotary=1 is not supported"
    w = b.const(n.inputs[1])
    bias = b.const(_arg(n, 2))
    if w is None or w.ndim != 2 or (_arg(n, 2) and bias is None):
        return "its weights or bias are not constants"
    heads = int(a["num_heads"])
    sizes = [int(s) for s in a.get("qkv_hidden_sizes") or []] or [w.shape[1] // 3] * 3
    if sum(sizes) != w.shape[1] or any(s % heads for s in sizes):
        return f"qkv_hidden_sizes {sizes} do not split weights of shape {tuple(w.shape)} into {heads} heads"
    parts, start = [], 0
    for tag, size in zip("qkv", sizes):
        cols = slice(start, start + size)
        start += size
        weight = b.constant(f"{tag}_weight", np.asarray(w[:, cols]))
        bias_name = b.constant(f"{tag}_bias", np.asarray(bias).reshape(-1)[cols]) if bias is not None else ""
        parts.append(b.add("Dense", [n.inputs[0], weight, bias_name], [f"{n.name}::{tag}"], since=1,
                           domain="onnxlrp"))
    scale = float(a.get("scale", 0.0) or 0.0) or 1.0 / np.sqrt(sizes[0] // heads)
    _attend(b, *parts, heads, scale, _arg(n, 3), _arg(n, 5), int(a.get("unidirectional", 0)),
            float(a.get("mask_filter_value", -10000.0)))
    return None


def _multi_head_attention(b: NodeBuilder):
    n, a = b.node, b.node.attrs
    query, key, value = n.inputs[0], _arg(n, 1), _arg(n, 2)
    if not key or not value:
        return "packed query/key/value inputs are not supported"
    if any(_arg(n, k) for k in (6, 7, 8, 9)) or any(t for t in n.outputs[1:]):
        return "a key-value cache (past/present) is not supported"
    for t in (query, key, value):
        info = b.graph.tensor_info(t)
        if info is not None and info.shape is not None and len(info.shape) != 3:
            return "only 3-D (batch, sequence, hidden) query, key and value are supported"
    heads = int(a["num_heads"])
    bias = b.const(_arg(n, 3))
    if _arg(n, 3) and bias is None:
        return "its bias is not a constant"
    hidden = bias.size // 3 if bias is not None else _static_last_dim(b.graph, query)
    scale = float(a.get("scale", 0.0) or 0.0)
    if not scale:
        if hidden is None:
            return "its head size is unknown (no bias, no static query shape) and it has no scale attribute"
        scale = 1.0 / np.sqrt(hidden // heads)
    parts = [query, key, value]
    if bias is not None:
        flat = np.asarray(bias).reshape(3, -1)
        parts = [b.add("Add", [t, b.constant(f"{tag}_bias", flat[k])], [f"{n.name}::{tag}"], since=14)
                 for k, (t, tag) in enumerate(zip(parts, "qkv"))]
    _attend(b, *parts, heads, scale, _arg(n, 4), _arg(n, 5), int(a.get("unidirectional", 0)),
            float(a.get("mask_filter_value", -10000.0)))
    return None


def _attend(b: NodeBuilder, q, k, v, heads, scale, mask, attention_bias, causal, fill):
    """Scaled dot-product attention of ``(B, S, D)`` tensors over ``heads`` heads, written to the node's output."""
    name = b.node.name
    split = b.constant("split_heads", np.array([0, 0, heads, -1], dtype=np.int64))
    hs = {}
    for tag, t, perm in (("q", q, [0, 2, 1, 3]), ("k", k, [0, 2, 3, 1]), ("v", v, [0, 2, 1, 3])):
        r = b.add("Reshape", [t, split], [f"{name}::{tag}_heads"], since=14)
        hs[tag] = b.add("Transpose", [r], [f"{name}::{tag}_t"], {"perm": perm})
    s = b.add("MatMul", [hs["q"], hs["k"]], [f"{name}::scores"])
    s = b.add("Mul", [s, b.constant("scale", np.float32(scale))], [f"{name}::scaled"], since=14)
    if mask or causal:
        s = b.add("AttentionMask", [s, mask], [f"{name}::masked"], {"causal": causal, "mask_filter_value": fill},
                  since=1, domain="onnxlrp")
    if attention_bias:
        s = b.add("Add", [s, attention_bias], [f"{name}::biased"], since=14)
    p = b.add("Softmax", [s], [f"{name}::probs"], {"axis": -1})
    c = b.add("MatMul", [p, hs["v"]], [f"{name}::context"])
    c = b.add("Transpose", [c], [f"{name}::context_t"], {"perm": [0, 2, 1, 3]})
    b.add("Reshape", [c, b.constant("merge_heads", np.array([0, 0, -1], dtype=np.int64))], [b.node.outputs[0]],
          since=14)


# ---------------------------------------------------------------------------------------------- normalisation
def _skip_norm(b: NodeBuilder, rms: bool):
    n, a = b.node, b.node.attrs
    x, skip = n.inputs[0], n.inputs[1]
    bias = _arg(n, 3) if rms else _arg(n, 4)
    if bias:
        x = b.add("Add", [x, bias], [f"{n.name}::biased"], since=14)
    total = n.outputs[3] if len(n.outputs) > 3 and n.outputs[3] else f"{n.name}::sum"
    s = b.add("Add", [x, skip], [total], since=14)
    eps = float(a.get("epsilon", 1e-12))
    if rms:
        b.add("RMSNormalization", [s, n.inputs[2]], [n.outputs[0]], {"axis": -1, "epsilon": eps}, since=23)
    else:
        b.add("LayerNormalization", [s, n.inputs[2], _arg(n, 3)], [n.outputs[0]], {"axis": -1, "epsilon": eps},
              since=17)
    return None


def _simplified_norm(b: NodeBuilder):
    n, a = b.node, b.node.attrs
    b.add("RMSNormalization", [n.inputs[0], n.inputs[1]], [n.outputs[0]],
          {"axis": int(a.get("axis", -1)), "epsilon": float(a.get("epsilon", 1e-5))}, since=23)
    return None


# ---------------------------------------------------------------------------------------------- activations
def _gelu(b: NodeBuilder, approximate="none", bias_port=None, matmul=False):
    n = b.node
    x = n.inputs[0]
    if matmul:
        x = b.add("MatMul", [x, n.inputs[1]], [f"{n.name}::matmul"])
    if bias_port is not None and _arg(n, bias_port):
        x = b.add("Add", [x, n.inputs[bias_port]], [f"{n.name}::biased"], since=14)
    b.add("Gelu", [x], [n.outputs[0]], {"approximate": approximate}, since=20)
    return None


def _quick_gelu(b: NodeBuilder):
    n = b.node
    b.add("SiLU", [n.inputs[0]], [n.outputs[0]], {"alpha": float(n.attrs.get("alpha", 1.702))}, since=1,
          domain="onnxlrp")
    return None


def _bias_add(b: NodeBuilder):
    n = b.node
    x = b.add("Add", [n.inputs[0], n.inputs[1]], [f"{n.name}::biased"], since=14)
    b.add("Add", [x, n.inputs[2]], [n.outputs[0]], since=14)
    return None


_ACTIVATIONS = {"Relu": ("Relu", 14, ()), "Tanh": ("Tanh", 13, ()), "Sigmoid": ("Sigmoid", 13, ()),
                "LeakyRelu": ("LeakyRelu", 16, ("alpha",)), "HardSigmoid": ("HardSigmoid", 6, ("alpha", "beta")),
                "Clip": ("Clip", 6, ("min", "max")), "Elu": ("Elu", 6, ("alpha",))}


def _then_activation(b: NodeBuilder, op, inputs, attrs, since, activation, params):
    n = b.node
    if not activation:
        b.add(op, inputs, [n.outputs[0]], attrs, since)
        return None
    if activation not in _ACTIVATIONS:
        return f"activation {activation!r} is not supported"
    act, act_since, names = _ACTIVATIONS[activation]
    y = b.add(op, inputs, [f"{n.name}::linear"], attrs, since)
    b.add(act, [y], [n.outputs[0]], dict(zip(names, [float(p) for p in params])), act_since)
    return None


def _fused_conv(b: NodeBuilder):
    n, a = b.node, b.node.attrs
    attrs = {k: v for k, v in a.items() if k in ("auto_pad", "dilations", "group", "kernel_shape", "pads",
                                                 "strides")}
    inputs = list(n.inputs[:3])
    if _arg(n, 3):  # Z is added before the activation
        y = b.add("Conv", inputs, [f"{n.name}::conv"], attrs, 11)
        return _then_activation(b, "Add", [y, n.inputs[3]], {}, 14, a.get("activation"),
                                a.get("activation_params") or [])
    return _then_activation(b, "Conv", inputs, attrs, 11, a.get("activation"), a.get("activation_params") or [])


def _fused_gemm(b: NodeBuilder):
    n, a = b.node, b.node.attrs
    attrs = {k: a[k] for k in ("alpha", "beta", "transA", "transB") if k in a}
    params = [a[k] for k in ("activation_alpha", "activation_beta", "activation_gamma") if k in a]
    return _then_activation(b, "Gemm", list(n.inputs), attrs, 13, a.get("activation"), params)


def _fused_matmul(b: NodeBuilder):
    n, a = b.node, b.node.attrs
    if a.get("transBatchA", 0) or a.get("transBatchB", 0):
        return "transBatchA/transBatchB are not supported"
    operands = []
    for port, flag in ((0, "transA"), (1, "transB")):
        t = n.inputs[port]
        if a.get(flag, 0):
            value = b.const(t)
            info = b.graph.tensor_info(t)
            rank = value.ndim if value is not None else (len(info.shape) if info is not None and info.shape else None)
            if rank is None:
                return f"{flag}=1 on an operand of unknown rank is not supported"
            perm = list(range(rank - 2)) + [rank - 1, rank - 2]
            if value is not None:
                t = b.constant(f"operand{port}", np.transpose(value, perm))
            else:
                t = b.add("Transpose", [t], [f"{n.name}::t{port}"], {"perm": perm})
        operands.append(t)
    alpha = float(a.get("alpha", 1.0))
    if alpha == 1.0:
        b.add("MatMul", operands, [n.outputs[0]])
    else:
        y = b.add("MatMul", operands, [f"{n.name}::matmul"])
        b.add("Mul", [y, b.constant("alpha", np.float32(alpha))], [n.outputs[0]], since=14)
    return None


# ---------------------------------------------------------------------------------------------- rotary
def _rotary(b: NodeBuilder, standard: bool):
    """RoPE as ONNX's reference writes it: ``real = x₁·cos − x₂·sin``, ``imag = x₁·sin + x₂·cos`` on the halves
    (or the even/odd entries, ``interleaved``) of the first ``rotary_embedding_dim`` entries of each head, ``cos``
    and ``sin`` gathered from the caches at the position ids."""
    n, a = b.node, b.node.attrs
    x = n.inputs[0]
    if standard:  # ONNX RotaryEmbedding-23: X, cos_cache, sin_cache, position_ids?
        cos, sin, ids = n.inputs[1], n.inputs[2], _arg(n, 3)
    else:  # com.microsoft: input, position_ids, cos_cache, sin_cache
        ids, cos, sin = n.inputs[1], n.inputs[2], n.inputs[3]
    if float(a.get("scale", 1.0) or 1.0) != 1.0 or a.get("is_packed_batching", 0):
        return "scale or is_packed_batching is not supported"
    cache = b.const(cos)
    id_info = b.graph.tensor_info(ids) if ids else None
    if cache is None or b.const(sin) is None:
        return "its cos/sin caches are not constants"
    if id_info is not None and id_info.shape is not None and len(id_info.shape) != 2:
        return "position ids given as a start offset (shape (1)) are not supported"
    info = b.graph.tensor_info(x)
    heads = int(a.get("num_heads", 0) or 0)
    rank = len(info.shape) if info is not None and info.shape is not None else (3 if heads else 4)
    if rank == 3 and not heads:
        return "a 3-D input needs num_heads"
    half = int(cache.shape[-1])
    rot = 2 * half
    name = n.name
    x4 = (b.add("Reshape", [x, b.constant("split_heads", np.array([0, 0, heads, -1], np.int64))],
                [f"{name}::bsnh"], since=14) if rank == 3
          else b.add("Transpose", [x], [f"{name}::bsnh"], {"perm": [0, 2, 1, 3]}))
    last = b.constant("last_axis", np.array([-1], np.int64))
    unsq = b.constant("head_axis", np.array([2], np.int64))

    def piece(tag, t, start, end, step=1):
        return b.add("Slice", [t, b.constant(f"{tag}_start", np.array([start], np.int64)),
                               b.constant(f"{tag}_end", np.array([end], np.int64)), last,
                               b.constant(f"{tag}_step", np.array([step], np.int64))], [f"{name}::{tag}"])

    split = int(a.get("rotary_embedding_dim", 0) or 0) not in (0,)
    x_rot = piece("rotated", x4, 0, rot) if split else x4
    tables = {}
    for tag, table in (("cos", cos), ("sin", sin)):
        t = b.add("Gather", [table, ids], [f"{name}::{tag}"], {"axis": 0}) if ids else table
        tables[tag] = b.add("Unsqueeze", [t, unsq], [f"{name}::{tag}_heads"])
    if a.get("interleaved", 0):
        x1, x2 = piece("x1", x_rot, 0, rot, 2), piece("x2", x_rot, 1, rot, 2)
    else:
        x1, x2 = piece("x1", x_rot, 0, half), piece("x2", x_rot, half, rot)
    terms = {}
    for tag, u, t in (("x1cos", x1, "cos"), ("x2sin", x2, "sin"), ("x1sin", x1, "sin"), ("x2cos", x2, "cos")):
        terms[tag] = b.add("Mul", [u, tables[t]], [f"{name}::{tag}"], since=14)
    real = b.add("Sub", [terms["x1cos"], terms["x2sin"]], [f"{name}::real"], since=14)
    imag = b.add("Add", [terms["x1sin"], terms["x2cos"]], [f"{name}::imag"], since=14)
    if a.get("interleaved", 0):
        pair = b.constant("pair_axis", np.array([-1], np.int64))
        parts = [b.add("Unsqueeze", [t, pair], [f"{t}_pair"]) for t in (real, imag)]
        joined = b.add("Concat", parts, [f"{name}::pairs"], {"axis": -1})
        rotated = b.add("Reshape", [joined, b.constant("unpair", np.array([0, 0, 0, -1], np.int64))],
                        [f"{name}::rotated_out"], since=14)
    else:
        rotated = b.add("Concat", [real, imag], [f"{name}::rotated_out"], {"axis": -1})
    if split:
        rotated = b.add("Concat", [rotated, piece("kept", x4, rot, 2**62)], [f"{name}::joined"], {"axis": -1})
    if rank == 3:
        b.add("Reshape", [rotated, b.constant("merge_heads", np.array([0, 0, -1], np.int64))], [n.outputs[0]],
              since=14)
    else:
        b.add("Transpose", [rotated], [n.outputs[0]], {"perm": [0, 2, 1, 3]})
    return None


# ---------------------------------------------------------------------------------------------- ai.onnx.ml
_POST = {"NONE": None, "SOFTMAX": ("Softmax", 13, {"axis": -1}), "LOGISTIC": ("Sigmoid", 13, {})}


def _linear_model(b: NodeBuilder, classifier: bool):
    """``LinearClassifier`` (its scores, output 1; the label stays onnxruntime's) and ``LinearRegressor``: a dense
    layer ``x @ Wᵀ + b``, then the post-transform (Softmax, Sigmoid)."""
    n, a = b.node, b.node.attrs
    post = a.get("post_transform", "NONE")
    post = post.decode() if isinstance(post, bytes) else post
    if post not in _POST:
        return f"post_transform {post!r} is not supported (NONE, SOFTMAX, LOGISTIC are)"
    coef = np.asarray(a.get("coefficients") or [], dtype=np.float64)
    intercepts = np.asarray(a.get("intercepts") or [], dtype=np.float64)
    rows = len(a.get("classlabels_ints") or a.get("classlabels_strings") or []) if classifier \
        else int(a.get("targets", 1))
    out = n.outputs[1] if classifier else n.outputs[0]
    if not rows or coef.size % rows or (intercepts.size not in (0, rows)):
        return (f"coefficients for {coef.size // max(rows, 1)} rows and {rows} classes or targets (a single-row "
                "binary classifier) are not supported")
    if classifier and (len(n.outputs) < 2 or not out):
        return "it has no score output"
    weight = b.constant("weight", coef.reshape(rows, -1).T)
    bias = b.constant("bias", intercepts) if intercepts.size else ""
    step = _POST[post]
    if step is None:
        b.add("Dense", [n.inputs[0], weight, bias], [out], since=1, domain="onnxlrp")
        return None
    z = b.add("Dense", [n.inputs[0], weight, bias], [f"{n.name}::scores"], since=1, domain="onnxlrp")
    b.add(step[0], [z], [out], step[2], step[1])
    return None


_HANDLERS = {
    (_MS, "Attention"): _attention,
    (_MS, "MultiHeadAttention"): _multi_head_attention,
    (_MS, "SkipLayerNormalization"): lambda b: _skip_norm(b, rms=False),
    (_MS, "SkipSimplifiedLayerNormalization"): lambda b: _skip_norm(b, rms=True),
    ("", "SimplifiedLayerNormalization"): _simplified_norm,
    (_MS, "Gelu"): lambda b: _gelu(b),
    (_MS, "BiasGelu"): lambda b: _gelu(b, bias_port=1),
    (_MS, "FastGelu"): lambda b: _gelu(b, "tanh", bias_port=1),
    (_MS, "GemmFastGelu"): lambda b: _gelu(b, "tanh", bias_port=2, matmul=True),
    (_MS, "QuickGelu"): _quick_gelu,
    (_MS, "BiasAdd"): _bias_add,
    (_MS, "FusedConv"): _fused_conv,
    (_MS, "FusedGemm"): _fused_gemm,
    (_MS, "FusedMatMul"): _fused_matmul,
    (_MS, "RotaryEmbedding"): lambda b: _rotary(b, standard=False),
    ("", "RotaryEmbedding"): lambda b: _rotary(b, standard=True),
    ("ai.onnx.ml", "LinearClassifier"): lambda b: _linear_model(b, classifier=True),
    ("ai.onnx.ml", "LinearRegressor"): lambda b: _linear_model(b, classifier=False),
}
