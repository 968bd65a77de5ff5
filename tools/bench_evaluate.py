"""Time ``onnxlrp evaluate`` on a ResNet-50 export: N images, three methods, the faithfulness and complexity measures.

Builds the fixture with ``tools/make_resnet50_fixture.py`` (torchvision ResNet-50, seeded random weights, random-blob
images; needs the ``test`` extra) unless it exists, runs the command in this process, and prints the wall time, the
peak RSS (``ru_maxrss``), how many rows onnxruntime ran, and whether the report renders in headless Chromium (a
screenshot next to it, when ``chromium`` is installed). Not run by the test suite::

    .venv/bin/python tools/bench_evaluate.py --images 100 --out build/bench-evaluate

ResNet-50 runs at about 5 rows/s on 2 CPU cores, so the defaults are coarse: pixel flipping and deletion in 10 steps
of 10 % of the pixels, region perturbation on 28 x 28 patches (8 of the 64 removed), faithfulness correlation with
10 subsets: about 150 model rows per image for the three methods and the random baselines.
"""
from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

METHODS = "epsilon_plus_flat,epsilon_gamma_box,input_x_gradient"
METRICS = "pixel_flipping,region_perturbation,deletion,faithfulness_correlation,sparseness,complexity"
#: 10 steps of 10 % of the pixels (whole pixels: 15054 = 3 x 5018 features), 8 of 64 patches, 10 subsets
METRIC_SETS = ["pixel_flipping.features_in_step=15054", "deletion.step=0.1", "region_perturbation.patch_size=28",
               "region_perturbation.regions_evaluation=8", "faithfulness_correlation.nr_runs=10"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "bench-evaluate")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--methods", default=METHODS)
    parser.add_argument("--metrics", default=METRICS)
    args = parser.parse_args()

    fixture = args.out / "fixture"
    model = fixture / "resnet50.onnx"
    images = fixture / "images"
    if not model.is_file():
        from make_resnet50_fixture import export_resnet50
        export_resnet50(model)
    if not images.is_dir() or len(list(images.glob("*.png"))) < args.images:
        from make_resnet50_fixture import write_images
        write_images(images, args.images)
    inputs = sorted(images.glob("*.png"))[:args.images]

    from onnxlrp.cli import main as cli
    out = args.out / "result"
    argv = ["evaluate", str(model), *map(str, inputs), "--method", args.methods, "--metric", args.metrics,
            "--mean", "0.485,0.456,0.406", "--std", "0.229,0.224,0.225", "--batch-size", str(args.batch_size),
            "--report", "-q", "-o", str(out)]
    for item in METRIC_SETS:
        if item.split(".", 1)[0] in args.metrics.split(","):
            argv += ["--metric-set", item]
    t0 = time.monotonic()
    code = cli(argv)
    elapsed = time.monotonic() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    summary = json.loads((out / "evaluation.json").read_text()) if code == 0 else {}
    result = {"images": len(inputs), "methods": args.methods.split(","), "metrics": args.metrics.split(","),
              "batch_size": args.batch_size, "exit": code, "elapsed_s": round(elapsed, 1),
              "peak_rss_gib": round(peak / 2**30, 2), "ranking": summary.get("ranking"),
              "report_renders": _render(out / "report.html")}
    (args.out / "bench.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return code


def _render(report: Path) -> bool | None:
    """Whether headless Chromium renders the report to a screenshot (``None`` without Chromium)."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None or not report.is_file():
        return None
    shot = report.with_suffix(".png")
    done = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}",
                           "--window-size=1400,2200", report.resolve().as_uri()], capture_output=True, timeout=120)
    return done.returncode == 0 and shot.is_file() and shot.stat().st_size > 0


if __name__ == "__main__":
    sys.exit(main())
