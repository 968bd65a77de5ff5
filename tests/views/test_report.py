"""report.html: structure and escaping, then rendering in a real headless Chromium (screenshot + image count)."""
from __future__ import annotations

import io
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from onnxlrp.cli import main
from onnxlrp.views.imaging import png_bytes
from onnxlrp.views.report import HtmlReport, InputCard, MethodView
from tests.helpers import REPO  # noqa: E402

DIGITS = REPO / "models" / "digits" / "digits_cnn.onnx"
SAMPLES = REPO / "models" / "digits" / "samples"
LABELS = REPO / "models" / "digits" / "labels.txt"
METHODS = ["epsilon_plus", "epsilon_gamma_box", "input_x_gradient"]
CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)


class _Imgs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.srcs: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.srcs.append(dict(attrs)["src"])
        if tag == "script":
            self.scripts += 1


def _card(name: str, methods: int) -> InputCard:
    png = png_bytes(np.zeros((4, 4, 3), np.uint8))
    views = [MethodView(f"m{k}", 1, "one", 2.0, 1.9, png, png) for k in range(methods)]
    return InputCard(name, f"/x/{name}", png, 1, "one", [(1, "one", 2.0, 0.9), (0, None, 1.0, 0.1)], views)


def test_report_embeds_one_input_image_and_two_per_method_and_escapes_text():
    buf = io.StringIO()
    report = HtmlReport(buf, title="t <b>", meta=[("model", "a&b.onnx")], methods=[("m0", {}), ("m1", {"k": 1})],
                        cmap="bwr")
    report.add(_card("<script>alert(1)</script>", 2))
    report.add(_card("plain", 2))
    report.close()
    html = buf.getvalue()
    parser = _Imgs()
    parser.feed(html)
    assert len(parser.srcs) == 2 * (1 + 2 * 2)
    assert all(s.startswith("data:image/png;base64,") for s in parser.srcs)  # self-contained: nothing to fetch
    assert parser.scripts == 0 and "&lt;script&gt;" in html and "a&amp;b.onnx" in html
    assert "(k=1)" in html and "2 input(s)" in html
    assert not re.search(r"(src|href)=\"(https?:|file:|/)", html)


def test_report_card_without_a_picture_for_non_image_inputs():
    buf = io.StringIO()
    report = HtmlReport(buf, title="t", meta=[], methods=[("m0", {})], cmap="seismic")
    card = _card("vec", 1)
    card.picture_png = None
    card.methods[0].overlay_png = None
    report.add(card)
    report.close()
    parser = _Imgs()
    parser.feed(buf.getvalue())
    assert len(parser.srcs) == 1


@pytest.fixture(scope="module")
def digits_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    rc = main(["explain", str(DIGITS), str(SAMPLES), "--labels", str(LABELS), "--method", ",".join(METHODS),
               "--report", "--out", str(out), "--quiet"])
    assert rc == 0
    return out / "report.html"


def test_digits_report_has_every_image(digits_report):
    n_inputs = len(list(SAMPLES.glob("*.png")))
    parser = _Imgs()
    parser.feed(digits_report.read_text(encoding="utf-8"))
    assert len(parser.srcs) == n_inputs * (1 + 2 * len(METHODS))
    assert digits_report.stat().st_size < 2_000_000


def _chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={profile}", "--hide-scrollbars", *args]
    return subprocess.run(cmd, capture_output=True, timeout=180)


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium at /usr/bin/chromium (apt-get install -y "
                                              "chromium; `make test` tries this when run as root)")
def test_report_renders_in_headless_chromium(digits_report, tmp_path):
    n_inputs = len(list(SAMPLES.glob("*.png")))
    expected = n_inputs * (1 + 2 * len(METHODS))

    # 1. The DOM after load has every <img>, and every one decoded (a probe script in a copy of the page counts
    #    images with naturalWidth > 0 once the load event fired; the report itself has no script).
    probe = tmp_path / "probe.html"
    probe.write_text(digits_report.read_text(encoding="utf-8").replace(
        "</body>", "<script>window.addEventListener('load', () => { const imgs = [...document.images];"
                   "const ok = imgs.filter(i => i.complete && i.naturalWidth > 0).length;"
                   "document.body.insertAdjacentHTML('beforeend', `<p id=\"probe\">${imgs.length} ${ok}</p>`);"
                   "});</script></body>"), encoding="utf-8")
    dom = _chromium(["--dump-dom", probe.as_uri()], tmp_path / "profile1")
    assert dom.returncode == 0, dom.stderr.decode(errors="replace")[-2000:]
    text = dom.stdout.decode()
    assert text.count("<img") == expected
    found = re.search(r'<p id="probe">(\d+) (\d+)</p>', text)
    assert found, text[-500:]
    assert (int(found.group(1)), int(found.group(2))) == (expected, expected)

    # 2. A screenshot of the real report shows the heatmaps: red and blue relevance pixels are on screen.
    shot = tmp_path / "report.png"
    res = _chromium(["--window-size=1400,1200", f"--screenshot={shot}", digits_report.as_uri()], tmp_path / "p2")
    assert res.returncode == 0 and shot.is_file(), res.stderr.decode(errors="replace")[-2000:]
    img = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert img.shape[:2] == (1200, 1400)
    red = (img[..., 0] > 200) & (img[..., 1] < 80) & (img[..., 2] < 80)
    blue = (img[..., 2] > 200) & (img[..., 0] < 80) & (img[..., 1] < 80)
    assert red.sum() > 500 and blue.sum() > 50, (red.sum(), blue.sum())
