"""Line plots drawn with Pillow and numpy only (matplotlib is not a dependency): evaluation curves as PNG.

:func:`line_plot` draws several series on shared axes with ticks, a legend, and dashed lines for baselines; the
curves of ``onnxlrp evaluate`` (mean over inputs per method, the random order dashed in grey) use it.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

#: series colours (colour-blind friendly, Okabe-Ito), in order
PALETTE = ((0, 114, 178), (213, 94, 0), (0, 158, 115), (204, 121, 167), (230, 159, 0), (86, 180, 233),
           (240, 228, 66), (0, 0, 0))
GREY = (128, 128, 128)


@dataclass
class Series:
    """One line: ``label``, x and y values, an RGB ``color`` (default from :data:`PALETTE`), ``dashed``."""

    label: str
    x: Sequence[float]
    y: Sequence[float]
    color: tuple[int, int, int] | None = None
    dashed: bool = False


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering ``[low, high]`` (steps of 1, 2 or 5 times a power of ten)."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return [low]
    raw = (high - low) / max(1, count)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    start = math.ceil(low / step - 1e-9) * step
    ticks, value = [], start
    while value <= high + 1e-9 * step:
        ticks.append(round(value, 12))
        value += step
    return ticks


def _label(value: float) -> str:
    return f"{value:.4g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.1e}"


def _dashed(draw: ImageDraw.ImageDraw, points: list[tuple[float, float]], color, width: int, dash: float = 7.0):
    """A polyline drawn in dashes of ``dash`` pixels (the pattern runs on across vertices)."""
    on, left = True, dash
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        length = math.hypot(x1 - x0, y1 - y0)
        pos = 0.0
        while pos < length:
            run = min(left, length - pos)
            if on:
                a, b = pos / length, (pos + run) / length
                draw.line([(x0 + (x1 - x0) * a, y0 + (y1 - y0) * a), (x0 + (x1 - x0) * b, y0 + (y1 - y0) * b)],
                          fill=color, width=width)
            pos += run
            left -= run
            if left <= 1e-9:
                on, left = not on, dash


def line_plot(series: Sequence[Series], *, title: str = "", xlabel: str = "", ylabel: str = "", width: int = 560,
              height: int = 360) -> np.ndarray:
    """The series drawn on one set of axes: a uint8 RGB array ``(height, width, 3)``.

    Axis limits cover every finite value; NaN points are skipped (the line breaks there). The legend lists the
    series in order at the top right.
    """
    image = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    font, small = _font(13), _font(11)
    left, right, top, bottom = 62, 16, 30 if title else 14, 44
    xs = [np.asarray(s.x, dtype=np.float64) for s in series]
    ys = [np.asarray(s.y, dtype=np.float64) for s in series]
    finite_x = np.concatenate([x[np.isfinite(x)] for x in xs]) if xs else np.array([0.0])
    finite_y = np.concatenate([y[np.isfinite(y)] for y in ys]) if ys else np.array([0.0])
    x0, x1 = (float(finite_x.min()), float(finite_x.max())) if finite_x.size else (0.0, 1.0)
    y0, y1 = (float(finite_y.min()), float(finite_y.max())) if finite_y.size else (0.0, 1.0)
    if x1 <= x0:
        x0, x1 = x0 - 0.5, x1 + 0.5
    if y1 <= y0:
        y0, y1 = y0 - 0.5, y1 + 0.5
    pad = (y1 - y0) * 0.05
    y0, y1 = y0 - pad, y1 + pad
    plot_w, plot_h = width - left - right, height - top - bottom

    def px(x, y):
        return left + (x - x0) / (x1 - x0) * plot_w, top + (1 - (y - y0) / (y1 - y0)) * plot_h

    for tick in nice_ticks(y0, y1):  # horizontal grid and y labels
        _, yy = px(x0, tick)
        draw.line([(left, yy), (left + plot_w, yy)], fill=(232, 232, 232))
        text = _label(tick)
        draw.text((left - 6 - draw.textlength(text, font=small), yy - 6), text, fill=(60, 60, 60), font=small)
    for tick in nice_ticks(x0, x1):
        xx, _ = px(tick, y0)
        draw.line([(xx, top + plot_h), (xx, top + plot_h + 4)], fill=(60, 60, 60))
        text = _label(tick)
        draw.text((xx - draw.textlength(text, font=small) / 2, top + plot_h + 6), text, fill=(60, 60, 60),
                  font=small)
    draw.rectangle([left, top, left + plot_w, top + plot_h], outline=(90, 90, 90))
    for k, (s, x, y) in enumerate(zip(series, xs, ys)):
        color = s.color or PALETTE[k % len(PALETTE)]
        ok = np.isfinite(x) & np.isfinite(y)
        runs = np.split(np.arange(len(x)), np.flatnonzero(np.diff(ok.astype(int)) != 0) + 1)
        for run in runs:
            if len(run) and ok[run[0]]:
                points = [px(float(x[i]), float(y[i])) for i in run]
                if len(points) == 1:
                    cx, cy = points[0]
                    draw.ellipse([cx - 2, cy - 2, cx + 2, cy + 2], fill=color)
                elif s.dashed:
                    _dashed(draw, points, color, 2)
                else:
                    draw.line(points, fill=color, width=2, joint="curve")
    if title:
        draw.text(((width - draw.textlength(title, font=font)) / 2, 8), title, fill=(20, 20, 20), font=font)
    if xlabel:
        draw.text((left + (plot_w - draw.textlength(xlabel, font=small)) / 2, height - 18), xlabel,
                  fill=(40, 40, 40), font=small)
    if ylabel:
        label = Image.new("RGB", (int(draw.textlength(ylabel, font=small)) + 4, 14), (255, 255, 255))
        ImageDraw.Draw(label).text((2, 0), ylabel, fill=(40, 40, 40), font=small)
        rotated = label.rotate(90, expand=True)
        image.paste(rotated, (4, top + max(0, (plot_h - rotated.size[1]) // 2)))
    if series:  # legend, top right inside the plot
        rows = [(s.label, s.color or PALETTE[k % len(PALETTE)], s.dashed) for k, s in enumerate(series)]
        box_w = 34 + max(int(draw.textlength(r[0], font=small)) for r in rows)
        bx, by = left + plot_w - box_w - 6, top + 6
        draw.rectangle([bx, by, bx + box_w, by + 6 + 15 * len(rows)], fill=(255, 255, 255), outline=(200, 200, 200))
        for i, (text, color, dashed) in enumerate(rows):
            yy = by + 10 + 15 * i
            if dashed:
                _dashed(draw, [(bx + 6, yy), (bx + 26, yy)], color, 2, dash=4)
            else:
                draw.line([(bx + 6, yy), (bx + 26, yy)], fill=color, width=2)
            draw.text((bx + 30, yy - 6), text, fill=(30, 30, 30), font=small)
    return np.asarray(image)
