"""Quantisation on activations: ``QuantizeLinear``, ``DequantizeLinear``, ``DynamicQuantizeLinear``.

A quantised graph is explained as its dequantised computation. The canonizer (``onnxlrp/engine/dequantize.py``)
folds every ``DequantizeLinear`` of a constant (quantised weights, biases) into a float constant and rewrites the
integer ops (``QLinearConv``, ``QLinearMatMul``, ``QGemm``, ``MatMulInteger``, ...) into float ops between a
``DequantizeLinear`` and a ``QuantizeLinear``; what stays on the relevance path are these kernels.

The forward is the op's own (``y = saturate(round(x / s) + zp)``, ``x̂ = (q − zp)·s``; per tensor, per axis from
opset 13, per block from opset 21), so a float64 pass reproduces the quantised values onnxruntime computes (up to
rounding ties). The VJP is the straight-through estimator: ``DequantizeLinear`` scales by ``s``, ``QuantizeLinear``
divides by ``s``, so a ``Q → DQ`` pair is the identity for relevance and for gradients. One clamp is kept: where
the representable range starts at exactly 0 (``zp = q_min``), the quantiser stands for a ReLU it removed
(onnxruntime drops ``Relu``/``Clip`` before such a ``QuantizeLinear``), and ``x < 0`` passes nothing, as the ReLU
would. Saturation at the calibrated extremes is not clipped: it depends on the calibration data, not on the model,
and clipping it would zero the map of any input outside the calibrated range. Category ``structural``.
"""
from __future__ import annotations

import numpy as np

from onnxlrp.engine.kernel import Kernel, UnsupportedOpError, scatter_ports
from onnxlrp.engine.registry import register_kernel

#: integer ranges by numpy dtype name (ml_dtypes names for the 4-bit types)
_RANGES = {"uint8": (0, 255), "int8": (-128, 127), "uint16": (0, 65535), "int16": (-32768, 32767),
           "int32": (-2**31, 2**31 - 1), "uint4": (0, 15), "int4": (-8, 7), "uint2": (0, 3), "int2": (-2, 1)}
#: ONNX element types of the integer outputs QuantizeLinear may produce (``output_dtype``, opset 21)
_ONNX_INT = {2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 21: "uint4", 22: "int4"}


def _float_dtype(*arrays):
    """The float dtype of the first floating operand (the scale's), float32 if none is floating."""
    for a in arrays:
        if a is not None and a.dtype.kind == "f":
            return a.dtype
    return np.dtype(np.float32)


def _broadcast(xp, param, x, attrs):
    """``param`` (a scale or zero point) shaped to broadcast against ``x``: a scalar, one value per slice along
    ``axis`` (opset 13), or one per block of ``block_size`` along ``axis`` (opset 21)."""
    if param is None:
        return None
    if param.ndim == 0 or param.size == 1:
        return param.reshape(())
    axis = int(attrs.get("axis", 1)) % x.ndim  # attribute from opset 13 on
    block = int(attrs.get("block_size", 0) or 0)  # attribute from opset 21 on
    if block > 0:
        if param.ndim != x.ndim:
            raise UnsupportedOpError(f"blocked quantisation needs a scale of rank {x.ndim}; got {param.shape}")
        return xp.repeat(param, block, axis=axis)[tuple(slice(0, d) for d in x.shape)]
    if param.ndim != 1 or param.shape[0] != x.shape[axis]:
        raise UnsupportedOpError(f"a per-axis scale must be 1-D of length {x.shape[axis]} (axis {axis}); got shape "
                                 f"{tuple(param.shape)}")
    shape = [1] * x.ndim
    shape[axis] = param.shape[0]
    return param.reshape(shape)


def _int_name(dtype) -> str:
    name = np.dtype(dtype).name
    if name not in _RANGES:
        raise UnsupportedOpError(f"quantisation to {name} is not supported (integer types only; float8 is not)")
    return name


def _out_dtype(call) -> str:
    """QuantizeLinear's output type: the zero point's, else ``output_dtype`` (opset 21), else uint8."""
    zp = call.inputs[2] if len(call.inputs) > 2 else None
    if zp is not None:
        return _int_name(zp.dtype)
    code = int(call.attrs.get("output_dtype", 0) or 0)  # attribute from opset 21 on; 0 means uint8
    if code and code not in _ONNX_INT:
        raise UnsupportedOpError(f"QuantizeLinear to ONNX type {code} is not supported (integer types only)")
    return _ONNX_INT.get(code, "uint8")


def _numpy_int(xp, values, name):
    """Integer-valued ``values`` as an array of the integer type ``name`` (ml_dtypes for the 4-bit types)."""
    if hasattr(np, name):
        return values.astype(getattr(np, name))
    import ml_dtypes  # installed with onnx; numpy arrays only
    return np.asarray(values.get() if hasattr(values, "get") else values).astype(getattr(ml_dtypes, name))


def _as_float(xp, a, dtype):
    """An integer (or ml_dtypes) array as ``dtype``."""
    if a.dtype.kind == "V":  # ml_dtypes 4-bit types: through numpy
        return xp.asarray(np.asarray(a).astype(np.float64), dtype=dtype)
    return a.astype(dtype)


class _Quant(Kernel):
    category = "structural"


@register_kernel("DequantizeLinear", since=10)
class DequantizeLinearKernel(_Quant):
    """``x̂ = (q − zp)·s`` per tensor, axis or block; VJP ``g·s`` (a dequantised computation is what is explained)."""

    def dequantize(self, call):
        xp = call.xp
        q, scale = call.inputs[0], call.inputs[1]
        zp = call.inputs[2] if len(call.inputs) > 2 else None
        dtype = _float_dtype(scale)
        s = _broadcast(xp, scale, q, call.attrs)
        z = _broadcast(xp, None if zp is None else _as_float(xp, zp, dtype), q, call.attrs)
        value = _as_float(xp, q, dtype) if q.dtype.kind != "f" else q.astype(dtype, copy=False)
        return (value if z is None else value - z) * s, s

    def forward(self, call):
        return (self.dequantize(call)[0],)

    def vjp(self, call, grads):
        _, s = self.dequantize(call)
        return scatter_ports(len(call.inputs), (0,), [grads[0] * s])


@register_kernel("QuantizeLinear", since=10)
class QuantizeLinearKernel(_Quant):
    """``q = saturate(round(x / s) + zp)`` per tensor, axis or block; straight-through VJP ``g / s``.

    Nothing passes at ``x < 0`` where the range starts at 0 (a ReLU the quantiser removed)."""

    def _parts(self, call):
        xp = call.xp
        x, scale = call.inputs[0], call.inputs[1]
        zp = call.inputs[2] if len(call.inputs) > 2 else None
        name = _out_dtype(call)
        s = _broadcast(xp, scale, x, call.attrs)
        z = _broadcast(xp, None if zp is None else _as_float(xp, zp, x.dtype), x, call.attrs)
        unclipped = xp.rint(x / s) + (0 if z is None else z)
        return unclipped, s, name

    def forward(self, call):
        xp = call.xp
        unclipped, _, name = self._parts(call)
        lo, hi = _RANGES[name]
        return (_numpy_int(xp, xp.clip(unclipped, lo, hi), name),)

    def vjp(self, call, grads):
        xp = call.xp
        x = call.inputs[0]
        _, s, name = self._parts(call)
        zp = call.inputs[2] if len(call.inputs) > 2 else None
        lo = _RANGES[name][0]
        # the range starts at 0 (a removed ReLU) where the zero point is the lowest integer; no zero point means 0
        floor = xp.asarray(lo == 0) if zp is None else _broadcast(xp, _as_float(xp, zp, x.dtype) == lo, x,
                                                                  call.attrs)
        return scatter_ports(len(call.inputs), (0,), [grads[0] / s * ~(floor & (x < 0))])


@register_kernel("DynamicQuantizeLinear", since=11)
class DynamicQuantizeLinearKernel(_Quant):
    """uint8 quantisation over the whole tensor's range (and 0); straight-through VJP ``g / s`` to the input.

    The scale and zero point outputs carry no relevance."""

    def _scale(self, xp, x):
        lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
        scale = (hi - lo) / 255.0
        return scale if scale > 0 else 1.0, lo

    def forward(self, call):
        xp = call.xp
        x = call.inputs[0]
        scale, lo = self._scale(xp, x)
        zp = float(np.clip(np.rint(0.0 - lo / scale), 0, 255))
        q = xp.clip(xp.rint(x / scale) + zp, 0, 255).astype(np.uint8)
        return q, xp.asarray(scale, dtype=x.dtype), xp.asarray(zp, dtype=np.uint8)

    def vjp(self, call, grads):
        if grads[0] is None:
            return (None,)
        scale, _ = self._scale(call.xp, call.inputs[0])
        return (grads[0] / scale,)
