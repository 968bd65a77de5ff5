"""The backward walk: reverse topological order over the relevance path, one kernel call per node.

Per-tensor accumulators sum relevance that fans out (a tensor read by several nodes receives the sum of their
contributions), every contribution is shape-checked and checked for NaN/inf, and a tensor's accumulator is released
as soon as its producer has consumed it.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import numpy as np

from ..errors import NonFiniteError, RelevanceShapeError
from .graph import Node
from .kernel import GRADIENT, Call, Kernel, Rule


def propagate(nodes: list[Node], kernels: Mapping[str, Kernel], rules: Mapping[str, Rule],
              value: Callable[..., object], varying: set[str], seeds: Mapping[str, object], xp,
              keep: Iterable[str] | str = ()) -> tuple[dict, dict]:
    """Propagate ``seeds`` (tensor -> relevance) back through ``nodes``.

    ``value(name)`` returns a tensor's forward value; ``value(name, None)`` returns ``None`` for a tensor the forward
    pass did not keep (an output nothing on the path reads). Returns ``(remaining, kept)``: the accumulators left at
    the end (the explained input's relevance among them)
    and the relevance of the tensors named in ``keep`` (``"all"`` keeps every tensor on the path).
    """
    acc: dict[str, object] = dict(seeds)
    kept: dict[str, object] = {}
    keep = "all" if keep == "all" else set(keep)
    for node in reversed(nodes):
        r_out = take_relevance(acc, node, kept, keep)
        if r_out is None:
            continue
        flags = tuple(bool(t) and t in varying for t in node.inputs)
        call = Call(node=node, inputs=tuple(value(t) if t else None for t in node.inputs),
                    outputs=tuple(value(t, None) if t and t in varying else None for t in node.outputs),
                    varying=flags, xp=xp)
        if any(r is None for r in r_out):
            r_out = tuple(xp.zeros_like(call.outputs[k]) if r is None and call.outputs[k] is not None else r
                          for k, r in enumerate(r_out))
        with np.errstate(all="ignore"):  # masks overflow to -inf in float32; every result is checked below instead
            r_in = rules.get(node.name, GRADIENT).propagate(kernels[node.name], call, r_out)
        for port, (tensor, r) in enumerate(zip(node.inputs, r_in)):
            if r is None or not flags[port]:
                continue
            expected = call.inputs[port].shape
            if getattr(r, "shape", None) != expected:
                if getattr(r, "ndim", 0) == 0:
                    r = xp.zeros(expected, dtype=call.inputs[port].dtype) + r
                else:
                    raise RelevanceShapeError(
                        f"node {node.name!r} ({node.op_type}) returned relevance of shape {tuple(r.shape)} for input "
                        f"{port} ({tensor!r}), which has shape {tuple(expected)}")
            if not bool(xp.isfinite(r).all()):
                raise NonFiniteError(
                    f"relevance became NaN or inf at node {node.name!r} ({node.op_type}), input {tensor!r} "
                    f"(rule {rules.get(node.name, GRADIENT).describe()}); a denominator is zero or overflowed: use a "
                    "positive epsilon/stabilizer or dtype='float64'")
            acc[tensor] = acc[tensor] + r if tensor in acc else r
    return acc, kept


def take_relevance(acc: dict, node: Node, kept: dict, keep) -> tuple | None:
    """Pop the relevance of ``node``'s outputs from the accumulators ``acc``, recording in ``kept`` those named in
    ``keep`` (a set, or ``"all"``); ``None`` when no output has any."""
    r_out = tuple(acc.pop(t, None) for t in node.outputs)
    for t, r in zip(node.outputs, r_out):
        if r is not None and (keep == "all" or t in keep):
            kept[t] = r
    return None if all(r is None for r in r_out) else r_out
