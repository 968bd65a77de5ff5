"""Resize (opsets 10 to 19) and Upsample (7, 9) as separable per-axis resampling (``_axes``).

Every resized axis is one step ``y[…, o, …] = Σ_t w[o, t] · x[…, i[o, t], …]`` with source taps ``i`` and weights
``w`` computed on the host from the output size, the scale and the coordinate transformation mode:

* ``nearest`` (every ``nearest_mode``; Resize-10 and Upsample round as onnxruntime does, down when enlarging, up when
  shrinking): one tap, a gather. Category ``structural``: gradient and relevance take the exact adjoint, summing
  what lands on the same source pixel.
* ``linear`` (bi-/trilinear) and ``cubic`` (``cubic_coeff_a``, ``exclude_outside``), with ``antialias`` (opset 18)
  widening the filter when shrinking: linear in ``x``. Category ``avgpool``: the presets split relevance in
  proportion to the contributions (Norm, the ε-rule of a parameter-free linear op); every linear rule applies, the
  per-axis coefficients being the op's parameters ``weight<axis>``.

Coordinate transformation modes: ``half_pixel``, ``half_pixel_symmetric``, ``pytorch_half_pixel``,
``align_corners``, ``asymmetric``, ``tf_half_pixel_for_nn`` and ``tf_crop_and_resize`` (``roi``; output positions
mapped outside the input take ``extrapolation_value``, the op's ``bias``). Scales or sizes (with ``axes`` and
``keep_aspect_ratio_policy`` from opset 18) must not depend on the explained input.

Nearest coordinates are computed in float32 as onnxruntime and PyTorch compute them, so a source coordinate a
rounding error away from a half-way point picks the pixel they pick (onnxruntime builds may still differ there);
output lengths from scales are ``floor(scale · length)`` in float32, as in onnxruntime. Not supported (a reason at
preflight or an ``UnsupportedOpError``): roi/scales/sizes that depend on the explained input, other modes, and a
resize to an empty axis.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from onnxlrp.engine.kernel import LinearKernel, LinearOp, UnsupportedOpError
from onnxlrp.engine.registry import register_kernel

from ._axes import gather_axis, scatter_axis

MODES = ("nearest", "linear", "cubic")
COORDINATE_MODES = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric",
                    "tf_half_pixel_for_nn", "tf_crop_and_resize")
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")


def _host(value):
    return value.get() if hasattr(value, "get") else value


def _given(call, port):
    """Input ``port`` as a flat host array, or ``None`` when omitted or empty."""
    if len(call.inputs) <= port or call.inputs[port] is None:
        return None
    value = np.asarray(_host(call.inputs[port])).reshape(-1)
    return value if value.size else None


@dataclass(frozen=True)
class Step:
    """One resized axis: ``index``/``weight`` ``(O, T)`` (``weight`` ``None`` for a gather), ``outside`` ``(O,)``
    (positions ``tf_crop_and_resize`` maps outside the input, or ``None``) and the input length ``size``."""

    axis: int
    size: int
    index: np.ndarray
    weight: np.ndarray | None
    outside: np.ndarray | None


def _mode(node) -> str:
    mode = node.attrs["mode"]
    return "linear" if mode in ("bilinear", "trilinear") else mode  # Upsample-7 era spellings of linear


def _source(coord: str, out_len: int, in_len: int, scale: float, roi, dtype) -> np.ndarray:
    """Source coordinate of every output position along one axis (the ONNX coordinate transformation), computed in
    ``dtype``: float32 for nearest, as onnxruntime and PyTorch compute it (which of two pixels a coordinate near a
    half-way point picks depends on it), float64 for interpolation weights."""
    y = np.arange(out_len, dtype=dtype)
    scale, half, n_in, n_out = dtype(scale), dtype(0.5), dtype(in_len), dtype(out_len)
    if coord == "asymmetric":
        return y / scale
    if coord == "half_pixel":
        return (y + half) / scale - half
    if coord == "pytorch_half_pixel":
        return (y + half) / scale - half if out_len > 1 else np.zeros(out_len, dtype)
    if coord == "tf_half_pixel_for_nn":
        return (y + half) / scale
    if coord == "align_corners":
        return y * (n_in - 1) / (n_out - 1) if out_len > 1 else np.zeros(out_len, dtype)
    if coord == "half_pixel_symmetric":
        offset = n_in / 2 * (1 - n_out / (scale * n_in))
        return (offset + (y.astype(np.float64) + 0.5) / np.float64(scale) - 0.5).astype(dtype)
    if coord == "tf_crop_and_resize":
        start, end = dtype(roi[0]), dtype(roi[1])
        if out_len > 1:
            return start * (n_in - 1) + y * (end - start) * (n_in - 1) / (n_out - 1)
        return np.full(out_len, half * (start + end) * (n_in - 1), dtype)
    raise UnsupportedOpError(f"Resize coordinate_transformation_mode {coord!r} is not supported")


def _nearest(x: np.ndarray, rounding: str, shrinking: bool) -> np.ndarray:
    if rounding == "legacy":  # Resize-10 and Upsample in onnxruntime: truncate when enlarging, ceil when shrinking
        return np.ceil(x) if shrinking else np.floor(x)
    if rounding == "round_prefer_floor":
        return np.ceil(x - 0.5)
    if rounding == "round_prefer_ceil":
        return np.floor(x + 0.5)
    if rounding == "floor":
        return np.floor(x)
    if rounding == "ceil":
        return np.ceil(x)
    raise UnsupportedOpError(f"Resize nearest_mode {rounding!r} is not supported")


def _cubic(t: np.ndarray, a: float) -> np.ndarray:
    """The cubic convolution kernel (Keys) with coefficient ``a``."""
    t = np.abs(t)
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return np.where(t <= 1, near, np.where(t < 2, far, 0.0))


def _interpolation(x: np.ndarray, in_len: int, scale: float, mode: str, attrs, antialias: bool):
    """Taps and weights of linear/cubic interpolation at source coordinates ``x`` (edge-clamped taps, as the ONNX
    reference pads by edge; ``exclude_outside`` drops and renormalises them instead)."""
    support = 1.0 if mode == "linear" else 2.0
    shrink = min(scale, 1.0) if antialias else 1.0
    start = int(math.floor(-support / shrink)) + 1
    taps = 2 - 2 * start
    base = np.ceil(x) - 1                               # ratio in (0, 1]: the left neighbour is preferred
    ratio = x - base
    offsets = np.arange(start, start + taps, dtype=np.float64)
    args = (offsets[None, :] - ratio[:, None]) * shrink
    weight = np.clip(1 - np.abs(args), 0, 1) if mode == "linear" else _cubic(args, float(attrs["cubic_coeff_a"]))
    index = base[:, None].astype(np.int64) + offsets[None, :].astype(np.int64)
    if antialias and shrink < 1:
        weight = weight / weight.sum(axis=1, keepdims=True)
    if mode == "cubic" and attrs.get("exclude_outside", 0):  # Resize-11 on (default 0); absent before
        weight = np.where((index < 0) | (index >= in_len), 0.0, weight)
        total = weight.sum(axis=1, keepdims=True)
        weight = weight / np.where(total == 0, 1.0, total)
    return np.clip(index, 0, in_len - 1), weight


def plan(call) -> tuple[list[Step], float]:
    """The resampling steps of a Resize/Upsample node on ``call.inputs[0]`` and the extrapolation value."""
    node, attrs, x = call.node, call.attrs, call.inputs[0]
    rank, shape = x.ndim, tuple(x.shape)
    mode = _mode(node)
    legacy = node.op_type == "Upsample" or node.since < 11
    roi = sizes = axes = None
    antialias, policy = False, "stretch"
    if node.op_type == "Upsample":
        scales = attrs["scales"] if node.since < 9 else _given(call, 1)  # an attribute (required), an input from 9
    elif node.since < 11:
        scales = _given(call, 1)
    else:
        roi, scales, sizes = _given(call, 1), _given(call, 2), _given(call, 3)
        axes = attrs.get("axes")                                   # opset 18 on, optional: absent means every axis
        antialias = bool(attrs.get("antialias", 0))                # opset 18 on (default 0)
        policy = attrs.get("keep_aspect_ratio_policy", "stretch")  # opset 18 on (default "stretch")
    coord = "asymmetric" if legacy else attrs["coordinate_transformation_mode"]
    rounding = "legacy" if legacy else attrs["nearest_mode"]
    axes = list(range(rank)) if axes is None else [int(a) % rank for a in axes]
    scale = {a: 1.0 for a in range(rank)}
    out = dict(enumerate(shape))
    if sizes is not None:
        for a, s in zip(axes, sizes.tolist()):
            out[a], scale[a] = int(s), int(s) / shape[a]
        if policy in ("not_larger", "not_smaller"):
            common = (min if policy == "not_larger" else max)(scale[a] for a in axes)
            for a in axes:
                scale[a], out[a] = common, int(common * shape[a] + 0.5)
    elif scales is not None:
        for a, s in zip(axes, np.asarray(scales, dtype=np.float32).tolist()):
            # the output length in float32 arithmetic, as onnxruntime computes it (1.8 · 5 is 9 there, not 8)
            scale[a], out[a] = float(s), int(math.floor(np.float32(s) * np.float32(shape[a])))
    else:
        raise UnsupportedOpError(f"{node.op_type} node {node.name!r} has neither scales nor sizes")
    if roi is not None and len(roi) == 2 * len(axes) and len(axes) != rank:
        full = [0.0] * rank + [1.0] * rank
        for k, a in enumerate(axes):
            full[a], full[rank + a] = float(roi[k]), float(roi[len(axes) + k])
        roi = np.asarray(full)
    steps = []
    for a in range(rank):
        crop = coord == "tf_crop_and_resize" and roi is not None and (roi[a] != 0 or roi[rank + a] != 1)
        if out[a] == shape[a] and scale[a] == 1.0 and not crop:
            continue  # the identity
        if out[a] < 1 or scale[a] <= 0:
            raise UnsupportedOpError(f"{node.op_type} node {node.name!r} resizes axis {a} to {out[a]}")
        pair = (roi[a], roi[rank + a]) if roi is not None else (0.0, 1.0)
        source = _source(coord, out[a], shape[a], scale[a], pair, np.float32 if mode == "nearest" else np.float64)
        outside = None
        if coord == "tf_crop_and_resize":
            outside = (source < 0) | (source > shape[a] - 1)
            outside = outside if outside.any() else None
        if mode == "nearest":
            index = np.clip(_nearest(source, rounding, scale[a] < 1), 0, shape[a] - 1).astype(np.int64)[:, None]
            weight = None if outside is None else np.ones((out[a], 1))
        else:
            index, weight = _interpolation(source, shape[a], scale[a], mode, attrs, antialias)
        if outside is not None:
            weight = np.where(outside[:, None], 0.0, weight)
        steps.append(Step(a, shape[a], index, weight, outside))
    return steps, float(attrs.get("extrapolation_value", 0.0))  # Resize-11 on (default 0)


class _ResizeBase(LinearKernel):
    """Shared by Resize and Upsample: nearest is a gather (``structural``), linear/cubic a linear op (``avgpool``)."""

    category = "structural"
    category_cases = {"structural": "mode nearest (a gather)",
                      "avgpool": "mode linear or cubic (interpolation weights)"}

    def node_category(self, node, varying):
        return "structural" if _mode(node) == "nearest" else "avgpool"

    def data_inputs(self, node, varying):
        if any(t in varying for t in node.inputs[1:] if t):
            return f"{node.op_type} with roi, scales or sizes that depend on the explained input is not supported"
        if _mode(node) not in MODES:
            return f"{node.op_type} mode {node.attrs['mode']!r} is not supported (only {', '.join(MODES)})"
        coord = node.attrs.get("coordinate_transformation_mode", "asymmetric")  # Resize-11 on; asymmetric before
        if coord not in COORDINATE_MODES:
            return f"Resize coordinate_transformation_mode {coord!r} is not supported"
        if node.attrs.get("nearest_mode", "round_prefer_floor") not in NEAREST_MODES:  # Resize-11 on
            return f"Resize nearest_mode {node.attrs['nearest_mode']!r} is not supported"
        return super().data_inputs(node, varying)

    def linear_op(self, call):
        xp, x = call.xp, call.inputs[0]
        steps, fill = plan(call)
        dtype = x.dtype
        index = {s.axis: xp.asarray(s.index) for s in steps}
        params = {f"weight{s.axis}": xp.asarray(s.weight, dtype=dtype) for s in steps if s.weight is not None}
        bias = None
        outside = [s for s in steps if s.outside is not None]
        if outside and fill != 0:
            mask = np.zeros([1] * x.ndim, dtype=bool)
            for s in outside:
                shape = [1] * x.ndim
                shape[s.axis] = s.outside.size
                mask = mask | s.outside.reshape(shape)
            bias = xp.asarray(fill * mask, dtype=dtype)
        params["bias"] = bias

        def weight(s, p):
            if s.weight is None:
                return None
            w = p[f"weight{s.axis}"]
            return xp.zeros(s.weight.shape, dtype=dtype) if w is None else w

        def forward(xs, p):
            y = xs[0]
            for s in steps:
                y = gather_axis(xp, y, s.axis, index[s.axis], weight(s, p))
            return y if p["bias"] is None else y + p["bias"]

        def vjp(g, p):
            for s in reversed(steps):
                g = scatter_axis(xp, g, s.axis, index[s.axis], weight(s, p), s.size)
            return [g]

        return LinearOp(ports=(0,), inputs=[x], params=params, forward=forward, vjp=vjp)


@register_kernel("Resize", since=10)
class ResizeKernel(_ResizeBase):
    """Resize: nearest (gather) or linear/cubic interpolation, every coordinate transformation mode, scales or sizes."""


@register_kernel("Upsample", since=7)
class UpsampleKernel(_ResizeBase):
    """Upsample (deprecated in opset 10): nearest or linear, asymmetric coordinates, scales attribute or input."""
