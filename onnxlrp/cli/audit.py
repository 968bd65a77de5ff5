"""``onnxlrp audit``: explain a whole dataset, find each class's strategies with SpRAy, and write a report.

The work is :func:`onnxlrp.audit.run.run_audit` (shards committed one by one, resumable, local or on Ray); this
module turns the options into an :class:`~onnxlrp.audit.compute.AuditPlan`, shows progress, and draws
``report.html`` (:mod:`onnxlrp.views.audit_report`) from the table, the strategies and a few example inputs.
"""
from __future__ import annotations

import argparse
import time

from .. import limits
from ..errors import ModelLoadError, UsageError
from . import files as fileio
from .args import resolve_methods
from .datasets import preprocessing
from .inputs import check_labels_path, open_explainer, read_labels
from .progress import Progress


def cmd_audit(args: argparse.Namespace) -> int:
    from ..audit.compute import AuditPlan, MethodSpec
    from ..audit.run import run_audit
    from .evaluate import parse_metrics

    limits.check_file(args.model, "model", ModelLoadError, "model file")
    if args.labels is not None:
        check_labels_path(args.labels)
    methods = resolve_methods(args.method, args.sets)
    metrics = parse_metrics(args.metric, args.metric_sets) if args.metric else []
    masked = [m.name for m, _ in metrics if m.needs_masks]
    if masked:
        raise UsageError(f"{', '.join(masked)} need(s) a mask per input, which an audit does not take; use "
                         "`onnxlrp evaluate --masks`")
    if args.engine == "local" and args.address:
        raise UsageError("--address joins a Ray cluster: add --engine ray")
    t0 = time.monotonic()
    ex = open_explainer(args)
    output_shape = tuple(ex.output_shape)
    classes = output_shape[-1] if output_shape and isinstance(output_shape[-1], int) else None
    labels = read_labels(args.labels, classes)
    prep = preprocessing(args, ex.input_shape)
    options = {"input_name": args.input_name, "output_name": args.output_name, "device": args.device,
               "dtype": args.dtype, "backend": args.backend}
    if args.memory_budget:
        options["memory_budget"] = args.memory_budget
    plan = AuditPlan(model=args.model, data=tuple(args.data),
                     methods=tuple(MethodSpec(m.name, m.params, m.full) for m in methods),
                     explainer_options=options,
                     dataset_options={"prep": prep, "labels": labels, "column": args.column,
                                      "label_column": args.label_column},
                     metrics=tuple((m.name, p) for m, p in metrics), top_k=args.top_k, map_size=args.map_size,
                     batch_size=args.batch_size, shard_size=args.shard_size, seed=args.seed, target=args.target)
    del ex
    out, created = fileio.make_output_dir(args.out)
    spray = None if args.no_spray else {"max_per_class": args.spray_max, "neighbours": args.spray_neighbours,
                                        "max_clusters": args.spray_max_clusters, "seed": args.seed,
                                        "embedding": args.spray_embedding}
    try:
        with Progress(0, "inputs", enabled=False if args.quiet else None) as progress:
            def on_progress(rows: int, total: int) -> None:
                progress.total = total
                progress.update(rows)

            result = run_audit(plan, out, resume=args.resume, engine=args.engine, num_workers=args.num_workers,
                               address=args.address, spray=spray, on_progress=on_progress)
    except BaseException:
        if not args.resume:
            fileio.remove_created(created)
        raise
    from .audit_report import write_report
    write_report(out, plan, result, labels, args)
    if not args.quiet:
        _print_summary(out, result, labels, time.monotonic() - t0)
    return 0


def _print_summary(out, result, labels, seconds: float) -> None:
    rows = result.rows
    print(f"audited {rows} input(s) in {seconds:.1f} s ({rows / max(seconds, 1e-9):.1f}/s): "
          f"{result.shards_computed} shard(s) computed, {result.shards_resumed} resumed")
    for method, per_class in result.strategies.items():
        found = [(c, e) for c, e in per_class.items() if len(e.get("clusters", [])) > 1]
        text = ", ".join(f"{labels[c] if labels and 0 <= c < len(labels) else c}: {len(e['clusters'])}"
                         for c, e in sorted(found)[:8])
        print(f"  {method}: {len(found)} class(es) with several strategies" + (f" ({text})" if text else ""))
    print(f"wrote {out / 'audit.parquet'}, maps/, spray.json, report.html")
