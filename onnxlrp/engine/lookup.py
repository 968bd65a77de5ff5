"""Integer inputs (token ids, user or item ids, category codes) are explained at the float tensor that reads them.

Relevance cannot flow into an integer. A model that takes ids turns them into floats in one of a few ways, and the
relevance of an id is the relevance of what it became:

* an embedding lookup: ``Gather(table, ids)`` with a constant 2-D float table (:func:`find_embedding`);
* ``OneHot(ids, depth, values)`` with float values;
* the ``Cast(Equal(ids, classes))`` idiom (a one-hot written out), to a float type.

:func:`find_lookup` finds the first such tensor fed by the ids; :class:`IdsLookup` cuts the model there
(:func:`cut_at`: the lookup's output becomes a graph input) and computes that tensor from the ids with a small
model of its ancestors only (:func:`upstream_model`). The relevance of each id position is the lookup's relevance
summed over its last axis (the embedding or one-hot axis).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import onnx

from ..errors import EmbeddingNotFoundError, NameSelectionError

FLOAT_TYPES = (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16)


INT_TYPES = {onnx.TensorProto.INT64: np.int64, onnx.TensorProto.INT32: np.int32}


def _elem_np(elem_type: int):
    return onnx.helper.tensor_dtype_to_np_dtype(elem_type)


def _ancestors(graph: onnx.GraphProto, tensor: str) -> set[str]:
    producer = {o: n for n in graph.node for o in n.output}
    seen, stack = set(), [tensor]
    while stack:
        t = stack.pop()
        if t in seen:
            continue
        seen.add(t)
        node = producer.get(t)
        if node is not None:
            stack.extend(i for i in node.input if i)
    return seen


def find_embedding(model: onnx.ModelProto, ids_input: str) -> str:
    """The output tensor of the first ``Gather`` (in node order) that looks the token ids up in a 2-D float
    table (an initializer or a ``Constant``)."""
    graph = model.graph
    tables = {t.name: t for t in graph.initializer}
    tables.update({n.output[0]: next((a.t for a in n.attribute if a.name == "value"), None)
                   for n in graph.node if n.op_type == "Constant"})
    for node in graph.node:
        if node.op_type != "Gather" or node.domain not in ("", "ai.onnx") or len(node.input) < 2:
            continue
        table = tables.get(node.input[0])
        if table is None or len(table.dims) != 2 or table.data_type not in (
                onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16):
            continue
        axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
        if axis == 0 and ids_input in _ancestors(graph, node.input[1]):
            return node.output[0]
    raise EmbeddingNotFoundError(
        f"cannot find the token embedding: no Gather looks up {ids_input!r} in a 2-D embedding table; name the "
        "embedding tensor with embedding= (--embedding)")


def cut_at(model: onnx.ModelProto, tensor: str, shape: Sequence, elem_type: int | None = None) -> onnx.ModelProto:
    """A copy of ``model`` where ``tensor`` is a graph input (its producer removed) of the given shape and element
    type (default: the embedding table's)."""
    cut = onnx.ModelProto()
    cut.CopyFrom(model)
    graph = cut.graph
    producer = next((n for n in graph.node if tensor in n.output), None)
    if producer is None:
        raise NameSelectionError(f"the model has no tensor named {tensor!r} produced by a node")
    if len(producer.output) != 1:
        raise NameSelectionError(f"cannot cut the model at {tensor!r}: its node {producer.name!r} has several outputs")
    elem = table_type(model, producer) if elem_type is None else elem_type
    graph.node.remove(producer)
    for vi in list(graph.value_info):
        if vi.name == tensor:
            graph.value_info.remove(vi)
    graph.input.append(onnx.helper.make_tensor_value_info(tensor, elem, list(shape)))
    return cut


def upstream_model(model: onnx.ModelProto, tensor: str, elem_type: int) -> onnx.ModelProto:
    """A model computing only ``tensor``: the nodes it depends on, with their initializers and graph inputs (the
    embedding lookup, not the whole encoder)."""
    producer = {o: n for n in model.graph.node for o in n.output if o}
    keep, stack = set(), [tensor]
    while stack:
        node = producer.get(stack.pop())
        if node is not None and id(node) not in keep:
            keep.add(id(node))
            stack.extend(t for t in node.input if t)
    nodes = [n for n in model.graph.node if id(n) in keep]
    used = {t for n in nodes for t in n.input}
    graph = onnx.helper.make_graph(nodes, f"{model.graph.name}-upstream-{tensor}",
                                   [i for i in model.graph.input if i.name in used],
                                   [onnx.helper.make_tensor_value_info(tensor, elem_type, None)],
                                   [t for t in model.graph.initializer if t.name in used])
    out = onnx.helper.make_model(graph, opset_imports=model.opset_import)
    out.ir_version = model.ir_version
    return out


def table_type(model: onnx.ModelProto, gather: onnx.NodeProto) -> int:
    for t in model.graph.initializer:
        if t.name == gather.input[0]:
            return t.data_type
    return onnx.TensorProto.FLOAT


def find_lookup(model: onnx.ModelProto, ids_input: str) -> str:
    """The first float tensor (in node order) that turns ``ids_input`` into floats: an embedding ``Gather``, a
    ``OneHot`` or a ``Cast`` of an ``Equal`` to a float type; :class:`EmbeddingNotFoundError` when there is none."""
    graph = model.graph
    for node in graph.node:
        if node.domain not in ("", "ai.onnx"):
            continue
        if node.op_type == "Gather":
            try:
                if find_embedding(_only(model, node), ids_input) == node.output[0]:
                    return node.output[0]
            except EmbeddingNotFoundError:
                continue
        elif node.op_type == "OneHot" and ids_input in _ancestors(graph, node.input[0]):
            return node.output[0]
        elif node.op_type == "Cast" and _attr(node, "to") in FLOAT_TYPES:
            source = next((n for n in graph.node if node.input[0] in n.output), None)
            if source is not None and source.op_type == "Equal" and _one_hot_equal(model, source, ids_input):
                return node.output[0]
    raise EmbeddingNotFoundError(
        f"input {ids_input!r} holds integers (ids), and no embedding Gather, OneHot or Cast(Equal(...)) turns it into "
        "floats to explain instead; explain a float input, or name the tensor with lookup=")


def _one_hot_equal(model: onnx.ModelProto, equal: onnx.NodeProto, ids_input: str) -> bool:
    """``Equal(ids, classes)`` against a constant list of classes (a one-hot), not against one value (a pad mask)."""
    constants = {t.name: tuple(t.dims) for t in model.graph.initializer}
    constants.update({n.output[0]: tuple(next((a.t.dims for a in n.attribute if a.name == "value"), ()))
                      for n in model.graph.node if n.op_type == "Constant"})
    for ids_side, other in ((equal.input[0], equal.input[1]), (equal.input[1], equal.input[0])):
        if ids_input in _ancestors(model.graph, ids_side) and other in constants:
            dims = constants[other]
            if int(np.prod(dims)) > 1 if dims else False:
                return True
    return False


def _only(model: onnx.ModelProto, node: onnx.NodeProto) -> onnx.ModelProto:
    """``model`` with ``node`` as its last node (so :func:`find_embedding` looks at this Gather only)."""
    view = onnx.ModelProto()
    view.CopyFrom(model)
    nodes = list(view.graph.node)
    k = next(i for i, n in enumerate(model.graph.node) if n is node)
    del view.graph.node[:]
    view.graph.node.extend(nodes[:k] + [nodes[k]])
    return view


def _attr(node: onnx.NodeProto, name: str):
    attr = next((a for a in node.attribute if a.name == name), None)
    return None if attr is None else onnx.helper.get_attribute_value(attr)


def _lookup_type(model: onnx.ModelProto, node: onnx.NodeProto) -> int:
    if node.op_type == "Gather":
        return table_type(model, node)
    if node.op_type == "Cast":
        return int(_attr(node, "to"))
    values = next((t for t in model.graph.initializer if len(node.input) > 2 and t.name == node.input[2]), None)
    return values.data_type if values is not None else onnx.TensorProto.FLOAT


class IdsLookup:
    """The model cut at the float tensor that reads an integer input (see the module docstring).

    ``cut`` is the model with ``tensor`` as an input; :meth:`embed` computes ``tensor`` from the ids (and the other
    inputs its ancestors read) with onnxruntime.
    """

    def __init__(self, model: onnx.ModelProto, ids_input: str, tensor: str | None = None):
        import onnxruntime as ort

        self.ids_input = ids_input
        self.tensor = tensor or find_lookup(model, ids_input)
        node = next((n for n in model.graph.node if self.tensor in n.output), None)
        if node is None:
            raise NameSelectionError(f"the model has no tensor named {self.tensor!r} produced by a node")
        ids = next(i for i in model.graph.input if i.name == ids_input)
        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or f"{ids_input}_dim{k}")
                for k, d in enumerate(ids.type.tensor_type.shape.dim)]
        width = self._width(model, node)
        self.elem_type = _lookup_type(model, node)
        self.cut = cut_at(model, self.tensor, dims + [width], self.elem_type)
        upstream = upstream_model(model, self.tensor, self.elem_type)
        options = ort.SessionOptions()
        options.log_severity_level = 4
        self._session = ort.InferenceSession(upstream.SerializeToString(), options,
                                             providers=["CPUExecutionProvider"])
        self.upstream_inputs = [i.name for i in upstream.graph.input]
        #: whether the cut model still reads the ids elsewhere (a mask computed from them): feed them there too
        self.cut_reads_ids = any(i.name == ids_input for i in self.cut.graph.input)

    @staticmethod
    def _width(model: onnx.ModelProto, node: onnx.NodeProto):
        if node.op_type == "Gather":
            table = next((t for t in model.graph.initializer if t.name == node.input[0]), None)
            if table is not None and len(table.dims) == 2:
                return int(table.dims[1])
        if node.op_type == "OneHot":
            depth = next((t for t in model.graph.initializer if t.name == node.input[1]), None)
            if depth is not None:
                return int(onnx.numpy_helper.to_array(depth).reshape(-1)[0])
        for vi in list(model.graph.value_info) + list(model.graph.output):
            if vi.name == node.output[0]:
                dims = vi.type.tensor_type.shape.dim
                if dims and dims[-1].HasField("dim_value"):
                    return int(dims[-1].dim_value)
        return f"{node.output[0]}_width"

    def embed(self, ids: np.ndarray, feeds: Mapping[str, np.ndarray]) -> np.ndarray:
        """The lookup tensor for ``ids`` (and the other inputs the lookup reads, from ``feeds``)."""
        given = {self.ids_input: ids, **feeds}
        missing = [n for n in self.upstream_inputs if n not in given]
        if missing:
            raise NameSelectionError(f"the lookup of {self.ids_input!r} also reads input {missing[0]!r}; pass it in "
                                     "feeds=")
        return self._session.run(None, {n: given[n] for n in self.upstream_inputs})[0]


def per_position(relevance: np.ndarray, ids_shape: Sequence[int]) -> np.ndarray:
    """The relevance of each id: the lookup's relevance summed over the axes the lookup added."""
    extra = tuple(range(len(ids_shape), relevance.ndim))
    return relevance.sum(axis=extra) if extra else relevance
