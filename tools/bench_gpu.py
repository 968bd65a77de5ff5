"""ResNet-50 explained on a GPU: the compiled graph on onnxruntime's CUDA provider against its CPU provider.

Builds torchvision ``resnet50(weights=None)`` with seeded random weights (``tools/bench.py``'s ``build_model``),
exports it to ONNX (opset 17, free batch dimension), compiles ``--method`` into it with
``onnxlrp.compiler.compile(..., relevance_init="one_hot")`` and runs the compiled graph on one random batch
(``--batch``, default 64, 224×224, random targets):

* once on the CPU provider (``--threads`` intra-op threads): the reference;
* on ``CUDAExecutionProvider`` (``use_tf32=0`` unless ``--tf32``, so float32 convolutions stay float32): agreement
  with the reference as the largest per-sample rel. L2 of the relevance (``--tol``, default 1e-4; the logits too),
  and throughput in images/s, best and median of ``--repeats`` timed runs after ``--warmup`` runs, two ways:
  ``host`` = ``session.run`` with numpy arrays in and out (host↔device copies included), ``device`` = I/O binding
  with the input, targets and relevance kept on the GPU.

One extra profiled run (onnxruntime's profiler, stopped before the timed runs) lists the node time per op type and
execution provider, which shows any node that fell back to the CPU. Where torch sees the GPU, the device-wide drop
in free GPU memory from before the session to after the runs is reported as well.

Needs torch and torchvision (to build and export the model), onnx, onnx-ir, numpy and onnxruntime with the CUDA
provider (``onnxruntime-gpu``); onnxlrp itself is imported from this checkout. Without the CUDA provider it stops
with one line saying so (exit status 2); a result over ``--tol`` exits with status 1.

Usage::

    python tools/bench_gpu.py                                      # ResNet-50, batch 64, 224x224, epsilon_plus_flat
    python tools/bench_gpu.py --json gpu.json --repeats 20
    python tools/bench_gpu.py --provider cpu --size 64 --batch 2 --repeats 1   # smoke test of the script, no GPU
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS.parent))  # onnxlrp from this checkout
sys.path.insert(0, str(TOOLS))

CUDA = "CUDAExecutionProvider"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=64, help="images per run (default: 64)")
    p.add_argument("--size", type=int, default=224, help="input height and width (default: 224)")
    p.add_argument("--method", default="epsilon_plus_flat", help="method compiled in (default: epsilon_plus_flat)")
    p.add_argument("--repeats", type=int, default=10, help="timed runs per way (default: 10)")
    p.add_argument("--warmup", type=int, default=3, help="untimed runs first (default: 3)")
    p.add_argument("--tol", type=float, default=1e-4,
                   help="largest per-sample rel. L2 of GPU against CPU allowed (default: 1e-4)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="intra-op threads of the CPU reference session (default: all cores)")
    p.add_argument("--provider", choices=("cuda", "cpu"), default="cuda",
                   help="the provider measured against the CPU reference; 'cpu' only smoke-tests the script")
    p.add_argument("--tf32", action="store_true", help="let the CUDA provider use TF32 (off by default)")
    p.add_argument("--ort-opt", choices=("all", "extended", "basic", "disable"), default="all",
                   help="onnxruntime graph optimisation of both sessions (default: all)")
    p.add_argument("--profile-top", type=int, default=12, help="rows of the per-op listing (default: 12)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", metavar="PATH", help="also write all figures to this JSON file")
    args = p.parse_args(argv)
    if min(args.batch, args.size, args.repeats, args.threads) < 1 or args.warmup < 0 or args.tol <= 0:
        p.error("--batch, --size, --repeats and --threads must be positive, --warmup >= 0, --tol > 0")
    return args


def cuda_problem() -> str | None:
    """Why the CUDA provider cannot run here (``None`` when it is there)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return "onnxruntime is not installed; install onnxruntime-gpu"
    if hasattr(ort, "preload_dlls"):  # onnxruntime-gpu >= 1.21: CUDA/cuDNN from the nvidia-* wheels (torch's)
        try:
            ort.preload_dlls()
        except Exception:  # noqa: BLE001 - the provider check below says what is missing
            pass
    available = ort.get_available_providers()
    if CUDA not in available:
        return (f"onnxruntime {ort.__version__} has no {CUDA} (providers: {', '.join(available)}); install "
                "onnxruntime-gpu built for this machine's CUDA, or pass --provider cpu for a smoke test")
    return None


def device_providers(args) -> list:
    if args.provider == "cpu":
        return ["CPUExecutionProvider"]
    return [(CUDA, {"device_id": 0, "use_tf32": int(args.tf32), "cudnn_conv_algo_search": "EXHAUSTIVE"}),
            "CPUExecutionProvider"]


def gpu_free_bytes() -> int | None:
    """Free memory on GPU 0 as the driver reports it (``None`` without torch's CUDA)."""
    try:
        import torch

        return int(torch.cuda.mem_get_info(0)[0]) if torch.cuda.is_available() else None
    except Exception:  # noqa: BLE001 - a figure we can do without
        return None


def timed_runs(fn, warmup: int, repeats: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def bound_run(session, feeds: dict, device: str):
    """A zero-argument call running ``session`` with its inputs and the relevance on ``device`` (I/O binding),
    and a function returning that relevance as a host array."""
    import onnxruntime as ort

    binding = session.io_binding()
    kept = {name: ort.OrtValue.ortvalue_from_numpy(value, device, 0) for name, value in feeds.items()}
    for name, value in kept.items():
        binding.bind_ortvalue_input(name, value)
    binding.bind_output("relevance", device)

    def run():
        session.run_with_iobinding(binding)

    return run, lambda: binding.copy_outputs_to_cpu()[0]


def main(args) -> int:
    if args.provider == "cuda":
        problem = cuda_problem()
        if problem:
            print(f"bench_gpu: {problem}", file=sys.stderr)
            return 2
    import numpy as np
    import onnxruntime as ort
    import torch
    from bench import build_model, compile_model, export_onnx
    from bench_measure import max_rel_l2_per_sample, ort_op_profile, ort_session

    from onnxlrp.compiler import save

    log = lambda msg: print(msg, flush=True)  # noqa: E731
    result = {"onnxruntime": ort.__version__, "torch": torch.__version__, "provider": args.provider,
              "batch": args.batch, "size": args.size, "method": args.method, "tf32": args.tf32,
              "ort_opt": args.ort_opt, "threads": args.threads}
    rng = np.random.default_rng(args.seed)
    x = rng.standard_normal((args.batch, 3, args.size, args.size)).astype(np.float32)
    feeds = {"input": x, "target": rng.integers(0, 1000, args.batch).astype(np.int64)}
    with tempfile.TemporaryDirectory(prefix="onnxlrp-bench-gpu-") as tmp:
        path, compiled_path = Path(tmp) / "resnet50.onnx", Path(tmp) / f"resnet50.{args.method}.onnx"
        export_onnx(build_model("resnet50", args.seed), torch.zeros(1, 3, args.size, args.size), path)
        compiled, result["compile_s"] = compile_model(path, args.method)
        save(compiled, compiled_path)
        del compiled
        log(f"compiled {args.method} into ResNet-50 in {result['compile_s']:.1f} s "
            f"({compiled_path.stat().st_size / 2**20:.0f} MB)")

        t0 = time.perf_counter()
        cpu = ort_session(compiled_path, args.threads, args.ort_opt)
        t1 = time.perf_counter()
        logits_cpu, rel_cpu = cpu.run(None, feeds)
        result["cpu_session_s"], result["cpu_run_s"] = t1 - t0, time.perf_counter() - t1
        del cpu
        log(f"CPU reference: session {result['cpu_session_s']:.1f} s, one run {result['cpu_run_s']:.1f} s "
            f"({args.threads} threads)")

        free_before = gpu_free_bytes()
        t0 = time.perf_counter()
        try:
            dev = ort_session(compiled_path, args.threads, args.ort_opt, providers=device_providers(args),
                              profile_prefix=os.path.join(tmp, "profile"))
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises plain RuntimeErrors here
            print(f"bench_gpu: onnxruntime could not create the {args.provider} session: "
                  f"{str(exc).strip().splitlines()[0]}", file=sys.stderr)
            return 2
        result["session_s"] = time.perf_counter() - t0
        result["session_providers"] = dev.get_providers()
        if args.provider == "cuda" and CUDA not in dev.get_providers():
            print(f"bench_gpu: the session fell back to {dev.get_providers()}: onnxruntime could not load its CUDA "
                  "provider (CUDA or cuDNN libraries missing or of another version)", file=sys.stderr)
            return 2
        t0 = time.perf_counter()
        logits_dev, rel_dev = dev.run(None, feeds)
        result["first_run_s"] = time.perf_counter() - t0
        result["op_profile"] = ort_op_profile(dev, lambda: dev.run(None, feeds), args.profile_top)  # ends profiling
        log(f"{args.provider} session {result['session_s']:.1f} s, first run {result['first_run_s']:.1f} s; node time "
            f"per op type and provider (one run):\n{result['op_profile']}")

        result["max_rel_l2_relevance"] = max_rel_l2_per_sample(rel_dev, rel_cpu)
        result["max_rel_l2_logits"] = max_rel_l2_per_sample(logits_dev, logits_cpu)
        host = timed_runs(lambda: dev.run(["relevance"], feeds), args.warmup, args.repeats)
        device = "cuda" if args.provider == "cuda" else "cpu"
        run_bound, relevance_bound = bound_run(dev, feeds, device)
        bound = timed_runs(run_bound, args.warmup, args.repeats)
        result["max_rel_l2_relevance_bound"] = max_rel_l2_per_sample(relevance_bound(), rel_cpu)
        free_after = gpu_free_bytes()
        if free_before is not None and free_after is not None:
            result["gpu_memory_drop_mb"] = (free_before - free_after) / 2**20
    for way, times in (("host", host), ("device", bound)):
        result[f"{way}_times"] = times
        result[f"{way}_best_s"], result[f"{way}_median_s"] = min(times), statistics.median(times)
        result[f"{way}_images_per_s"] = args.batch / min(times)
        log(f"{way:6s}: best {min(times) * 1e3:.1f} ms, median {statistics.median(times) * 1e3:.1f} ms per batch of "
            f"{args.batch} -> {result[f'{way}_images_per_s']:.0f} images/s (best of {args.repeats})")
    if "gpu_memory_drop_mb" in result:
        log(f"GPU memory: free memory dropped by {result['gpu_memory_drop_mb']:.0f} MB from before the session to "
            "after the runs")
    worst = max(result["max_rel_l2_relevance"], result["max_rel_l2_relevance_bound"])
    ok = worst <= args.tol
    log(f"{args.provider} vs CPU: max per-sample rel. L2 relevance {result['max_rel_l2_relevance']:.2e} "
        f"(bound run {result['max_rel_l2_relevance_bound']:.2e}), logits {result['max_rel_l2_logits']:.2e}; "
        f"tolerance {args.tol:.0e}: {'ok' if ok else 'EXCEEDED'}")
    result["within_tolerance"] = ok
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
        log(f"wrote {args.json}")
    if not ok:
        print(f"bench_gpu: {args.provider} relevance differs from the CPU provider's by rel. L2 {worst:.2e} > "
              f"{args.tol:.0e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
