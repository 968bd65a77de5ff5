"""Helpers for onnxruntime's ``com.microsoft`` fused ops, which the canonizer (``onnxlrp/engine/contrib.py``)
decomposes into standard ops so that the transformer rules (AttnLRP) apply unchanged.

``onnxlrp::AttentionMask(scores, mask)`` adds the fused attention's mask to the scores ``(B, H, S, L)``: the
``mask_filter_value`` where a key is masked, 0 elsewhere. ``mask`` takes every format of ``Attention``'s
``mask_index`` and ``MultiHeadAttention``'s ``key_padding_mask``: key lengths ``(B)`` (right padding), end and start
positions ``(2B)``, a raw 0/1 mask ``(B, L)`` or ``(B, S, L)``; attribute ``causal`` (``unidirectional``) also masks
the keys after each query. The mask does not depend on the explained input: an additive constant (category
``affine``, passed through by the LRP presets, as the ``Add`` of an exported attention mask is). No schema: the
attributes ``mask_filter_value`` and ``causal`` are required (the canonizer sets them).
"""
from __future__ import annotations

import numpy as np

from onnxlrp.engine.kernel import LinearKernel, LinearOp, UnsupportedOpError
from onnxlrp.engine.registry import register_kernel


def _host(value):
    return value.get() if hasattr(value, "get") else np.asarray(value)


def mask_bias(xp, scores_shape, mask, causal: bool, fill: float, dtype):
    """The additive mask, broadcastable to ``scores_shape`` ``(B, H, S, L)``."""
    batch, _, queries, keys = scores_shape
    keep = np.ones((batch, 1, queries, keys), dtype=bool)
    if mask is not None:
        m = _host(mask)
        pos = np.arange(keys)
        if m.ndim == 1 and m.shape[0] == batch:
            keep &= (pos[None, :] < m[:, None])[:, None, None, :]
        elif m.ndim == 1 and m.shape[0] == 2 * batch:
            end, start = m[:batch], m[batch:]
            keep &= ((pos[None, :] < end[:, None]) & (pos[None, :] >= start[:, None]))[:, None, None, :]
        elif m.ndim == 2 and m.shape == (batch, keys):
            keep &= (m != 0)[:, None, None, :]
        elif m.ndim == 3 and m.shape == (batch, queries, keys):
            keep &= (m != 0)[:, None, :, :]
        else:
            raise UnsupportedOpError(f"an attention mask of shape {tuple(m.shape)} for scores of shape "
                                     f"{tuple(scores_shape)} is not supported (lengths (B) or (2B), or a 0/1 mask "
                                     "(B, L) or (B, S, L))")
    if causal:
        offset = keys - queries  # keys before the first query (a past)
        keep &= (np.arange(keys)[None, :] <= np.arange(queries)[:, None] + offset)[None, None]
    return xp.asarray(np.where(keep, 0.0, fill), dtype=dtype)


@register_kernel("AttentionMask", domain="onnxlrp", since=1)
class AttentionMaskKernel(LinearKernel):
    """``scores + mask`` for a decomposed com.microsoft attention: ``mask_filter_value`` at masked keys, else 0."""

    category = "affine"

    def linear_op(self, call):
        xp = call.xp
        x = call.inputs[0]
        mask = call.inputs[1] if len(call.inputs) > 1 else None
        bias = mask_bias(xp, x.shape, mask, bool(call.attrs["causal"]), float(call.attrs["mask_filter_value"]),
                         x.dtype)

        def forward(xs, p):
            return xs[0] if p["bias"] is None else xs[0] + p["bias"]

        return LinearOp(ports=(0,), inputs=[x], params={"weight": None, "bias": bias}, forward=forward,
                        vjp=lambda g, p: [g])
