"""Peak memory and throughput of ``onnxlrp audit`` at two dataset sizes, on the local engine and on Ray.

The data are held-out images of the shipped shortcut model (``models/shortcut``), written as PNG files in class
subfolders (decoding is part of the work, as for any image dataset). Each audit runs in a fresh process whose peak
resident memory is the kernel's high-water mark (``ru_maxrss`` of that process; for Ray, of the driver, which
receives and writes every shard: the actors are Ray's processes, each one Explainer). Throughput is inputs per
second over the whole command (model load, shards, SpRAy, table and report included), beside the plain
onnxruntime forward pass of the same model on the same inputs (batch 64, the same thread count), the ceiling.

    .venv/bin/python tools/bench_audit.py                 # 1,000 and 10,000 inputs, local; 1,000 on Ray
    .venv/bin/python tools/bench_audit.py --sizes 1000 10000 --engines local ray --method epsilon_plus

Quote only numbers from a quiet machine: the script prints the load average before and after.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "shortcut" / "shortcut_cnn.onnx"
LABELS = ROOT / "models" / "shortcut" / "labels.txt"

CHILD = r"""
import json, resource, sys, time
t0 = time.monotonic()
from onnxlrp.cli import main
code = main(sys.argv[1:])
seconds = time.monotonic() - t0
print(json.dumps({"code": code, "seconds": seconds,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "children_peak_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""


def write_images(folder: Path, count: int, seed: int) -> None:
    """``count`` held-out shortcut-task images as PNGs in class subfolders."""
    from PIL import Image
    spec = importlib.util.spec_from_file_location("shortcut_data", ROOT / "models" / "shortcut" / "shortcut_data.py")
    data = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(data)
    for start in range(0, count, 1000):
        images, labels, _ = data.make_images(min(1000, count - start), seed=seed + start)
        for i, (pixels, label) in enumerate(zip(images, labels)):
            target = folder / data.CLASSES[label]
            target.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(target / f"{start + i:06d}.png")


def forward_throughput(folder: Path, threads: int) -> float:
    """Inputs per second of the plain onnxruntime forward pass (batch 64) on the decoded images."""
    import onnxruntime as ort
    from PIL import Image
    files = sorted(folder.rglob("*.png"))[:2048]
    x = np.stack([np.asarray(Image.open(f).convert("RGB"), np.float32).transpose(2, 0, 1) / 255 for f in files])
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(MODEL), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    session.run(None, {name: x[:64]})
    best = np.inf
    for _ in range(3):
        t = time.perf_counter()
        for start in range(0, len(x), 64):
            session.run(None, {name: x[start:start + 64]})
        best = min(best, time.perf_counter() - t)
    return len(x) / best


def run_audit(folder: Path, out: Path, engine: str, method: str, extra: list[str]) -> dict:
    argv = ["audit", str(MODEL), str(folder), "--labels", str(LABELS), "-m", method, "-q", "-o", str(out),
            "--engine", engine, *extra]
    done = subprocess.run([sys.executable, "-c", CHILD, *argv], capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"audit failed: {done.stderr.strip().splitlines()[-1:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    manifest = json.loads((out / "manifest.json").read_text())
    result["rows"] = manifest["rows"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--engines", nargs="+", default=["local", "ray"], choices=["local", "ray"])
    parser.add_argument("--ray-sizes", type=int, nargs="+", default=[1000], help="sizes also run on Ray")
    parser.add_argument("--method", default="epsilon_plus")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more audit options")
    args = parser.parse_args()
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"load average before: {os.getloadavg()}; {threads} CPUs")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rows = []
        for size in args.sizes:
            folder = root / f"data-{size}"
            write_images(folder, size, seed=100)
            ceiling = forward_throughput(folder, threads)
            for engine in args.engines:
                if engine == "ray" and size not in args.ray_sizes:
                    continue
                r = run_audit(folder, root / f"out-{engine}-{size}", engine, args.method, args.extra)
                rate = r["rows"] / r["seconds"]
                rows.append((size, engine, r["peak_mb"], r["children_peak_mb"], rate, rate / ceiling, ceiling))
                print(f"{size:>7} {engine:<5} peak {r['peak_mb']:7.1f} MB (children {r['children_peak_mb']:6.1f} MB)"
                      f"  {rate:7.1f} inputs/s = {rate / ceiling:.3f} x the plain forward ({ceiling:.0f}/s)",
                      flush=True)
        local = {size: peak for size, engine, peak, *_ in rows if engine == "local"}
        if len(local) >= 2:
            small, large = min(local), max(local)
            print(f"peak memory, local engine: {large:,} inputs / {small:,} inputs = "
                  f"{local[large] / local[small]:.3f}")
    print(f"load average after: {os.getloadavg()}; ru_maxrss of this process "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
