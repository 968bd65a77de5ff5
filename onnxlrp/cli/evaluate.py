"""``onnxlrp evaluate``: explain inputs with several methods and measure how faithful each method's maps are.

Inputs are read and explained batch by batch (``--batch-size``, within the memory budget), and every measure
(``--metric``, :data:`onnxlrp.evaluate.suite.METRICS`) runs on each batch; per-sample values and curves are kept,
the maps are not, so memory is bounded by the batch. Written to ``--out``:

- ``evaluation.csv``: one row per method, measure and input (the per-sample value);
- ``summary.csv``: per measure and method the mean, standard deviation, count and rank (1 is best);
- ``evaluation.json``: all of it, with the measures' parameters, mean curves and the random order's values;
- ``curves/MEASURE.png``: the mean curve of each method, the random order dashed in grey;
- with ``--report``, ``report.html``: the methods ranked for this model, the tables and the curves;
- with several ``--target`` or ``--contrast`` values, ``--views`` or ``--split-sign``: ``views/NAME.png`` per input
  (a row per target, a tile per method and contrast; positive and negative relevance apart with ``--split-sign``).

Each method is evaluated per target and, for contrastive methods, per contrast class: a *variant* (``METHOD@T``,
``METHOD vs Q``), ranked like a method.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import limits
from ..errors import InputFileError, ModelLoadError, UsageError
from ..inputs import images
from . import files as fileio
from .args import parse_sets, resolve_methods, version
from .inputs import (
    batches,
    budget_runs,
    check_labels_path,
    expand_inputs,
    image_preprocessing,
    load_sample,
    open_explainer,
    plan_items,
    read_labels,
    resolve_target,
    same_shape_runs,
)
from .outputs import jsonable
from .progress import Progress


def parse_metrics(spec: str, sets: list[str]):
    from ..evaluate.suite import METRICS
    names = [n.strip() for n in spec.split(",") if n.strip()]
    unknown = [n for n in names if n not in METRICS]
    if not names or unknown:
        raise UsageError(f"unknown metric {unknown[0]!r}; metrics are: {', '.join(METRICS)}" if unknown else
                         f"no metric given; metrics are: {', '.join(METRICS)}")
    params: dict[str, dict] = {n: {} for n in names}
    for scope, key, value in parse_sets(sets):
        targets = [scope] if scope else [n for n in names if key in METRICS[n].params]
        if scope is not None and scope not in names:
            raise UsageError(f"--metric-set {scope}.{key}: {scope!r} is not among the chosen metrics")
        if not targets or key not in METRICS[targets[0]].params:
            raise UsageError(f"--metric-set {key}: no chosen metric takes {key!r}")
        for name in targets:
            params[name][key] = value
    return [(METRICS[n], params[n]) for n in names]


@dataclass(frozen=True)
class Variant:
    """One evaluated map family: a method explained for one target (``None``: the prediction) and, for contrastive
    methods, one contrast class. ``name`` is what the tables and curves call it."""

    name: str
    method: str
    params: dict
    full: dict
    target: int | None
    target_label: str
    contrast_label: str | None


def _classes(spec: str, labels, output_shape, output_name: str, option: str, allow_pred: bool):
    """``--target``/``--contrast`` lists: comma-separated class indices or labels (``pred`` for the prediction)."""
    found = []
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        if not allow_pred and part.lower() in ("pred", "predicted", "argmax"):
            raise UsageError(f"{option} takes class indices or labels, not {part!r}")
        value = resolve_target(part, labels, output_shape, output_name)
        if value is not None and not isinstance(value, int):
            raise UsageError(f"{option} takes one class per value: 'pred', a class index or a label")
        shown = "pred" if value is None else (labels[value] if labels is not None else str(value))
        found.append((value, shown))
    if not found:
        raise UsageError(f"{option} is empty")
    return found


def _variants(args, methods, labels, output_shape, output_name: str) -> list[Variant]:
    targets = _classes(args.target, labels, output_shape, output_name, "--target", True)
    contrasts = [] if args.contrast is None else _classes(args.contrast, labels, output_shape, output_name,
                                                          "--contrast", False)
    if contrasts and not any("contrast" in m.method.params for m in methods):
        raise UsageError("--contrast needs a contrastive method (clrp1, clrp2, contrastive_grad_cam, ...)")
    variants = []
    for chosen in methods:
        qs = contrasts if contrasts and "contrast" in chosen.method.params else [(None, None)]
        for target, shown in targets:
            for q, q_shown in qs:
                name = chosen.name + (f"@{shown}" if len(targets) > 1 else "") + (f" vs {q_shown}" if q_shown else "")
                extra = {} if q is None else {"contrast": q}
                variants.append(Variant(name, chosen.name, {**chosen.params, **extra}, {**chosen.full, **extra},
                                        target, shown, q_shown))
    return variants


def cmd_evaluate(args: argparse.Namespace) -> int:
    limits.check_file(args.model, "model", ModelLoadError, "model file")
    if args.labels is not None:
        check_labels_path(args.labels)
    files = expand_inputs(args.inputs)
    _check_size(args.size)
    methods = resolve_methods(args.method, args.sets)
    metrics = parse_metrics(args.metric, args.metric_sets)
    if any(m.needs_masks for m, _ in metrics) and not args.masks:
        names = ", ".join(m.name for m, _ in metrics if m.needs_masks)
        raise UsageError(f"{names} need(s) a mask per input: pass --masks DIR")
    out_dir, created = fileio.make_output_dir(args.out)
    try:
        return _evaluate(args, methods, metrics, files, out_dir)
    except BaseException:
        fileio.remove_created(created)
        raise


def _check_size(size) -> None:
    """Refuse a ``--size`` whose images would exceed the image pixel limit (as ``explain`` does)."""
    if size is not None and size[0] * size[1] > limits.image_pixel_limit():
        raise UsageError(f"--size {size[0]} {size[1]} makes images of {size[0] * size[1]:,} pixels, over the limit "
                         f"of {limits.image_pixel_limit():,} pixels")


def _prep_text(prep) -> str:
    if prep is None:
        return "none (.npy arrays used as given)"
    size = "keep" if prep.height is None else f"{prep.height}x{prep.width}"
    return (f"{'greyscale' if prep.channels == 1 else 'RGB'}, resize {size}, x = pixel * {prep.scale:.6g}, "
            f"(x - {','.join(f'{m:g}' for m in prep.mean)}) / {','.join(f'{v:g}' for v in prep.std)}, {prep.layout}")


def _mask_for(folder: Path, name: str, shape: tuple[int, int]) -> np.ndarray:
    """The mask of input ``name``: ``NAME.npy`` (non-zero inside) or ``NAME.png`` (bright inside), resized to the
    input's height and width (nearest neighbour)."""
    from PIL import Image
    for suffix in (".npy", ".png"):
        path = folder / f"{name}{suffix}"
        if path.is_file():
            limits.check_file(path, "array" if suffix == ".npy" else "image", InputFileError, "mask")
            if suffix == ".npy":
                mask = np.load(path, allow_pickle=False).astype(bool)
                mask = mask.reshape(mask.shape[-2:]) if mask.size == np.prod(mask.shape[-2:]) else mask
                picture = Image.fromarray(mask.astype(np.uint8) * 255)
            else:
                picture = Image.open(path).convert("L")
            picture = picture.resize((shape[1], shape[0]), Image.NEAREST)
            return np.asarray(picture) > 127
    raise InputFileError(f"no mask for input {name!r} in {str(folder)!r} (expected {name}.npy or {name}.png)")


def _evaluate(args, methods, metrics, files, out_dir: Path) -> int:
    from ..evaluate.common import channel_axis
    from ..evaluate.model import ModelRunner
    from ..evaluate.suite import Context, random_baseline, run_metric

    t0 = time.monotonic()
    ex = open_explainer(args)
    input_shape, output_shape = tuple(ex.input_shape), tuple(ex.output_shape)
    classes = output_shape[-1] if output_shape and isinstance(output_shape[-1], int) else None
    labels = read_labels(args.labels, classes)
    variants = _variants(args, methods, labels, output_shape[1:], ex.output_name)
    draw_views = args.views or args.split_sign or len({v.target_label for v in variants}) > 1 or args.contrast
    shown_views: list[tuple[str, bytes]] = []
    input_dtype = np.dtype(ex.input_dtype)
    prep = image_preprocessing(args, files, input_shape)
    layout = prep.layout if prep is not None else (args.layout or images.image_layout_from_shape(input_shape))
    items = plan_items(files, input_shape, input_dtype, ex.input_name)
    runner = ModelRunner(ex.session)
    static_batch = input_shape[0] if input_shape and isinstance(input_shape[0], int) else None
    # results[metric][method] -> {"values": [...], "curves": [...], "inputs": [...]}; random[metric] likewise
    results = {m.name: {c.name: {"values": [], "curves": [], "inputs": [], "extra": {}, "better": None}
                        for c in variants} for m, _ in metrics}
    random = {m.name: {"values": [], "curves": []} for m, _ in metrics if m.random_baseline}
    steps: dict[str, np.ndarray] = {}
    masks_dir = Path(args.masks) if args.masks else None
    with Progress(len(items), "inputs", enabled=False if args.quiet else None) as progress:
        for run in (r for chunk in batches(items, args.batch_size) for r in budget_runs(ex.session, chunk, prep,
                                                                                         static_batch)):
            loaded = [load_sample(item, prep, layout, input_dtype) for item in run]
            for group in same_shape_runs(list(zip(run, loaded))):
                x = np.stack([sample for _, (sample, _) in group])
                names = [item.name for item, _ in group]
                masks = None
                if masks_dir is not None:
                    axis = channel_axis(x, layout if x.ndim == 4 else None)
                    hw = tuple(d for i, d in enumerate(x.shape[1:], start=1) if i != axis)[-2:]
                    masks = np.stack([_mask_for(masks_dir, n, hw) for n in names])
                first, maps = None, {}
                for chosen in variants:
                    fed = x  # a model with a fixed batch size gets exactly that many rows (the last repeated)
                    if static_batch is not None and len(x) < static_batch:
                        fed = np.concatenate([x, np.repeat(x[-1:], static_batch - len(x), axis=0)])
                    res = ex.explain(fed, method=chosen.method, target=chosen.target, **chosen.params)
                    ctx = Context(ex, runner, x, res.target[:len(x)], res.relevance[:len(x)], chosen.method,
                                  chosen.params, masks, args.seed, layout if x.ndim == 4 else None)
                    if draw_views:
                        maps[chosen.name] = res.relevance[:len(x)]
                    first = first or ctx
                    for metric, params in metrics:
                        scores = run_metric(metric, ctx, params)
                        slot = results[metric.name][chosen.name]
                        slot["values"].extend(np.asarray(scores.values, dtype=np.float64).tolist())
                        slot["inputs"].extend(names)
                        slot["better"] = scores.higher_is_better
                        if scores.curve is not None:
                            slot["curves"].append(scores.curve)
                            steps.setdefault(metric.name, scores.steps)
                        if "layers" in scores.extra:
                            slot["extra"]["layers"] = scores.extra["layers"]
                for metric, params in metrics:
                    if metric.random_baseline and first is not None:
                        base = random_baseline(metric, first, params)
                        if base is not None:
                            random[metric.name]["values"].extend(np.asarray(base.values, np.float64).tolist())
                            if base.curve is not None:
                                random[metric.name]["curves"].append(base.curve)
                if draw_views:  # the report shows the first 12 inputs' views; the rest are files only
                    shown_views += _write_views(out_dir, group, variants, maps, layout, args)[:12 - len(shown_views)]
                progress.update(len(group))
    summary = _write(out_dir, args, ex, variants, metrics, results, random, steps, len(items), prep, t0,
                     shown_views)
    if not args.quiet:
        _print_table(summary, out_dir, args.report, time.monotonic() - t0, len(items))
    return 0


def _stack(curves: list[np.ndarray]) -> np.ndarray | None:
    if not curves or len({c.shape[1] for c in curves}) != 1:
        return None
    return np.concatenate(curves, axis=0)


def _write(out_dir, args, ex, methods, metrics, results, random, steps, count, prep, t0, shown_views) -> dict:
    from ..views import imaging
    from ..views.plots import GREY, Series, line_plot
    from ..views.report import MetricView, evaluation_section, views_section

    table, rows, views, ranks = [], [], [], {c.name: [] for c in methods}
    json_metrics = {}
    for metric, params in metrics:
        stats = []
        for chosen in methods:
            values = np.asarray(results[metric.name][chosen.name]["values"], dtype=np.float64)
            finite = values[np.isfinite(values)]
            stats.append((chosen.name, float(finite.mean()) if finite.size else float("nan"),
                          float(finite.std()) if finite.size else float("nan"), int(finite.size)))
        better = results[metric.name][methods[0].name]["better"]
        order = [s for s in stats if s[1] == s[1]]
        order.sort(key=lambda s: -s[1] if better else s[1])
        rank_of = {s[0]: i + 1 for i, s in enumerate(order)} if better is not None else {}
        for name, rank in rank_of.items():
            ranks[name].append(rank)
        rand = random.get(metric.name, {}).get("values") or []
        rand_mean = float(np.nanmean(rand)) if rand else None
        series, mean_curves = [], {}
        for chosen in methods:
            curve = _stack(results[metric.name][chosen.name]["curves"])
            if curve is not None:
                mean_curves[chosen.name] = curve.mean(axis=0)
                series.append(Series(chosen.name, steps[metric.name], mean_curves[chosen.name]))
        random_curve = _stack(random.get(metric.name, {}).get("curves") or [])
        if random_curve is not None and series:
            series.append(Series("random order", steps[metric.name], random_curve.mean(axis=0), GREY, dashed=True))
        plot_png = None
        if series:
            xlabel = {"fraction": "fraction of pixels removed", "step": "patches removed",
                      "layer": "layers randomised (from the output)"}[metric.axis]
            if metric.name == "insertion":
                xlabel = "fraction of pixels inserted"
            if metric.name == "road":
                xlabel = "fraction of pixels imputed"
            output = params.get("output") or metric.params.get("output", "logit")
            ylabel = "Spearman correlation" if metric.name == "mprt" else f"f_c ({output})"
            plot = line_plot(series, title=metric.name, xlabel=xlabel, ylabel=ylabel)
            plot_png = imaging.png_bytes(plot)
            fileio.make_output_dir(out_dir / "curves", "--out")
            fileio.write_bytes(out_dir / "curves" / f"{metric.name}.png", plot_png)
        for name, mean, std, n in stats:
            table.append([metric.name, name, mean, std, n, rank_of.get(name, ""),
                          {True: "higher", False: "lower", None: ""}[better]])
            for inp, value in zip(results[metric.name][name]["inputs"], results[metric.name][name]["values"]):
                rows.append([name, metric.name, inp, value])
        views.append(MetricView(metric.name, metric.description, better,
                                [(n, m, s, k, rank_of.get(n)) for n, m, s, k in stats], rand_mean, plot_png))
        json_metrics[metric.name] = {
            "family": metric.family, "description": metric.description, "params": {**metric.params, **params},
            "better": {True: "higher", False: "lower", None: None}[better], "steps": steps.get(metric.name),
            "random": None if rand_mean is None else {"mean": rand_mean, "values": rand, "mean_curve":
                                                      None if random_curve is None else random_curve.mean(axis=0)},
            "methods": {n: {"mean": m, "std": s, "count": k, "rank": rank_of.get(n),
                            "values": results[metric.name][n]["values"], "inputs": results[metric.name][n]["inputs"],
                            "mean_curve": mean_curves.get(n), **results[metric.name][n]["extra"]}
                        for n, m, s, k in stats}}
    overall = sorted(((n, float(np.mean(r))) for n, r in ranks.items() if r), key=lambda t: t[1])
    fileio.write_text(out_dir / "summary.csv", _csv(["metric", "method", "mean", "std", "n", "rank", "better"],
                                                    table))
    fileio.write_text(out_dir / "evaluation.csv", _csv(["method", "metric", "input", "value"], rows))
    summary = {"onnxlrp": {"version": version(), "command": "evaluate"},
               "model": {"path": str(args.model), "input": ex.input_name, "output": ex.output_name},
               "methods": [{"name": c.name, "method": c.method, "params": c.full, "target": c.target_label,
                            "contrast": c.contrast_label} for c in methods],
               "target": args.target, "seed": args.seed, "inputs": count,
               "preprocessing": None if prep is None else prep.to_dict(),
               "ranking": [{"method": n, "mean_rank": r} for n, r in overall], "metrics": json_metrics,
               "elapsed_s": round(time.monotonic() - t0, 3)}
    fileio.write_text(out_dir / "evaluation.json", json.dumps(jsonable(summary), indent=2) + "\n")
    if args.report:
        from ..views.report import HtmlReport
        with fileio.atomic_write(out_dir / "report.html", "w", encoding="utf-8") as handle:
            report = HtmlReport(handle, title=f"onnxlrp evaluate: {Path(args.model).name}",
                                meta=[("model", f"{args.model} ({ex.input_name} -> {ex.output_name})"),
                                      ("target", "predicted class" if args.target == "pred" else args.target),
                                      ("preprocessing", _prep_text(prep)), ("inputs", str(count)),
                                      ("seed", str(args.seed))],
                                methods=[(c.name, c.full) for c in methods], cmap="bwr")
            report.add_section(evaluation_section(views, overall, count))
            if shown_views:
                report.add_section(views_section(shown_views[:12], split_sign=args.split_sign))
            report.count = count  # the footer counts inputs; this report has no per-input cards
            report.close(footer=f"Made by onnxlrp {version()}.")
    return summary


def _csv(header: list[str], rows: list[list]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([f"{v:.6g}" if isinstance(v, float) else v for v in row])
    return buffer.getvalue()


def _print_table(summary: dict, out_dir: Path, report: bool, elapsed: float, count: int) -> None:
    methods = [m["name"] for m in summary["methods"]]
    width = max(12, *(len(m) for m in methods))
    print(f"{'metric':<26}" + "".join(f"{m:>{width + 2}}" for m in methods))
    for name, info in summary["metrics"].items():
        cells = "".join(f"{info['methods'][m]['mean']:>{width + 2}.4g}" for m in methods)
        better = info["better"]
        print(f"{name:<26}{cells}  {'(' + better + ' is better)' if better else ''}")
    if summary["ranking"]:
        print("ranking: " + ", ".join(f"{i + 1}. {r['method']} ({r['mean_rank']:.2f})"
                                      for i, r in enumerate(summary["ranking"])))
    print(f"evaluated {count} input{'s' if count != 1 else ''} in {elapsed:.1f} s")
    print(f"wrote {out_dir}/: summary.csv, evaluation.csv, evaluation.json, curves/*.png")
    if report:
        print(f"report: {out_dir / 'report.html'}")


def _write_views(out_dir: Path, group, variants, maps: dict, layout, args) -> list[tuple[str, bytes]]:
    """``views/NAME.png`` per input: one row per target, one tile per method and contrast (``--split-sign``: its
    positive and negative parts); returns ``(name, png)`` of the first inputs for the report."""
    from ..views import imaging
    from ..views.multiclass import class_grid

    shown = []
    fileio.make_output_dir(out_dir / "views", "--out")
    targets = list(dict.fromkeys(v.target_label for v in variants))
    for i, (item, (sample, picture)) in enumerate(group):
        if picture is None:
            picture = imaging.array_picture(sample, layout)
        rows = []
        for target in targets:
            tiles = [(v.method + (f" vs {v.contrast_label}" if v.contrast_label else ""),
                      imaging.relevance_map(maps[v.name][i], layout)) for v in variants if v.target_label == target]
            rows.append((f"target {target}", tiles))
        png = imaging.png_bytes(class_grid(rows, picture, cmap=args.cmap, split_sign=args.split_sign))
        fileio.write_bytes(out_dir / "views" / f"{item.name}.png", png)
        shown.append((item.name, png))
    return shown
