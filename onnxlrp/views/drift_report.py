"""The ``report.html`` of ``onnxlrp diff``: one self-contained page (images embedded as base64 PNG) from plain data.

Sections: the two models and the run; the summary (prediction agreement, the Spearman correlation's and the top-k
overlap's mean, median and quantiles, each model's accuracy where labels are known); a histogram of the per-input
Spearman correlations; agreement per class; and the least similar inputs, least similar first, each with its
picture and the two maps. Each map is drawn on its own signed scale (divided by its largest ``|R|``), as the
Spearman correlation and the top-k overlap ignore scale: what differs between the two is where relevance lies.
"""
from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

from .imaging import DEFAULT_CMAP, heatmap_rgb, png_bytes, zoom, zoom_factor
from .plots import PALETTE, _label, nice_ticks
from .plots import _font as plot_font

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px; color: #222; background: #fafafa; }
h1 { font-size: 22px; margin: 0 0 6px 0; } h2 { font-size: 18px; margin: 18px 0 8px 0; }
section { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 10px 14px; margin: 0 0 14px 0; }
table { border-collapse: collapse; font-size: 13px; } td, th { padding: 2px 10px 2px 0; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.note { font-size: 12px; color: #555; }
.flag { color: #b00; font-weight: 600; }
.inputs { display: flex; flex-wrap: wrap; gap: 12px; }
.input { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 8px 10px; font-size: 12px; }
.input .source { font-weight: 600; word-break: break-all; max-width: 420px; }
.pair { display: flex; gap: 6px; margin-top: 6px; }
figure { margin: 0; text-align: center; font-size: 12px; } figure img { display: block; image-rendering: pixelated;
  border: 1px solid #ccc; }
"""


@dataclass
class ExampleView:
    """One of the least similar inputs: where it came from, its numbers ``(name, text)``, its picture (uint8
    ``(H, W, 3)`` or ``None``) and the two maps ``(H, W)``."""

    row: int
    source: str
    numbers: list[tuple[str, str]]
    picture: np.ndarray | None
    map_a: np.ndarray
    map_b: np.ndarray
    disagree: bool = False


@dataclass
class DriftPage:
    """What the page shows: ``meta`` rows, summary rows ``(name, text)``, the Spearman histogram (``edges``,
    ``counts``), per class ``(class, rows, agreement, mean Spearman, mean overlap)`` and the examples."""

    title: str
    meta: Sequence[tuple[str, str]]
    summary: Sequence[tuple[str, str]]
    histogram: Mapping
    per_class: Sequence[tuple[str, int, float, float | None, float | None]] = ()
    examples: Sequence[ExampleView] = field(default_factory=list)
    unreadable: int = 0
    cmap: str = DEFAULT_CMAP


def _b64(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _num(value: float | None, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def histogram_plot(edges: Sequence[float], counts: Sequence[int], *, title: str = "", xlabel: str = "",
                   width: int = 560, height: int = 260) -> np.ndarray:
    """Bars of ``counts`` over the bins ``edges`` (one more than the counts): a uint8 RGB array."""
    image = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    font, small = plot_font(13), plot_font(11)
    left, right, top, bottom = 52, 16, 30 if title else 12, 40
    edges = np.asarray(edges, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.float64)
    x0, x1 = (float(edges[0]), float(edges[-1])) if edges.size >= 2 and edges[-1] > edges[0] else (0.0, 1.0)
    y1 = float(counts.max()) * 1.05 if counts.size and counts.max() > 0 else 1.0
    plot_w, plot_h = width - left - right, height - top - bottom

    def px(x: float, y: float) -> tuple[float, float]:
        return left + (x - x0) / (x1 - x0) * plot_w, top + (1 - y / y1) * plot_h

    for tick in nice_ticks(0.0, y1):
        _, yy = px(x0, tick)
        draw.line([(left, yy), (left + plot_w, yy)], fill=(232, 232, 232))
        text = _label(tick)
        draw.text((left - 6 - draw.textlength(text, font=small), yy - 6), text, fill=(60, 60, 60), font=small)
    for low, high, count in zip(edges[:-1], edges[1:], counts):
        if count > 0:
            (bx0, by0), (bx1, by1) = px(float(low), float(count)), px(float(high), 0.0)
            draw.rectangle([bx0 + 1, by0, bx1 - 1, by1], fill=PALETTE[0])
    for tick in nice_ticks(x0, x1):
        xx, _ = px(tick, 0.0)
        draw.line([(xx, top + plot_h), (xx, top + plot_h + 4)], fill=(60, 60, 60))
        text = _label(tick)
        draw.text((xx - draw.textlength(text, font=small) / 2, top + plot_h + 6), text, fill=(60, 60, 60),
                  font=small)
    draw.rectangle([left, top, left + plot_w, top + plot_h], outline=(90, 90, 90))
    if title:
        draw.text(((width - draw.textlength(title, font=font)) / 2, 8), title, fill=(20, 20, 20), font=font)
    if xlabel:
        draw.text((left + (plot_w - draw.textlength(xlabel, font=small)) / 2, height - 17), xlabel,
                  fill=(40, 40, 40), font=small)
    return np.asarray(image)


def _figure(rgb: np.ndarray, caption: str) -> str:
    factor = zoom_factor(rgb.shape, 112) if max(rgb.shape[:2]) < 112 else 1
    big = zoom(rgb, factor)
    return (f"<figure><img src=\"{_b64(png_bytes(big))}\" alt=\"{_e(caption)}\" width=\"{big.shape[1]}\" "
            f"height=\"{big.shape[0]}\"><figcaption>{_e(caption)}</figcaption></figure>")


def _example(view: ExampleView, cmap: str) -> str:
    numbers = "".join(f"<tr><td>{_e(k)}</td><td class=\"num\">{_e(v)}</td></tr>" for k, v in view.numbers)
    figures = [] if view.picture is None else [_figure(view.picture, "input")]
    figures += [_figure(heatmap_rgb(view.map_a, cmap), "A"), _figure(heatmap_rgb(view.map_b, cmap), "B")]
    flag = " <span class=\"flag\">predictions differ</span>" if view.disagree else ""
    return (f"<div class=\"input\" id=\"row-{view.row}\"><div class=\"source\">row {view.row}: {_e(view.source)}"
            f"{flag}</div><table>{numbers}</table><div class=\"pair\">{''.join(figures)}</div></div>")


def drift_page(page: DriftPage) -> str:
    """The whole page as a string."""
    meta = "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in page.meta)
    summary = "".join(f"<tr><td>{_e(k)}</td><td class=\"num\">{_e(v)}</td></tr>" for k, v in page.summary)
    parts = [f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{_e(page.title)}</title>"
             f"<style>{CSS}</style></head><body><h1>{_e(page.title)}</h1>",
             f"<section id=\"run\"><table>{meta}</table></section>",
             f"<section id=\"summary\"><h2>Summary</h2><table>{summary}</table>"]
    if page.unreadable:
        parts.append(f"<p class=\"flag\">{page.unreadable} input(s) could not be read (see the error column of "
                     "diff.parquet)</p>")
    parts.append("</section>")
    if sum(page.histogram.get("counts", [])):
        plot = histogram_plot(page.histogram["edges"], page.histogram["counts"],
                              title="Spearman correlation of the two maps, per input", xlabel="Spearman")
        parts.append(f"<section id=\"histogram\"><img src=\"{_b64(png_bytes(plot))}\" alt=\"histogram of the "
                     f"Spearman correlations\" width=\"{plot.shape[1]}\" height=\"{plot.shape[0]}\"></section>")
    if page.per_class:
        rows = "".join(f"<tr><td>{_e(name)}</td><td class=\"num\">{n}</td><td class=\"num\">{agree:.1%}</td>"
                       f"<td class=\"num\">{_num(rho)}</td><td class=\"num\">{_num(overlap)}</td></tr>"
                       for name, n, agree, rho, overlap in page.per_class)
        parts.append("<section id=\"classes\"><h2>Per class (of model A's prediction)</h2><table><tr><th>class</th>"
                     "<th>inputs</th><th>agreement</th><th>mean Spearman</th><th>mean top-k overlap</th></tr>"
                     f"{rows}</table></section>")
    if page.examples:
        parts.append(f"<h2>The {len(page.examples)} least similar input(s)</h2><p class=\"note\">Least similar "
                     "first (lowest Spearman correlation). Each map on its own scale: red for the class, blue "
                     "against it.</p><div class=\"inputs\" id=\"least-similar\">")
        parts.extend(_example(view, page.cmap) for view in page.examples)
        parts.append("</div>")
    parts.append("</body></html>\n")
    return "".join(parts)
