"""``onnxlrp explain``: explain image or array inputs batch by batch and write the files :mod:`.outputs` describes,
then ``summary.json`` and, with ``--report``, ``report.html``.

Everything that can be checked without the model is checked before the output folder is made (paths, ``--size``
against the pixel limit); every batch is checked against the memory budget before it is decoded."""
from __future__ import annotations

import argparse
import hashlib
import json
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from .. import limits
from ..errors import ModelLoadError, NameSelectionError, UsageError
from ..inputs import images
from ..inputs.images import Preprocessing, format_shape
from . import files as fileio
from .args import ChosenMethod, resolve_methods, version
from .inputs import (
    batches,
    budget_runs,
    check_labels_path,
    expand_inputs,
    feeds_for,
    image_preprocessing,
    load_sample,
    open_explainer,
    plan_items,
    read_feeds,
    read_labels,
    resolve_target,
    same_shape_runs,
)
from .outputs import jsonable, print_done, write_outputs
from .progress import Progress


def cmd_explain(args: argparse.Namespace) -> int:
    # to the methods that take it (the first Q, which also checks that some method does; the others: _variants)
    contrast = [] if args.contrast is None else [(None, "contrast", args.contrast[0])]
    # paths first (before the method registry loads onnx): regular files within their size limits
    limits.check_file(args.model, "model", ModelLoadError, "model file")
    if args.labels is not None:
        check_labels_path(args.labels)
    files = expand_inputs(args.inputs)
    _check_size(args.size)
    methods, runs = _variants(resolve_methods(args.method, args.sets, contrast), args.contrast)
    # before the model loads: fail fast on an unusable folder
    out_dir, created = fileio.make_output_dir(args.out)
    try:
        return _explain(args, methods, files, out_dir, runs)
    except BaseException:
        fileio.remove_created(created)  # do not leave empty folders behind a failed run
        raise


def _variants(methods: list[ChosenMethod], contrasts: tuple[int, ...] | None
              ) -> tuple[list[ChosenMethod], dict[str, str]]:
    """With several ``--contrast`` classes, each contrastive method becomes one ``METHOD_vs_Q`` per class Q (run as
    METHOD with ``contrast=Q``), so that the grid shows "why P rather than Q" for every Q side by side. Returns the
    entries and, per entry, the method name to run."""
    out, runs = [], {}
    for m in methods:
        if contrasts is None or len(contrasts) == 1 or "contrast" not in m.method.params:
            out.append(m)
            runs[m.name] = m.name
            continue
        for q in contrasts:
            out.append(ChosenMethod(f"{m.name}_vs_{q}", m.method, {**m.params, "contrast": q},
                                    {**m.full, "contrast": q}))
            runs[out[-1].name] = m.name
    return out, runs


def _check_size(size) -> None:
    """Refuse a ``--size`` whose images would exceed the image pixel limit."""
    if size is None:
        return
    height, width = size
    limit = limits.image_pixel_limit()
    if height * width > limit:
        raise UsageError(f"--size {height} {width} makes images of {height * width:,} pixels, over the limit of "
                         f"{limit:,} pixels; choose a smaller --size (or set {limits.IMAGE_PIXELS[0]} to raise "
                         f"the limit)")


def _explain(args: argparse.Namespace, methods: list[ChosenMethod], files: list[tuple[Path, str]],
             out_dir: Path, runs: dict[str, str]) -> int:
    t0 = time.monotonic()
    ex = open_explainer(args)
    input_shape = tuple(ex.input_shape)
    output_shape = tuple(ex.output_shape)
    classes = output_shape[-1] if output_shape and isinstance(output_shape[-1], int) else None
    labels = read_labels(args.labels, classes)
    target = resolve_target(args.target, labels, output_shape[1:], ex.output_name)
    feeds = read_feeds(args.feeds, ex.input_name)
    others = set(ex.input_names) - {ex.input_name}
    if set(feeds) - others:
        raise NameSelectionError(f"--feed {sorted(set(feeds) - others)[0]}: the model has no other input of that name; "
                                 f"its inputs are: {', '.join(sorted(others | {ex.input_name}))}")
    if others - set(feeds):
        missing = sorted(others - set(feeds))
        raise NameSelectionError(f"the model has other inputs that must be held fixed: give --feed {missing[0]}="
                                 f"FILE.npy (missing: {', '.join(missing)})")
    input_dtype = np.dtype(ex.input_dtype)

    prep = image_preprocessing(args, files, input_shape)
    layout = prep.layout if prep is not None else (args.layout or images.image_layout_from_shape(input_shape))
    items = plan_items(files, input_shape, input_dtype, ex.input_name)

    # a model exported with a fixed batch size B gets batches of exactly B (the last one padded, extras dropped)
    static_batch = input_shape[0] if input_shape and isinstance(input_shape[0], int) else None
    batch_size = static_batch or args.batch_size
    lrp_methods = {m.name for m in methods if m.method.kind == "lrp"}
    summary_inputs: list[dict] = []
    rows: list[str] = []
    with ExitStack() as stack:
        report = None
        if args.report:
            from ..views.report import HtmlReport
            handle = stack.enter_context(fileio.atomic_write(out_dir / "report.html", "w", encoding="utf-8"))
            meta = [("model", f"{args.model}  ({ex.input_name} {format_shape(input_shape)} -> {ex.output_name} "
                              f"{format_shape(output_shape)})"),
                    ("target", "predicted class" if target is None else
                     f"position {list(target.index)}" if hasattr(target, "index") else f"class {target}"),
                    ("preprocessing", _prep_text(prep)),
                    ("inputs", f"{len(items)}")]
            report = HtmlReport(handle, title=f"onnxlrp: {Path(args.model).name}", meta=meta,
                                methods=[(m.name, m.full) for m in methods], cmap=args.cmap)
        progress = stack.enter_context(Progress(len(items), "inputs", enabled=False if args.quiet else None))
        for run in (run for chunk in batches(items, batch_size)
                    for run in budget_runs(ex.session, chunk, prep, static_batch)):
            # checked against the memory budget from the headers; decoded only now
            loaded = [load_sample(item, prep, layout, input_dtype) for item in run]
            # images of a dynamic-size model may differ in size: run each same-shape run as its own batch
            for group in same_shape_runs(list(zip(run, loaded))):
                x = np.stack([sample for _, (sample, _) in group])
                if static_batch is not None and len(x) < static_batch:
                    x = np.concatenate([x, np.repeat(x[-1:], static_batch - len(x), axis=0)])
                fixed = feeds_for(feeds, len(x))
                results = {m.name: ex.explain(x, method=runs[m.name], target=target, feeds=fixed, **m.params)
                           for m in methods}
                for i, (item, (_, picture)) in enumerate(group):
                    entry, card_row = write_outputs(out_dir, item, i, picture, results, labels, args, layout,
                                                    report, lrp_methods)
                    summary_inputs.append(entry)
                    if len(rows) < 20:
                        rows.append(card_row)
                del x, results
                progress.update(len(group))
            del loaded
        if report is not None:
            report.close(footer=f"Made by onnxlrp {version()}.")
        summary = {
            "onnxlrp": {"version": version(), "command": "explain"},
            "model": {"path": str(args.model), "sha256": _sha256(args.model), "input": {
                "name": ex.input_name, "shape": list(input_shape), "dtype": str(input_dtype)},
                "output": {"name": ex.output_name, "shape": list(output_shape)}},
            "device": args.device, "dtype": args.dtype,
            "methods": [{"name": m.name, "params": m.full} for m in methods],
            "target": "pred" if target is None else list(target.index) if hasattr(target, "index") else target,
            "labels": args.labels, "cmap": args.cmap,
            "preprocessing": None if prep is None else prep.to_dict(),
            "inputs": summary_inputs,
            "report": "report.html" if args.report else None,
            "elapsed_s": round(time.monotonic() - t0, 3),
            "warnings": log.summary() if (log := getattr(args, "warning_log", None)) is not None else [],
        }
        fileio.write_text(out_dir / "summary.json", json.dumps(jsonable(summary), indent=2) + "\n")
    if not args.quiet:
        print_done(rows, out_dir, len(items), [m.name for m in methods], args.report, time.monotonic() - t0)
    return 0


def _prep_text(prep: Preprocessing | None) -> str:
    if prep is None:
        return "none (.npy arrays used as given)"
    size = "keep" if prep.height is None else f"{prep.height}x{prep.width}"
    mean = ",".join(f"{m:g}" for m in prep.mean)
    std = ",".join(f"{s:g}" for s in prep.std)
    preset = f"--preprocess {prep.preset}: " if prep.preset else ""
    order = ", RGB -> BGR" if prep.channel_order == "BGR" else ""
    return (f"{preset}{'greyscale' if prep.channels == 1 else 'RGB'}, resize {size}, x = pixel * {prep.scale:.6g}"
            f"{order}, (x - {mean}) / {std}, {prep.layout}")


def _sha256(path: str) -> str | None:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()
