"""A self-contained HTML gallery of explanations: one file, every image embedded as a base64 PNG.

The report is streamed: the header goes out first, then one card per input as soon as it is explained, then the
footer, so a run over thousands of inputs never holds more than one batch of images in memory. The command line
writes it through :func:`onnxlrp.fileio.atomic_write`, so an interrupted run leaves no partial ``report.html``.

Each input card holds exactly ``1 + 2 * len(methods)`` ``<img>`` elements: the input as the model saw it, then a
heatmap and an overlay per method (``1 + 4 * len(methods)`` with ``--split-sign``: the positive-only and
negative-only images too). Colour scales are drawn with CSS, not images, so the count stays exact.
"""
from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO

from .imaging import COLORMAP_STOPS

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px; color: #222; background: #fafafa; }
h1 { font-size: 22px; margin: 0 0 4px 0; }
.meta { font-size: 13px; color: #444; margin-bottom: 16px; }
.meta table { border-collapse: collapse; }
.meta td { padding: 2px 10px 2px 0; vertical-align: top; }
.meta td:first-child { color: #777; white-space: nowrap; }
code { background: #eee; padding: 0 3px; border-radius: 3px; }
.scale { display: inline-block; width: 180px; height: 12px; border: 1px solid #999; vertical-align: middle; }
.card { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 10px 12px; margin: 0 0 14px 0;
        display: flex; gap: 14px; align-items: flex-start; flex-wrap: wrap; }
.info { width: 170px; font-size: 13px; }
.info .name { font-weight: 600; word-break: break-all; }
.info .pred { font-size: 16px; margin: 4px 0; }
.info table { border-collapse: collapse; font-size: 12px; }
.info td { padding: 0 8px 0 0; }
figure { margin: 0; text-align: center; font-size: 12px; }
figure img { display: block; image-rendering: pixelated; border: 1px solid #ccc; }
figcaption { margin-top: 3px; max-width: 270px; }
.method > figcaption { font-size: 12px; color: #444; }
.pair { display: flex; gap: 4px; }
.method { border-left: 3px solid #eee; padding-left: 8px; }
.method h3 { font-size: 13px; margin: 0 0 4px 0; font-weight: 600; }
.footer { font-size: 12px; color: #777; margin-top: 20px; }
.evaluation { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 10px 14px; margin: 0 0 14px 0; }
.evaluation h2 { font-size: 17px; margin: 4px 0 8px 0; }
.evaluation h3 { font-size: 14px; margin: 12px 0 4px 0; }
.evaluation table { border-collapse: collapse; font-size: 13px; margin-bottom: 6px; }
.evaluation th, .evaluation td { padding: 2px 10px 2px 0; text-align: left; }
.evaluation td.num { text-align: right; font-variant-numeric: tabular-nums; }
.evaluation .best { font-weight: 600; }
.evaluation .note { font-size: 12px; color: #555; }
.metric { display: inline-block; vertical-align: top; margin: 0 16px 10px 0; }
.evaluation figure img { max-width: 100%; height: auto; }
"""


@dataclass
class MethodView:
    """One method's result for one input, ready to show."""

    method: str
    target: int
    target_label: str | None
    logit: float
    relevance_sum: float
    heatmap_png: bytes
    overlay_png: bytes | None
    positive_png: bytes | None = None   # --split-sign: the positive and the negative part, each on its own scale
    negative_png: bytes | None = None


@dataclass
class InputCard:
    """Everything the report shows for one input."""

    name: str
    source: str
    picture_png: bytes | None   # None for inputs that are not image-like (then the card has 2 * methods images)
    predicted: int
    predicted_label: str | None
    top: list[tuple[int, str | None, float, float]]  # (class, label, logit, probability)
    methods: list[MethodView] = field(default_factory=list)


def _b64(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _cls(index: int, label: str | None) -> str:
    return f"{index} ({label})" if label is not None and label != str(index) else str(index)


def _gradient(cmap: str) -> str:
    stops = ", ".join(f"#{hexcode} {pos * 100:.1f}%" for pos, hexcode in COLORMAP_STOPS[cmap])
    return f"linear-gradient(to right, {stops})"


class HtmlReport:
    """Write the report to an open text stream: header now, :meth:`add` per input, :meth:`close` for the footer.

    Parameters
    ----------
    stream : IO[str]
        Where the HTML goes (the command line passes an atomic temporary file).
    title : str
        Page title and heading.
    meta : Sequence[tuple[str, str]]
        (key, value) rows shown under the heading (model, output, preprocessing, ...), as plain text.
    methods : Sequence[tuple[str, dict]]
        The methods in column order, with their parameters.
    cmap : str
        Colour map name, for the colour scale legend.
    display_px : int
        Width in CSS pixels that each image is shown at (pixelated scaling keeps small inputs crisp).
    """

    def __init__(self, stream: IO[str], *, title: str, meta: Sequence[tuple[str, str]],
                 methods: Sequence[tuple[str, dict]], cmap: str, display_px: int = 116) -> None:
        self._out = stream
        self._methods = [m for m, _ in methods]
        self._display = display_px
        self.count = 0
        rows = "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in meta)
        method_rows = "".join(
            f"<tr><td>method</td><td><code>{_e(m)}</code> {_e(_params_text(p))}</td></tr>" for m, p in methods)
        self._out.write(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>\n"
            f"<h1>{_e(title)}</h1>\n<div class=\"meta\"><table>{rows}{method_rows}"
            f"<tr><td>colour scale</td><td>negative <span class=\"scale\" style=\"background: {_gradient(cmap)}\">"
            f"</span> positive relevance (<code>{_e(cmap)}</code>, each map scaled by its own largest |R|)"
            "</td></tr></table></div>\n<main>\n")

    def add(self, card: InputCard) -> None:
        """Append one input's card."""
        px = self._display
        top_rows = "".join(
            f"<tr><td>{_e(_cls(c, lab))}</td><td>{logit:.3f}</td><td>{prob * 100:.1f}%</td></tr>"
            for c, lab, logit, prob in card.top)
        parts = [
            f"<section class=\"card\" id=\"input-{self.count}\"><div class=\"info\">"
            f"<div class=\"name\" title=\"{_e(card.source)}\">{_e(card.name)}</div>"
            f"<div class=\"pred\">predicted <b>{_e(_cls(card.predicted, card.predicted_label))}</b></div>"
            f"<table><tr><td>class</td><td>logit</td><td>softmax</td></tr>{top_rows}</table></div>",
        ]
        if card.picture_png is not None:
            parts.append(f"<figure><img src=\"{_b64(card.picture_png)}\" width=\"{px}\" "
                         f"alt=\"input {_e(card.name)}\"><figcaption>input</figcaption></figure>")
        for view in card.methods:
            caption = (f"class {_cls(view.target, view.target_label)}: ΣR = {view.relevance_sum:.4g}, "
                       f"logit = {view.logit:.4g}")
            overlay = ""
            if view.overlay_png is not None:
                overlay = (f"<figure><img src=\"{_b64(view.overlay_png)}\" width=\"{px}\" "
                           f"alt=\"{_e(view.method)} overlay\"><figcaption>overlay</figcaption></figure>")
            for png, part in ((view.positive_png, "positive"), (view.negative_png, "negative")):
                if png is not None:
                    overlay += (f"<figure><img src=\"{_b64(png)}\" width=\"{px}\" alt=\"{_e(view.method)} {part} "
                                f"relevance\"><figcaption>{part} only</figcaption></figure>")
            parts.append(
                f"<div class=\"method\"><h3>{_e(view.method)}</h3><div class=\"pair\">"
                f"<figure><img src=\"{_b64(view.heatmap_png)}\" width=\"{px}\" alt=\"{_e(view.method)} heatmap\">"
                f"<figcaption>heatmap</figcaption></figure>{overlay}</div>"
                f"<figcaption>{_e(caption)}</figcaption></div>")
        parts.append("</section>\n")
        self._out.write("".join(parts))
        self.count += 1

    def add_section(self, html_text: str) -> None:
        """Append a ready-made section (e.g. :func:`evaluation_section`) between the cards."""
        self._out.write(html_text)

    def close(self, footer: str = "") -> None:
        """Write the footer and end the document (the caller closes the stream)."""
        self._out.write(f"</main>\n<div class=\"footer\">{self.count} input(s). {_e(footer)}</div>\n</body></html>\n")


def _params_text(params: dict) -> str:
    if not params:
        return ""
    return "(" + ", ".join(f"{k}={v!r}" for k, v in params.items()) + ")"


# ---------------------------------------------------------------------------------------------- evaluation
@dataclass
class MetricView:
    """One measure's results for every method: ``rows`` are ``(method, mean, std, count, rank)`` (rank ``None``
    when the measure is not ranked), ``random`` the random order's mean where there is one, ``plot_png`` the
    curves."""

    name: str
    description: str
    higher_is_better: bool | None
    rows: list[tuple[str, float, float, int, int | None]]
    random: float | None = None
    plot_png: bytes | None = None


def _num(value: float | None) -> str:
    return "n/a" if value is None or value != value else f"{value:.4g}"


def evaluation_section(metrics: Sequence[MetricView], overall: Sequence[tuple[str, float]], inputs: int) -> str:
    """The report's evaluation section: the methods ranked for this model (mean rank over the ranked measures,
    best first), then per measure a table (mean, standard deviation, rank) and its curves."""
    parts = [f"<section class=\"evaluation\" id=\"evaluation\"><h2>Evaluation: which method is most faithful "
             f"for this model?</h2><p class=\"note\">{inputs} input(s). Methods ranked by their mean rank over the "
             "ranked measures (1 is best).</p>"]
    if overall:
        rows = "".join(f"<tr class=\"{'best' if i == 0 else ''}\"><td>{i + 1}</td><td><code>{_e(m)}</code></td>"
                       f"<td class=\"num\">{rank:.2f}</td></tr>" for i, (m, rank) in enumerate(overall))
        parts.append(f"<table><tr><th>place</th><th>method</th><th>mean rank</th></tr>{rows}</table>")
    for view in metrics:
        better = {True: "higher is better", False: "lower is better", None: "not ranked"}[view.higher_is_better]
        rows = "".join(
            f"<tr class=\"{'best' if rank == 1 else ''}\"><td><code>{_e(m)}</code></td><td class=\"num\">"
            f"{_num(mean)}</td><td class=\"num\">{_num(std)}</td><td class=\"num\">{count}</td>"
            f"<td class=\"num\">{'' if rank is None else rank}</td></tr>" for m, mean, std, count, rank in view.rows)
        if view.random is not None:
            rows += (f"<tr><td>random order</td><td class=\"num\">{_num(view.random)}</td><td></td><td></td>"
                     "<td></td></tr>")
        plot = (f"<figure><img src=\"{_b64(view.plot_png)}\" alt=\"{_e(view.name)} curves\"></figure>"
                if view.plot_png is not None else "")
        parts.append(f"<div class=\"metric\"><h3>{_e(view.name)}</h3><p class=\"note\">{_e(view.description)} "
                     f"({better})</p><table><tr><th>method</th><th>mean</th><th>std</th><th>n</th><th>rank</th>"
                     f"</tr>{rows}</table>{plot}</div>")
    parts.append("</section>\n")
    return "".join(parts)


def views_section(views: Sequence[tuple[str, bytes]], split_sign: bool = False) -> str:
    """The report's multi-class views: per input one picture (rows: targets; tiles: methods and contrasts)."""
    note = ("each map split into its positive (red) and negative (blue) part, on the map's own scale"
            if split_sign else "each map scaled by its own largest |R|")
    figures = "".join(f"<figure><img src=\"{_b64(png)}\" alt=\"views of {_e(name)}\"><figcaption>{_e(name)}"
                      f"</figcaption></figure>" for name, png in views)
    return (f"<section class=\"evaluation\" id=\"views\"><h2>Views per class</h2><p class=\"note\">One row per "
            f"target, one tile per method and contrast; {note}.</p>{figures}</section>\n")
