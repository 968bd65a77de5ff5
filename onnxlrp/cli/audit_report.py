"""``report.html`` and ``spray.json`` of ``onnxlrp audit``: the table, the strategies and example inputs, drawn.

Everything is read back from the audit folder (the Parquet shards, the maps, ``spray/``), so the report of a
resumed run is the report of the whole run. Per method, the :data:`MAX_CLASSES` classes with the most distinct
strategies are drawn in full and the others listed in a table; example inputs are read again from the dataset (a
few per cluster, at most :data:`MAX_EXAMPLES` in all): the page stays small whatever the dataset's size.
"""
from __future__ import annotations

import json

import numpy as np

from ..views import imaging
from ..views.audit_report import ClassView, ClusterView, MethodSection, audit_page, scatter_plot
from ..views.plots import Series, line_plot
from . import files as fileio
from .outputs import jsonable

MAX_EXAMPLES = 240
EXAMPLES_PER_CLUSTER = 6
#: classes drawn in full per method (the most distinct strategies first); the others are one table row each
MAX_CLASSES = 40
#: clusters drawn per class, the most distinct first (a graph of many tiny components can give hundreds)
MAX_CLUSTERS = 12


def _name(index: int, names) -> str:
    return names[index] if names and 0 <= index < len(names) else str(index)


def _example_pictures(plan, result, rows: list[int]) -> dict[int, np.ndarray]:
    """uint8 pictures of ``rows`` as the model saw them (images) or drawn from the arrays (the dataset is opened
    again from the explained input's description; the model is not loaded twice)."""
    from ..audit.dataset import Dataset
    if not rows:
        return {}
    name, shape, dtype = result.input
    dataset = Dataset(plan.data, shape, dtype, name, **plan.dataset_options)
    prep = plan.dataset_options.get("prep")
    layout = prep.layout if prep is not None else None
    pictures = {}
    for row in sorted(set(rows)):
        batch = dataset.read(row, row + 1, pictures=True)
        if batch.x is None:
            continue
        picture = batch.pictures[0] if batch.pictures and batch.pictures[0] is not None else \
            imaging.array_picture(batch.x[0], layout)
        if picture is not None:
            pictures[row] = picture
    return pictures


def write_report(out, plan, result, labels, args) -> None:
    """Write ``spray.json`` and ``report.html`` into ``out``."""
    from ..audit.dataset import pyarrow
    from ..audit.store import AuditMaps
    names = labels or result.class_names
    fileio.write_text(out / "spray.json", json.dumps(jsonable({
        "methods": {m: {str(c): e for c, e in per.items()} for m, per in result.strategies.items()},
        "class_names": names}), indent=1))
    _, pq = pyarrow()
    table = pq.read_table(out / "audit.parquet", columns=["label", "prediction", "error"])
    label = table.column("label").fill_null(-1).to_numpy()
    predicted = table.column("prediction").fill_null(-1).to_numpy()
    failed = int(table.column("error").is_valid().to_numpy(zero_copy_only=False).sum())
    known = (label >= 0) & (predicted >= 0)
    accuracy = float((label[known] == predicted[known]).mean()) if known.any() else None
    classes = int(max(label.max(initial=-1), predicted.max(initial=-1)) + 1)
    matrix = None
    if known.any():
        matrix = np.zeros((classes, classes), dtype=np.int64)
        np.add.at(matrix, (label[known], predicted[known]), 1)
    counts = np.bincount(predicted[predicted >= 0], minlength=max(classes, 0)) if classes > 0 else np.zeros(0)
    maps = AuditMaps(out)
    shown = {method: ranked_classes(per_class)[:MAX_CLASSES] for method, per_class in result.strategies.items()}
    wanted = [row for method, classes_shown in shown.items() for cls in classes_shown
              for c in result.strategies[method][cls].get("clusters", [])[:MAX_CLUSTERS]
              for row in c["examples"][:EXAMPLES_PER_CLUSTER]][:MAX_EXAMPLES]
    pictures = _example_pictures(plan, result, wanted)
    sections = []
    for method, per_class in result.strategies.items():
        views = [_class_view(out, method, cls, per_class[cls], names, maps, pictures) for cls in shown[method]]
        rest = [(_name(int(c), names), e["rows"], e.get("n_clusters"), _top_distinctness(e))
                for c in ranked_classes(per_class)[MAX_CLASSES:] for e in [per_class[c]]]
        sections.append(MethodSection(method, views, _measures(out, plan, method), rest))
    meta = [("model", plan.model), ("data", ", ".join(plan.data)), ("inputs", str(result.rows)),
            ("methods", ", ".join(m.name for m in plan.methods)), ("engine", args.engine),
            ("maps", f"{plan.map_size} x {plan.map_size}, shards of {plan.shard_size} rows (maps/)")]
    page = audit_page("onnxlrp audit", meta, sections, accuracy=accuracy, matrix=matrix,
                      class_names=[_name(i, names) for i in range(classes)],
                      predicted=[(_name(i, names), int(c)) for i, c in enumerate(counts) if c],
                      failed=failed)
    fileio.write_text(out / "report.html", page)


def _top_distinctness(entry: dict) -> float | None:
    """The distinctness of a class's most distinct strategy, ``None`` with fewer than two strategies."""
    clusters = entry.get("clusters", [])
    return max(c["distinctness"] for c in clusters) if len(clusters) > 1 else None


def ranked_classes(per_class: dict) -> list[int]:
    """A method's classes for the report: those with several strategies first, by their most distinct strategy
    (largest first), then the rest by size."""
    def key(cls):
        top = _top_distinctness(per_class[cls])
        return (0, -top, cls) if top is not None else (1, -per_class[cls]["rows"], cls)
    return sorted(per_class, key=key)


def _class_view(out, method, cls, entry, names, maps, pictures) -> ClassView:
    from ..audit.store import method_folder
    view = ClassView(_name(int(cls), names), entry["rows"], entry["clustered"], entry.get("n_clusters"),
                     entry.get("eigengap"))
    if view.n_clusters is None:
        return view
    stored = np.load(out / "spray" / method_folder(method) / f"class-{int(cls)}.npz")
    mean_maps = dict(zip(stored["cluster_index"].tolist(), stored["mean_maps"]))
    view.scatter_png = imaging.png_bytes(scatter_plot(stored["embedding"], stored["cluster"]))
    eigen = stored["eigenvalues"]
    view.eigen_png = imaging.png_bytes(line_plot([Series("eigenvalue", np.arange(1, len(eigen) + 1), eigen)],
                                                 xlabel="index", width=260, height=220))
    for c in entry["clusters"][:MAX_CLUSTERS]:
        mean = mean_maps.get(c["cluster"])
        mean_png = imaging.png_bytes(imaging.zoom(imaging.heatmap_rgb(mean), imaging.zoom_factor(mean.shape, 96)))
        examples = []
        for row in c["examples"][:EXAMPLES_PER_CLUSTER]:
            if row not in pictures:
                continue
            rmap = maps.get(method, [row])[0]
            overlay = imaging.overlay_rgb(pictures[row], rmap)
            examples.append((f"#{row}", imaging.png_bytes(imaging.zoom(overlay, imaging.zoom_factor(
                overlay.shape, 64)))))
        view.clusters.append(ClusterView(c["cluster"], c["size"], c["share"], c["distinctness"], mean_png, examples))
    return view


def _measures(out, plan, method) -> list[tuple[str, float, float, int]]:
    from ..audit.dataset import pyarrow
    _, pq = pyarrow()
    names = [f"{method}.{metric}" for metric, _ in plan.metrics]
    if not names:
        return []
    table = pq.read_table(out / "audit.parquet", columns=names)
    rows = []
    for metric, column in zip(plan.metrics, names):
        values = table.column(column).fill_null(np.nan).to_numpy()
        values = values[np.isfinite(values)]
        if len(values):
            rows.append((metric[0], float(values.mean()), float(values.std()), int(len(values))))
    return rows
