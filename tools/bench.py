"""Benchmark onnxlrp against zennit 0.5.1 on torchvision VGG-16 and ResNet-50 (random weights), one process.

For every (model, batch) pair both engines explain the same input for the same targets with the
``epsilon_plus_flat`` preset:

* zennit: ``EpsilonPlusFlat(canonizers=[SequentialMergeBatchNorm()])`` (VGG) or ``[ResNetCanonizer()]`` (ResNet),
  ``zennit.attribution.Gradient(model, composite)`` called with a one-hot ``attr_output``;
* onnxlrp: ``Explainer(<exported .onnx>).explain(x, method="epsilon_plus_flat", target=t, relevance_init="one_hot")``.

Timing is the best of ``--repeats`` calls after one warm-up call. Model export, ``Explainer`` construction, the first
(cold) ``explain`` call and zennit's composite/canonizer attach+detach are reported separately, never in the ratio.

Peak memory is the increase of the process's resident set size (RSS) during one call, measured on a separate call
after the timed ones, ``gc.collect()`` and ``malloc_trim(0)`` first so freed heap goes back to the OS and the baseline
is honest. Two readings of the same call:

* ``hwm``: the kernel's exact high-water mark (``VmHWM`` in ``/proc/self/status``), reset to the current RSS just
  before the call by writing ``5`` to ``/proc/self/clear_refs``; peak = VmHWM after - VmRSS before.
* ``sampled``: a background thread reads ``VmRSS`` every ``--sample-ms`` ms; peak = max sample - VmRSS before.
  It can miss short spikes, so it is a lower bound of ``hwm``; it is the fallback where clear_refs is unavailable.

tracemalloc is not used: it sees numpy's allocations but not torch's, so it is not a common measure.

Usage::

    .venv/bin/python tools/bench.py                          # both models, batch 1 and 8, 3 repeats
    .venv/bin/python tools/bench.py --models resnet50 --batch 8 --repeats 5 --json out.json
    .venv/bin/python tools/bench.py --models vgg16 --batch 8 --profile   # + cProfile of one onnxlrp call
"""
from __future__ import annotations

import argparse
import os
import sys


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="vgg16,resnet50", help="comma-separated: vgg16, resnet50 (default: both)")
    p.add_argument("--batch", default="1,8", help="comma-separated batch sizes (default: 1,8)")
    p.add_argument("--repeats", type=int, default=3, help="timed calls per engine after one warm-up; best is kept")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="threads for torch, OpenMP, OpenBLAS/MKL and onnxruntime intra-op (default: all cores)")
    p.add_argument("--size", type=int, default=224, help="input height and width (default: 224)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sample-ms", type=float, default=2.0, help="RSS sampling period in ms (default: 2)")
    p.add_argument("--no-memory", action="store_true", help="skip the memory measurement calls")
    p.add_argument("--profile", action="store_true",
                   help="run onnxlrp once more under cProfile per (model, batch) and print the top functions")
    p.add_argument("--profile-top", type=int, default=15, help="rows of the profile listings (default: 15)")
    p.add_argument("--json", metavar="PATH", help="also write all figures to this JSON file")
    args = p.parse_args(argv)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    args.batch = [int(b) for b in args.batch.split(",") if b.strip()]
    unknown = [m for m in args.models if m not in ("vgg16", "resnet50")]
    if unknown:
        p.error(f"unknown model(s) {unknown}; choose from vgg16, resnet50")
    if args.repeats < 1 or args.threads < 1 or any(b < 1 for b in args.batch):
        p.error("--repeats, --threads and --batch must be positive")
    return args


ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None:
    # Thread pools read these when numpy / torch / onnxruntime load, so set them before any of those imports.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
        os.environ[var] = str(ARGS.threads)

import cProfile  # noqa: E402
import ctypes  # noqa: E402
import gc  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import pstats  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing


# ---------------------------------------------------------------------------------------------- memory
_LIBC = None


def _malloc_trim():
    """Give freed glibc heap back to the OS so the next baseline RSS is not inflated by earlier calls."""
    global _LIBC
    try:
        if _LIBC is None:
            _LIBC = ctypes.CDLL("libc.so.6")
        _LIBC.malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


_PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def _rss_kb() -> int:
    with open("/proc/self/statm") as f:  # cheaper than status: "size resident shared ..." in pages
        return int(f.read().split()[1]) * _PAGE_KB


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class RssSampler:
    """Background thread recording the maximum VmRSS while the ``with`` block runs."""

    def __init__(self, period_s: float):
        self.period_s, self.peak_kb, self.samples = period_s, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        while not self._stop.is_set():
            self.peak_kb = max(self.peak_kb, _rss_kb())
            self.samples += 1
            self._stop.wait(self.period_s)

    def __enter__(self):
        self.peak_kb = _rss_kb()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak_kb = max(self.peak_kb, _rss_kb())


def measure_peak(fn, sample_ms: float) -> dict:
    """Run ``fn`` once; RSS increase over the pre-call baseline, exact (VmHWM) and sampled, in MB."""
    gc.collect()
    _malloc_trim()
    base = _rss_kb()
    hwm_ok = _reset_hwm()
    with RssSampler(sample_ms / 1000.0) as s:
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
    hwm = _status_kb("VmHWM") if hwm_ok else None
    out = {"baseline_mb": base / 1024, "sampled_mb": (s.peak_kb - base) / 1024, "samples": s.samples,
           "hwm_mb": (hwm - base) / 1024 if hwm is not None else None, "seconds": dt}
    out["peak_mb"] = out["hwm_mb"] if out["hwm_mb"] is not None else out["sampled_mb"]
    gc.collect()
    return out


def _busy_s() -> float:
    """Seconds of CPU time all processes have used since boot (from /proc/stat; idle and iowait excluded)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v[:8]) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")


class Contention:
    """Average number of cores other processes kept busy while the ``with`` block ran (0 on a quiet machine)."""

    def __enter__(self):
        self._t, self._busy, self._own = time.perf_counter(), _busy_s(), time.process_time()
        return self

    def __exit__(self, *exc):
        wall = time.perf_counter() - self._t
        foreign = (_busy_s() - self._busy) - (time.process_time() - self._own)
        self.cores = max(foreign, 0.0) / max(wall, 1e-9)


def timed(fn) -> tuple[float, float]:
    """(wall s, process CPU s, all threads) of one call."""
    gc.collect()
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def interleaved_best(fns: dict, repeats: int) -> dict:
    """Call each of ``fns`` ``repeats`` times, alternating between them so that background load hits all alike;
    per name: best wall time, the CPU time of that call, all wall and CPU times, and the other processes' load."""
    runs = {k: [] for k in fns}
    with Contention() as c:
        for _ in range(repeats):
            for k, fn in fns.items():
                runs[k].append(timed(fn))
    out = {}
    for k, r in runs.items():
        best = min(r)
        out[k] = {"best_s": best[0], "best_cpu_s": best[1], "times": [t for t, _ in r], "cpu_times": [u for _, u in r]}
    out["foreign_cores"] = c.cores
    return out


# ---------------------------------------------------------------------------------------------- models
def build_model(name: str, seed: int):
    import torch
    import torchvision

    torch.manual_seed(seed)
    model = getattr(torchvision.models, name)(weights=None).eval()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():  # BN statistics/affine away from identity, so folding BN actually matters
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(0.1 * torch.randn(c, generator=g))
                m.running_var.copy_(0.5 + torch.rand(c, generator=g))
                m.weight.copy_(0.5 + torch.rand(c, generator=g))
                m.bias.copy_(0.1 * torch.randn(c, generator=g))
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def zennit_composite(name: str):
    from zennit.canonizers import SequentialMergeBatchNorm
    from zennit.composites import EpsilonPlusFlat
    from zennit.torchvision import ResNetCanonizer

    canonizers = [SequentialMergeBatchNorm()] if name.startswith("vgg") else [ResNetCanonizer()]
    return EpsilonPlusFlat(canonizers=canonizers)


def export_onnx(model, x, path: Path):
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=17, input_names=["input"],
                          dynamic_axes={"input": {0: "N"}})


def patch_ort_threads(threads: int):
    """onnxlrp builds its own SessionOptions; make them use ``threads`` intra-op threads (bench only)."""
    import onnxruntime as ort

    from onnxlrp.engine import runner

    original = ort.SessionOptions

    class _Options(original):  # type: ignore[misc, valid-type]
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            self.intra_op_num_threads = threads
            self.inter_op_num_threads = 1

    class _Ort:
        def __getattr__(self, item):
            return _Options if item == "SessionOptions" else getattr(ort, item)

    runner.ort = _Ort()


def rel_l2(a: np.ndarray, ref: np.ndarray) -> float:
    a, ref = np.asarray(a, np.float64), np.asarray(ref, np.float64)
    return float(np.linalg.norm(a - ref) / max(np.linalg.norm(ref), 1e-300))


def profile_call(fn, top: int) -> str:
    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    out = io.StringIO()
    st = pstats.Stats(prof, stream=out)
    st.strip_dirs()
    out.write(f"--- top {top} by cumulative time ---\n")
    st.sort_stats("cumulative").print_stats(top)
    out.write(f"--- top {top} by own (total) time ---\n")
    st.sort_stats("tottime").print_stats(top)
    return out.getvalue()


# ---------------------------------------------------------------------------------------------- bench
def bench_one(name: str, batches: list[int], args, workdir: Path, log) -> list[dict]:
    import torch
    from zennit.attribution import Gradient

    import onnxlrp

    model = build_model(name, args.seed)
    path = workdir / f"{name}.onnx"
    t0 = time.perf_counter()
    export_onnx(model, torch.zeros(1, 3, args.size, args.size), path)
    export_s = time.perf_counter() - t0
    log(f"[{name}] exported {path.stat().st_size / 2**20:.0f} MB ONNX in {export_s:.1f} s")

    def construct():
        return onnxlrp.Explainer(str(path))

    gc.collect()
    _malloc_trim()
    base = _rss_kb()
    t0 = time.perf_counter()
    ex = construct()
    construct_s = time.perf_counter() - t0
    construct_mb = (_rss_kb() - base) / 1024
    log(f"[{name}] Explainer constructed in {construct_s:.2f} s (+{construct_mb:.0f} MB RSS retained)")

    rows = []
    for batch in batches:
        rng = np.random.default_rng(args.seed + batch)
        x_np = rng.standard_normal((batch, 3, args.size, args.size)).astype(np.float32)
        targets = rng.integers(0, 1000, batch)
        x_t = torch.from_numpy(x_np.copy())
        one_hot = torch.zeros(batch, 1000)
        one_hot[torch.arange(batch), torch.from_numpy(targets)] = 1.0
        row = {"model": name, "batch": batch, "export_s": export_s, "construct_s": construct_s,
               "construct_retained_mb": construct_mb}

        def run_onnxlrp(ex=ex, x_np=x_np, targets=targets):
            return ex.explain(x_np, method="epsilon_plus_flat", target=targets, relevance_init="one_hot")

        composite = zennit_composite(name)
        t0 = time.perf_counter()
        attributor = Gradient(model, composite)
        attributor.__enter__()  # kept open across calls, as the Explainer is built once
        row["zennit_attach_s"] = time.perf_counter() - t0
        try:
            def run_zennit(attributor=attributor, x_t=x_t, one_hot=one_hot):
                return attributor(x_t, one_hot)

            t0 = time.perf_counter()
            res_o = run_onnxlrp()  # warm-up (builds the onnxruntime session on the very first call)
            row["onnxlrp_first_s"] = time.perf_counter() - t0
            rel_o = res_o.relevance
            del res_o
            t0 = time.perf_counter()
            out_z, rel_z = run_zennit()  # warm-up
            row["zennit_first_s"] = time.perf_counter() - t0
            logits_z = out_z.detach().numpy()
            rel_z = rel_z.detach().numpy().copy()
            del out_z

            t = interleaved_best({"onnxlrp": run_onnxlrp, "zennit": run_zennit}, args.repeats)
            for k in ("onnxlrp", "zennit"):
                row[f"{k}_s"], row[f"{k}_cpu_s"] = t[k]["best_s"], t[k]["best_cpu_s"]
                row[f"{k}_times"], row[f"{k}_cpu_times"] = t[k]["times"], t[k]["cpu_times"]
            row["foreign_cores"] = t["foreign_cores"]
            log(f"[{name} b{batch}] best of {args.repeats}: onnxlrp {row['onnxlrp_s']:.3f} s "
                f"(first {row['onnxlrp_first_s']:.3f} s), zennit {row['zennit_s']:.3f} s "
                f"(first {row['zennit_first_s']:.3f} s); other processes kept {row['foreign_cores']:.2f} cores busy")

            if not args.no_memory:
                mz = measure_peak(run_zennit, args.sample_ms)
                row["zennit_mem"] = mz
        finally:
            t0 = time.perf_counter()
            attributor.__exit__(None, None, None)
            row["zennit_detach_s"] = time.perf_counter() - t0
        if not args.no_memory:
            mo = measure_peak(run_onnxlrp, args.sample_ms)
            row["onnxlrp_mem"] = mo
            log(f"[{name} b{batch}] peak RSS increase: onnxlrp {mo['peak_mb']:.0f} MB "
                f"(sampled {mo['sampled_mb']:.0f}), zennit {mz['peak_mb']:.0f} MB (sampled {mz['sampled_mb']:.0f})")

        row["time_ratio"] = row["onnxlrp_s"] / row["zennit_s"]
        if not args.no_memory:
            row["mem_ratio"] = row["onnxlrp_mem"]["peak_mb"] / max(row["zennit_mem"]["peak_mb"], 1e-9)
        row["rel_l2"] = rel_l2(rel_o, rel_z)
        row["rel_l2_per_sample"] = [rel_l2(rel_o[i], rel_z[i]) for i in range(batch)]
        row["sum_onnxlrp"] = float(rel_o.sum())
        row["sum_zennit"] = float(rel_z.sum())
        with torch.no_grad():
            logits_t = model(x_t).numpy()
        row["zennit_logits_rel_l2"] = rel_l2(logits_z, logits_t)  # canonized forward vs plain forward
        log(f"[{name} b{batch}] rel-L2(onnxlrp, zennit) = {row['rel_l2']:.3e}")

        if args.profile:
            gc.collect()
            with Contention() as c:
                row["profile"] = profile_call(run_onnxlrp, args.profile_top)
            log(f"\n===== cProfile: onnxlrp {name} batch {batch} (other processes kept {c.cores:.2f} cores busy) "
                f"=====\n{row['profile']}")
        rows.append(row)
        del rel_o, rel_z, x_t, one_hot
        gc.collect()
    del ex, model
    gc.collect()
    return rows


def _fmt_list(xs) -> str:
    return "[" + " ".join(f"{x:.2f}" for x in xs) + "]"


def fmt_table(rows: list[dict]) -> str:
    head = ["model", "batch", "onnxlrp s", "zennit s", "ratio", "onnxlrp MB", "zennit MB", "ratio", "rel-L2",
            "cpu ratio", "busy others"]
    lines = []
    for r in rows:
        om = r.get("onnxlrp_mem", {}).get("peak_mb")
        zm = r.get("zennit_mem", {}).get("peak_mb")
        lines.append([r["model"], str(r["batch"]), f"{r['onnxlrp_s']:.3f}", f"{r['zennit_s']:.3f}",
                      f"{r['time_ratio']:.2f}",
                      "-" if om is None else f"{om:.0f}", "-" if zm is None else f"{zm:.0f}",
                      "-" if om is None else f"{r['mem_ratio']:.2f}", f"{r['rel_l2']:.2e}",
                      f"{r['onnxlrp_cpu_s'] / r['zennit_cpu_s']:.2f}", f"{r['foreign_cores']:.2f}"])
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(head)]
    sep = "  "
    out = [sep.join(h.rjust(w) for h, w in zip(head, widths)), sep.join("-" * w for w in widths)]
    out += [sep.join(c.rjust(w) for c, w in zip(line, widths)) for line in lines]
    return "\n".join(out)


def _git_state() -> str:
    """HEAD commit of the checkout, with '+dirty' when onnxlrp/ or kernels/ have uncommitted changes."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "onnxlrp", "kernels"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "?"


def main(args) -> int:
    import onnxruntime
    import torch
    import torchvision
    import zennit  # noqa: F401

    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    patch_ort_threads(args.threads)

    def log(msg):
        print(msg, flush=True)

    try:
        from importlib.metadata import version
        zv = version("zennit")
    except Exception:  # pragma: no cover
        zv = "?"
    env = {"python": platform.python_version(), "numpy": np.__version__, "torch": torch.__version__,
           "torchvision": torchvision.__version__, "onnxruntime": onnxruntime.__version__, "zennit": zv,
           "threads": args.threads, "cpu_count": os.cpu_count(), "machine": platform.machine(),
           "repeats": args.repeats, "size": args.size, "onnxlrp_git": _git_state()}
    log("environment: " + ", ".join(f"{k}={v}" for k, v in env.items()))
    rows = []
    with tempfile.TemporaryDirectory(prefix="onnxlrp-bench-") as tmp:
        for name in args.models:
            rows += bench_one(name, args.batch, args, Path(tmp), log)

    log("\nepsilon_plus_flat, onnxlrp vs zennit (ratio = onnxlrp / zennit; lower is better for onnxlrp)")
    log(f"time: best of {args.repeats} calls after one warm-up; threads={args.threads} for torch, "
        f"OpenMP/OpenBLAS and onnxruntime")
    log("memory: peak RSS increase over the pre-call baseline during one call (after gc.collect + malloc_trim); "
        + ("exact kernel high-water mark (VmHWM reset via /proc/self/clear_refs)" if rows and not args.no_memory
           and rows[0]["onnxlrp_mem"]["hwm_mb"] is not None else f"VmRSS sampled every {args.sample_ms} ms"))
    log("rel-L2: ||R_onnxlrp - R_zennit|| / ||R_zennit|| over the batch (onnxlrp relevance_init='one_hot', "
        "same targets)\n")
    log("cpu ratio: process CPU time (all threads) of the same best calls, onnxlrp / zennit; busy others: cores kept "
        "busy by other processes during the timed calls (from /proc/stat)\n")
    log(fmt_table(rows))
    busy = max((r["foreign_cores"] for r in rows), default=0.0)
    if busy > 0.1 * args.threads:
        log(f"\nWARNING: other processes used up to {busy:.2f} cores during timing; wall times are unreliable "
            "(calls were interleaved, so the ratios suffer less). Re-run on a quiet machine.")
    log("")
    for r in rows:
        extra = (f"{r['model']} b{r['batch']}: wall s onnxlrp {_fmt_list(r['onnxlrp_times'])}, "
                 f"zennit {_fmt_list(r['zennit_times'])}; export {r['export_s']:.1f} s, "
                 f"Explainer() {r['construct_s']:.2f} s, "
                 f"onnxlrp first call {r['onnxlrp_first_s']:.2f} s, zennit attach {r['zennit_attach_s'] * 1e3:.1f} ms "
                 f"+ detach {r['zennit_detach_s'] * 1e3:.1f} ms, zennit first call {r['zennit_first_s']:.2f} s")
        if "onnxlrp_mem" in r:
            extra += (f"; sampled peaks (every {args.sample_ms} ms) onnxlrp {r['onnxlrp_mem']['sampled_mb']:.0f} MB, "
                      f"zennit {r['zennit_mem']['sampled_mb']:.0f} MB")
        extra += f"; max per-sample rel-L2 {max(r['rel_l2_per_sample']):.2e}"
        log(extra)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"environment": env, "results": rows}, f, indent=2)
        log(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main(ARGS))
