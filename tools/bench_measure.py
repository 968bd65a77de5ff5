"""Measurement helpers shared by the benchmarks (tools/bench.py, tools/bench_text.py, tools/bench_gpu.py).

* time: :func:`interleaved_best` (best of repeats, engines alternating so that background load hits all alike) and
  :class:`Contention` (how many cores other processes kept busy meanwhile, from ``/proc/stat``);
* peak memory: :func:`measure_peak`, the resident-set increase of one call over its baseline, read as the kernel's
  exact high-water mark (``VmHWM`` reset through ``/proc/self/clear_refs``) and by a sampling thread;
* onnxruntime: :func:`ort_options` / :func:`ort_session` build sessions with the benchmark's thread count, and
  :func:`patch_ort_threads` makes the numpy backend's own sessions use it too;
* agreement: :func:`rel_l2` = ‖a − ref‖₂ / ‖ref‖₂ in float64.

tracemalloc is not used: it sees numpy's allocations but not torch's, so it is not a common measure.
"""
from __future__ import annotations

import cProfile
import ctypes
import gc
import io
import json
import os
import pstats
import threading
import time
from collections import defaultdict

import numpy as np

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


def rss_kb() -> int:
    """The process's resident set size in kB."""
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
            self.peak_kb = max(self.peak_kb, rss_kb())
            self.samples += 1
            self._stop.wait(self.period_s)

    def __enter__(self):
        self.peak_kb = rss_kb()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak_kb = max(self.peak_kb, rss_kb())


def settle() -> int:
    """``gc.collect()`` and ``malloc_trim(0)``, then the RSS in kB: an honest baseline."""
    gc.collect()
    _malloc_trim()
    return rss_kb()


def measure_peak(fn, sample_ms: float) -> dict:
    """Run ``fn`` once; RSS increase over the pre-call baseline, exact (VmHWM) and sampled, in MB."""
    base = settle()
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


def fresh_session_peak(make_session, run, sample_ms: float) -> dict:
    """:func:`measure_peak` of ``run(session)`` on a session ``make_session()`` built before the baseline.

    onnxruntime keeps a warm session's buffers in its arena, so the memory one call needs shows only on a session's
    first call."""
    session = make_session()
    peak = measure_peak(lambda: run(session), sample_ms)
    session = None
    settle()
    return peak


# ---------------------------------------------------------------------------------------------- time
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


def first_call(fn):
    """``(result, wall seconds)`` of one call (the cold or warm-up call, reported apart from the timed ones)."""
    t0 = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - t0


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


def profile_call(fn, top: int) -> str:
    """cProfile listing of one call of ``fn``: the ``top`` functions by cumulative and by own time."""
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


# ---------------------------------------------------------------------------------------------- onnxruntime
#: ``--ort-opt`` choices: onnxruntime's graph optimisation levels
OPT_LEVELS = ("all", "extended", "basic", "disable")


def ort_options(threads: int, level: str = "all", profile_prefix: str | None = None):
    """SessionOptions with ``threads`` intra-op threads, one inter-op thread, graph optimisation ``level`` (one of
    :data:`OPT_LEVELS`) and, with ``profile_prefix``, onnxruntime's per-node profiler on."""
    import onnxruntime as ort

    levels = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
              "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
              "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
              "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL}
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = levels[level]
    options.log_severity_level = 3
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return options


def ort_session(model, threads: int, level: str = "all", providers=("CPUExecutionProvider",),
                profile_prefix: str | None = None):
    """An onnxruntime session of ``model`` (a path, bytes or ``ModelProto``) with :func:`ort_options`."""
    import onnxruntime as ort

    source = model if isinstance(model, (str, bytes, os.PathLike)) else model.SerializeToString()
    return ort.InferenceSession(os.fspath(source) if isinstance(source, os.PathLike) else source,
                                ort_options(threads, level, profile_prefix), providers=list(providers))


def ort_op_profile(session, fn, top: int) -> str:
    """Run ``fn`` once on a ``session`` made with ``profile_prefix``; onnxruntime's node times of that last run
    summed per op type (and provider), the ``top`` rows with their share of the total node time."""
    fn()
    path = session.end_profiling()
    with open(path) as f:
        events = json.load(f)
    os.remove(path)
    runs = [e["ts"] for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
    last = max(runs, default=0)
    per_op: dict = defaultdict(lambda: [0.0, 0])
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time") and e.get("ts", 0) >= last:
            key = (e["args"].get("op_name", "?"), e["args"].get("provider", "?"))
            per_op[key][0] += e.get("dur", 0) / 1e3
            per_op[key][1] += 1
    total = sum(v[0] for v in per_op.values()) or 1.0
    lines = [f"{'op type':>24s} {'provider':>24s} {'nodes':>6s} {'ms':>9s} {'share':>6s}"]
    for (op, provider), (ms, n) in sorted(per_op.items(), key=lambda kv: -kv[1][0])[:top]:
        lines.append(f"{op:>24s} {provider:>24s} {n:6d} {ms:9.1f} {ms / total:6.1%}")
    lines.append(f"{'all nodes':>24s} {'':>24s} {sum(v[1] for v in per_op.values()):6d} {total:9.1f}")
    return "\n".join(lines)


def patch_ort_threads(threads: int):
    """onnxlrp's numpy backend builds its own SessionOptions; make them use ``threads`` intra-op threads (bench
    only)."""
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


# ---------------------------------------------------------------------------------------------- agreement
def rel_l2(a: np.ndarray, ref: np.ndarray) -> float:
    """‖a − ref‖₂ / ‖ref‖₂ in float64."""
    a, ref = np.asarray(a, np.float64), np.asarray(ref, np.float64)
    return float(np.linalg.norm(a - ref) / max(np.linalg.norm(ref), 1e-300))


def max_rel_l2_per_sample(a: np.ndarray, ref: np.ndarray) -> float:
    """The largest :func:`rel_l2` over the first axis (one value per sample)."""
    return max(rel_l2(a[i], ref[i]) for i in range(len(ref)))
