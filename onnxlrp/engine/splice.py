"""Contrastive splicing: graph heads replaced or added before propagation starts.

A contrastive method asks "why the target rather than something else". It is expressed by splicing a new head into
the relevance path and seeding it; the forward pass is reused (linear kernels recompute what they need from their
inputs) and the walker sees an ordinary node list.

* :func:`splice_dense_head` replaces the final dense node (Gemm / MatMul / fused Dense producing the logits) by an
  ``onnxlrp::RowDense`` node on the same input whose weights are chosen per sample: the dual concept of CLRP
  (rows of the other classes, their sum, or the negated target row). Rule overrides aimed at the replaced node (its
  op type or name) apply to the spliced node too.
* :func:`splice_after_output` appends a node that consumes the logits (e.g. ``LogSoftmax`` for a cross-entropy
  objective, contrastive Grad-CAM).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import MethodError
from .graph import Node
from .kernel import Kernel
from .registry import resolve

PREFIX = "onnxlrp::contrast/"


@dataclass
class Head:
    """A spliced relevance path: the walk's ``nodes``, the tensor to seed (``output``), the constants and kernels
    of the new nodes, their categories, and the tensors that vary with the input."""

    nodes: list[Node]
    output: str
    constants: dict = field(default_factory=dict)
    kernels: dict[str, Kernel] = field(default_factory=dict)
    categories: dict[str, str] = field(default_factory=dict)
    varying: set[str] = field(default_factory=set)


def final_dense(session) -> Node:
    """The dense node producing the explained logits, or a clear error."""
    node = session.canonical.producer.get(session.output_name)
    path = session.path.nodes
    if node is None or session.categories.get(node.name) != "dense" or not path or node is not path[-1]:
        found = "nothing" if node is None else f"{node.op_type} node {node.name!r}"
        raise MethodError(f"contrastive splicing needs the logits {session.output_name!r} to come from a dense layer "
                          f"(Gemm, MatMul with constant weights); they come from {found}")
    return node


def dense_weights(session, node: Node, values) -> tuple[np.ndarray, np.ndarray | None]:
    """Effective ``(W (D, C), b (C,) or None)`` of a dense node, ``z = x @ W + b`` (Gemm's alpha/beta/transB
    applied), and its input ``x`` must be 2-D ``(N, D)``."""
    op = session.linear_op(node, values)
    if op.ports != (0,) or op.inputs[0].ndim != 2 or op.params["weight"].ndim != 2:
        raise MethodError(f"contrastive splicing needs a dense layer on a 2-D input (N, features); "
                          f"{node.op_type} node {node.name!r} takes {tuple(op.inputs[0].shape)}")
    bias = op.params.get("bias")
    if bias is not None:
        # Gemm's C may be a scalar, (C,) or (1, C), as in canonize
        bias = session.xp.broadcast_to(bias.reshape(-1), (op.params["weight"].shape[1],))
    return op.params["weight"], bias


def splice_dense_head(session, dense: Node, weight, bias, tag: str) -> Head:
    """Replace ``dense`` by ``onnxlrp::RowDense(x, weight (N, D, K), bias (N, K) | None)``; seed ``Head.output``."""
    name = f"{PREFIX}{tag}/{dense.name}"
    w_name, b_name, out = f"{name}/weight", f"{name}/bias", f"{name}/output"
    node = Node(name=name, op_type="RowDense", domain="onnxlrp", since=1,
                inputs=(dense.inputs[0], w_name, b_name if bias is not None else ""), outputs=(out,),
                attrs={"replaces": (dense.op_type, dense.name)}, index=dense.index)
    constants = {w_name: weight} if bias is None else {w_name: weight, b_name: bias}
    nodes = [n for n in session.path.nodes if n.name != dense.name] + [node]
    return _head(session, nodes, node, out, constants)


def splice_after_output(session, op_type: str, attrs: dict, tag: str) -> Head:
    """Append ``op_type`` (e.g. ``LogSoftmax``) consuming the explained output; seed ``Head.output``."""
    name = f"{PREFIX}{tag}"
    out = f"{name}/output"
    since = session.graph.opsets.get("", 17)
    node = Node(name=name, op_type=op_type, domain="", since=since, inputs=(session.output_name,), outputs=(out,),
                attrs=attrs, index=len(session.graph.nodes))
    return _head(session, list(session.path.nodes) + [node], node, out, {})


def _head(session, nodes, node, out, constants) -> Head:
    kernel = resolve(node)
    varying = set(session.path.varying) | {out}
    categories = {**session.categories, node.name: kernel.node_category(node, varying)}
    return Head(nodes=nodes, output=out, constants=constants, kernels={node.name: kernel}, categories=categories,
                varying=varying)
