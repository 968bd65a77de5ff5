"""An audit's strategies: SpRAy (:func:`.spray.spray`) over the stored maps of each method and explained class.

For each method and each class the model explained, the rows of that class are gathered from the table (a seeded
uniform sample of at most ``max_per_class`` when there are more), their maps read from the shards, and clustered.
Only one class's maps are in memory at a time. Per class the result keeps the eigenvalues and eigengap, every
cluster's size, share and distinctness, and its most typical rows (the members nearest the cluster's mean map, each
map scaled by its largest ``|R|``) as examples; ``spray/METHOD/class-C.npz`` holds the clustered rows, their
cluster, the 2-D embedding and the clusters' mean maps for the report and for anyone who wants to look further.
"""
from __future__ import annotations

import numpy as np

from .store import AuditMaps, AuditStore, method_folder, replace_atomically

EXAMPLES = 6


def _scaled(maps: np.ndarray) -> np.ndarray:
    """Each map flattened and divided by its largest ``|R|`` (float32: only the examples' order depends on it)."""
    flat = np.nan_to_num(maps.reshape(len(maps), -1).astype(np.float32))
    peak = np.abs(flat).max(axis=1, keepdims=True)
    np.divide(flat, peak, out=flat, where=peak > 0)
    return flat


def sample_rows(rows: np.ndarray, cap: int, seed: int, cls: int) -> np.ndarray:
    """``rows`` if there are at most ``cap``, else ``cap`` of them drawn uniformly (seeded by ``seed`` and the
    class), in row order."""
    if len(rows) <= cap:
        return rows
    rng = np.random.default_rng([seed, cls])
    return np.sort(rng.choice(rows, size=cap, replace=False))


def find_strategies(store: AuditStore, maps: AuditMaps, plan, *, max_per_class: int = 1000, neighbours: int = 10,
                    max_clusters: int = 8, seed: int = 0, embedding: str = "tsne", min_rows: int = 3):
    """``(report, clusters)``: ``report[method][class]`` as the module docstring says, ``clusters[method]`` the
    cluster of every row (-1 where it was not clustered). Classes with fewer than ``min_rows`` maps are listed
    without clusters."""
    from .spray import spray
    report: dict = {}
    clusters: dict[str, np.ndarray] = {}
    failed = store.failed()
    for m in plan.methods:
        classes = store.column(f"{m.name}.class").astype(np.int64)
        classes[failed] = -1
        assigned = np.full(store.count, -1, dtype=np.int64)
        per_class = {}
        folder = store.out / "spray" / method_folder(m.name)
        for cls in np.unique(classes[classes >= 0]):
            members = np.flatnonzero(classes == cls)
            rows = sample_rows(members, max_per_class, seed, int(cls))
            entry = {"class": int(cls), "rows": int(len(members)), "clustered": int(len(rows)), "clusters": []}
            per_class[int(cls)] = entry
            if len(rows) < min_rows:
                continue
            class_maps = maps.get(m.name, rows)
            result = spray(class_maps, size=plan.map_size, neighbours=neighbours, max_clusters=max_clusters,
                           seed=seed, embedding=embedding)
            assigned[rows] = result.labels
            scaled = _scaled(class_maps)
            entry.update({"n_clusters": int(result.n_clusters), "eigengap": float(result.eigengap),
                          "eigenvalues": [float(v) for v in result.eigenvalues]})
            mean_maps = []
            for c in result.clusters:
                members_at = np.asarray(c.members, dtype=np.int64)
                centre = scaled[members_at].mean(axis=0)
                nearest = members_at[np.argsort(((scaled[members_at] - centre) ** 2).sum(axis=1),
                                                kind="stable")[:EXAMPLES]]
                entry["clusters"].append({"cluster": int(c.index), "size": int(c.size),
                                          "share": float(c.size / len(rows)), "distinctness": float(c.distinctness),
                                          "examples": [int(rows[i]) for i in nearest]})
                mean_maps.append(np.asarray(c.mean_map, dtype=np.float32))
            folder.mkdir(parents=True, exist_ok=True)
            arrays = {"rows": rows, "cluster": np.asarray(result.labels, dtype=np.int64),
                      "embedding": np.asarray(result.embedding, dtype=np.float32),
                      "cluster_index": np.array([c.index for c in result.clusters], dtype=np.int64),
                      "mean_maps": np.stack(mean_maps) if mean_maps else np.zeros((0, 1, 1), np.float32),
                      "eigenvalues": np.asarray(result.eigenvalues, dtype=np.float64)}
            replace_atomically(folder / f"class-{int(cls)}.npz", lambda h, a=arrays: np.savez(h, **a))
        report[m.name] = per_class
        clusters[m.name] = assigned
    return report, clusters
