"""``onnxlrp explain-text``: explain a text classifier token by token (:class:`onnxlrp.text.TextExplainer`), print
each token's relevance, and write the token view with ``--html``."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .. import limits
from ..errors import InputFileError, ModelLoadError, OutputDirError, TokenizerError, UsageError
from . import files as fileio
from .args import one_method
from .inputs import check_labels_path, quiet_runtime, read_labels, resolve_target
from .outputs import jsonable


def cmd_explain_text(args: argparse.Namespace) -> int:
    from .. import text as textmod
    chosen = one_method(args, "explain-text")
    method, params = chosen.name, chosen.params
    texts = list(args.texts)
    # every path is checked before anything is read: regular files within their size limits
    limits.check_file(args.model, "model", ModelLoadError, "model file")
    limits.check_file(args.tokenizer, "tokenizer", TokenizerError, "tokenizer file")
    if args.labels is not None:
        check_labels_path(args.labels)
    if args.html is not None:
        _check_html(args.html)
    if args.file:
        texts += _read_texts(args.file)
    if not texts:
        raise UsageError("no text given: pass TEXT arguments or --file")
    quiet_runtime(bool(args.debug))
    tx = textmod.TextExplainer(args.model, args.tokenizer, embedding=args.embedding, output_name=args.output_name,
                               max_length=args.max_length, dtype=args.dtype, device=args.device)
    shape = tx.explainer.output_shape
    classes = shape[-1] if shape and isinstance(shape[-1], int) else None
    labels = read_labels(args.labels, classes)
    tx.label_names = labels
    target = resolve_target(args.target, labels, tuple(shape[1:]) if shape else (), tx.explainer.output_name)
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


def _read_texts(name: str) -> list[str]:
    """Non-blank lines of ``--file`` (``-``: standard input), at most the ``texts`` size limit."""
    limit = limits.file_limit("texts")
    path = None if name == "-" else limits.check_file(name, "texts", InputFileError, "texts file")
    try:
        if path is None:
            content = sys.stdin.read(limit + 1)
        else:
            with open(path, "rb") as handle:
                content = handle.read(limit + 1).decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = "not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else (exc.strerror or str(exc))
        raise InputFileError(f"cannot read texts from {name!r}: {reason}") from exc
    if len(content) > limit:
        raise InputFileError(f"texts from {name!r} are over the {limits.format_bytes(limit)} limit; set "
                             f"{limits.FILE_LIMITS['texts'][0]} (bytes) to raise it")
    return [line for line in content.splitlines() if line.strip()]


def _check_html(name: str) -> None:
    """``--html`` must name a file path (not empty, no NUL byte, not a folder)."""
    if not name.strip() or "\0" in name:
        raise UsageError(f"--html {name!r} is not a file name")
    if Path(name).is_dir():
        raise OutputDirError(f"cannot write {name!r}: it is a directory")
