"""An audit's output folder, written so that a run killed at any moment resumes with every row exactly once.

Layout of ``DIR``::

    manifest.json               what was asked (model and data fingerprints, methods, sizes): a resume must match
    shards/rows-000012.parquet  the rows of shard 12: written last, its presence commits the shard
    maps/METHOD/000012.npy      shard 12's maps (rows, S, S) float32, NaN for a row that could not be read
    audit.parquet               every row in order (and the SpRAy cluster per method), written when all shards are in

Every file is written under a temporary name in its folder and renamed into place (atomic on POSIX), so a reader
never sees a partial file. A shard's maps are written before its rows, so a committed shard always has its maps; a
shard killed half-way has no rows file and is computed again, overwriting whatever maps it left.
:class:`AuditMaps` reads maps by row: row ``r`` lives in shard ``r // shard_size`` at ``r % shard_size``.
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..errors import InputFileError, UsageError
from .compute import AuditPlan, ShardResult
from .dataset import pyarrow

MANIFEST = "manifest.json"
TABLE = "audit.parquet"
#: bumped when the layout changes: an older folder is not resumed
LAYOUT_VERSION = 1



def method_folder(name: str) -> str:
    """A file-system-safe folder name for a method (its name, other characters replaced by ``_``)."""
    return re.sub(r"[^A-Za-z0-9._+-]", "_", name)


def replace_atomically(path: Path, write) -> None:
    """``write(handle)`` into ``path.tmp-PID`` in the same folder, flushed to disk, then renamed to ``path``."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def schema(plan: AuditPlan, clusters: bool = False):
    """The table's columns and types (the same for every shard, nulls included)."""
    pa, _ = pyarrow("onnxlrp audit")
    fields = [pa.field("row", pa.int64()), pa.field("source", pa.string()), pa.field("label", pa.int64()),
              pa.field("prediction", pa.int64()), pa.field("top_classes", pa.list_(pa.int64())),
              pa.field("top_scores", pa.list_(pa.float64())), pa.field("error", pa.string())]
    for m in plan.methods:
        fields += [pa.field(f"{m.name}.class", pa.int64()), pa.field(f"{m.name}.score", pa.float64()),
                   pa.field(f"{m.name}.relevance_sum", pa.float64())]
        fields += [pa.field(f"{m.name}.{metric}", pa.float64()) for metric, _ in plan.metrics]
        if clusters:
            fields.append(pa.field(f"{m.name}.cluster", pa.int64()))
    return pa.schema(fields)


class AuditStore:
    """The folder ``out`` of an audit described by ``manifest`` (a JSON-ready dict); ``resume`` continues one.

    Raises
    ------
    UsageError
        When ``out`` already holds an audit and ``resume`` is not set, or ``resume`` is set and the folder holds a
        different audit (another model, data, methods or sizes) or none.
    """

    def __init__(self, out: Path, plan: AuditPlan, manifest: dict, count: int, resume: bool):
        self.out, self.plan, self.count = Path(out), plan, int(count)
        self.shards = -(-self.count // plan.shard_size)
        manifest = {**manifest, "layout": LAYOUT_VERSION, "rows": self.count, "shards": self.shards}
        manifest = json.loads(json.dumps(manifest, sort_keys=True, default=repr))  # as it reads back from the file
        path = self.out / MANIFEST
        if path.exists():
            if not resume:
                raise UsageError(f"{str(self.out)!r} already holds an audit: pass --resume to finish it, or choose "
                                 "another --out")
            try:
                found = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                raise InputFileError(f"cannot read {str(path)!r}: {exc}") from None
            changed = sorted(k for k in set(found) | set(manifest) if found.get(k) != manifest.get(k))
            if changed:
                raise UsageError(f"--resume: {str(self.out)!r} holds an audit with a different "
                                 f"{', '.join(changed)}; run the same command, or choose another --out")
        elif resume and any(self.out.iterdir()):
            raise UsageError(f"--resume: {str(self.out)!r} holds no audit (no {MANIFEST})")
        (self.out / "shards").mkdir(parents=True, exist_ok=True)
        for m in plan.methods:
            (self.out / "maps" / method_folder(m.name)).mkdir(parents=True, exist_ok=True)
        for stale in self.out.rglob(".*.tmp-*"):  # left by a run that was killed while writing
            stale.unlink()
        if not path.exists():
            replace_atomically(path, lambda h: h.write(json.dumps(manifest, indent=1, sort_keys=True).encode()))
        self.manifest = manifest

    def rows_file(self, index: int) -> Path:
        return self.out / "shards" / f"rows-{index:06d}.parquet"

    def maps_file(self, method: str, index: int) -> Path:
        return self.out / "maps" / method_folder(method) / f"{index:06d}.npy"

    def done(self) -> list[int]:
        return [k for k in range(self.shards) if self.rows_file(k).exists()]

    def pending(self) -> list[int]:
        return [k for k in range(self.shards) if not self.rows_file(k).exists()]

    def shard_rows(self, index: int) -> int:
        return min(self.plan.shard_size, self.count - index * self.plan.shard_size)

    def commit(self, result: ShardResult) -> None:
        """Write a shard's maps, then its rows (the commit)."""
        pa, pq = pyarrow("onnxlrp audit")
        for name, maps in result.maps.items():
            replace_atomically(self.maps_file(name, result.index), lambda h, a=maps: np.save(h, a))
        table = pa.Table.from_pydict(result.columns, schema=schema(self.plan))
        replace_atomically(self.rows_file(result.index), lambda h: pq.write_table(table, h))

    def tables(self, columns: list[str] | None = None) -> Iterator:
        """The committed shards' row tables in order (one shard in memory at a time)."""
        _, pq = pyarrow("onnxlrp audit")
        for k in range(self.shards):
            yield pq.read_table(self.rows_file(k), columns=columns)

    def column(self, name: str) -> np.ndarray:
        """One column of every row, as a numpy array (nulls as -1 for integers, NaN for floats)."""
        parts = []
        for table in self.tables([name]):
            values = table.column(0)
            fill = -1 if str(values.type).startswith("int") else np.nan
            parts.append(values.fill_null(fill).to_numpy())
        return np.concatenate(parts) if parts else np.zeros(0)

    def failed(self) -> np.ndarray:
        """Which rows could not be read (their ``error`` is set)."""
        parts = [table.column(0).is_valid().to_numpy(zero_copy_only=False) for table in self.tables(["error"])]
        return np.concatenate(parts).astype(bool) if parts else np.zeros(0, dtype=bool)

    def finish(self, clusters: dict[str, np.ndarray]) -> Path:
        """Write ``audit.parquet``: every shard's rows in order, one row group per shard, plus each method's SpRAy
        cluster (``clusters[method]``: one value per row, -1 where the row was not clustered)."""
        pa, pq = pyarrow("onnxlrp audit")
        full = schema(self.plan, clusters=True)
        path = self.out / TABLE

        def write(handle):
            with pq.ParquetWriter(handle, full) as writer:
                for k, table in enumerate(self.tables()):
                    start = k * self.plan.shard_size
                    for m in self.plan.methods:
                        values = clusters.get(m.name, np.full(self.count, -1))[start:start + table.num_rows]
                        table = table.append_column(f"{m.name}.cluster", pa.array(
                            [None if v < 0 else int(v) for v in values], type=pa.int64()))
                    writer.write_table(table.select(full.names).cast(full))

        replace_atomically(path, write)
        return path


class AuditMaps:
    """The stored maps of an audit folder, read by row (memory-mapped, one shard file at a time).

    >>> maps = AuditMaps("audit-out")
    >>> maps.methods, maps.get("epsilon_plus", [0, 5, 300]).shape   # (3, S, S)
    """

    def __init__(self, out):
        self.out = Path(out)
        try:
            self.manifest = json.loads((self.out / MANIFEST).read_text())
        except (OSError, ValueError) as exc:
            raise InputFileError(f"{str(self.out)!r} holds no readable audit ({MANIFEST}: {exc})") from None
        self.shard_size = int(self.manifest["shard_size"])
        self.rows = int(self.manifest["rows"])
        self.methods = [m["name"] for m in self.manifest["methods"]]

    def shard(self, method: str, index: int) -> np.ndarray:
        if method not in self.methods:
            raise UsageError(f"the audit has no method {method!r}; it has {', '.join(self.methods)}")
        return np.load(self.out / "maps" / method_folder(method) / f"{index:06d}.npy", mmap_mode="r")

    def get(self, method: str, rows) -> np.ndarray:
        """The maps of ``rows`` (any order), ``(len(rows), S, S)``."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if rows.size and (rows.min() < 0 or rows.max() >= self.rows):
            raise UsageError(f"rows must lie in 0..{self.rows - 1}")
        out = None
        for index in np.unique(rows // self.shard_size):
            chosen = np.flatnonzero(rows // self.shard_size == index)
            maps = self.shard(method, int(index))
            part = np.asarray(maps[rows[chosen] % self.shard_size])
            if out is None:
                out = np.empty((len(rows), *part.shape[1:]), dtype=part.dtype)
            out[chosen] = part
        return out if out is not None else np.zeros((0, 0, 0), dtype=np.float32)
