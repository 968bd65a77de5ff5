"""Datasets for ``audit`` and ``diff``: many inputs, read a range of rows at a time, so memory never grows with the
dataset.

A dataset is an ordered list of *parts*, each a file that contributes one or more rows; a row's index is its place in
that order, the same in every run over the same files (folders are listed sorted). What a path may be:

- a **folder**: its images (``.png``, ``.jpg``, ...) and ``.npy``/``.npz``/``.parquet`` files; when it has
  subfolders holding such files, each subfolder is a class and its files are labelled with it (the subfolder's name
  found in ``--labels``, or an integer name taken as the class index, else the sorted subfolders numbered from 0 as
  torchvision's ``ImageFolder`` does);
- a **list file** (``.txt``, ``.csv``, ``.lst``): one ``path`` or ``path label`` per line (separated by a comma, tab or
  spaces; paths relative to the list file; labels class indices or names; ``#`` starts a comment);
- a **.npy** file: one sample, or a batch along its first axis (memory-mapped);
- a **.npz** file: the samples in ``x`` (or ``images``, ``inputs``, or its only array), labels in ``y`` (or ``labels``,
  ``label``) when present;
- a **Parquet** file: a column of encoded images (binary, or a struct with a ``bytes`` field as Hugging Face datasets
  write them) or of arrays (nested lists or a fixed-shape tensor column, reshaped to the model's sample shape), and
  an optional label column (integers, or names mapped through ``--labels``); read one row group at a time.

Images become samples with :func:`onnxlrp.inputs.images.preprocess` (the explain command's preprocessing, at a fixed
size so that a batch stacks). An input that cannot be decoded does not stop a run over thousands: its row is reported
in :attr:`Batch.errors` and left out of :attr:`Batch.x`.
"""
from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import limits
from ..errors import (
    BackendUnavailableError,
    ImageDecodeError,
    InputDtypeError,
    InputFileError,
    InputShapeError,
    LabelsError,
    UsageError,
)
from ..inputs import arrays, images

LIST_SUFFIXES = (".txt", ".csv", ".lst", ".list")
PARQUET_SUFFIXES = (".parquet", ".pq")
DATA_COLUMNS = ("image", "img", "pixel_values", "x", "input", "array")
LABEL_COLUMNS = ("label", "labels", "y", "target")
NPZ_DATA_KEYS = ("x", "images", "inputs")
NPZ_LABEL_KEYS = ("y", "labels", "label")


@dataclass(frozen=True)
class Part:
    """One file of the dataset: ``count`` rows, all labelled ``label`` (-1: unknown or per row) for an image or a
    one-sample array."""

    path: str
    kind: str      # "image", "array" (.npy), "npz", "parquet"
    count: int
    label: int = -1


@dataclass
class Batch:
    """Rows ``start .. stop - 1``: every row's source and label (-1 unknown), the samples of the rows that decoded
    (``x``, in row order, rows listed in ``rows``), and the error of each row that did not."""

    start: int
    stop: int
    sources: list[str]
    labels: np.ndarray
    rows: np.ndarray
    x: np.ndarray | None
    pictures: list | None = None
    errors: dict[int, str] = field(default_factory=dict)


def pyarrow(purpose: str = "reading Parquet"):
    """``(pyarrow, pyarrow.parquet)``, or :class:`BackendUnavailableError` naming ``purpose`` and the extra."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise BackendUnavailableError(f"{purpose} needs pyarrow: pip install 'onnxlrp[audit]'") from None
    return pa, pq


def _kind(path: Path) -> str | None:
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return "array"
    if suffix == ".npz":
        return "npz"
    if suffix in PARQUET_SUFFIXES:
        return "parquet"
    if suffix in images.IMAGE_SUFFIXES:
        return "image"
    return None


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except (OSError, ValueError):
        return False


class Dataset:
    """The rows of ``paths`` as samples for a model input of ``input_shape`` and ``input_dtype``.

    ``prep`` is the image preprocessing (needed when there are images; its size must be fixed), ``labels`` the class
    names from ``--labels`` (or ``None``), ``column``/``label_column`` the Parquet columns (found when ``None``).

    Raises
    ------
    InputFileError, LabelsError, UsageError, BackendUnavailableError
        For a path that is not data, a list file line that names nothing, a label not among the classes, images
        without a fixed size, Parquet without pyarrow.
    """

    def __init__(self, paths: Sequence[str], input_shape: Sequence, input_dtype, input_name: str, *,
                 prep: images.Preprocessing | None = None, labels: list[str] | None = None,
                 column: str | None = None, label_column: str | None = None):
        self.input_shape = tuple(input_shape)
        self.sample_shape = self.input_shape[1:]
        self.input_dtype = np.dtype(input_dtype)
        self.input_name = input_name
        self.prep = prep
        self.labels = labels
        self.column, self.label_column = column, label_column
        #: class names found in the data (subfolders, string label columns) when no ``--labels`` was given
        self.class_names: list[str] | None = labels
        self.parts: list[Part] = []
        self._row_groups: dict[str, np.ndarray] = {}   # Parquet file -> first row of each row group
        for text in paths:
            self._add(Path(text))
        if not self.parts:
            raise InputFileError(f"no inputs found in {', '.join(map(repr, paths))}")
        if (column or label_column) and not any(p.kind == "parquet" for p in self.parts):
            raise UsageError(f"{'--column' if column else '--label-column'} is for Parquet data; the data has none "
                             "(labels come from class folders, list files or an .npz's y)")
        self.offsets = np.cumsum([0] + [p.count for p in self.parts]).astype(np.int64)
        if any(p.kind == "image" for p in self.parts) or self._parquet_images:
            if prep is None:
                raise UsageError(f"the data holds images, but the model input {images.format_shape(self.input_shape)} "
                                 "is not an image batch; pass arrays (.npy, .npz, Parquet)")
            if prep.height is None or prep.width is None:
                raise UsageError("the model takes images of any size: pass --size H W so that a batch of the dataset "
                                 "has one shape")
        self._open: tuple[str, object] | None = None   # the last .npz array or Parquet row group read

    _parquet_images = False

    # ------------------------------------------------------------------------------------------ listing
    def _add(self, path: Path) -> None:
        if _is_dir(path):
            self._add_folder(path)
            return
        suffix = path.suffix.lower()
        if suffix in LIST_SUFFIXES:
            self._add_list(path)
            return
        kind = _kind(path)
        if kind is None:
            if not path.is_file():
                limits.check_file(path, "dataset", InputFileError, "data")
            raise InputFileError(f"data {str(path)!r} is not an image, .npy, .npz, Parquet or list file")
        self._add_file(path, kind, -1)

    def _add_file(self, path: Path, kind: str, label: int) -> None:
        what = "data"
        if kind == "image":
            limits.check_file(path, "image", InputFileError, what)
            self.parts.append(Part(str(path), kind, 1, label))
        elif kind == "array":
            limits.check_file(path, "array", InputFileError, what)
            header = arrays.read_header(path)
            self.parts.append(Part(str(path), kind, self._array_rows(str(path), header.shape, header.dtype), label))
        elif kind == "npz":
            limits.check_file(path, "array", InputFileError, what)
            self.parts.append(Part(str(path), kind, self._npz_rows(path), label))
        else:
            limits.check_file(path, "dataset", InputFileError, what)
            self.parts.append(Part(str(path), kind, self._parquet_rows(path), label))

    def _add_folder(self, folder: Path) -> None:
        try:
            entries = sorted(folder.iterdir())
        except OSError as exc:
            raise InputFileError(f"data folder {str(folder)!r} cannot be read: {exc.strerror or exc}") from None
        files = [e for e in entries if _kind(e) is not None and e.is_file()]
        classes = [e for e in entries if _is_dir(e) and any(_kind(f) and f.is_file() for f in _listing(e))]
        if classes:
            indices = self._class_indices([c.name for c in classes], str(folder))
            for sub, index in zip(classes, indices):
                for entry in _listing(sub):
                    kind = _kind(entry)
                    if kind is not None and entry.is_file():
                        self._add_file(entry, kind, index)
        for entry in files:
            self._add_file(entry, _kind(entry), -1)  # type: ignore[arg-type]
        if not files and not classes:
            raise InputFileError(f"data folder {str(folder)!r} has no images, .npy, .npz or Parquet files (nor class "
                                 "subfolders of them)")

    def _class_indices(self, names: list[str], where: str) -> list[int]:
        """Class subfolder names -> class indices (see the module docstring)."""
        if self.labels is not None:
            lowered = {n.lower(): i for i, n in enumerate(self.labels)}
            out = []
            for name in names:
                if name in self.labels:
                    out.append(self.labels.index(name))
                elif name.lower() in lowered:
                    out.append(lowered[name.lower()])
                elif name.isdigit() and int(name) < len(self.labels):
                    out.append(int(name))
                else:
                    raise LabelsError(f"class folder {name!r} in {where!r} is neither a label of --labels nor a class "
                                      f"index below {len(self.labels)}")
            return out
        if all(n.isdigit() for n in names):
            return [int(n) for n in names]
        self.class_names = list(names)
        return list(range(len(names)))

    def _label(self, text: str, where: str) -> int:
        text = text.strip()
        if text.lstrip("-").isdigit():
            return int(text)
        names = self.labels if self.labels is not None else None
        if names is not None and text in names:
            return names.index(text)
        raise LabelsError(f"label {text!r} in {where} is not a class index" +
                          (" nor a label of --labels" if names is not None else " (pass --labels to use names)"))

    def _add_list(self, path: Path) -> None:
        limits.check_file(path, "dataset", InputFileError, "list file")
        base = path.parent
        with open(path, encoding="utf-8", errors="replace") as handle:
            for number, line in enumerate(handle, start=1):
                line = line.split("#", 1)[0].strip()
                if not line:
                    continue
                fields = [f for f in (line.split(",") if "," in line else line.split()) if f.strip()]
                target = base / fields[0].strip()
                kind = _kind(target)
                if kind not in ("image", "array"):
                    raise InputFileError(f"line {number} of list file {str(path)!r} names {fields[0]!r}, which is "
                                         "not an image or .npy file")
                label = self._label(fields[-1], f"line {number} of {str(path)!r}") if len(fields) > 1 else -1
                self._add_file(target, kind, label)

    def _array_rows(self, where: str, shape: tuple, dtype: np.dtype) -> int:
        """Rows of an array of ``shape``: 1 for one sample, the first axis for a batch (shape and dtype checked)."""
        if self.input_dtype.kind == "f" and np.dtype(dtype).kind != "f":
            raise InputDtypeError(f"array {where!r} has dtype {dtype}, but the model input {self.input_name!r} takes "
                                  f"{self.input_dtype}; save it as floating point")
        if self.input_dtype.kind != "f" and np.dtype(dtype) != self.input_dtype:
            raise InputDtypeError(f"array {where!r} has dtype {dtype}, but the model input {self.input_name!r} takes "
                                  f"{self.input_dtype}")
        if self._fits(tuple(shape)):
            return 1
        if len(shape) == len(self.sample_shape) + 1 and self._fits(tuple(shape[1:])):
            return int(shape[0])
        raise InputShapeError(f"array {where!r} has shape {tuple(shape)}, but the model input {self.input_name!r} "
                              f"takes {images.format_shape(self.input_shape)}: one sample or a batch of them")

    def _fits(self, shape: tuple) -> bool:
        return len(shape) == len(self.sample_shape) and all(
            not isinstance(d, int) or d <= 0 or d == s for d, s in zip(self.sample_shape, shape))

    def _npz(self, path: str):
        try:
            archive = np.load(path, allow_pickle=False)
        except Exception as exc:  # noqa: BLE001 - zipfile, ValueError, OSError: never an internal error
            raise InputFileError(f"cannot read {path!r} as .npz: {str(exc).splitlines()[0] if str(exc) else exc}") \
                from None
        keys = list(archive.files)
        data = next((k for k in NPZ_DATA_KEYS if k in keys), keys[0] if len(keys) == 1 else None)
        if data is None:
            raise InputFileError(f".npz file {path!r} holds {', '.join(keys) or 'nothing'}; name the samples "
                                 f"{' or '.join(NPZ_DATA_KEYS)}")
        label = next((k for k in NPZ_LABEL_KEYS if k in keys), None)
        return archive, data, label

    def _npz_rows(self, path: Path) -> int:
        archive, data, _ = self._npz(str(path))
        with archive:
            header = archive[data]  # one array: the audit's shards read it again, one .npz at a time
            rows = self._array_rows(f"{path}:{data}", header.shape, header.dtype)
        return rows if header.ndim == len(self.sample_shape) + 1 else 1

    def _parquet_rows(self, path: Path) -> int:
        _, pq = pyarrow()
        try:
            meta = pq.ParquetFile(str(path))
        except Exception as exc:  # noqa: BLE001 - pyarrow raises ArrowInvalid, OSError, ...
            raise InputFileError(f"cannot read {str(path)!r} as Parquet: {str(exc).splitlines()[0]}") from None
        schema = meta.schema_arrow
        names = schema.names
        column = self.column or next((c for c in DATA_COLUMNS if c in names), None)
        if column is None:
            import pyarrow as pa
            column = next((f.name for f in schema if pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type)),
                          None)
        if column is None or column not in names:
            wanted = f"named {self.column!r}" if self.column else f"({', '.join(DATA_COLUMNS)})"
            raise InputFileError(f"Parquet file {str(path)!r} has no column of images or arrays {wanted}; its columns "
                                 f"are {', '.join(names)}: pass --column")
        label = self.label_column or next((c for c in LABEL_COLUMNS if c in names), None)
        if self.label_column and label not in names:
            raise InputFileError(f"Parquet file {str(path)!r} has no column {self.label_column!r}; its columns are "
                                 f"{', '.join(names)}")
        self.column, self.label_column = column, label
        kind = _column_kind(schema.field(column).type)
        if kind is None:
            raise InputFileError(f"column {column!r} of {str(path)!r} holds {schema.field(column).type}, neither "
                                 "encoded images nor arrays")
        if kind == "image":
            self._parquet_images = True
        elif not all(isinstance(d, int) and d > 0 for d in self.sample_shape):
            raise UsageError(f"arrays in Parquet are reshaped to the model's sample shape, but "
                             f"{images.format_shape(self.input_shape)} is not fixed")
        if label is not None and _is_string(schema.field(label).type) and self.labels is None:
            table = meta.read(columns=[label])
            found = sorted({str(v) for v in table.column(0).to_pylist() if v is not None})
            self.class_names = sorted(set(self.class_names or []) | set(found))
        groups = [meta.metadata.row_group(i).num_rows for i in range(meta.metadata.num_row_groups)]
        self._row_groups[str(path)] = np.cumsum([0, *groups]).astype(np.int64)
        return int(meta.metadata.num_rows)

    # ------------------------------------------------------------------------------------------ reading
    def __len__(self) -> int:
        return int(self.offsets[-1])

    def fingerprint(self) -> str:
        """A hash of the listing: every part's path, kind, rows, label, size and modification time, and the columns
        and class names (a resumed audit must read the same data)."""
        digest = hashlib.sha256()
        for part in self.parts:
            info = os.stat(part.path)
            digest.update(f"{part.path}\0{part.kind}\0{part.count}\0{part.label}\0{info.st_size}\0"
                          f"{info.st_mtime_ns}\n".encode())
        digest.update(f"{self.column}\0{self.label_column}\0{self.class_names}".encode())
        return digest.hexdigest()

    def read(self, start: int, stop: int, pictures: bool = False) -> Batch:
        """Rows ``start .. stop - 1`` (clipped to the dataset) as a :class:`Batch`; with ``pictures``, the uint8
        picture each image was resized to (``None`` for arrays)."""
        start, stop = max(0, int(start)), min(len(self), int(stop))
        sources, labels, samples, shown, rows, errors = [], [], [], [], [], {}
        for row in range(start, stop):
            index = int(np.searchsorted(self.offsets, row, side="right") - 1)
            part, offset = self.parts[index], row - int(self.offsets[index])
            source = part.path if part.count == 1 and part.kind in ("image", "array") else f"{part.path}[{offset}]"
            sources.append(source)
            try:
                sample, picture, label = self._sample(part, offset)
            except (ImageDecodeError, InputFileError, InputShapeError, InputDtypeError) as exc:
                errors[row] = str(exc)
                labels.append(part.label)
                continue
            labels.append(part.label if label is None else label)
            samples.append(sample)
            shown.append(picture)
            rows.append(row)
        x = np.stack(samples).astype(self.input_dtype, copy=False) if samples else None
        return Batch(start, stop, sources, np.asarray(labels, dtype=np.int64), np.asarray(rows, dtype=np.int64), x,
                     shown if pictures else None, errors)

    def _sample(self, part: Part, offset: int):
        """``(sample, picture or None, label or None)`` of one row of ``part``."""
        if part.kind == "image":
            sample, picture = images.preprocess(images.load_image(part.path), self.prep)
            return sample, picture, None
        if part.kind == "array":
            arr = arrays.open_array(part.path)
            sample = np.array(arr[offset] if arr.ndim == len(self.sample_shape) + 1 else arr)
            return sample, None, None
        if part.kind == "npz":
            data, labels = self._cached(part, 0, self._load_npz)
            sample = data[offset] if data.ndim == len(self.sample_shape) + 1 else data
            return np.array(sample), None, (int(labels[offset]) if labels is not None else None)
        return self._parquet_sample(part, offset)

    def _cached(self, part: Part, key: int, load):
        if self._open is None or self._open[0] != (part.path, key):
            self._open = ((part.path, key), load(part, key))
        return self._open[1]

    def _load_npz(self, part: Part, _key: int):
        archive, data, label = self._npz(part.path)
        with archive:
            x = archive[data]
            y = archive[label].reshape(-1) if label is not None else None
        if y is not None and len(y) != part.count:
            raise InputFileError(f".npz file {part.path!r} has {part.count} samples but {len(y)} labels")
        return x, y

    def _parquet_sample(self, part: Part, offset: int):
        starts = self._row_groups[part.path]
        group = int(np.searchsorted(starts, offset, side="right") - 1)
        data, labels = self._cached(part, group, self._load_row_group)
        at = offset - int(starts[group])
        where = f"{part.path}[{offset}]"
        label = None if labels is None else labels[at]
        if isinstance(data, np.ndarray):
            return np.array(data[at]), None, label
        cell = data[at]
        if isinstance(cell, dict):
            cell = cell.get("bytes")
        if isinstance(cell, (bytes, bytearray)):
            sample, picture = images.preprocess(images.load_image(io.BytesIO(cell), where), self.prep)
            return sample, picture, label
        if cell is None:
            raise InputFileError(f"row {where!r} has no data")
        sample = np.asarray(cell, dtype=np.float64 if self.input_dtype.kind == "f" else self.input_dtype)
        if sample.size != int(np.prod(self.sample_shape)):
            raise InputShapeError(f"row {where!r} holds {sample.size} values; the model's sample "
                                  f"{images.format_shape(self.sample_shape)} takes {int(np.prod(self.sample_shape))}")
        return sample.reshape(self.sample_shape), None, label

    def _load_row_group(self, part: Part, group: int):
        """One row group: its samples (an array when every row holds a whole sample, else the cells) and labels."""
        import pyarrow.compute as pc
        _, pq = pyarrow()
        columns = [c for c in (self.column, self.label_column) if c is not None]
        table = pq.ParquetFile(part.path).read_row_group(group, columns=columns)
        column = table.column(self.column).combine_chunks()
        data = None
        if _column_kind(column.type) == "array" and column.null_count == 0:
            flat = column
            while hasattr(flat, "flatten") and not hasattr(flat.type, "shape"):
                flat = pc.list_flatten(flat)
            values = np.asarray(flat.to_numpy(zero_copy_only=False))
            size = int(np.prod(self.sample_shape))
            if values.size == len(column) * size:
                data = values.reshape((len(column), *self.sample_shape))
        if data is None:
            data = column.to_pylist()
        labels = None
        if self.label_column is not None:
            labels = [self._row_label(v, f"{part.path!r}") for v in table.column(self.label_column).to_pylist()]
        return data, labels

    def _row_label(self, value, where: str) -> int:
        if value is None:
            return -1
        if isinstance(value, str):
            if self.labels is not None:
                return self._label(value, where)
            return self.class_names.index(value)
        return int(value)


def _listing(folder: Path) -> list[Path]:
    try:
        return sorted(folder.iterdir())
    except OSError:
        return []


def _is_string(arrow_type) -> bool:
    import pyarrow as pa
    return pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)


def _column_kind(arrow_type) -> str | None:
    """``"image"`` for encoded images, ``"array"`` for numbers in (nested) lists, else ``None``."""
    import pyarrow as pa
    if pa.types.is_binary(arrow_type) or pa.types.is_large_binary(arrow_type):
        return "image"
    if pa.types.is_struct(arrow_type) and any(arrow_type.field(i).name == "bytes"
                                              for i in range(arrow_type.num_fields)):
        return "image"
    inner = arrow_type
    while pa.types.is_list(inner) or pa.types.is_large_list(inner) or pa.types.is_fixed_size_list(inner):
        inner = inner.value_type
    if inner is not arrow_type and (pa.types.is_floating(inner) or pa.types.is_integer(inner)):
        return "array"
    if isinstance(arrow_type, pa.ExtensionType) and hasattr(arrow_type, "shape"):
        return "array"
    return None
