"""BatchNormalization (inference) as the per-channel affine map ``y = s·x + t`` with ``s = γ/√(σ²+ε)``,
``t = β − μ·s``. The canonizer folds it into a preceding Conv/Gemm when it is that node's only consumer (zennit's
``SequentialMergeBatchNorm``); otherwise LRP presets pass relevance through it (zennit maps BatchNorm to ``Pass``)."""
from __future__ import annotations

from onnxlrp.engine.kernel import LinearKernel, LinearOp
from onnxlrp.engine.registry import register_kernel


def batchnorm_affine(xp, scale, bias, mean, var, epsilon, ndim):
    """``(s, t)`` shaped ``(1, C, 1, ...)`` for an input of rank ``ndim``."""
    s = scale / xp.sqrt(var + epsilon)
    t = bias - mean * s
    shape = (1, -1) + (1,) * (ndim - 2)
    return s.reshape(shape), t.reshape(shape)


@register_kernel("BatchNormalization", since=1)
class BatchNormKernel(LinearKernel):
    """BatchNormalization in inference mode (inputs X, scale, B, input_mean, input_var)."""

    category = "batchnorm"

    def data_inputs(self, node, varying):
        if node.attrs.get("training_mode", 0):  # attribute from opset 14 on (default 0); inference before
            return "BatchNormalization in training mode is not supported; export the model in eval mode"
        if any(t in varying for t in node.inputs[1:]):
            return "BatchNormalization statistics that depend on the input are not supported"
        return super().data_inputs(node, varying)

    def linear_op(self, call):
        xp = call.xp
        x = call.inputs[0]
        s, t = batchnorm_affine(xp, *call.inputs[1:5], float(call.attrs["epsilon"]), x.ndim)
        s, t = s.astype(x.dtype, copy=False), t.astype(x.dtype, copy=False)
        return LinearOp(ports=(0,), inputs=[x], params={"weight": s, "bias": t},
                        forward=lambda xs, p: (xs[0] * p["weight"] if p["weight"] is not None else xs[0])
                        + (p["bias"] if p["bias"] is not None else 0),
                        vjp=lambda g, p: [g * p["weight"]])
