"""Layer and RMS normalisation: ONNX ``LayerNormalization`` (opset 17), ``RMSNormalization`` (opset 23), and
``onnxlrp::LayerNorm`` / ``onnxlrp::RMSNorm`` (the decomposed patterns, fused by the canonizer; no scale/bias, which
stay separate Mul/Add nodes).

* LayerNorm: ``y = (x − mean(x)) / σ ⊙ w + b`` with ``σ = sqrt(var(x) + ε)`` over the normalised axes.
* RMSNorm: ``y = x / σ ⊙ w`` with ``σ = sqrt(mean(x²) + ε)`` (no centring, no bias).

Forward and VJP are exact (gradient methods). Category ``layernorm``: :meth:`NormKernel.linear_op` is the map
with ``σ`` held constant, ``x ↦ (x − mean x)/σ ⊙ w + b`` (RMSNorm: ``x ↦ x/σ ⊙ w``), on which the transformer
rules (``onnxlrp.lrp.transformer``) apply the ε-rule: AttnLRP's normalisation rule (identity on ``1/σ``, ε-rule on the
centring and the bias; LXT ``layer_norm_forward``/``rms_norm_forward``). On RMSNorm it is the identity, ``R_x = R``.
"""
from __future__ import annotations

from onnxlrp.engine.kernel import Kernel, LinearOp, scatter_ports
from onnxlrp.engine.registry import register_kernel


class NormKernel(Kernel):
    """Shared by LayerNorm (``centred``) and RMSNorm."""

    category = "layernorm"
    centred = True

    def data_inputs(self, node, varying):
        if any(t in varying for t in node.inputs[1:3] if t):
            return "a LayerNormalization whose scale or bias depends on the explained input is not supported"
        return super().data_inputs(node, varying)

    def _axes(self, call, ndim):
        """ONNX LayerNormalization/RMSNormalization normalise ``[axis, rank)``; the fused ``onnxlrp::`` nodes carry
        the reduced ``axes`` instead."""
        if self.domain == "onnxlrp":
            return tuple(sorted(int(a) % ndim for a in call.attrs["axes"]))
        axis = int(call.attrs["axis"]) % ndim
        return tuple(range(axis, ndim))

    def _params(self, call, x):
        xp = call.xp
        w = call.inputs[1] if len(call.inputs) > 1 and call.inputs[1] is not None else None
        b = call.inputs[2] if len(call.inputs) > 2 and call.inputs[2] is not None else None
        cast = lambda v: None if v is None else xp.asarray(v, dtype=x.dtype)  # noqa: E731
        return cast(w), cast(b)

    def _stats(self, call, x):
        xp = call.xp
        axes = self._axes(call, x.ndim)
        centred = x - x.mean(axis=axes, keepdims=True) if self.centred else x
        var = (centred * centred).mean(axis=axes, keepdims=True)
        sigma = xp.sqrt(var + float(call.attrs["epsilon"]))
        return axes, centred, sigma

    def forward(self, call):
        x = call.inputs[0]
        axes, centred, sigma = self._stats(call, x)
        w, b = self._params(call, x)
        y = centred / sigma
        if w is not None:
            y = y * w
        if b is not None:
            y = y + b
        extra = len(call.node.outputs) - 1
        if extra <= 0:
            return (y,)
        mean = x - centred
        return (y, mean, 1.0 / sigma)[:1 + extra]

    def vjp(self, call, grads):
        x = call.inputs[0]
        axes, centred, sigma = self._stats(call, x)
        w, _ = self._params(call, x)
        g = grads[0]
        if w is not None:
            g = g * w
        xhat = centred / sigma
        gx = g - xhat * (g * xhat).mean(axis=axes, keepdims=True)
        if self.centred:
            gx = gx - g.mean(axis=axes, keepdims=True)
        gx = gx / sigma
        return scatter_ports(len(call.inputs), (0,), [gx])

    def linear_op(self, call):
        """The layer with ``σ`` frozen at its forward value: linear in ``x`` (centring, scaling), plus the bias."""
        x = call.inputs[0]
        axes, _, sigma = self._stats(call, x)
        w, b = self._params(call, x)

        centred = self.centred

        def forward(xs, p):
            v = xs[0]
            y = (v - v.mean(axis=axes, keepdims=True) if centred else v) / sigma
            if p.get("weight") is not None:
                y = y * p["weight"]
            return y if p.get("bias") is None else y + p["bias"]

        def vjp(g, p):
            if p.get("weight") is not None:
                g = g * p["weight"]
            g = g / sigma
            return [g - g.mean(axis=axes, keepdims=True) if centred else g]

        return LinearOp(ports=(0,), inputs=[x], params={"weight": w, "bias": b}, forward=forward, vjp=vjp)


@register_kernel("LayerNormalization", since=17)
class LayerNormalizationKernel(NormKernel):
    """ONNX LayerNormalization over axes ``[axis, rank)``; the optional Mean / InvStdDev outputs are recomputed but
    carry no relevance."""


@register_kernel("LayerNorm", domain="onnxlrp", since=1)
class FusedLayerNormKernel(NormKernel):
    """``onnxlrp::LayerNorm(x)`` with attributes ``axes`` and ``epsilon``: ``(x − mean x)/sqrt(var x + ε)``, the
    canonizer's fusion of the decomposed pattern (no schema: both attributes are required, the canonizer sets
    them)."""


@register_kernel("RMSNormalization", since=23)
class RMSNormalizationKernel(NormKernel):
    """ONNX RMSNormalization(X, scale) over axes ``[axis, rank)``: ``x / sqrt(mean(x²) + ε) ⊙ scale``."""

    centred = False

    def data_inputs(self, node, varying):
        if len(node.inputs) > 1 and node.inputs[1] in varying:
            return "an RMSNormalization whose scale depends on the explained input is not supported"
        return Kernel.data_inputs(self, node, varying)


@register_kernel("RMSNorm", domain="onnxlrp", since=1)
class FusedRMSNormKernel(NormKernel):
    """``onnxlrp::RMSNorm(x)`` with attributes ``axes`` and ``epsilon`` (both required): ``x / sqrt(mean(x²) + ε)``,
    the canonizer's fusion of ``x · Reciprocal(Sqrt(ReduceMean(x²) + ε))`` (or ``Div``; HF ``LlamaRMSNorm``, T5)."""

    centred = False
