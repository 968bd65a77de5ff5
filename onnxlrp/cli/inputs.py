"""Everything the commands read besides options: input files (images, ``.npy`` arrays, folders) planned into
samples and loaded batch by batch, the labels file, the ``--target`` class, and the model itself.

Every path the user names is checked with :func:`onnxlrp.limits.check_file` before it is opened (a regular file
within its kind's size limit: never a FIFO, a device or a folder), and every batch is checked against the memory
budget from the headers alone, before anything is decoded (:func:`budget_runs`)."""
from __future__ import annotations

import argparse
import math
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import limits
from ..errors import (
    InputDtypeError,
    InputFileError,
    InputShapeError,
    LabelsError,
    MemoryBudgetError,
    NameSelectionError,
    TargetError,
    UsageError,
)
from ..inputs import arrays, images
from ..inputs.images import Preprocessing, format_shape
from ..views import imaging


def quiet_runtime(debug: bool) -> None:
    """Keep onnxruntime's own log lines off stderr (its failures become one-line errors); ``--debug`` shows them."""
    import onnxruntime as ort
    ort.set_default_logger_severity(2 if debug else 4)


def open_explainer(args: argparse.Namespace):
    """The :class:`~onnxlrp.explainer.Explainer` for ``args.model`` with the chosen input, output, device, dtype
    and memory budget."""
    from ..explainer import Explainer
    quiet_runtime(bool(getattr(args, "debug", False)))
    kwargs: dict[str, Any] = {"input_name": args.input_name, "output_name": args.output_name}
    if getattr(args, "device", None):
        kwargs["device"] = args.device
    if getattr(args, "dtype", None):
        kwargs["dtype"] = args.dtype
    if getattr(args, "memory_budget", None):
        kwargs["memory_budget"] = args.memory_budget
    if getattr(args, "backend", None):
        kwargs["backend"] = args.backend
    try:
        return Explainer(args.model, **kwargs)
    except NameSelectionError as exc:  # the engine speaks API (input_name=); say the CLI option instead
        text = str(exc).replace("input_name=", "--input-name").replace("output_name=", "--output-name")
        raise NameSelectionError(text) from exc


@dataclass
class Item:
    """One input sample: an image file, or one sample of an .npy file (``index`` set for batched arrays)."""

    source: Path
    kind: str            # "image" or "array"
    index: int | None
    name: str            # unique stem used for output file names
    shape: tuple | None  # sample shape for arrays (known up front), None for images
    size: tuple | None = None  # (width, height) of an image, from its header


def _safe_stem(text: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._+-]+", "_", text).strip("._") or "input"
    return stem[:100]


def expand_inputs(paths: Sequence[str]) -> list[tuple[Path, str]]:
    """Files and folders -> [(path, "image"|"array")], folders sorted by name, not recursive.

    Every file is checked with :func:`onnxlrp.limits.check_file` (a regular file within the size limit of its
    kind); a folder's entries that are not regular files (FIFOs, devices, sub-folders) are skipped.

    Raises
    ------
    InputFileError
        For a missing path, a folder without images or arrays, a file of another kind, a FIFO, device or socket,
        or a file over its size limit.
    """
    found: list[tuple[Path, str]] = []
    for text in paths:
        p = Path(text)
        if _is_dir(p):
            try:
                entries = sorted(e for e in p.iterdir() if _kind(e) is not None and e.is_file())
            except OSError as exc:
                raise InputFileError(f"input folder {text!r} cannot be read: {exc.strerror or exc}") from None
            if not entries:
                raise InputFileError(f"input folder {text!r} has no images ({', '.join(images.IMAGE_SUFFIXES)}) "
                                     f"or .npy arrays")
            for entry in entries:
                kind = _kind(entry)
                limits.check_file(entry, kind, InputFileError, "input")  # type: ignore[arg-type]
                found.append((entry, kind))  # type: ignore[arg-type]
            continue
        kind = _kind(p)
        if kind is None:
            if not p.is_file():  # missing, a FIFO, a device: say that
                limits.check_file(p, "array", InputFileError, "input")
            raise InputFileError(f"input {text!r} is neither an image ({', '.join(images.IMAGE_SUFFIXES)}) "
                                 f"nor a .npy array")
        limits.check_file(p, kind, InputFileError, "input")
        found.append((p, kind))
    return found


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except (OSError, ValueError):
        return False


def _kind(path: Path) -> str | None:
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return "array"
    if suffix in images.IMAGE_SUFFIXES:
        return "image"
    return None


def plan_items(files: Sequence[tuple[Path, str]], input_shape: tuple, input_dtype: np.dtype,
               input_name: str) -> list[Item]:
    """Check arrays' shapes and dtypes up front (headers only) and name every sample uniquely.

    Raises
    ------
    InputShapeError, InputDtypeError
        For an array that is neither one sample nor a batch of the model input, or not floating point.
    InputFileError
        For a malformed ``.npy`` header (:func:`onnxlrp.inputs.arrays.read_header`).
    ImageDecodeError
        For an image file that is not an image, or whose header claims more pixels than the limit (header check; a
        truncated body fails when it is decoded).
    """
    items: list[Item] = []
    used: set[str] = set()

    def unique(stem: str) -> str:
        name, k = stem, 2
        while name.lower() in used:
            name, k = f"{stem}-{k}", k + 1
        used.add(name.lower())
        return name

    want = format_shape(input_shape)
    sample_rank = len(input_shape) - 1
    for path, kind in files:
        if kind == "image":
            size = images.check_image(path)
            items.append(Item(path, "image", None, unique(_safe_stem(path.stem)), None, size))
            continue
        arr = arrays.open_array(path)
        if np.dtype(input_dtype).kind == "f":
            if arr.dtype.kind != "f":
                raise InputDtypeError(f"array {str(path)!r} has dtype {arr.dtype}, but the model input {input_name!r} "
                                      f"takes {np.dtype(input_dtype)}; save it as floating point")
        elif arr.dtype != input_dtype:
            raise InputDtypeError(f"array {str(path)!r} has dtype {arr.dtype}, but the model input {input_name!r} "
                                  f"takes {np.dtype(input_dtype)}")

        def fits(shape: tuple) -> bool:
            return len(shape) == sample_rank and all(d is None or d == s for d, s in zip(input_shape[1:], shape))

        if fits(arr.shape):
            items.append(Item(path, "array", None, unique(_safe_stem(path.stem)), tuple(arr.shape)))
        elif arr.ndim == sample_rank + 1 and fits(arr.shape[1:]):
            if arr.shape[0] == 0:
                raise InputShapeError(f"array {str(path)!r} holds an empty batch {tuple(arr.shape)}")
            for i in range(arr.shape[0]):
                items.append(Item(path, "array", i, unique(_safe_stem(f"{path.stem}_{i}")), tuple(arr.shape[1:])))
        else:
            raise InputShapeError(f"array {str(path)!r} has shape {tuple(arr.shape)}, but the model input "
                                  f"{input_name!r} takes {want}: one sample {format_shape(input_shape[1:])} or a "
                                  f"batch {want}")
        del arr
    return items


def read_labels(path: str | None, classes: int | None) -> list[str] | None:
    """One label per line (trailing blank lines ignored); the count must match the model's classes.

    Raises
    ------
    LabelsError
        When the path is not a regular file within the labels size limit (a FIFO, a device such as /dev/zero), the
        file cannot be read, or its line count differs from the number of classes.
    """
    if path is None:
        return None
    path = check_labels_path(path)
    try:
        with open(path, "rb") as handle:  # read no more than the limit, whatever the file grew to since the check
            text = handle.read(limits.file_limit("labels") + 1).decode("utf-8")
    except OSError as exc:
        raise LabelsError(f"cannot read labels file {path!r}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise LabelsError(f"cannot read labels file {path!r}: not UTF-8 text") from exc
    labels = [line.strip() for line in text.rstrip("\n").split("\n")] if text.strip() else []
    if classes is not None and len(labels) != classes:
        raise LabelsError(f"labels file {path!r} has {len(labels)} lines but the model output has {classes} classes")
    return labels


def check_labels_path(path: str) -> str:
    """``path`` if it names a regular file within the labels size limit (never a FIFO or a device such as
    ``/dev/zero``: those would block or never end).

    Raises
    ------
    LabelsError
        Saying why not.
    """
    try:
        os.stat(path)
    except FileNotFoundError as exc:
        raise LabelsError(f"cannot read labels file {path!r}: {exc.strerror}") from None
    except (OSError, ValueError, TypeError):
        pass  # check_file says why
    return limits.check_file(path, "labels", LabelsError, "labels file")


def resolve_target(spec: str, labels: list[str] | None, shape: tuple, output_name: str):
    """What ``--target`` names in each sample's output of ``shape`` (the output shape without the batch axis):
    ``pred`` -> None (the engine takes the argmax; only for a class vector); an integer or a label name -> that
    entry of the flattened output; ``J,K`` -> a :class:`~onnxlrp.engine.seeds.Position` (the last index may be a
    label).

    Raises
    ------
    TargetError
        For an index out of range, a position of the wrong length, ``pred`` on an output that is not a class vector,
        or text that is none of these.
    """
    from ..engine.seeds import Position
    s = spec.strip()
    shape = tuple(shape)
    known = all(isinstance(d, int) for d in shape)
    long_axes = [d for d in shape if not (isinstance(d, int) and d == 1)]
    if s.lower() in ("pred", "predicted", "argmax"):
        if len(long_axes) > 1:
            raise TargetError(f"output {output_name!r} has samples of shape {tuple(shape)}, not a class vector, so "
                              "'pred' would pick any entry (a box coordinate); name a position with --target J,K "
                              "(e.g. box J's class score K) or a flat index")
        return None
    parts = [p.strip() for p in s.strip("[]()").split(",")] if "," in s else [s]
    values = []
    for k, part in enumerate(parts):
        if re.fullmatch(r"[+-]?\d+", part):
            values.append(int(part))
        elif labels is not None and part in labels and k == len(parts) - 1:
            values.append(labels.index(part))
        else:
            hint = " or a label from --labels" if labels is not None else ""
            raise TargetError(f"target {spec!r} is not 'pred', a class index{hint} or a position such as '17,5'")
    if len(values) > 1:
        position = Position(*values)
        if known:
            position.flat(shape, output_name)  # checked now, before any input is read
        return position
    target = values[0]
    size = int(np.prod(shape)) if known else None
    if size is not None and not 0 <= target < size:
        what = f"{size} classes (0..{size - 1})" if len(shape) <= 1 else \
            f"{size} entries per sample (shape {tuple(shape)}; flat index 0..{size - 1}, or a position J,K)"
        raise TargetError(f"target {target} is out of range: the output {output_name!r} has {what}")
    return target


def read_feeds(specs: Sequence[str], explained: str) -> dict[str, np.ndarray]:
    """``--feed NAME=FILE.npy`` values: the other model inputs, held fixed."""
    from ..inputs.arrays import open_array
    feeds: dict[str, np.ndarray] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise UsageError(f"--feed {spec!r}: write NAME=FILE.npy")
        if name == explained:
            raise UsageError(f"--feed {name}: that is the explained input; give its data as INPUT")
        if name in feeds:
            raise UsageError(f"--feed {name} is given twice")
        feeds[name] = np.asarray(open_array(path))
    return feeds


def feeds_for(feeds: dict[str, np.ndarray], batch: int) -> dict[str, np.ndarray]:
    """Each held-fixed input for a batch of ``batch`` samples: a single sample is repeated, a batch of the same size
    used as is."""
    out = {}
    for name, value in feeds.items():
        if value.ndim >= 1 and value.shape[0] == 1 and batch != 1:
            value = np.repeat(value, batch, axis=0)
        out[name] = value
    return out


def batches(items: Sequence[Item], size: int) -> Iterator[list[Item]]:
    """Consecutive runs of at most ``size`` items (images are grouped further by size once decoded)."""
    for start in range(0, len(items), size):
        yield list(items[start:start + size])


def load_sample(item: Item, prep: Preprocessing | None, layout: str | None, dtype: np.dtype):
    """-> (sample array, picture uint8 (H, W, 3) or None)."""
    if item.kind == "image":
        assert prep is not None
        sample, picture = images.preprocess(images.load_image(item.source), prep)
        return sample.astype(dtype, copy=False), picture
    arr = arrays.open_array(item.source)
    sample = np.array(arr[item.index] if item.index is not None else arr, dtype=dtype)
    del arr
    return sample, imaging.array_picture(sample, layout)


def same_shape_runs(pairs: list) -> Iterator[list]:
    """Consecutive ``(item, (sample, picture))`` pairs whose samples have the same shape."""
    run: list = []
    for pair in pairs:
        if run and pair[1][0].shape != run[-1][1][0].shape:
            yield run
            run = []
        run.append(pair)
    if run:
        yield run


def sample_shape(item: Item, prep: Preprocessing | None) -> tuple[int, ...] | None:
    """The shape one item will have as a model sample, from its header alone (``None`` when unknown)."""
    if item.kind == "array":
        return item.shape
    if prep is None or item.size is None:
        return None
    height, width = (prep.height, prep.width) if prep.height is not None else (item.size[1], item.size[0])
    return (prep.channels, height, width) if prep.layout == "NCHW" else (height, width, prep.channels)


def budget_runs(session, chunk: list[Item], prep: Preprocessing | None,
                static_batch: int | None) -> Iterator[list[Item]]:
    """Split a batch into runs of consecutive items whose samples have one shape and together fit the memory
    budget (``session.memory_budget``, planned with ``session.plan_bytes`` from the headers: nothing is decoded).

    Raises
    ------
    MemoryBudgetError
        When a single item (or the model's fixed batch) would exceed the budget; the message gives the estimate and
        what lowers it.
    """
    run: list[Item] = []
    shape: tuple | None = None
    for item in chunk:
        here = sample_shape(item, prep)
        if run and here != shape:
            yield from _fit(session, run, shape, static_batch)
            run = []
        run.append(item)
        shape = here
    if run:
        yield from _fit(session, run, shape, static_batch)


def _fit(session, run: list[Item], shape: tuple | None, static_batch: int | None) -> Iterator[list[Item]]:
    if shape is None:
        yield run
        return
    rows = static_batch or 1
    planned = session.plan_bytes((rows, *shape))
    if planned is None:  # shape inference cannot tell: count the input alone, in the compute dtype
        planned = math.prod((rows, *shape)) * np.dtype(session.dtype).itemsize * limits.PASS_OVERHEAD
    budget = session.memory_budget
    if planned > budget:
        what = f"a batch of {rows} (the model's fixed batch size)" if static_batch else "one input"
        source = run[0].source if run[0].index is None else f"{run[0].source}[{run[0].index}]"
        free = any(d is None for d in tuple(session.input_shape)[1:])  # else the model fixes the input's size
        lower = ("use a smaller image or --size, or " if run[0].kind == "image" else "use a smaller array, or ") \
            if free else ""
        raise MemoryBudgetError(
            f"{what} of shape {format_shape((rows, *shape))} ({str(source)!r}) would need about "
            f"{limits.format_bytes(planned)}, over the memory budget of {limits.format_bytes(budget)}; {lower}"
            f"raise --memory-budget (or ONNXLRP_MEMORY_BUDGET)")
    per = static_batch or max(1, budget // planned)  # plans grow about linearly with the batch
    for start in range(0, len(run), per):
        yield run[start:start + per]


def image_preprocessing(args: argparse.Namespace, files, input_shape) -> Preprocessing | None:
    """The image preprocessing the command's options ask for (``--size``, ``--layout``, ``--grayscale``,
    ``--scale``/``--mean``/``--std`` or ``--preprocess``), or ``None`` when no input is an image."""
    if not any(kind == "image" for _, kind in files):
        return None
    return preprocessing_options(args, input_shape)


def preprocessing_options(args: argparse.Namespace, input_shape) -> Preprocessing:
    """:func:`onnxlrp.inputs.images.resolve_preprocessing` with the command's options; a bad combination is a
    usage error."""
    try:
        return images.resolve_preprocessing(input_shape, size=args.size, layout=args.layout,
                                            grayscale=args.grayscale or None, scale=args.scale, mean=args.mean,
                                            std=args.std, preset=getattr(args, "preprocess", None))
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
