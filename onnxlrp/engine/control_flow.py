"""Control flow before anything else looks at the graph: ``If`` nodes whose condition is fixed are inlined.

A deployed graph often carries an ``If`` whose condition does not depend on the input's values: a constant, or a
test on the input's shape (``Shape → Gather → Equal``) when that shape is static. Such a node is replaced by the
nodes of the branch it always takes, so the relevance path, the kernels and onnxruntime all see plain ops:

* names produced inside the branch get the prefix ``<If node>/`` (node names too), so they cannot collide;
* the branch's outputs become the ``If`` node's outputs (an ``Identity`` where the branch passes an outer tensor
  straight through);
* the branch's initializers move to the main graph under their prefixed names.

The condition is found as a constant (an initializer or ``Constant``, through ``Identity``), or computed with
``onnx.reference`` from the graph's constants and, for a shape test, a zero input of the static shape (values never
matter there: a shape-only subgraph cannot read them). An ``If`` whose condition depends on the input's values
stays in place and the relevance path reports it by name. Nested ``If`` nodes are inlined in further passes.

:func:`implicit_inputs` lists the outer-scope tensors a node's subgraphs read (``If``, ``Loop``, ``Scan``): the
graph counts them as inputs of the node, so whether an output depends on the explained input is decided right.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

#: ops whose output depends on an input's shape only
SHAPE_OPS = ("Shape", "Size")
#: ops whose output shape depends on their input's values
DATA_SHAPED = ("NonZero", "Unique", "Compress", "NonMaxSuppression", "TopK", "StringSplit")


def implicit_inputs(node: onnx.NodeProto) -> tuple[str, ...]:
    """Outer-scope tensor names read by ``node``'s subgraphs (recursively), in first-use order."""
    found: list[str] = []
    for attr in node.attribute:
        graphs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
        for graph in graphs:
            for name in _free_names(graph):
                if name not in found:
                    found.append(name)
    return tuple(found)


def _free_names(graph: onnx.GraphProto) -> list[str]:
    defined = {v.name for v in graph.input} | {t.name for t in graph.initializer}
    free: list[str] = []
    for node in graph.node:
        for name in list(node.input) + list(implicit_inputs(node)):
            if name and name not in defined and name not in free:
                free.append(name)
        defined.update(node.output)
    free += [v.name for v in graph.output if v.name not in defined and v.name not in free]
    return free


def sort_nodes(model: onnx.ModelProto, log: list[str] | None = None) -> onnx.ModelProto:
    """``model`` with its nodes in topological order (modified in place), as onnxruntime runs it: a node that reads
    a tensor produced later in the file (some converters append their Casts at the end) moves after its producer;
    the file's order is kept wherever it is already valid. A cycle is left for the graph to report."""
    nodes = list(model.graph.node)
    producer = {o: k for k, n in enumerate(nodes) for o in n.output if o}
    needs = [{producer[t] for t in list(n.input) + list(implicit_inputs(n)) if t in producer and producer[t] != k}
             for k, n in enumerate(nodes)]
    if all(all(p < k for p in deps) for k, deps in enumerate(needs)):
        return model
    order, placed = [], set()
    pending = list(range(len(nodes)))
    while pending:
        ready = next((k for k in pending if needs[k] <= placed), None)
        if ready is None:
            return model  # a cycle
        pending.remove(ready)
        placed.add(ready)
        order.append(ready)
    del model.graph.node[:]
    model.graph.node.extend(nodes[k] for k in order)
    if log is not None:
        log.append("sorted the nodes into topological order (the file lists a node before the one producing its "
                   "input)")
    return model


def inline_fixed_ifs(model: onnx.ModelProto, log: list[str] | None = None) -> onnx.ModelProto:
    """``model`` (modified in place and returned) with every ``If`` whose condition is fixed replaced by the branch
    it takes; ``log`` receives one line per inlined node."""
    for _ in range(16):  # nested Ifs surface one level per pass
        graph = model.graph
        index = next((k for k, n in enumerate(graph.node) if n.op_type == "If" and n.domain in ("", "ai.onnx")
                      and _condition(model, n.input[0]) is not None), None)
        if index is None:
            return model
        node = graph.node[index]
        taken = bool(_condition(model, node.input[0]))
        branch = next(a.g for a in node.attribute if a.name == ("then_branch" if taken else "else_branch"))
        name = node.name or f"If_{index}"
        nodes, initializers = _inlined(branch, node, f"{name}/")
        del graph.node[index]
        for k, new in enumerate(nodes):
            graph.node.insert(index + k, new)
        graph.initializer.extend(initializers)
        if log is not None:
            log.append(f"inlined If {name!r}: its condition is fixed ({taken}), so it always takes its "
                       f"{'then' if taken else 'else'} branch")
    return model


def _inlined(branch: onnx.GraphProto, node: onnx.NodeProto, prefix: str):
    local = {t.name for t in branch.initializer} | {o for n in branch.node for o in n.output if o}
    outputs = dict(zip((v.name for v in branch.output), node.output))
    rename = {name: outputs.get(name, prefix + name) for name in local}
    nodes = []
    for k, inner in enumerate(branch.node):
        copy = onnx.NodeProto()
        copy.CopyFrom(inner)
        copy.name = prefix + (inner.name or f"{inner.op_type}_{k}")
        _rename(copy, rename)
        nodes.append(copy)
    for value in branch.output:  # an output the branch does not compute: pass the outer (or initializer) tensor
        if value.name not in {o for n in branch.node for o in n.output}:
            source = rename.get(value.name, value.name)
            nodes.append(helper.make_node("Identity", [source], [outputs[value.name]],
                                          name=f"{prefix}{value.name}/passthrough"))
    initializers = []
    for tensor in branch.initializer:
        copy = onnx.TensorProto()
        copy.CopyFrom(tensor)
        copy.name = rename[tensor.name]
        initializers.append(copy)
    return nodes, initializers


def _rename(node: onnx.NodeProto, rename: dict[str, str]) -> None:
    """Rename ``node``'s inputs and outputs, and the outer-scope names its subgraphs read (not ones they define)."""
    node.input[:] = [rename.get(n, n) for n in node.input]
    node.output[:] = [rename.get(n, n) for n in node.output]
    for attr in node.attribute:
        for graph in ([attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)):
            inner_defined = {v.name for v in graph.input} | {t.name for t in graph.initializer} | \
                {o for n in graph.node for o in n.output}
            outer = {k: v for k, v in rename.items() if k not in inner_defined}
            for inner in graph.node:
                _rename(inner, outer)
            for value in graph.output:
                if value.name in outer:
                    value.name = outer[value.name]


def _condition(model: onnx.ModelProto, name: str):
    """The value of the boolean ``name`` when it is fixed (a constant, or a shape test on static shapes), else
    ``None``."""
    graph = model.graph
    producers = {o: n for n in graph.node for o in n.output if o}
    initializers = {t.name: t for t in graph.initializer}
    needed, stack, inputs = set(), [(name, False)], set()
    graph_inputs = {v.name: v for v in graph.input if v.name not in initializers}
    seen = set()
    while stack:  # (tensor, whether only its shape matters)
        tensor, shape_only = stack.pop()
        if not tensor or (tensor, shape_only) in seen:
            continue
        seen.add((tensor, shape_only))
        needed.add(tensor)
        if tensor in initializers:
            continue
        if tensor in graph_inputs:
            if not shape_only:
                return None  # the condition reads an input's values
            inputs.add(tensor)
            continue
        node = producers.get(tensor)
        if node is None or node.op_type in ("If", "Loop", "Scan") or (shape_only and node.op_type in DATA_SHAPED):
            return None
        reads_shape = shape_only or node.op_type in SHAPE_OPS
        stack.extend((t, reads_shape) for t in list(node.input) + list(implicit_inputs(node)))
    feeds = {}
    for source in inputs:
        shape = _static_shape(graph_inputs[source])
        if shape is None:
            return None
        dtype = helper.tensor_dtype_to_np_dtype(graph_inputs[source].type.tensor_type.elem_type)
        feeds[source] = np.zeros(shape, dtype=dtype)
    try:
        from onnx.reference import ReferenceEvaluator
        value = ReferenceEvaluator(_extract(model, needed, name, inputs)).run(None, feeds)[0]
    except Exception:  # anything the reference evaluator cannot run: leave the If in place
        return None
    value = np.asarray(value)
    return bool(value.reshape(-1)[0]) if value.size == 1 else None


def _extract(model: onnx.ModelProto, needed: set[str], output: str, inputs: set[str]) -> onnx.ModelProto:
    graph = model.graph
    nodes = [n for n in graph.node if any(o in needed for o in n.output)]
    values = [v for v in graph.input if v.name in inputs]
    small = helper.make_graph(nodes, "condition", values, [helper.make_tensor_value_info(output, 0, None)],
                              [t for t in graph.initializer if t.name in needed])
    return helper.make_model(small, opset_imports=model.opset_import, ir_version=model.ir_version)


def _static_shape(value: onnx.ValueInfoProto) -> tuple[int, ...] | None:
    dims = value.type.tensor_type.shape.dim
    if not value.type.tensor_type.HasField("shape") or not all(d.HasField("dim_value") for d in dims):
        return None
    return tuple(d.dim_value for d in dims)
