"""Multi-class views: one input's maps for several classes and contrasts in one picture, and maps split by sign.

The seeds draw these: a grid of target P against several contrast classes Q (contrastive Grad-CAM, CLRP), LRP
against CLRP for two classes, and the RAP figures' separate images of positive and negative relevance.
:func:`class_grid` lays out rows (one per target) of titled tiles (one per method or contrast), the input picture
first; with ``split_sign`` each map becomes two tiles, its positive part (red) and its negative part (blue), both
scaled by the map's own largest ``|R|`` so that they stay comparable.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from . import imaging


def sign_tiles(rmap: np.ndarray, cmap: str = imaging.DEFAULT_CMAP) -> tuple[np.ndarray, np.ndarray]:
    """``(positive, negative)`` heatmaps of a 2-D map: ``max(R, 0)`` and ``min(R, 0)``, each drawn on the scale of
    the whole map's largest ``|R|`` (so a weak negative part stays pale): :func:`imaging.split_sign_rgb` with
    ``shared_scale``."""
    return imaging.split_sign_rgb(rmap, cmap, shared_scale=True)


def class_grid(rows: Sequence[tuple[str, Sequence[tuple[str, np.ndarray]]]], picture: np.ndarray | None = None, *,
               cmap: str = imaging.DEFAULT_CMAP, split_sign: bool = False, label_width: int = 90) -> np.ndarray:
    """One picture of ``rows``: ``(row label, [(tile title, 2-D map), ...])``, each row a titled strip of heatmaps
    (``picture`` first when given), the row label on the left. Returns uint8 RGB."""
    strips = []
    for _, maps in rows:
        tiles, titles = [], []
        shape = next((m.shape for _, m in maps), picture.shape[:2] if picture is not None else (1, 1))
        factor = imaging.zoom_factor(picture.shape if picture is not None else shape)
        if picture is not None:
            tiles.append(imaging.zoom(picture, factor))
            titles.append("input")
        for title, rmap in maps:
            rmap = np.asarray(rmap, dtype=np.float64)
            if picture is not None and rmap.shape != picture.shape[:2]:
                rmap = imaging.resize_map(rmap, picture.shape[:2])
            if split_sign:
                positive, negative = sign_tiles(rmap, cmap)
                tiles += [imaging.zoom(positive, factor), imaging.zoom(negative, factor)]
                titles += [f"{title} +", f"{title} -"]
            else:
                tiles.append(imaging.zoom(imaging.heatmap_rgb(rmap, cmap), factor))
                titles.append(title)
        strips.append(imaging.grid(tiles, titles))
    width = label_width + max(s.shape[1] for s in strips)
    height = sum(s.shape[0] for s in strips)
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    try:
        font = ImageFont.load_default(size=12)
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    y = 0
    for (label, _), strip in zip(rows, strips):
        canvas.paste(Image.fromarray(np.ascontiguousarray(strip)), (label_width, y))
        draw.text((6, y + strip.shape[0] // 2 - 6), label, fill=(0, 0, 0), font=font)
        y += strip.shape[0]
    return np.asarray(canvas)
