"""``onnxlrp diff``: explanation drift between two exports of one model, over a dataset.

The same rows of DATA go through model A (the reference) and model B, both explained with ``--method``
(:func:`onnxlrp.audit.drift.compare`, a batch of rows at a time), and ``--out`` gets:

- ``diff.parquet``: one row per input: row, source, label, error (an input that could not be read), prediction
  A/B, agree, the explained class and its score A/B, ΣR A/B, the Spearman correlation and the top-k overlap of the
  two maps; written batch by batch;
- ``diff.json``: the summary (:func:`onnxlrp.audit.drift.summarize`), the two models (opset, input and output types,
  weight types, quantisation ops), the method, the least similar inputs;
- ``report.html``: the summary, the histogram of Spearman correlations, per-class agreement and the least similar
  inputs with their pictures and both maps (:mod:`onnxlrp.views.drift_report`).

The two models must explain inputs of one shape into the same number of classes; anything else is refused before
any input is read.
"""
from __future__ import annotations

import argparse
import collections
import json
import time
from pathlib import Path

import numpy as np

from .. import limits
from ..audit.dataset import pyarrow
from ..audit.run import file_digest
from ..errors import ModelLoadError, UsageError
from ..inputs.images import format_shape, image_layout_from_shape
from . import files as fileio
from .args import one_method, version
from .datasets import open_dataset
from .inputs import check_labels_path, open_explainer, read_labels
from .outputs import jsonable
from .progress import Progress

#: op types that mark a quantised graph, counted in diff.json
QUANT_OPS = ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QLinearConv", "QLinearMatMul",
             "MatMulInteger", "ConvInteger", "QGemm", "MatMulNBits")


def cmd_diff(args: argparse.Namespace) -> int:
    for path in (args.model_a, args.model_b):
        limits.check_file(path, "model", ModelLoadError, "model file")
    if args.labels is not None:
        check_labels_path(args.labels)
    chosen = one_method(args, "diff")
    from ..audit.drift import top_k_count
    top_k_count(args.top_k, 1)  # a bad --top-k is refused before anything loads
    pyarrow("writing diff.parquet")
    out_dir, created = fileio.make_output_dir(args.out)
    try:
        return _diff(args, chosen, out_dir)
    except BaseException:
        fileio.remove_created(created)
        raise


def _explainers(args: argparse.Namespace):
    """The explainers of A and B, checked to explain inputs of one shape into the same number of classes."""
    a = open_explainer(argparse.Namespace(**{**vars(args), "model": args.model_a}))
    b = open_explainer(argparse.Namespace(**{**vars(args), "model": args.model_b}))
    shape_a, shape_b = tuple(a.input_shape), tuple(b.input_shape)
    if len(shape_a) != len(shape_b) or any(isinstance(p, int) and isinstance(q, int) and p != q
                                           for p, q in zip(shape_a, shape_b)):
        raise UsageError(f"the models' explained inputs differ in shape: A {a.input_name!r} {format_shape(shape_a)}, "
                         f"B {b.input_name!r} {format_shape(shape_b)}; diff compares two exports of one model")
    kinds = {np.dtype(ex.input_dtype).kind == "f" for ex in (a, b)}
    if len(kinds) > 1:
        raise UsageError(f"the models' explained inputs differ in type: A {a.input_dtype}, B {b.input_dtype}")
    classes = [ex.output_shape[-1] if ex.output_shape and isinstance(ex.output_shape[-1], int) else None
               for ex in (a, b)]
    if len(a.output_shape) != len(b.output_shape) or None not in classes and classes[0] != classes[1]:
        raise UsageError(f"the models' explained outputs differ: A {a.output_name!r} {format_shape(a.output_shape)}, "
                         f"B {b.output_name!r} {format_shape(b.output_shape)}; diff needs the same classes")
    return a, b, classes[0] if classes[0] is not None else classes[1]


def model_description(explainer, path: str) -> dict:
    """What ``diff.json`` says of a model: file, opsets, explained input and output with their types, how many
    weights of each type, and the quantisation ops it holds."""
    info = explainer.model_info()
    proto = explainer.graph.model
    import onnx
    weights = collections.Counter(onnx.helper.tensor_dtype_to_np_dtype(t.data_type).name
                                  for t in proto.graph.initializer)
    ops = collections.Counter(n.op_type for n in proto.graph.node if n.op_type in QUANT_OPS)
    outputs = {name: dtype for name, _, dtype in info["outputs"]}
    return {"path": path, "sha256": file_digest(path), "opset": info["opset"], "producer": info["producer"],
            "input": {"name": explainer.input_name, "shape": list(explainer.input_shape),
                      "dtype": str(explainer.input_dtype)},
            "output": {"name": explainer.output_name, "shape": list(explainer.output_shape),
                       "dtype": outputs.get(explainer.model_output_name)},
            "weights": dict(sorted(weights.items())), "quantisation_ops": dict(sorted(ops.items()))}


def _diff(args: argparse.Namespace, chosen, out_dir: Path) -> int:
    from ..audit.drift import COLUMNS, LeastSimilar, compare, summarize, top_k_count
    pa, pq = pyarrow("writing diff.parquet")
    t0 = time.monotonic()
    ex_a, ex_b, classes = _explainers(args)
    labels = read_labels(args.labels, classes)
    dataset = open_dataset(args, ex_a, labels)
    names = labels or dataset.class_names
    layout = dataset.prep.layout if dataset.prep is not None else image_layout_from_shape(ex_a.input_shape)
    features = int(np.prod([d for d in ex_a.input_shape[1:] if isinstance(d, int)]) or 1)
    keep = LeastSimilar(args.worst)
    kept: dict[str, list] = {name: [] for name in COLUMNS}
    all_labels, read = [], []
    schema = pa.schema([("row", pa.int64()), ("source", pa.string()), ("label", pa.int64()), ("error", pa.string()),
                        *[(name, pa.int64() if name.startswith(("prediction", "class")) else
                           pa.bool_() if name == "agree" else pa.float64()) for name in COLUMNS]])
    with fileio.atomic_write(out_dir / "diff.parquet", "wb") as handle, \
            Progress(len(dataset), "inputs", enabled=False if args.quiet else None) as progress:
        writer = pq.ParquetWriter(handle, schema)
        for batch in compare(ex_a, ex_b, dataset, chosen.name, chosen.params, args.top_k, args.batch_size,
                             target=args.target, keep=keep, layout=layout):
            ok = batch.read
            data = {"row": pa.array(np.arange(batch.start, batch.stop), pa.int64()),
                    "source": pa.array(batch.sources, pa.string()),
                    "label": pa.array(batch.labels, pa.int64(), mask=batch.labels < 0),
                    "error": pa.array(batch.errors, pa.string())}
            for name in COLUMNS:
                values = batch.columns[name]
                missing = ~ok | (np.isnan(values) if values.dtype.kind == "f" else values < 0)
                data[name] = pa.array(values.astype(bool) if name == "agree" else values, schema.field(name).type,
                                      mask=missing)
                kept[name].append(values)
            writer.write_table(pa.table(data, schema=schema))
            all_labels.append(batch.labels)
            read.append(ok)
            progress.update(batch.stop - batch.start)
        writer.close()
    columns = {name: np.concatenate(parts) for name, parts in kept.items()}
    summary = summarize(columns, np.concatenate(all_labels), np.concatenate(read))
    examples = keep.examples()
    k = top_k_count(args.top_k, features)
    models = {"a": model_description(ex_a, args.model_a), "b": model_description(ex_b, args.model_b)}
    result = {"onnxlrp": {"version": version(), "command": "diff"}, "models": models,
              "method": {"name": chosen.name, "params": chosen.full}, "target": args.target,
              "top_k": {"option": args.top_k, "features": k, "of": features},
              "data": list(args.data), "labels": args.labels, "class_names": names,
              "preprocessing": None if dataset.prep is None else dataset.prep.to_dict(),
              "device": args.device, "dtype": args.dtype, "backend": args.backend, **summary,
              "least_similar": [{"row": e.row, "source": e.source, **e.values} for e in examples],
              "elapsed_s": round(time.monotonic() - t0, 3),
              "warnings": log.summary() if (log := getattr(args, "warning_log", None)) is not None else []}
    fileio.write_text(out_dir / "diff.json", json.dumps(jsonable(result), indent=2) + "\n")
    _write_report(out_dir / "report.html", result, examples, names, layout, getattr(args, "cmap", None))
    if not args.quiet:
        _print_summary(result, out_dir, time.monotonic() - t0)
    return 0


def _print_summary(result: dict, out_dir: Path, seconds: float) -> None:
    rho, overlap = result["spearman"], result["top_k_overlap"]
    explained = result["explained"]
    print(f"compared {explained} input(s) in {seconds:.1f} s under {result['method']['name']}"
          + (f" ({result['unreadable']} could not be read)" if result["unreadable"] else ""))
    if explained:
        print(f"  predictions agree on {explained - result['disagreements']}/{explained} "
              f"({result['agreement']:.1%})")
    for name, stats in (("Spearman", rho), (f"top-{result['top_k']['features']} overlap", overlap)):
        if stats["mean"] is not None:
            print(f"  {name}: mean {stats['mean']:.4f}, median {stats['quantiles']['0.5']:.4f}, "
                  f"5% {stats['quantiles']['0.05']:.4f}, min {stats['min']:.4f}"
                  + (f" ({stats['undefined']} undefined)" if stats["undefined"] else ""))
    if result["least_similar"]:
        worst = result["least_similar"][0]
        print(f"  least similar: row {worst['row']} ({worst['source']}), Spearman {worst['spearman']:.4f}")
    print(f"wrote {out_dir / 'diff.parquet'}, diff.json, report.html")


def _class_name(index: int, names) -> str:
    name = names[index] if names and 0 <= index < len(names) else None
    return f"{index} ({name})" if name is not None and name != str(index) else str(index)


def _write_report(path: Path, result: dict, examples, names, layout: str | None, cmap: str | None) -> None:
    from ..views.drift_report import DriftPage, ExampleView, drift_page
    from ..views.imaging import DEFAULT_CMAP, array_picture
    a, b = result["models"]["a"], result["models"]["b"]

    def model_text(m: dict) -> str:
        weights = ", ".join(f"{n} {t}" for t, n in m["weights"].items()) or "none"
        quant = ", ".join(f"{n} {op}" for op, n in m["quantisation_ops"].items())
        return (f"{m['path']}: opset {m['opset'].get('', m['opset'])}, input {m['input']['dtype']}, output "
                f"{m['output']['dtype']}, weights {weights}" + (f", {quant}" if quant else ""))

    method = result["method"]
    meta = [("model A (reference)", model_text(a)), ("model B", model_text(b)),
            ("method", method["name"] + "".join(f" {k}={v}" for k, v in method["params"].items())),
            ("explained class", "model A's prediction, for both" if result["target"] == "ref" else
             "each model's own prediction"),
            ("data", ", ".join(result["data"])), ("inputs", str(result["rows"]))]
    rho, overlap, k = result["spearman"], result["top_k_overlap"], result["top_k"]
    summary = []
    if result["agreement"] is not None:
        summary.append(("prediction agreement", f"{result['agreement']:.2%} ({result['disagreements']} differ)"))
    for key, who in (("a", "A"), ("b", "B")):
        if "accuracy" in result:
            summary.append((f"accuracy of {who} ({result['accuracy']['labelled']} labelled)",
                            f"{result['accuracy'][key]:.2%}"))
    for name, stats in (("Spearman", rho), (f"top-{k['features']} overlap (of {k['of']} features, |R|)", overlap)):
        if stats["mean"] is None:
            continue
        q = stats["quantiles"]
        summary.append((f"{name}: mean / median", f"{stats['mean']:.4f} / {q['0.5']:.4f}"))
        summary.append((f"{name}: 5% / 25% / 75% / 95%", " / ".join(f"{q[p]:.4f}" for p in ("0.05", "0.25", "0.75",
                                                                                                "0.95"))))
        summary.append((f"{name}: min", f"{stats['min']:.4f}" + (f" ({stats['undefined']} undefined)"
                                                                 if stats["undefined"] else "")))
    per_class = [(_class_name(int(c), names), v["rows"], v["agreement"], v["spearman_mean"], v["top_k_overlap_mean"])
                 for c, v in sorted(result["per_class"].items())]
    views = []
    for e in examples:
        values = e.values
        picture = e.picture if e.picture is not None else (array_picture(e.sample, layout)
                                                           if e.sample is not None else None)
        numbers = [("label", _class_name(e.label, names) if e.label >= 0 else "unknown"),
                   ("prediction A / B", f"{_class_name(int(values['prediction_a']), names)} / "
                                        f"{_class_name(int(values['prediction_b']), names)}"),
                   ("explained A / B", f"{_class_name(int(values['class_a']), names)} / "
                                       f"{_class_name(int(values['class_b']), names)}"),
                   ("score A / B", f"{values['score_a']:.4g} / {values['score_b']:.4g}"),
                   ("ΣR A / B", f"{values['relevance_sum_a']:.4g} / {values['relevance_sum_b']:.4g}"),
                   ("Spearman", f"{values['spearman']:.4f}"), ("top-k overlap", f"{values['top_k_overlap']:.3f}")]
        views.append(ExampleView(e.row, e.source, numbers, picture, e.map_a, e.map_b,
                                 disagree=values["prediction_a"] != values["prediction_b"]))
    page = DriftPage(f"onnxlrp diff: {Path(a['path']).name} vs {Path(b['path']).name}", meta, summary,
                     result["spearman_histogram"], per_class, views, result["unreadable"], cmap or DEFAULT_CMAP)
    fileio.write_text(path, drift_page(page))
