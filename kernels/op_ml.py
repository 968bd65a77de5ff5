"""``ai.onnx.ml`` preprocessing that scikit-learn pipelines put before a model (skl2onnx).

* ``Scaler``: ``y = (x − offset)·scale`` per feature (``StandardScaler``, ``MinMaxScaler``, ``RobustScaler``, ...),
  an affine map (category ``affine``: passed through by the LRP presets, exact gradient).
* ``Imputer``: missing values (NaN, or ``replaced_value_float``) replaced by a constant per feature; the identity on
  the values it keeps (category ``structural``: relevance and gradient stay where the value was kept, a replaced
  value gets none).

``Normalizer`` (``x / ‖x‖``) is not affine and has no kernel. ``LinearRegressor`` and ``LinearClassifier`` are
rewritten into a dense layer by the canonizer (``onnxlrp/engine/contrib.py``).
"""
from __future__ import annotations

from onnxlrp.engine.kernel import Kernel, LinearKernel, LinearOp, scatter_ports, unbroadcast
from onnxlrp.engine.registry import register_kernel

ML = "ai.onnx.ml"


def _floats(xp, values, dtype):
    return xp.asarray(list(values), dtype=dtype)


def _features(xp, x, dtype):
    return x if x.dtype == dtype else x.astype(dtype)


@register_kernel("Scaler", domain=ML, since=1)
class ScalerKernel(LinearKernel):
    """``y = (x − offset)·scale`` per feature (scikit-learn's scalers), an affine map."""

    category = "affine"

    def linear_op(self, call):
        xp = call.xp
        dtype = call.inputs[0].dtype if call.inputs[0].dtype.kind == "f" else xp.float32
        x = _features(xp, call.inputs[0], dtype)
        scale = _floats(xp, call.attrs.get("scale") or [1.0], dtype)  # optional attributes: absent means identity
        offset = _floats(xp, call.attrs.get("offset") or [0.0], dtype)
        shape = x.shape

        def forward(xs, p):
            z = xs[0] * p["weight"]
            return z if p["bias"] is None else z + p["bias"]

        return LinearOp(ports=(0,), inputs=[x], params={"weight": scale, "bias": -offset * scale}, forward=forward,
                        vjp=lambda g, p: [unbroadcast(xp, g * p["weight"], shape)])


@register_kernel("Imputer", domain=ML, since=1)
class ImputerKernel(Kernel):
    """Missing values (NaN or ``replaced_value_float``) replaced by ``imputed_value_floats``; identity elsewhere."""

    category = "structural"

    def _missing(self, xp, x, call):
        replaced = call.attrs.get("replaced_value_float")  # optional; NaN marks missing values when absent
        missing = xp.isnan(x)
        if replaced is not None and replaced == replaced:
            missing = missing | (x == replaced)
        return missing

    def data_inputs(self, node, varying):
        if node.attrs.get("imputed_value_int64s"):
            return "Imputer on integer features carries no relevance"
        return super().data_inputs(node, varying)

    def forward(self, call):
        xp = call.xp
        x = call.inputs[0]
        values = _floats(xp, call.attrs.get("imputed_value_floats") or [0.0], x.dtype)
        return (xp.where(self._missing(xp, x, call), values, x),)

    def vjp(self, call, grads):
        xp = call.xp
        keep = ~self._missing(xp, call.inputs[0], call)
        return scatter_ports(len(call.inputs), (0,), [grads[0] * keep])
