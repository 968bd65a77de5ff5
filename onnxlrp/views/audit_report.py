"""The audit's ``report.html``: one self-contained page (images embedded as base64 PNG) from plain data.

Sections: what was audited; the dataset's confusion summary (accuracy, the confusion matrix when the labels are
known, or the prediction counts); per method, each class's strategies found by SpRAy, the most distinct first, each
with its mean relevance map, size, share and example inputs, beside the 2-D embedding coloured by cluster and the
eigenvalues with the eigengap that chose their number; and the per-input measures' means.
"""
from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

from .plots import PALETTE, _font

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px; color: #222; background: #fafafa; }
h1 { font-size: 22px; margin: 0 0 6px 0; } h2 { font-size: 18px; margin: 18px 0 8px 0; }
h3 { font-size: 15px; margin: 10px 0 6px 0; }
section, .class { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 10px 14px;
                  margin: 0 0 14px 0; }
table { border-collapse: collapse; font-size: 13px; } td, th { padding: 2px 8px 2px 0; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.matrix td { border: 1px solid #eee; text-align: right; min-width: 28px; }
.note { font-size: 12px; color: #555; }
.strategies { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; }
.cluster { border-left: 4px solid #ccc; padding-left: 8px; font-size: 12px; }
.examples { display: flex; gap: 3px; flex-wrap: wrap; max-width: 420px; }
figure { margin: 0; text-align: center; font-size: 11px; } figure img { display: block; image-rendering: pixelated; }
.flag { color: #b00; font-weight: 600; }
"""


@dataclass
class ClusterView:
    """One strategy of one class."""

    cluster: int
    size: int
    share: float
    distinctness: float
    mean_png: bytes
    examples: list[tuple[str, bytes]] = field(default_factory=list)   # (caption, overlay PNG)


@dataclass
class ClassView:
    """SpRAy's result for one class under one method."""

    name: str
    rows: int
    clustered: int
    n_clusters: int | None
    eigengap: float | None
    clusters: list[ClusterView] = field(default_factory=list)
    scatter_png: bytes | None = None
    eigen_png: bytes | None = None


@dataclass
class MethodSection:
    """One method: its classes (most distinct strategy first) and its measures ``(name, mean, std, count)``."""

    method: str
    classes: list[ClassView]
    measures: list[tuple[str, float, float, int]] = field(default_factory=list)
    #: classes not drawn: ``(name, rows, strategies or None, top distinctness or None)``
    more: list[tuple[str, int, int | None, float | None]] = field(default_factory=list)


def _b64(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _e(text: object) -> str:
    return html.escape(str(text))


def scatter_plot(points: np.ndarray, groups: np.ndarray, title: str = "", size: int = 220) -> np.ndarray:
    """Points ``(N, 2)`` coloured by group (:data:`~.plots.PALETTE` in group order), scaled so that the 2nd to
    98th percentile of each axis fills a square (points beyond sit on its border, so a few outliers do not squeeze
    the rest into a line): a uint8 RGB array ``(size, size, 3)``."""
    image = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    top = 18 if title else 6
    if title:
        draw.text((6, 3), title, fill=(30, 30, 30), font=_font(11))
    if len(pts):
        low, high = np.percentile(pts, 2, axis=0), np.percentile(pts, 98, axis=0)
        flat = high <= low
        low, high = np.where(flat, pts.min(axis=0), low), np.where(flat, pts.max(axis=0), high)
        span = np.where(high > low, high - low, 1.0)
        xy = np.clip((pts - low) / span, 0.0, 1.0)
        xs = 8 + xy[:, 0] * (size - 16)
        ys = top + 4 + (1 - xy[:, 1]) * (size - top - 12)
        for x, y, g in zip(xs, ys, np.asarray(groups).reshape(-1)):
            draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=PALETTE[int(g) % len(PALETTE)])
    draw.rectangle([0, 0, size - 1, size - 1], outline=(200, 200, 200))
    return np.asarray(image)


def _summary(meta: Sequence[tuple[str, str]], accuracy: float | None, matrix: np.ndarray | None,
             class_names: Sequence[str], predicted: Sequence[tuple[str, int]], failed: int) -> str:
    rows = "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in meta)
    parts = [f"<section id=\"summary\"><table>{rows}</table>"]
    if failed:
        parts.append(f"<p class=\"flag\">{failed} input(s) could not be read (see the error column)</p>")
    if accuracy is not None:
        parts.append(f"<h2>Predictions</h2><p>Accuracy on the labelled inputs: <b>{accuracy:.2%}</b></p>")
    if matrix is not None and len(matrix) <= 30:
        head = "".join(f"<th>{_e(n)}</th>" for n in class_names)
        body = "".join(f"<tr><th>{_e(class_names[i])}</th>" + "".join(
            f"<td style=\"background:rgba(0,114,178,{0.8 * v / max(1, row.sum()):.2f})\">{v}</td>" for v in row) +
            "</tr>" for i, row in enumerate(matrix))
        parts.append(f"<p class=\"note\">Confusion matrix: rows are labels, columns predictions.</p>"
                     f"<table class=\"matrix\"><tr><th></th>{head}</tr>{body}</table>")
    elif predicted:
        body = "".join(f"<tr><td>{_e(n)}</td><td class=\"num\">{c}</td></tr>" for n, c in predicted)
        parts.append(f"<h2>Predictions</h2><table><tr><th>class</th><th>inputs</th></tr>{body}</table>")
    parts.append("</section>")
    return "".join(parts)


def _class_html(view: ClassView) -> str:
    head = (f"<h3>{_e(view.name)}: {view.rows} input(s)" +
            (f", {view.clustered} clustered" if view.clustered != view.rows else "") + "</h3>")
    if view.n_clusters is None:
        return f"<div class=\"class\">{head}<p class=\"note\">too few inputs for SpRAy</p></div>"
    hidden = view.n_clusters - len(view.clusters)
    note = (f"<p class=\"note\">{view.n_clusters} strateg{'y' if view.n_clusters == 1 else 'ies'} (eigengap "
            f"{view.eigengap:.3g}); most distinct first" + (f", the {hidden} least distinct not drawn (spray.json)"
                                                             if hidden > 0 else "") +
            ". A small, distinct cluster is a candidate Clever Hans strategy: look at its mean map and examples.</p>")
    figures = ""
    if view.scatter_png is not None:
        figures += f"<figure><img src=\"{_b64(view.scatter_png)}\" alt=\"embedding\"><figcaption>embedding" \
                   "</figcaption></figure>"
    if view.eigen_png is not None:
        figures += f"<figure><img src=\"{_b64(view.eigen_png)}\" alt=\"eigenvalues\"><figcaption>eigenvalues" \
                   "</figcaption></figure>"
    cards = []
    for c in view.clusters:
        colour = PALETTE[c.cluster % len(PALETTE)]
        examples = "".join(f"<figure><img src=\"{_b64(png)}\" alt=\"example\" width=\"64\" height=\"64\">"
                           f"<figcaption>{_e(caption)}</figcaption></figure>" for caption, png in c.examples)
        cards.append(f"<div class=\"cluster\" style=\"border-color:rgb{colour}\"><b>cluster {c.cluster}</b>: "
                     f"{c.size} ({c.share:.0%}), distinctness {c.distinctness:.3f}<div class=\"strategies\">"
                     f"<figure><img src=\"{_b64(c.mean_png)}\" alt=\"mean map\" width=\"96\" height=\"96\">"
                     f"<figcaption>mean map</figcaption></figure><div class=\"examples\">{examples}</div></div></div>")
    return (f"<div class=\"class\">{head}{note}<div class=\"strategies\">{figures}</div>"
            f"<div class=\"strategies\">{''.join(cards)}</div></div>")


def audit_page(title: str, meta: Sequence[tuple[str, str]], sections: Sequence[MethodSection], *,
               accuracy: float | None = None, matrix: np.ndarray | None = None, class_names: Sequence[str] = (),
               predicted: Sequence[tuple[str, int]] = (), failed: int = 0) -> str:
    """The whole page as a string."""
    parts = [f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{_e(title)}</title><style>{CSS}</style>"
             f"</head><body><h1>{_e(title)}</h1>", _summary(meta, accuracy, matrix, class_names, predicted, failed)]
    for section in sections:
        parts.append(f"<h2>Strategies under <code>{_e(section.method)}</code></h2>")
        if section.measures:
            rows = "".join(f"<tr><td>{_e(n)}</td><td class=\"num\">{m:.4g}</td><td class=\"num\">{s:.3g}</td>"
                           f"<td class=\"num\">{c}</td></tr>" for n, m, s, c in section.measures)
            parts.append(f"<section><table><tr><th>measure</th><th>mean</th><th>std</th><th>n</th></tr>{rows}"
                         "</table></section>")
        parts.extend(_class_html(view) for view in section.classes)
        if section.more:
            rows = "".join(f"<tr><td>{_e(n)}</td><td class=\"num\">{r}</td><td class=\"num\">"
                           f"{'' if k is None else k}</td><td class=\"num\">{'' if d is None else f'{d:.3f}'}</td>"
                           "</tr>" for n, r, k, d in section.more)
            parts.append(f"<section><h3>{len(section.more)} more classes</h3><p class=\"note\">Not drawn; "
                         "spray.json and spray/ hold their strategies.</p><table><tr><th>class</th><th>inputs</th>"
                         f"<th>strategies</th><th>most distinct</th></tr>{rows}</table></section>")
    parts.append("</body></html>\n")
    return "".join(parts)
