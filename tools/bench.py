"""Benchmark onnxlrp against zennit 0.5.1 on torchvision VGG-16 and ResNet-50 (random weights), one process.

For every (model, batch) pair each engine explains the same input for the same targets with the
``epsilon_plus_flat`` preset (``--engines`` picks which run):

* ``zennit``: ``EpsilonPlusFlat(canonizers=[SequentialMergeBatchNorm()])`` (VGG) or ``[ResNetCanonizer()]``
  (ResNet), ``zennit.attribution.Gradient(model, composite)`` called with a one-hot ``attr_output``;
* ``numpy``: onnxlrp's reference backend,
  ``Explainer(<exported .onnx>).explain(x, method="epsilon_plus_flat", target=t, relevance_init="one_hot")``;
* ``compiled``: the method written into the model, ``onnxlrp.compiler.compile(<.onnx>, "epsilon_plus_flat",
  relevance_init="one_hot")``, run as one ``InferenceSession.run`` with ``{input: x, target: t}`` (the session is
  built here, with the bench's thread count and ``--ort-opt`` graph optimisation);
* ``forward``: the plain onnxruntime forward of the same exported model (ORT_ENABLE_ALL, same threads): the floor
  the compiled graph is measured against (``compiled / forward``).

Timing is the best of ``--repeats`` interleaved calls after one warm-up call. The one-off costs are reported
separately, never in the ratios: model export, ``Explainer`` construction, compilation, session creation, each
engine's first (cold) call, zennit's composite/canonizer attach+detach.

Peak memory is the increase of the process's resident set size (RSS) during one call, measured on a separate call
after the timed ones, ``gc.collect()`` and ``malloc_trim(0)`` first so freed heap goes back to the OS and the baseline
is honest. Two readings of the same call:

* ``hwm``: the kernel's exact high-water mark (``VmHWM`` in ``/proc/self/status``), reset to the current RSS just
  before the call by writing ``5`` to ``/proc/self/clear_refs``; peak = VmHWM after - VmRSS before.
* ``sampled``: a background thread reads ``VmRSS`` every ``--sample-ms`` ms; peak = max sample - VmRSS before.
  It can miss short spikes, so it is a lower bound of ``hwm``; it is the fallback where clear_refs is unavailable.

The measurement helpers live in ``tools/bench_measure.py``.

Usage::

    .venv/bin/python tools/bench.py                          # both models, batch 1 and 8, 3 repeats, all engines
    .venv/bin/python tools/bench.py --models resnet50 --batch 8 --repeats 5 --json out.json
    .venv/bin/python tools/bench.py --engines compiled,forward --ort-opt basic
    .venv/bin/python tools/bench.py --models vgg16 --batch 8 --profile   # + where the time goes
"""
from __future__ import annotations

import argparse
import os
import sys

ENGINES = ("zennit", "numpy", "compiled", "forward")
OPT_LEVELS = ("all", "extended", "basic", "disable")  # as bench_measure.OPT_LEVELS (not imported before the env)
METHOD = "epsilon_plus_flat"
#: issue 11's targets for the compiled backend (reported, never asserted)
TARGETS = {"compiled/zennit time": 0.5, "compiled/zennit peak": 0.5, "compiled/forward time": 3.5}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="vgg16,resnet50", help="comma-separated: vgg16, resnet50 (default: both)")
    p.add_argument("--batch", default="1,8", help="comma-separated batch sizes (default: 1,8)")
    p.add_argument("--engines", default=",".join(ENGINES),
                   help=f"comma-separated, from {', '.join(ENGINES)} (default: all)")
    p.add_argument("--ort-opt", choices=OPT_LEVELS, default="all",
                   help="onnxruntime graph optimisation of the compiled graph's session (default: all = "
                        "ORT_ENABLE_ALL); the plain forward always runs at 'all'")
    p.add_argument("--repeats", type=int, default=3, help="timed calls per engine after one warm-up; best is kept")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="threads for torch, OpenMP, OpenBLAS/MKL and onnxruntime intra-op (default: all cores)")
    p.add_argument("--size", type=int, default=224, help="input height and width (default: 224)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sample-ms", type=float, default=2.0, help="RSS sampling period in ms (default: 2)")
    p.add_argument("--no-memory", action="store_true", help="skip the memory measurement calls")
    p.add_argument("--profile", action="store_true",
                   help="per (model, batch), after the measurements: one numpy-backend call under cProfile and one "
                        "compiled call under onnxruntime's profiler (node time per op type)")
    p.add_argument("--profile-top", type=int, default=15, help="rows of the profile listings (default: 15)")
    p.add_argument("--json", metavar="PATH", help="also write all figures to this JSON file")
    args = p.parse_args(argv)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    args.batch = [int(b) for b in args.batch.split(",") if b.strip()]
    args.engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = [m for m in args.models if m not in ("vgg16", "resnet50")]
    if unknown:
        p.error(f"unknown model(s) {unknown}; choose from vgg16, resnet50")
    unknown = [e for e in args.engines if e not in ENGINES]
    if unknown or not args.engines:
        p.error(f"unknown engine(s) {unknown}; choose from {', '.join(ENGINES)}")
    args.engines = [e for e in ENGINES if e in args.engines]  # fixed order: timed calls alternate in this order
    if args.repeats < 1 or args.threads < 1 or any(b < 1 for b in args.batch):
        p.error("--repeats, --threads and --batch must be positive")
    return args


ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None:
    # Thread pools read these when numpy / torch / onnxruntime load, so set them before any of those imports.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
        os.environ[var] = str(ARGS.threads)

import gc  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_measure import (  # noqa: E402
    Contention,
    first_call,
    fresh_session_peak,
    interleaved_best,
    measure_peak,
    ort_op_profile,
    ort_session,
    patch_ort_threads,
    profile_call,
    rel_l2,
    settle,
)


# ---------------------------------------------------------------------------------------------- models
def build_model(name: str, seed: int):
    """torchvision ``name`` with seeded random weights, eval mode, BatchNorm statistics and affine parameters
    randomised (so that folding BN is not a no-op), no gradients on the parameters."""
    import torch
    import torchvision

    torch.manual_seed(seed)
    model = getattr(torchvision.models, name)(weights=None).eval()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
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
    """TorchScript export at opset 17, input ``input`` with a free batch dimension."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=17, input_names=["input"],
                          dynamic_axes={"input": {0: "N"}})


def compile_model(path: Path, method: str = METHOD):
    """``(compiled ModelProto, seconds)``: ``method`` compiled into the model, explaining one-hot targets."""
    from onnxlrp.compiler import compile as compile_method

    t0 = time.perf_counter()
    compiled = compile_method(str(path), method, relevance_init="one_hot")
    return compiled, time.perf_counter() - t0


# ---------------------------------------------------------------------------------------------- engines
def prepare(name: str, args, workdir: Path, log) -> dict:
    """Per model, once: the torch model, its ONNX export and every chosen engine's one-off setup, timed. The cold
    figures go into the returned context under ``cold``, with the RSS each engine keeps between calls (``*_held_mb``:
    weights, sessions)."""
    import torch

    import onnxlrp
    from onnxlrp.compiler import save

    base = settle()
    ctx = {"name": name, "model": build_model(name, args.seed), "path": workdir / f"{name}.onnx", "cold": {}}
    cold = ctx["cold"]
    cold["zennit_held_mb"] = (settle() - base) / 1024  # the torch model
    t0 = time.perf_counter()
    export_onnx(ctx["model"], torch.zeros(1, 3, args.size, args.size), ctx["path"])
    cold["export_s"] = time.perf_counter() - t0
    log(f"[{name}] exported {ctx['path'].stat().st_size / 2**20:.0f} MB ONNX in {cold['export_s']:.1f} s")
    if "numpy" in args.engines:
        base = settle()
        ctx["explainer"], cold["numpy_construct_s"] = first_call(lambda: onnxlrp.Explainer(str(ctx["path"])))
        cold["numpy_held_mb"] = (settle() - base) / 1024
        log(f"[{name}] numpy: Explainer() {cold['numpy_construct_s']:.2f} s (+{cold['numpy_held_mb']:.0f} MB held)")
    if "compiled" in args.engines:
        compiled, cold["compiled_compile_s"] = compile_model(ctx["path"])
        cold["compiled_model_mb"] = compiled.ByteSize() / 2**20
        ctx["compiled_path"] = workdir / f"{name}.{METHOD}.onnx"
        save(compiled, ctx["compiled_path"])
        del compiled
        base = settle()
        ctx["compiled"], cold["compiled_session_s"] = first_call(
            lambda: ort_session(ctx["compiled_path"], args.threads, args.ort_opt))
        cold["compiled_held_mb"] = (settle() - base) / 1024
        log(f"[{name}] compiled: compile() {cold['compiled_compile_s']:.2f} s ({cold['compiled_model_mb']:.0f} MB "
            f"graph), InferenceSession {cold['compiled_session_s']:.2f} s (+{cold['compiled_held_mb']:.0f} MB held)")
    if "forward" in args.engines:
        base = settle()
        ctx["forward"], cold["forward_session_s"] = first_call(lambda: ort_session(ctx["path"], args.threads))
        cold["forward_held_mb"] = (settle() - base) / 1024
    return ctx


def engine_calls(ctx: dict, engines: list[str], x_np, targets, x_t, one_hot) -> dict:
    """``{engine: zero-argument call}`` for one batch; each returns what the engine returns (zennit's callable is
    added by the caller, inside its attach context)."""
    fns = {}
    if "numpy" in engines:
        fns["numpy"] = lambda: ctx["explainer"].explain(x_np, method=METHOD, target=targets, relevance_init="one_hot")
    if "compiled" in engines:
        feeds = {"input": x_np, "target": targets.astype(np.int64)}
        fns["compiled"] = lambda: ctx["compiled"].run(["relevance"], feeds)[0]
    if "forward" in engines:
        fns["forward"] = lambda: ctx["forward"].run(None, {"input": x_np})
    return fns


def fresh_peak(ctx: dict, engine: str, x_np, targets, args) -> dict:
    """Peak memory of the first call of a new session of the compiled graph or the plain model (see
    :func:`bench_measure.fresh_session_peak`)."""
    if engine == "compiled":
        feeds = {"input": x_np, "target": targets.astype(np.int64)}
        return fresh_session_peak(lambda: ort_session(ctx["compiled_path"], args.threads, args.ort_opt),
                                  lambda session: session.run(None, feeds), args.sample_ms)
    return fresh_session_peak(lambda: ort_session(ctx["path"], args.threads),
                              lambda session: session.run(None, {"input": x_np}), args.sample_ms)


def relevance_of(engine: str, result) -> np.ndarray | None:
    """The relevance map in a first call's result (``None`` for the plain forward)."""
    if engine == "numpy":
        return result.relevance
    if engine == "compiled":
        return result
    if engine == "zennit":
        return result[1].detach().numpy().copy()
    return None


def bench_batch(ctx: dict, batch: int, args, log) -> dict:
    """All chosen engines on one random batch: first calls, interleaved timing, peak memory, agreement."""
    import torch

    name, engines = ctx["name"], args.engines
    rng = np.random.default_rng(args.seed + batch)
    x_np = rng.standard_normal((batch, 3, args.size, args.size)).astype(np.float32)
    targets = rng.integers(0, 1000, batch)
    x_t = torch.from_numpy(x_np.copy())
    one_hot = torch.zeros(batch, 1000)
    one_hot[torch.arange(batch), torch.from_numpy(targets)] = 1.0
    row = {"model": name, "batch": batch, "engines": list(engines), **ctx["cold"]}
    fns = engine_calls(ctx, engines, x_np, targets, x_t, one_hot)
    maps, attributor = {}, None
    if "zennit" in engines:
        from zennit.attribution import Gradient

        t0 = time.perf_counter()
        attributor = Gradient(ctx["model"], zennit_composite(name))
        attributor.__enter__()  # kept open across calls, as the Explainer and the sessions are built once
        row["zennit_attach_s"] = time.perf_counter() - t0
        fns = {"zennit": lambda: attributor(x_t, one_hot), **fns}
    try:
        for engine, fn in fns.items():
            result, row[f"{engine}_first_s"] = first_call(fn)
            maps[engine] = relevance_of(engine, result)
            if engine == "zennit":
                with torch.no_grad():
                    row["zennit_logits_rel_l2"] = rel_l2(result[0].numpy(), ctx["model"](x_t).numpy())
            del result
        t = interleaved_best(fns, args.repeats)
        row["foreign_cores"] = t["foreign_cores"]
        for engine in fns:
            row[f"{engine}_s"], row[f"{engine}_cpu_s"] = t[engine]["best_s"], t[engine]["best_cpu_s"]
            row[f"{engine}_times"], row[f"{engine}_cpu_times"] = t[engine]["times"], t[engine]["cpu_times"]
        log(f"[{name} b{batch}] best of {args.repeats}: "
            + ", ".join(f"{e} {row[f'{e}_s']:.3f} s (first {row[f'{e}_first_s']:.3f} s)" for e in fns)
            + f"; other processes kept {row['foreign_cores']:.2f} cores busy")
        if not args.no_memory:
            for engine, fn in fns.items():
                row[f"{engine}_mem"] = measure_peak(fn, args.sample_ms) if engine not in ("compiled", "forward") \
                    else fresh_peak(ctx, engine, x_np, targets, args)
            log(f"[{name} b{batch}] peak RSS increase: " + ", ".join(
                f"{e} {row[f'{e}_mem']['peak_mb']:.0f} MB (sampled {row[f'{e}_mem']['sampled_mb']:.0f})" for e in fns))
    finally:
        if attributor is not None:
            t0 = time.perf_counter()
            attributor.__exit__(None, None, None)
            row["zennit_detach_s"] = time.perf_counter() - t0
    add_ratios(row, maps)
    if args.profile:
        profile_batch(ctx, row, fns, args, log)
    return row


def add_ratios(row: dict, maps: dict) -> None:
    """The figures the issue asks for, where both engines ran: time and peak-memory ratios, agreement of maps."""
    for a, b in (("compiled", "zennit"), ("numpy", "zennit"), ("compiled", "forward"), ("compiled", "numpy")):
        if f"{a}_s" in row and f"{b}_s" in row:
            row[f"time_{a}_{b}"] = row[f"{a}_s"] / row[f"{b}_s"]
        if f"{a}_mem" in row and f"{b}_mem" in row:
            row[f"mem_{a}_{b}"] = row[f"{a}_mem"]["peak_mb"] / max(row[f"{b}_mem"]["peak_mb"], 1e-9)
            total = [row[f"{e}_mem"]["peak_mb"] + row.get(f"{e}_held_mb", 0.0) for e in (a, b)]
            row[f"total_mem_{a}_{b}"] = total[0] / max(total[1], 1e-9)
        if maps.get(a) is not None and maps.get(b) is not None:
            row[f"rel_l2_{a}_{b}"] = rel_l2(maps[a], maps[b])
            row[f"rel_l2_{a}_{b}_per_sample"] = [rel_l2(maps[a][i], maps[b][i]) for i in range(len(maps[b]))]
    for engine, rel in maps.items():
        if rel is not None:
            row[f"sum_{engine}"] = float(rel.sum())


def profile_batch(ctx: dict, row: dict, fns: dict, args, log) -> None:
    """One numpy-backend call under cProfile; one compiled call under onnxruntime's node profiler (a separate
    session, so that the timed one is not slowed down by profiling)."""
    name, batch = ctx["name"], row["batch"]
    if "numpy" in fns:
        gc.collect()
        with Contention() as c:
            row["profile_numpy"] = profile_call(fns["numpy"], args.profile_top)
        log(f"\n===== cProfile: numpy backend, {name} batch {batch} (other processes kept {c.cores:.2f} cores busy) "
            f"=====\n{row['profile_numpy']}")
    if "compiled" in fns:
        with tempfile.TemporaryDirectory(prefix="onnxlrp-ort-profile-") as tmp:
            session = ort_session(ctx["compiled_path"], args.threads, args.ort_opt,
                                  profile_prefix=os.path.join(tmp, "compiled"))
            x = np.random.default_rng(args.seed + batch).standard_normal((batch, 3, args.size, args.size))
            call = {"input": x.astype(np.float32), "target": np.zeros(batch, np.int64)}
            session.run(["relevance"], call)  # warm-up; the listing counts the last call only
            row["profile_compiled"] = ort_op_profile(session, lambda: session.run(["relevance"], call),
                                                     args.profile_top)
        log(f"\n===== onnxruntime profile: compiled {METHOD}, {name} batch {batch}, node time per op type "
            f"(--ort-opt {args.ort_opt}) =====\n{row['profile_compiled']}")


# ---------------------------------------------------------------------------------------------- report
def _num(row: dict, key: str, fmt: str) -> str:
    value = row.get(key)
    return "-" if value is None else format(value, fmt)


def _peak(row: dict, engine: str) -> str:
    """``peak +held`` MB of one engine (``-`` where it did not run)."""
    mem, held = row.get(f"{engine}_mem"), row.get(f"{engine}_held_mb")
    if mem is None:
        return "-"
    return f"{mem['peak_mb']:.0f}" + ("" if held is None else f" +{held:.0f}")


def fmt_table(head: list[str], lines: list[list[str]]) -> str:
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(head)]
    sep = "  "
    out = [sep.join(h.rjust(w) for h, w in zip(head, widths)), sep.join("-" * w for w in widths)]
    out += [sep.join(c.rjust(w) for c, w in zip(line, widths)) for line in lines]
    return "\n".join(out)


def time_table(rows: list[dict]) -> str:
    """Best wall time per engine and the ratios; lower is better for the numerator."""
    head = ["model", "batch", "zennit s", "numpy s", "compiled s", "forward s", "numpy/zennit", "compiled/zennit",
            "compiled/forward", "compiled/numpy", "busy others"]
    lines = [[r["model"], str(r["batch"]), _num(r, "zennit_s", ".3f"), _num(r, "numpy_s", ".3f"),
              _num(r, "compiled_s", ".3f"), _num(r, "forward_s", ".3f"), _num(r, "time_numpy_zennit", ".2f"),
              _num(r, "time_compiled_zennit", ".2f"), _num(r, "time_compiled_forward", ".2f"),
              _num(r, "time_compiled_numpy", ".2f"), f"{r['foreign_cores']:.2f}"] for r in rows]
    return fmt_table(head, lines)


def memory_table(rows: list[dict]) -> str:
    """Peak RSS increase of one call per engine (and what it holds between calls), and the ratios."""
    head = ["model", "batch", "zennit MB", "numpy MB", "compiled MB", "forward MB", "numpy/zennit peak",
            "compiled/zennit peak", "compiled/zennit peak+held"]
    lines = [[r["model"], str(r["batch"]), _peak(r, "zennit"), _peak(r, "numpy"), _peak(r, "compiled"),
              _peak(r, "forward"), _num(r, "mem_numpy_zennit", ".2f"), _num(r, "mem_compiled_zennit", ".2f"),
              _num(r, "total_mem_compiled_zennit", ".2f")] for r in rows]
    return fmt_table(head, lines)


def agreement_table(rows: list[dict]) -> str:
    """rel. L2 distance between the engines' relevance maps, over the batch and worst sample."""
    pairs = (("compiled", "zennit"), ("compiled", "numpy"), ("numpy", "zennit"))
    head = ["model", "batch"] + [f"{a}:{b}{suffix}" for a, b in pairs for suffix in ("", " worst")]
    lines = []
    for r in rows:
        line = [r["model"], str(r["batch"])]
        for a, b in pairs:
            worst = r.get(f"rel_l2_{a}_{b}_per_sample")
            line += [_num(r, f"rel_l2_{a}_{b}", ".2e"), "-" if worst is None else f"{max(worst):.2e}"]
        lines.append(line)
    return fmt_table(head, lines)


def _fmt_list(xs) -> str:
    return "[" + " ".join(f"{x:.3f}" for x in xs) + "]"


def detail_line(r: dict, args) -> str:
    """Every timed call, the one-off (cold) costs and the sampled memory peaks of one row."""
    parts = [f"{r['model']} b{r['batch']}: wall s " + ", ".join(f"{e} {_fmt_list(r[f'{e}_times'])}"
                                                                 for e in r["engines"])]
    cold = [f"export {r['export_s']:.1f} s"]
    if "numpy" in r["engines"]:
        cold.append(f"numpy Explainer() {r['numpy_construct_s']:.2f} s + first call {r['numpy_first_s']:.2f} s")
    if "compiled" in r["engines"]:
        cold.append(f"compiled compile() {r['compiled_compile_s']:.2f} s + InferenceSession "
                    f"{r['compiled_session_s']:.2f} s + first call {r['compiled_first_s']:.2f} s "
                    f"({r['compiled_model_mb']:.0f} MB graph)")
    if "forward" in r["engines"]:
        cold.append(f"forward InferenceSession {r['forward_session_s']:.2f} s "
                    f"+ first call {r['forward_first_s']:.2f} s")
    if "zennit" in r["engines"]:
        cold.append(f"zennit attach {r['zennit_attach_s'] * 1e3:.1f} ms + first call {r['zennit_first_s']:.2f} s "
                    f"+ detach {r['zennit_detach_s'] * 1e3:.1f} ms")
    parts.append("cold: " + "; ".join(cold))
    if not args.no_memory:
        parts.append(f"sampled peaks (every {args.sample_ms} ms): " + ", ".join(
            f"{e} {r[f'{e}_mem']['sampled_mb']:.0f} MB" for e in r["engines"]))
    return "\n  ".join(parts)


def target_lines(rows: list[dict]) -> list[str]:
    """Issue 11's targets for the compiled backend, met or missed per row (figures reported, not asserted)."""
    keys = {"compiled/zennit time": "time_compiled_zennit", "compiled/zennit peak": "mem_compiled_zennit",
            "compiled/forward time": "time_compiled_forward"}
    out = []
    for r in rows:
        got = [(label, r[key]) for label, key in keys.items() if key in r]
        if got:
            out.append(f"{r['model']} b{r['batch']}: " + ", ".join(
                f"{label} {value:.2f} ({'met' if value <= TARGETS[label] else 'missed'}, target <= {TARGETS[label]})"
                for label, value in got))
    return out


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


def environment(args) -> dict:
    from importlib.metadata import PackageNotFoundError, version

    import onnxruntime
    import torch
    import torchvision

    try:
        zv = version("zennit")
    except PackageNotFoundError:  # pragma: no cover
        zv = "?"
    return {"python": platform.python_version(), "numpy": np.__version__, "torch": torch.__version__,
            "torchvision": torchvision.__version__, "onnxruntime": onnxruntime.__version__, "zennit": zv,
            "threads": args.threads, "cpu_count": os.cpu_count(), "machine": platform.machine(),
            "repeats": args.repeats, "size": args.size, "engines": ",".join(args.engines), "ort_opt": args.ort_opt,
            "onnxlrp_git": _git_state()}


def main(args) -> int:
    import torch

    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    patch_ort_threads(args.threads)

    def log(msg):
        print(msg, flush=True)

    env = environment(args)
    log("environment: " + ", ".join(f"{k}={v}" for k, v in env.items()))
    rows = []
    with tempfile.TemporaryDirectory(prefix="onnxlrp-bench-") as tmp:
        for name in args.models:
            ctx = prepare(name, args, Path(tmp), log)
            rows += [bench_batch(ctx, batch, args, log) for batch in args.batch]
            del ctx
            gc.collect()

    log(f"\n{METHOD}: zennit, onnxlrp's numpy backend, onnxlrp compiled (one onnxruntime session, --ort-opt "
        f"{args.ort_opt}) and the plain onnxruntime forward of the same model; ratio = numerator / denominator, "
        "lower is better for the numerator")
    log(f"time: best of {args.repeats} interleaved calls after one warm-up; threads={args.threads} for torch, "
        "OpenMP/OpenBLAS and every onnxruntime session; busy others = cores other processes kept busy meanwhile\n")
    log(time_table(rows))
    if not args.no_memory:
        exact = rows and rows[0][f"{args.engines[0]}_mem"]["hwm_mb"] is not None
        log("\nmemory: peak RSS increase over the pre-call baseline during one call (after gc.collect + malloc_trim), "
            + ("exact kernel high-water mark (VmHWM reset via /proc/self/clear_refs)" if exact
               else f"VmRSS sampled every {args.sample_ms} ms"))
        log("onnxruntime keeps a warm session's buffers in its arena, so the compiled and forward peaks are read on "
            "the first call of a fresh session; '+held' = RSS kept between calls (torch model, Explainer, session)\n")
        log(memory_table(rows))
    if any(k.startswith("rel_l2_") for r in rows for k in r):
        log("\nrel-L2 a:b = ||R_a - R_b|| / ||R_b|| over the batch, worst = the largest per sample (one-hot targets, "
            "the same on every engine)\n")
        log(agreement_table(rows))
    busy = max((r["foreign_cores"] for r in rows), default=0.0)
    if busy > 0.1 * args.threads:
        log(f"\nWARNING: other processes used up to {busy:.2f} cores during timing; wall times are unreliable "
            "(calls were interleaved, so the ratios suffer less). Re-run on a quiet machine.")
    targets = target_lines(rows)
    if targets:
        log("\nissue 11 targets for the compiled backend (reported, not asserted):")
        log("\n".join(targets))
    log("")
    log("\n".join(detail_line(r, args) for r in rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"environment": env, "results": rows}, f, indent=2)
        log(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main(ARGS))
