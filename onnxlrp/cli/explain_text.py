"""``onnxlrp explain-text``: explain a text classifier token by token (:class:`onnxlrp.text.TextExplainer`), print
each token's relevance, and write the token view with ``--html``."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import InputFileError, UsageError
from . import files as fileio
from .args import one_method
from .inputs import read_labels, resolve_target
from .outputs import jsonable


def cmd_explain_text(args: argparse.Namespace) -> int:
    from .. import text as textmod
    chosen = one_method(args, "explain-text")
    method, params = chosen.name, chosen.params
    texts = list(args.texts)
    if args.file:
        try:
            content = sys.stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputFileError(f"cannot read texts from {args.file!r}: {exc}") from exc
        texts += [line for line in content.splitlines() if line.strip()]
    if not texts:
        raise UsageError("no text given: pass TEXT arguments or --file")
    tx = textmod.TextExplainer(args.model, args.tokenizer, embedding=args.embedding, output_name=args.output_name,
                               max_length=args.max_length, dtype=args.dtype, device=args.device)
    shape = tx.explainer.output_shape
    classes = shape[-1] if shape and isinstance(shape[-1], int) else None
    labels = read_labels(args.labels, classes)
    tx.label_names = labels
    target = resolve_target(args.target, labels, classes, tx.explainer.output_name)
    res = tx.explain(texts, method=method, target=target, **params)
    if args.html:
        fileio.write_text(Path(args.html), res.html(title=f"onnxlrp: {Path(args.model).name}, {method}"))
    if args.json:
        print(json.dumps(jsonable(res.to_dict()), indent=2))
        return 0
    for i, item in enumerate(res.to_dict()["texts"]):
        print(f"text {i + 1}: {item['text']!r}")
        pred = item["predicted"]
        print(f"  predicted {res.label(pred)}; explained {item['target_label']} (logit {item['logit']:.4g}, "
              f"p={item['probability']:.3f}) with {method}; sum of token relevance {item['relevance_sum']:.4g}")
        scale = max((abs(t["relevance"]) for t in item["tokens"]), default=0.0) or 1.0
        width = max([len(t["token"]) for t in item["tokens"]] + [5])
        for t in item["tokens"]:
            r = t["relevance"]
            bar = ("+" if r > 0 else "-") * int(round(20 * abs(r) / scale))
            print(f"  {t['token']:<{width}}  {r:+.4e}  {bar}")
    if args.html:
        print(f"wrote {args.html}")
    return 0
