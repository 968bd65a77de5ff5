"""``onnxlrp explain-text``: explain a text classifier word by word (:class:`onnxlrp.text.TextExplainer`), print
each word's (``--view pieces``: each token's) relevance, and write the view with ``--html``: one row per method of
``--method a,b,c``; ``--per-layer`` adds the relevance per token after each transformer block."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .. import limits
from ..errors import InputFileError, ModelLoadError, OutputDirError, TokenizerError, UsageError
from . import files as fileio
from .args import resolve_methods
from .inputs import check_labels_path, quiet_runtime, read_labels, resolve_target
from .outputs import jsonable


def cmd_explain_text(args: argparse.Namespace) -> int:
    from .. import text as textmod
    methods = resolve_methods(args.method, args.sets)
    view = getattr(args, "view", "words")
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
    results = [tx.explain(texts, method=m.name, target=target, per_layer=bool(getattr(args, "per_layer", False)),
                          **m.params) for m in methods]
    names = ", ".join(m.name for m in methods)
    if args.html:
        fileio.write_text(Path(args.html), textmod.render_html(
            results, title=f"onnxlrp: {Path(args.model).name}, {names}", view=view))
    if args.json:
        docs = [res.to_dict(view) for res in results]
        print(json.dumps(jsonable(docs[0] if len(docs) == 1 else {"view": view, "methods": docs}), indent=2))
        return 0
    for res in results:
        _print_result(res, view)
    if args.html:
        print(f"wrote {args.html}")
    return 0


def _print_result(res, view: str) -> None:
    """Each text's words (or pieces) with their relevance and a bar, then the per-layer sums."""
    key = "word" if view == "words" else "token"
    for i, item in enumerate(res.to_dict(view)["texts"]):
        print(f"text {i + 1}: {item['text']!r}")
        pred = item["predicted"]
        units = res.units(i, view)
        total = sum(u["relevance"] for u in units)
        print(f"  predicted {res.label(pred)}; explained {item['target_label']} (logit {item['logit']:.4g}, "
              f"p={item['probability']:.3f}) with {res.method}; sum of {key} relevance {total:.4g}")
        scale = max((abs(u["relevance"]) for u in units), default=0.0) or 1.0
        width = max([len(u[key]) for u in units] + [5])
        for u in units:
            r = u["relevance"]
            bar = ("+" if r > 0 else "-") * int(round(20 * abs(r) / scale))
            print(f"  {u[key]:<{width}}  {r:+.4e}  {bar}")
        for name, row in zip(res.layers, res.layer_table(i, view)):
            print(f"  after {name}: sum {row.sum():+.4e}, largest at {units[int(abs(row).argmax())][key]!r}")


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
