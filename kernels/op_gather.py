"""Indexing ops on activations: ``Gather`` with constant (non-varying) indices and ``Expand``.

Both are structural (exact adjoint, conserving): Gather's VJP scatter-adds the output relevance back to the rows it
read (a row read twice receives both contributions), Expand's sums over the broadcast axes. Typical uses: the class
token ``x[:, 0]`` of a BERT pooler or ViT head, selecting positions, broadcasting a gate.

An embedding lookup ``Gather(table, token_ids)`` reads a constant table: no relevance flows into it. To explain a
text model, explain with respect to the embedding output (export with ``inputs_embeds``) and sum the relevance over
the hidden axis to get one value per token (AttnLRP, LXT quickstart).
"""
from __future__ import annotations

import numpy as np

from onnxlrp.engine.kernel import Kernel, scatter_ports, unbroadcast
from onnxlrp.engine.registry import register_kernel


def _host(value):
    return value.get() if hasattr(value, "get") else value


def _scatter_add(xp, target, index, values):
    """``target[index] += values`` with repeated indices accumulated (numpy ``add.at`` / ``cupyx.scatter_add``)."""
    if xp.__name__ == "numpy":
        np.add.at(target, index, values)
    else:  # pragma: no cover - GPU only
        import cupyx
        cupyx.scatter_add(target, index, values)
    return target


@register_kernel("Gather", since=1)
class GatherKernel(Kernel):
    """``Gather(data, indices, axis)``: ``y = take(data, indices, axis)`` (negative indices wrap)."""

    category = "structural"

    def data_inputs(self, node, varying):
        return (0,) if node.inputs[0] in varying else ()

    def _args(self, call):
        x = call.inputs[0]
        axis = int(call.attrs["axis"]) % x.ndim
        idx = np.asarray(_host(call.inputs[1])).astype(np.int64)
        idx = np.where(idx < 0, idx + x.shape[axis], idx)
        return x, axis, idx

    def forward(self, call):
        x, axis, idx = self._args(call)
        return (call.xp.take(x, call.xp.asarray(idx), axis=axis),)

    def vjp(self, call, grads):
        xp = call.xp
        x, axis, idx = self._args(call)
        g = grads[0]
        # g has shape x.shape[:axis] + idx.shape + x.shape[axis+1:]; move the index axes last, flatten them
        lead, tail = x.shape[:axis], x.shape[axis + 1:]
        g = g.reshape(lead + (idx.size,) + tail)
        out = xp.zeros(x.shape, dtype=g.dtype)
        moved_out = xp.moveaxis(out, axis, 0)          # view: (x.shape[axis], *lead, *tail)
        _scatter_add(xp, moved_out, xp.asarray(idx.reshape(-1)), xp.moveaxis(g, axis, 0))
        return scatter_ports(len(call.inputs), (0,), [out])

    def emit_vjp(self, call, grads):
        """The VJP as ONNX: the gathered axis moved first, ``ScatterND(zeros, idx[..., None], g, reduction="add")``
        (``g`` with the index axes moved first; a row read twice receives both), then moved back. Negative indices
        wrap (``idx + size`` where ``idx < 0``; the size read with ``Shape`` when only known at run time)."""
        xp, x, g = call.xp, call.inputs[0], grads[0]
        axis = int(call.attrs["axis"]) % x.ndim
        idx = xp.astype(call.inputs[1], np.int64)
        size = x.shape[axis]
        size = xp.ints([size]) if isinstance(size, int) else xp.take(xp.shape_of(x), xp.ints([axis]))
        idx = xp.where(idx < 0, idx + xp.reshape(size, ()), idx)
        k = idx.ndim
        first = [axis] + [i for i in range(x.ndim) if i != axis]
        zeros = xp.node("Expand", [xp.const(np.zeros((), dtype=g.dtype)), xp.take(xp.shape_of(x), xp.ints(first))],
                        dtype=g.dtype, shape=tuple(x.shape[i] for i in first))
        g_first = xp.transpose(g, list(range(axis, axis + k)) + list(range(axis)) + list(range(axis + k, g.ndim)))
        dx = xp.node("ScatterND", [zeros, xp.expand_dims(idx, -1), g_first], {"reduction": "add"},
                     shape=zeros.shape)
        return scatter_ports(len(call.inputs), (0,), [xp.transpose(dx, np.argsort(first).tolist())])


@register_kernel("Expand", since=8)
class ExpandKernel(Kernel):
    """``Expand(x, shape)`` (numpy broadcasting to ``shape``); VJP sums over the broadcast axes."""

    category = "structural"

    def forward(self, call):
        xp, x = call.xp, call.inputs[0]
        shape = [int(s) for s in np.asarray(_host(call.inputs[1])).reshape(-1).tolist()]
        target = np.broadcast_shapes(tuple(x.shape), tuple(shape))
        return (xp.broadcast_to(x, target).copy(),)

    def vjp(self, call, grads):
        return scatter_ports(len(call.inputs), (0,), [unbroadcast(call.xp, grads[0], call.inputs[0].shape)])
