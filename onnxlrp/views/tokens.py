"""The token view of a text explanation: one self-contained HTML page, tokens coloured by signed relevance."""
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
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em;color:#222;max-width:60em}
.sample{margin:0 0 1.6em 0;padding:0.8em 1em;border:1px solid #ddd;border-radius:6px}
.meta{font-size:0.85em;color:#555;margin-bottom:0.5em}
.tokens{font-size:1.15em;line-height:2.1em}
.tok{padding:0.15em 0.2em;border-radius:3px}
.special{font-size:0.7em;color:#666;font-variant:small-caps}
.dark{color:#fff}
.legend{font-size:0.8em;color:#555;margin-top:1em}
.bar{display:inline-block;width:12em;height:0.8em;vertical-align:middle;
background:linear-gradient(to right,#3b4cc0,#ffffff,#b40426);border:1px solid #ccc}
"""


def render_html(res, title: str = "onnxlrp: token relevance") -> str:
    parts = ["<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>",
             f'<p class="meta">method <b>{html.escape(res.method)}</b>; relevance of each token = relevance of its '
             f"embedding ({html.escape(res.embedding)}) summed over the embedding axis; explained output "
             f"{html.escape(res.output_name)}.</p>"]
    for i, text in enumerate(res.texts):
        rel = np.asarray(res.relevance[i], dtype=np.float64)
        scale = float(np.abs(rel).max()) if rel.size else 0.0
        logits = np.asarray(res.output[i], dtype=np.float64).reshape(-1)
        t = int(res.target[i])
        pred = int(logits.argmax())
        spans = []
        prev_end = None
        for tok, r, special, (start, end) in zip(res.tokens[i], rel, res.special[i], res.offsets[i]):
            shown = tok
            joined = prev_end is not None and not special and start == prev_end and end > start
            if not special and end > start:
                shown = text[start:end]
                prev_end = end
            elif special:
                prev_end = None
            sep = "" if joined or not spans else " "
            cls = "tok special" if special else "tok"
            if scale > 0 and np.isfinite(r) and abs(r) > 0.55 * scale:  # white text on a saturated background
                cls += " dark"
            spans.append(f'{sep}<span class="{cls}" style="background:{token_colour(r, scale)}" '
                         f'title="{html.escape(tok)}: {r:+.4g}">{html.escape(shown)}</span>')
        parts.append(
            f'<div class="sample"><div class="meta">text {i + 1}: predicted <b>{html.escape(res.label(pred))}</b> '
            f"(p={softmax(logits)[pred]:.3f}); explained class <b>{html.escape(res.label(t))}</b>, logit "
            f"{logits[t]:.4g}, sum of token relevance {rel.sum():.4g}, largest |relevance| {scale:.3g}</div>"
            f'<div class="tokens">{"".join(spans)}</div></div>')
    parts.append('<div class="legend">negative <span class="bar"></span> positive (each text scaled to its largest '
                 "absolute token relevance; hover a token for its value)</div></body></html>")
    return "\n".join(parts) + "\n"
