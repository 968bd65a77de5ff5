"""Max and Min (variadic, broadcasting): ``y = max(x₁, …, x_k)`` elementwise.

The gradient routes ``g`` to the operand that is the maximum (minimum), split evenly between operands that tie (as
``torch.maximum`` does), summed over broadcast axes. The category depends on which operands vary:

* one operand varies, the others are constants (``Max(x, 0)`` is a ReLU, ``Min(Max(x, a), b)`` a clip): an
  ``activation``; the LRP presets pass relevance through it, like through ReLU or Clip.
* two or more vary: ``structural``, relevance moves with the selected value (the gradient: winner takes all, ties
  split evenly).
"""
from __future__ import annotations

from onnxlrp.engine.kernel import Kernel, unbroadcast
from onnxlrp.engine.registry import register_kernel


class _Select(Kernel):
    """Shared Max/Min; ``pick`` is ``xp.maximum`` or ``xp.minimum`` by name."""

    pick = "maximum"
    category = "activation"
    category_cases = {"activation": "one operand varies, the others are constant (a ReLU- or clip-like bound)",
                      "structural": "two or more operands vary (relevance goes to the selected one)"}

    def data_inputs(self, node, varying):
        return tuple(p for p, t in enumerate(node.inputs) if t and t in varying)

    def node_category(self, node, varying):
        return "structural" if sum(1 for t in node.inputs if t and t in varying) > 1 else "activation"

    def forward(self, call):
        fn = getattr(call.xp, self.pick)
        y = call.inputs[0]
        for x in call.inputs[1:]:
            y = fn(y, x)
        return (y,)

    def vjp(self, call, grads):
        xp, g = call.xp, grads[0]
        y = call.outputs[0] if call.outputs and call.outputs[0] is not None else self.forward(call)[0]
        hits = [xp.asarray(x == y) for x in call.inputs]
        ties = hits[0].astype(g.dtype)
        for hit in hits[1:]:
            ties = ties + hit
        share = g / ties                  # every output position has at least one operand equal to it
        return tuple(unbroadcast(xp, share * hit, x.shape) if varying else None
                     for x, hit, varying in zip(call.inputs, hits, call.varying))


@register_kernel("Max", since=1)
class MaxKernel(_Select):
    """Max of one or more tensors: a ReLU-like bound with constant operands, arg-max routing between varying ones."""


@register_kernel("Min", since=1)
class MinKernel(_Select):
    """Min of one or more tensors: a clip-like bound with constant operands, arg-min routing between varying ones."""

    pick = "minimum"
