"""Index math shared by Conv and pooling kernels: padding, output sizes, window views and their adjoint.

``window_view`` exposes every receptive field of a padded ``(N, C, *S)`` array as a strided view
``(N, C, *O, *K)`` without copying; ``scatter_windows`` is its adjoint (a col2im that loops over the ``prod(K)``
kernel taps only, each tap a vectorised slice-add over the whole batch).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Geometry:
    """Spatial layout of a windowed op over an input of spatial shape ``spatial``."""

    spatial: tuple[int, ...]
    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    pads_begin: tuple[int, ...]
    pads_end: tuple[int, ...]      # explicit end pads (what the op's ``pads``/``auto_pad`` ask for)
    out: tuple[int, ...]
    overhang: tuple[int, ...]      # extra end padding a ceil-mode window needs beyond ``pads_end``

    @property
    def padded(self) -> tuple[int, ...]:
        return tuple(s + b + e + o for s, b, e, o in
                     zip(self.spatial, self.pads_begin, self.pads_end, self.overhang))


def geometry(attrs, spatial, kernel, *, ceil_mode: bool = False) -> Geometry:
    """Resolve ``auto_pad``/``pads``/``strides``/``dilations`` (ONNX Conv and pooling semantics).

    ``attrs`` must hold ``auto_pad`` (every Conv/pooling schema has a default, filled in ``Node.attrs``);
    ``strides``, ``dilations`` and ``pads`` have no schema default: when absent, 1 per axis and no padding."""
    nd = len(spatial)
    strides = tuple(attrs.get("strides") or (1,) * nd)  # optional without a default: 1 per spatial axis
    dilations = tuple(attrs.get("dilations") or (1,) * nd)  # optional without a default: 1 per spatial axis
    auto_pad = attrs["auto_pad"]
    span = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        out = [math.ceil(s / st) for s, st in zip(spatial, strides)]
        total = [max(0, (o - 1) * st + sp - s) for o, st, sp, s in zip(out, strides, span, spatial)]
        small = [t // 2 for t in total]
        big = [t - t // 2 for t in total]
        begin, end = (small, big) if auto_pad == "SAME_UPPER" else (big, small)
    elif auto_pad == "VALID":
        begin, end = [0] * nd, [0] * nd
    else:
        pads = list(attrs.get("pads") or [0] * (2 * nd))  # NOTSET (or ""): explicit pads, optional, none if absent
        begin, end = pads[:nd], pads[nd:]
    for name, values, size, low in (("kernel_shape", kernel, nd, 1), ("strides", strides, nd, 1),
                                    ("dilations", dilations, nd, 1), ("pads", [*begin, *end], 2 * nd, 0)):
        if len(values) != size or any(int(v) < low for v in values):  # the window views below trust these
            raise ValueError(f"{name} {list(values)} does not fit {nd} spatial axes (each at least {low})")
    out, overhang = [], []
    for s, b, e, sp, st in zip(spatial, begin, end, span, strides):
        extent = s + b + e - sp
        if ceil_mode:
            o = -(-extent // st) + 1
            if (o - 1) * st >= s + b:  # the last window must start inside the input or its left padding
                o -= 1
        else:
            o = extent // st + 1
        if o < 1:
            raise ValueError(f"a window of {sp} with pads {b}, {e} does not fit a spatial axis of {s}")
        out.append(o)
        overhang.append(max(0, (o - 1) * st + sp - (s + b + e)))
    return Geometry(tuple(spatial), tuple(kernel), strides, dilations, tuple(begin), tuple(end), tuple(out),
                    tuple(overhang))


def pad(xp, x, geom: Geometry, value=0.0):
    """Pad the spatial axes of ``(N, C, *S)`` for ``geom`` (explicit pads plus ceil-mode overhang)."""
    widths = [(0, 0), (0, 0)] + [(b, e + o) for b, e, o in zip(geom.pads_begin, geom.pads_end, geom.overhang)]
    if not any(b or e for b, e in widths):
        return x
    return xp.pad(x, widths, mode="constant", constant_values=value)


def crop(x, geom: Geometry):
    """Inverse of :func:`pad` on the spatial axes."""
    index = (slice(None), slice(None)) + tuple(slice(b, b + s) for b, s in zip(geom.pads_begin, geom.spatial))
    return x[index]


def window_view(xp, xpad, geom: Geometry):
    """Strided view ``(N, C, *O, *K)`` of the receptive fields of padded ``xpad`` (no copy)."""
    n, c = xpad.shape[:2]
    s_n, s_c, *s_sp = xpad.strides
    shape = (n, c) + geom.out + geom.kernel
    strides = ((s_n, s_c) + tuple(s * st for s, st in zip(s_sp, geom.strides))
               + tuple(s * d for s, d in zip(s_sp, geom.dilations)))
    return xp.lib.stride_tricks.as_strided(xpad, shape=shape, strides=strides)


def scatter_windows(xp, cols, geom: Geometry, dtype):
    """Adjoint of :func:`window_view`: sum ``cols (N, C, *O, *K)`` into a zero ``(N, C, *padded)`` array."""
    n, c = cols.shape[:2]
    out = xp.zeros((n, c) + geom.padded, dtype=dtype)
    for tap in itertools.product(*(range(k) for k in geom.kernel)):
        index = (slice(None), slice(None)) + tuple(
            slice(t * d, t * d + st * (o - 1) + 1, st)
            for t, d, st, o in zip(tap, geom.dilations, geom.strides, geom.out))
        out[index] += cols[(Ellipsis,) + tap]
    return out


def emit_transposed(xp, g, weight, geom: Geometry, group: int, out_shape):
    """The adjoint of a windowed linear op (Conv, or pooling with a per-channel ``weight``) as one ONNX
    ``ConvTranspose`` of ``g (N, M, *O)`` with ``weight (M, C/group, *K)`` (the forward op's own weight), cropped
    back to the input's spatial size ``geom.spatial``: ``pads`` are the forward pads, and the end pad shrinks (or
    ``output_padding`` grows) so that ``stride·(O−1) + span − pads = S``."""
    pads_end, output_padding = [], []
    for s, o, st, k, d, b in zip(geom.spatial, geom.out, geom.strides, geom.kernel, geom.dilations,
                                 geom.pads_begin):
        full = st * (o - 1) + d * (k - 1) + 1
        end = full - b - s
        pads_end.append(max(end, 0))
        output_padding.append(max(-end, 0))
    attrs = {"strides": list(geom.strides), "dilations": list(geom.dilations), "group": int(group),
             "pads": list(geom.pads_begin) + pads_end, "kernel_shape": list(geom.kernel)}
    if any(output_padding):
        attrs["output_padding"] = output_padding
    return xp.node("ConvTranspose", [g, weight], attrs, shape=tuple(out_shape))
