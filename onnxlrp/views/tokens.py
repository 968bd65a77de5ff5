"""The token view of a text explanation: one self-contained HTML page, words (or pieces) coloured by signed
relevance, a row per method, and an optional token x layer table per method."""
from __future__ import annotations

import html

import numpy as np


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


def token_colour(value: float, scale: float) -> str:
    """Signed colour map: ``-scale`` blue ``(59, 76, 192)``, 0 white, ``+scale`` red ``(180, 4, 38)``."""
    a = 0.0 if scale <= 0 or not np.isfinite(value) else float(np.clip(value / scale, -1.0, 1.0))
    end = (180, 4, 38) if a >= 0 else (59, 76, 192)
    w = abs(a)
    rgb = tuple(int(round(255 * (1 - w) + c * w)) for c in end)
    return "#" + "".join(f"{c:02x}" for c in rgb)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em;color:#222;max-width:72em}
.sample{margin:0 0 1.6em 0;padding:0.8em 1em;border:1px solid #ddd;border-radius:6px}
.meta{font-size:0.85em;color:#555;margin-bottom:0.5em}
.row{display:flex;align-items:baseline;gap:0.8em;margin:0.2em 0}
.method{font-size:0.8em;color:#333;min-width:9em;font-family:ui-monospace,monospace}
.total{font-size:0.75em;color:#777;white-space:nowrap}
.tokens{font-size:1.15em;line-height:2.1em}
.tok{padding:0.15em 0.2em;border-radius:3px}
.special{font-size:0.7em;color:#666;font-variant:small-caps}
.dark{color:#fff}
table.layers{border-collapse:collapse;font-size:0.75em;margin:0.4em 0 0.8em 9.8em}
table.layers th{font-weight:normal;color:#555;padding:0.1em 0.3em;white-space:nowrap}
table.layers td{width:2.6em;height:1.3em;border:1px solid #fff}
.legend{font-size:0.8em;color:#555;margin-top:1em}
.bar{display:inline-block;width:12em;height:0.8em;vertical-align:middle;
background:linear-gradient(to right,#3b4cc0,#ffffff,#b40426);border:1px solid #ccc}
"""


def _scale(values) -> float:
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    return float(np.abs(finite).max()) if finite.size else 0.0


def _span(shown: str, value: float, scale: float, special: bool, title: str, sep: str) -> str:
    cls = "tok special" if special else "tok"
    if scale > 0 and np.isfinite(value) and abs(value) > 0.55 * scale:  # white text on a saturated background
        cls += " dark"
    return (f'{sep}<span class="{cls}" style="background:{token_colour(value, scale)}" '
            f'title="{html.escape(title)}">{html.escape(shown)}</span>')


def _piece_spans(res, i: int, scale: float) -> list[str]:
    """Pieces as written in the text; the pieces of one word touch (no space between them)."""
    text = res.texts[i]
    spans: list[str] = []
    prev_end = None
    for tok, r, special, (start, end) in zip(res.tokens[i], res.relevance[i], res.special[i], res.offsets[i]):
        shown = tok
        joined = prev_end is not None and not special and start == prev_end and end > start
        if not special and end > start:
            shown = text[start:end]
            prev_end = end
        elif special:
            prev_end = None
        spans.append(_span(shown, r, scale, special, f"{tok}: {r:+.4g}", "" if joined or not spans else " "))
    return spans


def _word_spans(res, i: int, scale: float) -> list[str]:
    """Whole words; hovering shows the word's relevance and its pieces' (whose sum it is)."""
    spans: list[str] = []
    for unit in res.units(i, "words"):
        r = unit["relevance"]
        pieces = unit["pieces"]
        title = f"{unit['word']}: {r:+.4g}"
        if len(pieces) > 1:
            title += " = " + " + ".join(f"{res.tokens[i][k]} ({res.relevance[i][k]:+.4g})" for k in pieces)
        spans.append(_span(unit["word"], r, scale, unit["special"], title, " " if spans else ""))
    return spans


def _layer_table(res, i: int, view: str) -> str:
    """The token x layer heat table of text ``i``: a row per layer (embedding first), a column per unit; one
    colour scale for the whole table."""
    table = res.layer_table(i, view)
    if table.size == 0:
        return ""
    units = res.units(i, view)
    heads = "".join(f"<th>{html.escape(u['word'] if view == 'words' else u['token'])}</th>" for u in units)
    scale = _scale(table)
    rows = []
    for name, row in zip(res.layers, table):
        cells = "".join(f'<td style="background:{token_colour(v, scale)}" title="{html.escape(name)}, '
                        f'{html.escape(u["word"] if view == "words" else u["token"])}: {v:+.4g}"></td>'
                        for u, v in zip(units, row))
        rows.append(f"<tr><th>{html.escape(name)} (Σ {row.sum():.4g})</th>{cells}</tr>")
    return (f'<table class="layers" data-method="{html.escape(res.method)}"><tr><th>{html.escape(res.method)}: '
            f"relevance after each block</th>{heads}</tr>{''.join(rows)}</table>")


def render_html(results, title: str = "onnxlrp: token relevance", view: str = "words") -> str:
    """One page for one :class:`~onnxlrp.text.TextExplanation` or several (one per method, same texts): per text,
    a row per method with its words (``view="words"``) or pieces (``view="pieces"``) coloured by signed relevance,
    each row scaled to its largest absolute value; with per-layer relevance a token x layer table per method."""
    results = list(results) if isinstance(results, (list, tuple)) else [results]
    first = results[0]
    unit = "word" if view == "words" else "token"
    methods = ", ".join(f"<b>{html.escape(r.method)}</b>" for r in results)
    parts = ["<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>",
             f'<p class="meta">method{"s" if len(results) > 1 else ""} {methods}; relevance of each token = relevance '
             f"of its embedding ({html.escape(first.embedding)}) summed over the embedding axis"
             + ("; relevance of a word = sum of its pieces'" if view == "words" else "")
             + f"; explained output {html.escape(first.output_name)}.</p>"]
    for i in range(len(first.texts)):
        logits = np.asarray(first.output[i], dtype=np.float64).reshape(-1)
        t = int(first.target[i])
        pred = int(logits.argmax())
        parts.append(f'<div class="sample"><div class="meta">text {i + 1}: predicted '
                     f"<b>{html.escape(first.label(pred))}</b> (p={softmax(logits)[pred]:.3f}); explained class "
                     f"<b>{html.escape(first.label(t))}</b>, logit {logits[t]:.4g}</div>")
        for res in results:
            values = res.word_relevance[i] if view == "words" else res.relevance[i]
            scale = _scale(values)
            spans = _word_spans(res, i, scale) if view == "words" else _piece_spans(res, i, scale)
            parts.append(f'<div class="row" data-method="{html.escape(res.method)}"><span class="method">'
                         f'{html.escape(res.method)}</span><span class="tokens">{"".join(spans)}</span>'
                         f'<span class="total">sum of {unit} relevance {np.sum(values):.4g}, largest '
                         f"|relevance| {scale:.3g}</span></div>")
            parts.append(_layer_table(res, i, view))
        parts.append("</div>")
    parts.append(f'<div class="legend">negative <span class="bar"></span> positive (each row scaled to its largest '
                 f"absolute {unit} relevance; hover a {unit} for its value)</div></body></html>")
    return "\n".join(p for p in parts if p) + "\n"
