"""Everything ``explain`` writes per input: the relevance ``.npy``, heatmap, overlay and grid PNGs, the input's
``summary.json`` entry, its ``report.html`` card, and the lines printed to the console. Also :func:`jsonable`, the
JSON conversion every command's ``--json`` uses."""
from __future__ import annotations

import argparse
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..inputs import images
from ..views import imaging
from . import files as fileio
from .args import COLORMAPS, PREPROCESS_PRESETS
from .inputs import Item
from .warnlog import RunWarning

# the parser lists the colour maps without importing numpy (onnxlrp.cli.args); they must be the ones drawn here
assert tuple(imaging.colormap_names()) == COLORMAPS, "onnxlrp.cli.args.COLORMAPS is out of date"
assert set(images.PRESETS) == set(PREPROCESS_PRESETS), "onnxlrp.cli.args.PREPROCESS_PRESETS is out of date"


def _softmax(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(z - z.max())
    return e / e.sum()



def jsonable(obj: Any) -> Any:
    """``obj`` with numpy values, non-finite floats and other objects turned into what JSON can hold."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    if isinstance(obj, np.dtype):
        return str(obj)
    return repr(obj)


def _label(labels: list[str] | None, k: int) -> str | None:
    """The label of flat output index ``k``: labels name the last axis (the classes of each box of a detector)."""
    return labels[k % len(labels)] if labels and k >= 0 else None



def write_outputs(out_dir: Path, item: Item, i: int, picture: np.ndarray | None, results: dict,
                   labels: list[str] | None, args: argparse.Namespace, layout: str | None, report,
                   lrp_methods: set[str]) -> tuple[dict, str]:
    """Write one input's files for every method; return its summary entry and a line for the console."""
    first = next(iter(results.values()))
    split_sign = bool(getattr(args, "split_sign", False))
    logits = np.asarray(first.output[i], dtype=np.float64).reshape(-1)
    probs = _softmax(logits)
    pred = int(np.argmax(logits))
    order = np.argsort(-logits, kind="stable")[: args.top_k]
    top = [{"class": int(k), "label": _label(labels, int(k)), "logit": float(logits[k]),
            "probability": float(probs[k])} for k in order]
    factor = imaging.zoom_factor(picture.shape if picture is not None else
                                 imaging.relevance_map(first.relevance[i], layout).shape)
    pic_zoomed = imaging.zoom(picture, factor) if picture is not None else None
    explanations = []
    views = []
    tiles, titles = [], []
    if pic_zoomed is not None:
        tiles.append(pic_zoomed)
        titles.append(f"input: {_label(labels, pred) or pred}")
    for name, res in results.items():
        rel = np.asarray(res.relevance[i])
        tgt = int(np.asarray(res.target).reshape(-1)[i])
        out_logits = np.asarray(res.output[i], dtype=np.float64).reshape(-1)
        logit = float(out_logits[tgt]) if 0 <= tgt < out_logits.size else float("nan")
        rsum = float(rel.sum(dtype=np.float64))
        if not np.any(rel):
            warnings.warn(RunWarning(f"{item.name}: the {name} relevance is zero everywhere, so its heatmap is "
                                     "blank (no relevance reached the input: check the target and the model)"),
                          stacklevel=2)
        stem = f"{item.name}.{name}"
        files = {"relevance": f"{stem}.npy", "heatmap": f"{stem}.heatmap.png"}
        with fileio.atomic_write(out_dir / files["relevance"]) as fh:
            np.save(fh, rel)
        rmap = imaging.relevance_map(rel, layout)
        heat = imaging.zoom(imaging.heatmap_rgb(rmap, args.cmap), imaging.zoom_factor(rmap.shape))
        heat_png = imaging.png_bytes(heat)
        fileio.write_bytes(out_dir / files["heatmap"], heat_png)
        overlay_png = None
        if picture is not None:
            files["overlay"] = f"{stem}.overlay.png"
            over = imaging.zoom(imaging.overlay_rgb(picture, rmap, args.cmap), factor)
            overlay_png = imaging.png_bytes(over)
            fileio.write_bytes(out_dir / files["overlay"], overlay_png)
        grid_map = rmap
        if pic_zoomed is not None and heat.shape != pic_zoomed.shape:  # keep grid tiles the same size
            grid_map = imaging.resize_map(rmap, picture.shape[:2])
            heat = imaging.zoom(imaging.heatmap_rgb(grid_map, args.cmap), factor)
        tiles.append(heat)
        titles.append(name)
        signs: dict[str, bytes] = {}
        if split_sign:  # the RAP figures: positive and negative relevance apart, each on its own scale
            parts = imaging.split_sign_rgb(rmap, args.cmap)
            grid_parts = imaging.split_sign_rgb(grid_map, args.cmap) if grid_map is not rmap else parts
            for part, rgb, grid_rgb in zip(("positive", "negative"), parts, grid_parts):
                files[part] = f"{stem}.{part}.png"
                signs[part] = imaging.png_bytes(imaging.zoom(rgb, imaging.zoom_factor(rmap.shape)))
                fileio.write_bytes(out_dir / files[part], signs[part])
                tiles.append(imaging.zoom(grid_rgb, factor if pic_zoomed is not None else imaging.zoom_factor(
                    rmap.shape)))
                titles.append(f"{name} {'+' if part == 'positive' else '-'}")
        explanations.append({
            "method": name, "target": tgt, "target_label": _label(labels, tgt), "logit": logit,
            "relevance_sum": rsum, "relevance_sum_over_logit": (rsum / logit) if logit not in (0.0,) and
            math.isfinite(logit) else None, "files": files})
        if report is not None:
            from ..views.report import MethodView
            views.append(MethodView(name, tgt, _label(labels, tgt), logit, rsum, heat_png, overlay_png,
                                    signs.get("positive"), signs.get("negative")))
    entry: dict[str, Any] = {
        "name": item.name, "source": str(item.source), "index_in_file": item.index,
        "predicted": {"class": pred, "label": _label(labels, pred), "logit": float(logits[pred]),
                      "probability": float(probs[pred])},
        "top_k": top, "explanations": explanations}
    if len(results) > 1 or split_sign:
        entry["grid"] = f"{item.name}.grid.png"
        fileio.write_bytes(out_dir / entry["grid"], imaging.png_bytes(imaging.grid(tiles, titles)))
    if report is not None:
        from ..views.report import InputCard
        report.add(InputCard(
            name=item.name, source=str(item.source),
            picture_png=imaging.png_bytes(pic_zoomed) if pic_zoomed is not None else None,
            predicted=pred, predicted_label=_label(labels, pred),
            top=[(t["class"], t["label"], t["logit"], t["probability"]) for t in top], methods=views))
    # LRP starts from the logit, so sum(R)/logit shows how much relevance reached the input (gradients: n/a)
    ratio = "  ".join(f"{e['method']} ΣR/logit {e['relevance_sum_over_logit']:.3f}" for e in explanations
                      if e["method"] in lrp_methods and e["relevance_sum_over_logit"] is not None)
    shown = _label(labels, pred)
    row = (f"{item.name}: predicted {pred}{' (' + shown + ')' if shown and shown != str(pred) else ''} "
           f"p={probs[pred]:.3f}{'; ' + ratio if ratio else ''}")
    return entry, row


def print_done(rows: list[str], out_dir: Path, n: int, methods: list[str], report: bool, elapsed: float) -> None:
    for row in rows:
        print(row)
    if n > len(rows):
        print(f"... {n - len(rows)} more in summary.json")
    per = "relevance .npy, heatmap and overlay PNGs" + (", a grid PNG" if len(methods) > 1 else "")
    print(f"explained {n} input{'s' if n != 1 else ''} with {', '.join(methods)} in {elapsed:.1f} s")
    print(f"wrote {out_dir}/: {per} per input, summary.json")
    if report:
        print(f"report: {out_dir / 'report.html'}")
