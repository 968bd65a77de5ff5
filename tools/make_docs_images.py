"""Regenerate the README pictures in docs/ from real output of the shipped demo.

- ``docs/digits-grid.png``: the per-input ``*.grid.png`` files of four sample digits, stacked.
- ``docs/report.png``: the top of ``report.html`` as headless Chromium renders it (skipped without chromium).
- ``docs/audit-report.png``: the top of the ``report.html`` of ``onnxlrp audit`` on the shortcut model's 300 shipped
  images (``models/shortcut``), t-SNE pictures (needs the ``audit`` extra and chromium).

Run: ``.venv/bin/python tools/make_docs_images.py``
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from onnxlrp.cli import main  # noqa: E402

METHODS = "epsilon_plus,epsilon_gamma_box,input_x_gradient"
SHOWN = ["digit0_1579", "digit3_0918", "digit4_1023", "digit8_0639"]


def main_() -> None:
    os.chdir(REPO)  # relative paths in the report, as a user would type them
    docs = REPO / "docs"
    docs.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "demo-out"
        rc = main(["explain", "models/digits/digits_cnn.onnx", "models/digits/samples",
                   "--labels", "models/digits/labels.txt", "--method", METHODS, "--report",
                   "--out", str(out), "--quiet"])
        assert rc == 0
        grids = [np.asarray(Image.open(out / f"{name}.grid.png").convert("RGB")) for name in SHOWN]
        width = max(g.shape[1] for g in grids)
        stacked = np.full((sum(g.shape[0] for g in grids), width, 3), 255, np.uint8)
        y = 0
        for g in grids:
            stacked[y:y + g.shape[0], :g.shape[1]] = g
            y += g.shape[0]
        Image.fromarray(stacked).save(docs / "digits-grid.png", optimize=True)
        print(f"wrote {docs / 'digits-grid.png'} {stacked.shape[1]}x{stacked.shape[0]}")
        chromium = shutil.which("chromium")
        if chromium is None:
            print("chromium not found; docs/report.png not updated")
            return
        screenshot(chromium, out / "report.html", docs / "report.png", Path(tmp), "1220,760")
        audit = Path(tmp) / "audit-out"
        rc = main(["audit", "models/shortcut/shortcut_cnn.onnx", "models/shortcut/data", "--labels",
                   "models/shortcut/labels.txt", "--method", "epsilon_plus", "--spray-embedding", "tsne",
                   "--out", str(audit), "--quiet"])
        assert rc == 0
        screenshot(chromium, audit / "report.html", docs / "audit-report.png", Path(tmp), "1220,1120")


def screenshot(chromium: str, page: Path, png: Path, tmp: Path, size: str) -> None:
    """The top ``size`` (``W,H``) of ``page`` as headless Chromium renders it, saved to ``png``."""
    shot = tmp / "shot.png"
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp / 'profile'}", "--hide-scrollbars", f"--window-size={size}",
                    f"--screenshot={shot}", page.as_uri()], check=True, capture_output=True, timeout=180)
    img = Image.open(shot).convert("RGB")
    img.save(png, optimize=True)
    print(f"wrote {png} {img.size[0]}x{img.size[1]}")


if __name__ == "__main__":
    main_()
