"""Arrays in, pixels out: colour maps, heatmaps, overlays, zoom, grids and PNG bytes.

Heatmaps use signed, symmetric normalisation: relevance is summed over the channel axis, divided by the largest
absolute value of that map, and mapped from [-1, 1] onto a diverging colour map whose centre is zero relevance
(white for ``bwr``/``seismic``/``france``, black for ``coldnhot``). Red is positive (evidence for the class), blue
negative.
"""
from __future__ import annotations

import functools
import io
import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .colormap_tables import LISTED, SEGMENTED

# --------------------------------------------------------------------------------------------------- colour maps
#: Colour maps as (position in [0, 1], RGB hex) stops, linearly interpolated. Signed maps put zero at 0.5.
#: ``bwr``, ``seismic``, ``france``, ``coldnhot`` and ``gray`` follow the colour maps zennit ships under those names
#: (zennit's ``bwr`` and ``gray`` equal matplotlib's; zennit's ``seismic`` is a paler variant of matplotlib's, which is
#: ``seismic_mpl`` here). ``jet``, ``hot``, ``coolwarm``, ``viridis``, ``inferno``, ``magma`` and ``plasma`` are
#: matplotlib's (:mod:`.colormap_tables`); ``grey`` is ``gray``.
COLORMAP_STOPS: dict[str, tuple[tuple[float, str], ...]] = {
    "bwr": ((0.0, "0000ff"), (0.5, "ffffff"), (1.0, "ff0000")),
    "seismic": ((0.0, "0000d0"), (0.5, "d0d0d0"), (1.0, "d00000")),
    "france": ((0.0, "0055a4"), (0.5, "ffffff"), (1.0, "ef4135")),
    "coldnhot": ((0.0, "00ffff"), (0.25, "0000ff"), (0.5, "000000"), (2 / 3, "ff0000"), (5 / 6, "ffff00"),
                 (1.0, "ffffff")),
    "gray": ((0.0, "000000"), (1.0, "ffffff")),
    "grey": ((0.0, "000000"), (1.0, "ffffff")),
    **SEGMENTED,
    **{name: tuple((i / 255, packed[6 * i:6 * i + 6]) for i in range(256)) for name, packed in LISTED.items()},
}
#: Maps whose centre (0.5) is zero relevance, a light (or, for coldnhot, black) colour between two hues; the others
#: (jet, viridis, hot, gray, ...) are drawn the same way, zero relevance at their middle colour.
SIGNED_COLORMAPS = ("bwr", "seismic", "france", "coldnhot", "seismic_mpl", "coolwarm")
DEFAULT_CMAP = "bwr"


def colormap_names() -> list[str]:
    """Names accepted by ``--cmap``."""
    return list(COLORMAP_STOPS)


@functools.cache
def _stops(name: str) -> tuple[np.ndarray, np.ndarray]:
    if name not in COLORMAP_STOPS:
        raise ValueError(f"unknown colour map {name!r}; colour maps are: {', '.join(COLORMAP_STOPS)}")
    stops = COLORMAP_STOPS[name]
    pos = np.array([p for p, _ in stops])
    rgb = np.array([[int(h[i:i + 2], 16) for i in (0, 2, 4)] for _, h in stops], dtype=np.float64)
    return pos, rgb


def apply_colormap(values: np.ndarray, name: str = DEFAULT_CMAP) -> np.ndarray:
    """Map values in [0, 1] (clipped) to RGB uint8, shape ``values.shape + (3,)``.

    Interpolates the stops directly (no 256-entry table), so 0.5, zero relevance, gets exactly the centre colour.

    Raises
    ------
    ValueError
        For an unknown name, listing the known ones (the command line checks ``--cmap`` first).
    """
    pos, rgb = _stops(name)
    v = np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0)
    out = np.stack([np.interp(v, pos, rgb[:, c]) for c in range(3)], axis=-1)
    return np.round(out).astype(np.uint8)


def colormap_lut(name: str, n: int = 256) -> np.ndarray:
    """An (n, 3) uint8 table of the colour map (for palettes and legends)."""
    return apply_colormap(np.linspace(0.0, 1.0, n), name)


# ----------------------------------------------------------------------------------------------------- pictures
def array_picture(sample: np.ndarray, layout: str | None) -> np.ndarray | None:
    """A uint8 (H, W, 3) picture of an array sample (min-max scaled), or ``None`` when it is not image-like."""
    arr = np.asarray(sample, dtype=np.float64)
    if arr.ndim == 3:
        if layout == "NHWC" or (layout is None and arr.shape[2] in (1, 3) and arr.shape[0] not in (1, 3)):
            arr = arr.transpose(2, 0, 1)
        if arr.shape[0] not in (1, 3):
            arr = arr.mean(axis=0, keepdims=True)
        arr = arr.transpose(1, 2, 0)
    elif arr.ndim == 2:
        arr = arr[:, :, None]
    else:
        return None
    lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
    scaled = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
    pic = np.round(np.nan_to_num(scaled) * 255.0).astype(np.uint8)
    return np.ascontiguousarray(np.repeat(pic, 3, axis=2) if pic.shape[2] == 1 else pic)


# ----------------------------------------------------------------------------------------------------- heatmaps
def relevance_map(relevance: np.ndarray, layout: str | None) -> np.ndarray:
    """Reduce one sample's relevance to a 2-D map by summing over channels (conservation is kept).

    (C, H, W) or (H, W, C) by ``layout`` -> (H, W); (H, W) as is; a vector of length L -> (1, L); higher ranks sum
    all leading axes.
    """
    r = np.asarray(relevance, dtype=np.float64)
    if r.ndim == 3:
        return r.sum(axis=2) if layout == "NHWC" else r.sum(axis=0)
    if r.ndim == 2:
        return r
    if r.ndim == 1:
        return r[None, :]
    if r.ndim == 0:
        return r.reshape(1, 1)
    return r.reshape(-1, r.shape[-2], r.shape[-1]).sum(axis=0)


def normalise_signed(rmap: np.ndarray) -> np.ndarray:
    """Divide by the largest absolute value, giving [-1, 1] with 0 kept at 0; an all-zero map stays zero."""
    r = np.nan_to_num(np.asarray(rmap, dtype=np.float64))
    peak = float(np.abs(r).max()) if r.size else 0.0
    return r / peak if peak > 0 else np.zeros_like(r)


def heatmap_rgb(rmap: np.ndarray, cmap: str = DEFAULT_CMAP) -> np.ndarray:
    """uint8 (H, W, 3) heatmap of a 2-D relevance map with signed symmetric normalisation."""
    return apply_colormap((normalise_signed(rmap) + 1.0) / 2.0, cmap)


def split_sign(rmap: np.ndarray, shared_scale: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``(p, n)`` in [0, 1]: ``p = max(R, 0) / max(R⁺)`` and ``n = max(−R, 0) / max(R⁻)``, each part on its own
    scale (the RAP paper's figures), or both divided by the map's largest ``|R|`` with ``shared_scale``. A part
    that is zero everywhere stays zero."""
    r = np.nan_to_num(np.asarray(rmap, dtype=np.float64))
    positive, negative = np.clip(r, 0.0, None), np.clip(-r, 0.0, None)
    peak = float(np.abs(r).max()) if r.size else 0.0
    parts = []
    for part in (positive, negative):
        top = peak if shared_scale else (float(part.max()) if part.size else 0.0)
        parts.append(part / top if top > 0 else np.zeros_like(part))
    return parts[0], parts[1]


def split_sign_rgb(rmap: np.ndarray, cmap: str = DEFAULT_CMAP, shared_scale: bool = False
                   ) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (H, W, 3) images of the positive and the negative relevance of a 2-D map (:func:`split_sign`).

    With a signed colour map (:data:`SIGNED_COLORMAPS`) the positive part is drawn from the centre towards the
    positive end, ``(1 + p) / 2`` (white to red for ``bwr``), the negative part towards the negative end,
    ``(1 − n) / 2`` (white to blue); with any other map (``jet``, ``hot``, ``viridis``, ...) each part's magnitude
    spans the whole map, ``p`` and ``n``, so both images read as "more colour = more relevance of that sign".
    """
    p, n = split_sign(rmap, shared_scale)
    if cmap in SIGNED_COLORMAPS:
        return apply_colormap((1.0 + p) / 2.0, cmap), apply_colormap((1.0 - n) / 2.0, cmap)
    return apply_colormap(p, cmap), apply_colormap(n, cmap)


def overlay_rgb(picture: np.ndarray, rmap: np.ndarray, cmap: str = DEFAULT_CMAP, gamma: float = 0.6) -> np.ndarray:
    """Blend relevance over a dimmed greyscale version of ``picture``.

    The colour is the colour map's end for the sign of the relevance (red/blue for ``bwr``), its opacity
    ``0.9 * |r|**gamma`` with r normalised to [-1, 1]: pixels without relevance show the image, strong relevance
    shows the colour, whatever the image's own brightness.
    """
    n = normalise_signed(rmap)
    if picture.shape[:2] != n.shape:
        n = resize_map(n, picture.shape[:2])
    grey = picture.astype(np.float64).mean(axis=2, keepdims=True)
    base = 30.0 + grey * (140.0 / 255.0)
    heat = apply_colormap((np.sign(n) + 1.0) / 2.0, cmap).astype(np.float64)
    weight = 0.9 * np.abs(n)[:, :, None] ** gamma
    return np.round(base * (1.0 - weight) + heat * weight).astype(np.uint8)


def resize_map(rmap: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a float map to (H, W)."""
    img = Image.fromarray(np.asarray(rmap, dtype=np.float32), mode="F")
    return np.asarray(img.resize((shape[1], shape[0]), Image.BILINEAR), dtype=np.float64)


def zoom_factor(shape: tuple[int, ...], min_side: int = 128) -> int:
    """Smallest integer factor that makes the shorter side at least ``min_side`` (1 for large images)."""
    short = max(1, min(shape[0], shape[1]))
    return max(1, math.ceil(min_side / short))


def zoom(rgb: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour integer upscaling, so every input pixel stays a crisp square."""
    if factor == 1:
        return rgb
    return np.repeat(np.repeat(rgb, factor, axis=0), factor, axis=1)


def png_bytes(rgb: np.ndarray) -> bytes:
    """Encode a uint8 (H, W, 3) or (H, W) array as PNG."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def _font(size: int = 12) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has no size argument
        return ImageFont.load_default()


def grid(tiles: Sequence[np.ndarray], titles: Sequence[str], gap: int = 6, title_height: int = 18) -> np.ndarray:
    """Tiles side by side on white, each with a title above it; tiles of different heights are top-aligned."""
    height = max(t.shape[0] for t in tiles)
    width = sum(t.shape[1] for t in tiles) + gap * (len(tiles) + 1)
    canvas = Image.new("RGB", (width, height + title_height + 2 * gap), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    font = _font(12)
    x = gap
    for tile, title in zip(tiles, titles):
        w = tile.shape[1]
        label = title
        while label and draw.textlength(label, font=font) > w:
            label = label[:-2] + "…" if len(label) > 2 else ""
        tw = draw.textlength(label, font=font)
        draw.text((x + (w - tw) / 2, gap // 2 + 2), label, fill=(0, 0, 0), font=font)
        canvas.paste(Image.fromarray(np.ascontiguousarray(tile)), (x, title_height + gap))
        x += w + gap
    return np.asarray(canvas)
