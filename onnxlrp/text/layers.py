"""Block boundaries of a transformer: the tensors between its blocks, whose relevance gives a per-layer view.

Found from the graph, not from one model's names, in two ways:

1. **Scopes.** Exporters name nodes after the module path, with the block index in it: ``/encoder/layer.3/...``
   (BERT, XLM-R), ``/h.3/...`` (GPT-2), ``/layers.3/...`` (Llama), ``/block.3/``, ``/blocks.3/``. The output of
   block ``k`` is the last tensor (in node order) that a node of scope ``k`` produces, that depends on the explained
   input and that a node outside scope ``k`` (or the graph output) reads: the residual stream handed to the next
   block.
2. **Residual stream**, when no node carries such a scope: the outputs of the ``Add`` nodes whose two inputs both
   depend on the explained input (a residual connection) and that feed a ``LayerNormalization`` (post-LN: the sum
   normalised at the end of each sub-block; pre-LN: the stream normalised by the next block). These are the
   sub-block boundaries (two per block in BERT), labelled ``residual 1``, ``residual 2``, ...
"""
from __future__ import annotations

import re

import onnx

SCOPE = re.compile(r"/(?:layers?|h|blocks?|blk|resblocks|encoder_layers?|decoder_layers?)[._](\d+)(?=/)")
OPAQUE_PRODUCERS = {"Shape", "Size", "Constant", "ConstantOfShape", "Range", "NonZero"}


def _depends_on(graph: onnx.GraphProto, source: str) -> set[str]:
    """Every tensor that depends on ``source`` (``source`` included), through nodes in topological order."""
    reached = {source}
    for node in graph.node:
        if node.op_type not in OPAQUE_PRODUCERS and any(i in reached for i in node.input if i):
            reached.update(o for o in node.output if o)
    return reached


def block_outputs(model: onnx.ModelProto, input_name: str) -> list[tuple[str, str]]:
    """``[(label, tensor), ...]`` from the input side to the output side: each block's output tensor, by scopes
    (``block 0``, ``block 1``, ...), else the residual-stream sums (``residual 1``, ...); empty when neither is
    found."""
    graph = model.graph
    varying = _depends_on(graph, input_name)
    nodes = list(graph.node)
    scope_of = []
    for node in nodes:
        match = SCOPE.search(node.name or "")
        scope_of.append(int(match.group(1)) if match else None)
    readers: dict[str, list[int]] = {}
    for n, node in enumerate(nodes):
        for i in node.input:
            readers.setdefault(i, []).append(n)
    outputs = {o.name for o in graph.output}
    last: dict[int, str] = {}
    for n, node in enumerate(nodes):
        k = scope_of[n]
        if k is None or node.op_type in OPAQUE_PRODUCERS:
            continue
        for t in node.output:
            if t in varying and (t in outputs or any(scope_of[r] != k for r in readers.get(t, ()))):
                last[k] = t
    if last:
        return [(f"block {k}", last[k]) for k in sorted(last)]
    found = []
    for node in nodes:
        if node.op_type == "Add" and len(node.input) == 2 and all(i in varying for i in node.input) and any(
                nodes[r].op_type == "LayerNormalization" for r in readers.get(node.output[0], ())):
            found.append(node.output[0])
    return [(f"residual {n + 1}", t) for n, t in enumerate(found)]
