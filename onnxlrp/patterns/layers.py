"""The layers that carry a pattern, and their neuron-wise view.

A pattern layer is a node on the relevance path whose op is a weighted linear layer: ``Conv``, ``Gemm``, ``MatMul``
with one constant operand, or the fused ``onnxlrp::Dense`` (the canonical graph, so a BatchNorm after a Conv/Gemm is
already folded into its weights). Every one of them is read through the kernel's :class:`~onnxlrp.engine.kernel.
LinearOp` (``session.linear_op``): its ``weight`` parameter is the effective weight a pattern replaces.

The neuron-wise view (iNNvestigate's ``get_layer_neuronwise_io``) groups the layer's input and output into rows
``(x_r, y_r)`` with ``y_r = W2Dᵀ x_r`` (no bias), per weight group ``g``: ``X (G, D, R)`` and ``Y (G, R, Mg)``.

* dense: ``x (…, K) → y (…, M)``: one row per leading index, ``D = K``, ``G = 1``; ``W2D = W (K, M)`` (for
  ``W @ x``, ``x (…, K, T)``: one row per ``(…, t)`` and ``W2D = Wᵀ``);
* Conv: one row per sample and output position: ``x_r`` is the receptive-field patch (zero padding included, as
  iNNvestigate's patch extraction), ``D = C/group · ΠK``, ``G = group``, ``W2D[g] = W[g·Mg:(g+1)·Mg].reshape(Mg, D)ᵀ``.
  Patches come from the Conv's own forward with an identity kernel, so strides, dilations, pads and groups are
  the kernel's.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ..errors import MethodError

#: (op type, domain) of the ops that carry a pattern
PATTERN_OPS = {("Conv", ""): "conv", ("Gemm", ""): "dense", ("MatMul", ""): "dense", ("Dense", "onnxlrp"): "dense"}
#: elements of one patch buffer; a batch is cut into chunks of samples that stay below it
PATCH_BUDGET = 1 << 24


@dataclass(frozen=True)
class PatternLayer:
    """One pattern layer: its node, ``"conv"`` or ``"dense"``, and for dense layers whether ``y = W @ x``."""

    node: object
    kind: str
    left_weight: bool = False

    @property
    def name(self) -> str:
        return self.node.name


def pattern_layers(session) -> list[PatternLayer]:
    """The pattern layers on ``session``'s relevance path, in topological order.

    Raises
    ------
    MethodError
        For a weighted layer PatternNet does not cover (``ConvTranspose``, a Gemm with ``transA``, a MatMul by a
        weight of rank other than 2), or a model without any pattern layer.
    """
    layers = []
    for node in session.path.nodes:
        category = session.categories[node.name]
        if category not in ("conv", "dense"):
            continue
        kind = PATTERN_OPS.get((node.op_type, node.domain))
        if kind is None:
            raise MethodError(f"PatternNet has no pattern for {node.op_type} node {node.name!r}: patterns cover Conv, "
                              "Gemm, MatMul with a constant and dense layers")
        if node.op_type == "Gemm" and node.attrs["transA"]:
            raise MethodError(f"PatternNet does not cover Gemm node {node.name!r} with transA=1")
        layer = PatternLayer(node, kind, node.op_type == "MatMul" and not session.node_varying(node)[0])
        if kind == "dense" and len(weight_shape(session, layer)) != 2:
            raise MethodError(f"PatternNet covers dense layers with a 2-D weight; {node.op_type} node {node.name!r} "
                              f"has a weight of shape {weight_shape(session, layer)}")
        layers.append(layer)
    if not layers:
        raise MethodError("the model has no Conv or dense layer on the relevance path, so there is nothing to fit a "
                          "pattern to")
    return layers


def weight_shape(session, layer: PatternLayer) -> tuple:
    """The shape of the layer's effective weight (the shape its pattern must have), from the model's constants."""
    node = layer.node
    inputs = node.inputs
    if node.op_type == "Gemm":
        shape = _constant_shape(session, inputs[1], node)
        return tuple(reversed(shape)) if node.attrs["transB"] else shape
    if node.op_type == "MatMul":
        return _constant_shape(session, inputs[0] if layer.left_weight else inputs[1], node)
    return _constant_shape(session, inputs[1], node)


def _constant_shape(session, name: str, node) -> tuple:
    value = session.canonical.constants.get(name)
    if value is None:
        raise MethodError(f"the weight {name!r} of {node.op_type} node {node.name!r} is not a constant of the model")
    return tuple(value.shape)


def weight_2d(layer: PatternLayer, weight, group: int):
    """``W2D (G, D, Mg)`` of a weight as its op holds it."""
    if layer.kind == "dense":
        return (weight.T if layer.left_weight else weight)[None]
    m = weight.shape[0]
    return weight.reshape(group, m // group, -1).transpose(0, 2, 1)


def from_2d(layer: PatternLayer, a2d, shape: tuple):
    """The inverse of :func:`weight_2d`: ``(G, D, Mg)`` back to the weight's shape."""
    if layer.kind == "dense":
        return a2d[0].T if layer.left_weight else a2d[0]
    return a2d.transpose(0, 2, 1).reshape(shape)


def group_of(layer: PatternLayer) -> int:
    return int(layer.node.attrs["group"]) if layer.kind == "conv" else 1


def neuron_rows(xp, layer: PatternLayer, op, values: Mapping):
    """``(X (G, D, R), Y (G, R, Mg), Z (G, R, Mg))`` chunk by chunk of samples (a generator): the layer's rows, the
    output without bias ``y = W2Dᵀ x`` and the output with bias ``z`` (the layer's forward value), in float64."""
    x = op.inputs[0]
    weight = op.params["weight"]
    without_bias = {**op.params, **({"bias": None} if "bias" in op.params else {})}
    output = values.get(layer.node.outputs[0])
    if layer.kind == "dense":
        y = op.forward([x], without_bias)
        z = output if output is not None and output.shape == y.shape else op.forward([x], op.params)
        if layer.left_weight:
            x, y, z = (a.swapaxes(-1, -2) for a in (x, y, z))
        rows = lambda a: xp.asarray(a.reshape(-1, a.shape[-1]), dtype=np.float64)[None]  # noqa: E731
        yield rows(x).transpose(0, 2, 1), rows(y), rows(z)
        return
    group = group_of(layer)
    m, cg = weight.shape[:2]
    kernel = tuple(weight.shape[2:])
    d = cg * math.prod(kernel)
    eye = xp.eye(d, dtype=weight.dtype).reshape((d, cg) + kernel)
    identity = xp.concatenate([eye] * group, axis=0) if group > 1 else eye
    per_sample = group * d * max(1, math.prod(x.shape[2:]))
    step = max(1, PATCH_BUDGET // per_sample)
    for start in range(0, x.shape[0], step):
        xs = x[start:start + step]
        patches = op.forward([xs], {"weight": identity, "bias": None})        # (n, G·D, *O)
        y = op.forward([xs], without_bias)                                   # (n, M, *O)
        z = output[start:start + step] if output is not None else op.forward([xs], op.params)
        n, positions = xs.shape[0], math.prod(y.shape[2:])
        cols = xp.asarray(patches, dtype=np.float64).reshape(n, group, d, positions)
        cols = cols.transpose(1, 2, 0, 3).reshape(group, d, n * positions)
        yield cols, _conv_rows(xp, y, group, m // group), _conv_rows(xp, z, group, m // group)


def _conv_rows(xp, a, group: int, per_group: int):
    """A Conv output ``(n, M, *O)`` as rows ``(G, n·ΠO, Mg)``, in float64."""
    n = a.shape[0]
    a = xp.asarray(a, dtype=np.float64).reshape(n, group, per_group, -1)
    return a.transpose(1, 0, 3, 2).reshape(group, -1, per_group)
