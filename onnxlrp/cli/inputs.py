"""Everything the commands read besides options: input files (images, ``.npy`` arrays, folders) planned into
samples and loaded batch by batch, the labels file, the ``--target`` class, and the model itself."""
from __future__ import annotations

import argparse
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import (
    ImageDecodeError,
    InputDtypeError,
    InputFileError,
    InputShapeError,
    LabelsError,
    NameSelectionError,
    TargetError,
)
from ..inputs import images
from ..inputs.images import Preprocessing, format_shape
from ..views import imaging
from .args import first_line


def open_explainer(args: argparse.Namespace):
    """The :class:`~onnxlrp.explainer.Explainer` for ``args.model`` with the chosen input, output, device and dtype."""
    from ..explainer import Explainer
    kwargs: dict[str, Any] = {"input_name": args.input_name, "output_name": args.output_name}
    if getattr(args, "device", None):
        kwargs["device"] = args.device
    if getattr(args, "dtype", None):
        kwargs["dtype"] = args.dtype
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


def _safe_stem(text: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._+-]+", "_", text).strip("._") or "input"
    return stem[:100]


def expand_inputs(paths: Sequence[str]) -> list[tuple[Path, str]]:
    """Files and folders -> [(path, "image"|"array")], folders sorted by name, not recursive.

    Raises
    ------
    InputFileError
        For a missing path, a folder without images or arrays, or a file of another kind.
    """
    found: list[tuple[Path, str]] = []
    for text in paths:
        p = Path(text)
        if p.is_dir():
            entries = sorted(e for e in p.iterdir() if e.is_file() and _kind(e) is not None)
            if not entries:
                raise InputFileError(f"input folder {text!r} has no images ({', '.join(images.IMAGE_SUFFIXES)}) "
                                     f"or .npy arrays")
            found.extend((e, _kind(e)) for e in entries)  # type: ignore[misc]
        elif p.is_file():
            kind = _kind(p)
            if kind is None:
                raise InputFileError(f"input {text!r} is neither an image ({', '.join(images.IMAGE_SUFFIXES)}) "
                                     f"nor a .npy array")
            found.append((p, kind))
        elif p.exists():
            raise InputFileError(f"input {text!r} is not a regular file or folder")
        else:
            raise InputFileError(f"input {text!r} does not exist")
    return found


def _kind(path: Path) -> str | None:
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return "array"
    if suffix in images.IMAGE_SUFFIXES:
        return "image"
    return None


def _open_array(path: Path) -> np.ndarray:
    try:
        with open(path, "rb") as handle:
            magic = handle.read(6)
    except OSError as exc:
        raise InputFileError(f"cannot read array {str(path)!r}: {exc.strerror or exc}") from exc
    if magic != b"\x93NUMPY":
        raise InputFileError(f"cannot read array {str(path)!r}: not a .npy file (no NumPy header)")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc) or "Python objects" in str(exc):
            raise InputFileError(f"cannot read array {str(path)!r}: it holds Python objects, not numbers "
                                 f"(onnxlrp never unpickles)") from exc
        raise InputFileError(f"cannot read array {str(path)!r}: {first_line(exc)}") from exc
    except (OSError, EOFError) as exc:
        raise InputFileError(f"cannot read array {str(path)!r}: {first_line(exc)}") from exc


def plan_items(files: Sequence[tuple[Path, str]], input_shape: tuple, input_dtype: np.dtype,
               input_name: str) -> list[Item]:
    """Check arrays' shapes and dtypes up front (headers only) and name every sample uniquely.

    Raises
    ------
    InputShapeError, InputDtypeError
        For an array that is neither one sample nor a batch of the model input, or not floating point.
    ImageDecodeError
        For an image file that is not an image (header check; a truncated body fails when it is decoded).
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
            _check_image_header(path)
            items.append(Item(path, "image", None, unique(_safe_stem(path.stem)), None))
            continue
        arr = _open_array(path)
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


def _check_image_header(path: Path) -> None:
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as img:
            img.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        reason = "not a format Pillow can decode" if isinstance(exc, UnidentifiedImageError) else first_line(exc)
        raise ImageDecodeError(f"cannot decode image {str(path)!r}: {reason}") from exc


def read_labels(path: str | None, classes: int | None) -> list[str] | None:
    """One label per line (trailing blank lines ignored); the count must match the model's classes.

    Raises
    ------
    LabelsError
        When the file cannot be read or its line count differs from the number of classes.
    """
    if path is None:
        return None
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise LabelsError(f"cannot read labels file {path!r}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise LabelsError(f"cannot read labels file {path!r}: not UTF-8 text") from exc
    labels = [line.strip() for line in text.rstrip("\n").split("\n")] if text.strip() else []
    if classes is not None and len(labels) != classes:
        raise LabelsError(f"labels file {path!r} has {len(labels)} lines but the model output has {classes} classes")
    return labels


def resolve_target(spec: str, labels: list[str] | None, classes: int | None, output_name: str) -> int | None:
    """``pred`` -> None (the engine takes the argmax); an integer or a label name -> the class index.

    Raises
    ------
    TargetError
        For an index outside ``0 .. classes-1`` or text that is neither ``pred``, an integer nor a label.
    """
    s = spec.strip()
    if s.lower() in ("pred", "predicted", "argmax"):
        return None
    if re.fullmatch(r"[+-]?\d+", s):
        target = int(s)
    elif labels is not None and s in labels:
        target = labels.index(s)
    else:
        hint = " or a label from --labels" if labels is not None else ""
        raise TargetError(f"target {spec!r} is not 'pred', a class index{hint}")
    if classes is not None and not 0 <= target < classes:
        raise TargetError(f"target {target} is out of range: the output {output_name!r} has {classes} classes "
                          f"(0..{classes - 1})")
    return target


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
    arr = _open_array(item.source)
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

