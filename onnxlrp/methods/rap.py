"""Relative Attributing Propagation (RAP; Nam, Gur, Choi, Wolf & Lee, AAAI 2020, arXiv:1904.00605), computed as the
authors' code computes it (wjNam/Relative_Attributing_Propagation ``7fa9682``, ``modules/layers.py``
``RAP_relprop``; ALGORITHMS.md §4 gives the closed forms). Method name ``rap``; no parameters.

RAP separates relevant (positive) from irrelevant (negative) evidence by *relative influence* and keeps the
relevance conserved. Notation: ``⟦a/b⟧`` is RAP's safe division, ``a/b`` where ``b ≠ 0`` and 0 where ``b = 0``
(``rules.divide`` with ``ε = 0``); ``W⁺ = max(W, 0)``, ``|W⁻| = −min(W, 0)``. All sums are per sample.

* **Seed**: one-hot ``e_c`` with value exactly 1 (``relevance_init`` is ignored: RAP always seeds one-hot).
* **First step** (the dense node producing the logits, reached through reshapes): with ``x`` its input,
  ``z⁺⁺ = Σ x⁺w⁺``, ``z⁺⁻ = Σ x⁺w⁻``, ``z⁻⁺ = Σ x⁻w⁺``, ``z⁻⁻ = Σ x⁻w⁻`` (class ``c``), ``Pos = z⁺⁺ + z⁻⁻``,
  ``Neg = z⁺⁻ + z⁻⁺``: ``r_i = x_i w_ic + b_c(⟦Pos/(Pos+Neg)⟧⟦x⁺_i w⁺_ic / z⁺⁺⟧ + ⟦Neg/(Pos+Neg)⟧⟦x⁺_i w⁻_ic/z⁺⁻⟧)``
  (``Σ r = z_c``), then the absolute-influence normalisation ``A_i = |r_i| ⟦Σr / Σ|r|⟧`` (sums over the last axis,
  as the code's ``dim=-1``): every ``A_i`` has the sign of ``z_c`` and ``Σ A = z_c``.
* **Hidden Conv / dense** (bias ignored): for ``u = x⁺`` and, separately, ``u = |x⁻|``, with ``F = W⁺``,
  ``G = |W⁻|``, ``P = Fu``, ``N = Gu``, ``T = P + N``, ``q = ⟦N/T⟧``, ``R = R⁺ + R⁻``:
  ``C = u ⊙ [Fᵀ⟦R⁺[T≠0]/P⟧ + Gᵀ⟦R q/N⟧ + Hᵀ⟦R⁻[T≠0]/D⟧]`` with ``(H, D) = (G, N)`` on Conv and ``(F, P)`` on dense
  layers (the code's Linear/Conv asymmetry, kept), then the uniform shift over active neurons
  ``K = C − [C≠0]·⟦(ΣC − ΣR) / #{C≠0}⟧`` (sums over all non-batch axes on Conv, the last axis on dense layers, as the
  code), so ``ΣK = ΣR``. The layer returns the sum of both branches.
* **Input Conv** (every Conv with no Conv/dense node between it and the explained input): zᴮ without bias, bounds
  the per-sample minimum ``ℓ`` and maximum ``h`` of the Conv's input, ``s = ⟦R / (Wx − W⁺ℓ − W⁻h)⟧``,
  ``R_in = x⊙Wᵀs − ℓ⊙W⁺ᵀs − h⊙W⁻ᵀs``.
* **MaxPool, AveragePool, GlobalAveragePool, residual Add**: the z-rule ``R_in = x ⊙ Jᵀ⟦R/z⟧`` (max pooling: the
  arg-max takes ``R_j``; a window whose max is 0 drops it). Concat: the z-rule too (``R·[y≠0]`` routed back).
* **BatchNormalization**: ``R_in = R ⊙ [x·k ≠ 0]`` (the code's bias split and re-add reduce to this); ReLU and every
  other activation, Dropout, constant shifts/scalings: pass-through. Reshapes: their exact adjoint.
* **Fan-out**: contributions are summed (the walker's accumulators), so BasicBlock ResNets work.

Decisions on the code's quirks (ALGORITHMS.md §4):

* The first step is triggered at the node producing the logits, not by ``R.max() == 1``.
* The input layer is found on the graph, not by ``X.shape[1] == 3``: a 1-channel digits CNN gets zᴮ on its first
  Conv; a hidden Conv with 3 input channels does not. A first *dense* layer (MLP) gets the hidden dense rule, as in
  the code (its Linear never uses zᴮ).
* A logit layer without bias is treated as having bias 0 (the code would crash).
* Hidden-layer biases are ignored (the code's bias handling is commented out); BatchNorm's squared variance is
  harmless (only ``k ≠ 0`` matters) and kept as ``[x ≠ 0]·[γ ≠ 0]``.
* A hidden layer whose input has negative entries outputs ``2ΣR`` (both branches are conserved separately): kept,
  as in the code. On ReLU networks this never happens.
* Groups and dilation are honoured (the code's transposed convolutions assume 1); on ordinary convolutions the result
  is the same.
* The code's broken ``Clone`` (BasicBlock) is replaced by summing fan-out.
* **BatchNorm folding.** RAP is not invariant to folding a BatchNorm with a negative scale into the preceding layer
  (``W⁺`` and ``|W⁻|`` swap) and the code applies the BatchNorm mask before the convolution's shift. Where
  onnxlrp's canonizer folded a BatchNormalization into a Conv/Gemm/dense node, RAP "unfolds" it: the node's rule uses
  the original weight and bias from the model and masks its output relevance with ``[x_pre·k ≠ 0]``, which is
  exactly the code's BatchNorm step followed by its Conv step. When the *exporter* already folded BatchNorm (the
  legacy ``torch.onnx.export`` does in eval mode with ``do_constant_folding=True``) the original weights are gone;
  export with BatchNormalization kept (``training=TrainingMode.PRESERVE`` or ``do_constant_folding=False``) to match
  the authors' code on networks with negative BatchNorm scales. :func:`exporter_folded_batchnorms` finds such nodes
  from what the exports leave behind, and :func:`run` warns (:class:`~onnxlrp.errors.FoldedBatchNormWarning`).
"""
from __future__ import annotations

import re
import warnings

import numpy as np

from ..errors import FoldedBatchNormWarning, MethodError
from ..lrp.assign import first_layers
from ..lrp.rap import RapBatchNorm, RapConcat, RapFirst, RapHidden, RapInput, RapMaxPool, Unfolded
from ..lrp.rules import Gradient, Norm, Pass, Rule
from .base import Method, propagate_target

#: ops a relevance seed passes through unchanged between the logit layer and the explained output
_RESHAPES = ("Flatten", "Reshape", "Squeeze", "Unsqueeze", "Identity", "Dropout")


def _const(session, name):
    if not name:
        return None
    value = session.graph.constants.get(name)
    return None if value is None else np.asarray(value, dtype=np.float64)


def _original_params(session, pre) -> tuple[np.ndarray, np.ndarray | None] | None:
    """``(weight, bias)`` of the original node ``pre`` producing the BatchNorm's input, in the layout of the node the
    canonizer made of it (the kernel's linear view, in float64), or ``None``."""
    if pre is None or pre.domain != "":
        return None
    if pre.op_type in ("Conv", "Gemm"):
        if any(t and t not in session.graph.constants for t in pre.inputs[1:]) or (
                pre.op_type == "Gemm" and pre.attrs.get("transA")):
            return None
        op = session.linear_op(pre, dtype=np.float64)
        weight, bias = session.host(op.params["weight"]), op.params.get("bias")
        if bias is not None:
            bias = session.host(bias)
            if pre.op_type == "Gemm":
                bias = np.broadcast_to(bias, (weight.shape[1],))
        return weight, bias
    if pre.op_type == "Add":  # MatMul + Add fused into a dense layer by the canonizer
        for port in (0, 1):
            matmul = session.graph.producer.get(pre.inputs[port])
            bias = _const(session, pre.inputs[1 - port])
            if matmul is not None and matmul.op_type == "MatMul" and bias is not None:
                weight = _const(session, matmul.inputs[1])
                if weight is not None and weight.ndim == 2:
                    return weight, np.broadcast_to(bias, (weight.shape[1],)).copy()
    return None


def unfolded(session, node) -> Unfolded | None:
    """The BatchNormalization the canonizer folded into ``node`` (a Conv or dense node), or ``None``."""
    bn = session.graph.producer.get(node.outputs[0]) if node.outputs else None
    if bn is None or bn.op_type != "BatchNormalization" or bn.domain != "" or node.op_type == "BatchNormalization":
        return None
    gamma = _const(session, bn.inputs[1])
    if gamma is None:
        return None
    # the code's k = γ/√(σ⁴+ε) (variance squared) matters only through k ≠ 0, i.e. γ ≠ 0, and its sign, γ's
    axis = "conv" if node.op_type == "Conv" else "dense"
    original = _original_params(session, session.graph.producer.get(bn.inputs[0]))
    weight, bias = original if original is not None else (None, None)
    return Unfolded(batchnorm=bn.name, keep=gamma != 0, sign=np.sign(gamma), axis=axis, weight=weight, bias=bias)


# ---------------------------------------------------------------------------------------------- assignment


def logit_node(session):
    """The dense node producing the explained logits (through reshapes), where RAP's first step runs."""
    on_path = {n.name for n in session.path.nodes}
    node = session.canonical.producer.get(session.output_name)
    while (node is not None and node.name in on_path and node.op_type in _RESHAPES
           and session.categories.get(node.name) == "structural"):
        node = session.canonical.producer.get(node.inputs[0])
    if node is None or node.name not in on_path or session.categories.get(node.name) != "dense":
        found = "nothing" if node is None else f"{node.op_type} node {node.name!r}"
        raise MethodError(f"RAP needs the logits {session.output_name!r} to come from a dense layer (Gemm, MatMul with "
                          f"constant weights), where its first step runs; they come from {found}")
    return node


def assign(session, params) -> dict[str, Rule]:
    """RAP's rule for every node on the relevance path."""
    nodes, categories = session.path.nodes, session.categories
    logits = logit_node(session).name
    inputs = first_layers(nodes, categories, session.path.varying, ("conv",))
    z_rule, passing = Norm(0.0), Pass()
    rules: dict[str, Rule] = {}
    for node in nodes:
        category = categories[node.name]
        if category in ("conv", "dense"):
            unfold = unfolded(session, node)
            if node.name == logits:
                rules[node.name] = RapFirst(unfold)
            elif node.name in inputs:
                rules[node.name] = RapInput(unfold)
            else:
                rules[node.name] = RapHidden("conv" if category == "conv" else "linear", unfold)
        elif category in ("avgpool", "sum"):
            rules[node.name] = z_rule
        elif category == "maxpool":
            rules[node.name] = RapMaxPool()
        elif category == "batchnorm":
            rules[node.name] = RapBatchNorm()
        elif category in ("activation", "affine", "softmax"):
            rules[node.name] = passing
        elif node.op_type == "Concat":
            rules[node.name] = RapConcat()
        else:
            rules[node.name] = Gradient()
    return rules


#: a Conv weight the legacy ``torch.onnx.export`` computed by constant folding (it names module parameters by their
#: path). Only Conv: the legacy exporter folds BatchNorms into convolutions, while an ``onnx::MatMul_<n>`` weight is
#: the constant-folded transpose of an ordinary ``nn.Linear`` weight (every transformer export has dozens)
_FOLDED_WEIGHT = re.compile(r"onnx::Conv_\d+")


#: the last component of a BatchNorm module's class (``torch.nn.modules.batchnorm.BatchNorm2d``) or its aten op
_BATCHNORM_CLASS = re.compile(r"(Sync)?BatchNorm\w*|_native_batch_norm\w*|batch_norm\w*")


def exporter_folded_batchnorms(session) -> list[tuple[str, str]]:
    """``(node, evidence)`` for every Conv/Gemm/MatMul of the model whose weights carry a BatchNorm the exporter
    folded. What the exports leave behind (PyTorch 2.x; nothing is left by exporters that fold silently):

    * the dynamo exporter (``optimize=True``): the node's ``pkg.onnxscript.rewriter.rule_name`` metadata names a
      ``FuseBatchNorm...`` rewrite, or its ``pkg.torch.onnx.class_hierarchy`` names a BatchNorm module class;
    * the legacy exporter (``do_constant_folding=True``, eval mode): a Conv's weight is an initializer named
      ``onnx::Conv_<n>`` (a tensor computed at export), not the module's parameter path (``features.0.weight``),
      in a model produced by ``pytorch`` (a MatMul's ``onnx::MatMul_<n>`` is a folded transpose, no evidence).
    """
    proto = session.graph.model
    initializers = {t.name for t in proto.graph.initializer}
    from_pytorch = proto.producer_name == "pytorch"
    found = []
    for node in proto.graph.node:
        if node.op_type not in ("Conv", "Gemm", "MatMul") or node.domain not in ("", "ai.onnx"):
            continue
        meta = {p.key: p.value for p in node.metadata_props}
        weight = node.input[1] if len(node.input) > 1 else ""
        if "FuseBatchNorm" in meta.get("pkg.onnxscript.rewriter.rule_name", ""):
            found.append((node.name, f"the exporter's rewrite {meta['pkg.onnxscript.rewriter.rule_name']}"))
        elif any(_BATCHNORM_CLASS.fullmatch(item.rsplit(".", 1)[-1])
                 for item in re.findall(r"'([^']*)'", meta.get("pkg.torch.onnx.class_hierarchy", ""))):
            found.append((node.name, "its recorded module is a BatchNorm"))
        elif from_pytorch and weight in initializers and _FOLDED_WEIGHT.fullmatch(weight):
            found.append((node.name, f"its weight {weight!r} was computed by constant folding"))
    return found


def run(session, x, feeds, target, params, options):
    """Forward, one-hot seed (value 1) at the target, RAP's rules (plus user overrides), propagate; warn first when
    the exporter folded BatchNorms into the weights (:func:`exporter_folded_batchnorms`)."""
    folded = exporter_folded_batchnorms(session)
    if folded:
        (name, evidence), more = folded[0], len(folded) - 1
        warnings.warn(FoldedBatchNormWarning(
            f"rap: the exporter folded a BatchNorm into {repr(name) if name else 'a node'} ({evidence})"
            f"{f' and {more} more node' + ('s' if more > 1 else '') if more else ''}; RAP is not invariant to that "
            "folding (maps differ by several percent with negative BatchNorm scales): to follow the authors' code, "
            "export with the BatchNorm kept (torch.onnx.export with do_constant_folding=False, or dynamo=True with "
            "optimize=False)"), stacklevel=2)
    return propagate_target(session, x, feeds, target, assign(session, params), options, mode="one_hot")


METHODS = [
    Method("rap", "Relative Attributing Propagation (Nam et al. 2020) as the authors' code computes it: positive and "
           "negative relevance by relative influence, conserved (sums to the target logit)", {}, "lrp", run, assign),
]
