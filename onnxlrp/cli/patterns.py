"""``onnxlrp patterns``: fit PatternNet/PatternAttribution signal patterns on a data set and write them to a ``.npz``.

The data are image files, ``.npy`` arrays (one sample or a batch) and ``.npz`` archives (each array one sample or a
batch), or folders of them; they are read batch by batch and only the statistics of :mod:`onnxlrp.patterns.fit` are
kept, so memory does not grow with the data set. Images are preprocessed as ``explain`` does.

:func:`add_parser` is imported while the parser is built, so this module imports neither numpy nor the engine at
import time.
"""
from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from pathlib import Path

TYPE_CHOICES = {"linear": ("linear",), "relu": ("relu.positive", "relu.negative"),
                "relu.positive": ("relu.positive",), "relu.negative": ("relu.negative",)}


def add_parser(sub, command: Callable, add_preprocessing: Callable, add_run_options: Callable,
               add_model_selection: Callable, add_common: Callable) -> argparse.ArgumentParser:
    """The ``patterns`` subcommand on the subparsers ``sub``; ``command`` makes its lazily imported function."""
    p = sub.add_parser(
        "patterns", help="fit PatternNet/PatternAttribution patterns on a data set (writes a .npz)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Fit the signal patterns of PatternNet and PatternAttribution (Kindermans et al. 2018) for\n"
                    "every Conv and dense layer of the model from its activations over DATA: per output unit\n"
                    "a = cov(x, y) / (w^T cov(x, y)), x the layer input (a Conv's receptive-field patch), y = w^T x.\n"
                    "'linear' fits it over every sample, 'relu' the two-component estimator (a+ over the samples\n"
                    "whose layer output is > 0, a- over the others). Streamed: memory holds the sums, not the data.",
        epilog="Example:\n"
               "  onnxlrp patterns model.onnx train_images/ -o patterns.npz\n"
               "  onnxlrp explain model.onnx photo.png --method pattern_attribution --set patterns=patterns.npz")
    p.add_argument("model", metavar="MODEL", help="path of the .onnx file")
    p.add_argument("data", metavar="DATA", nargs="+",
                   help="image files, .npy arrays, .npz archives, or folders of them (not recursive)")
    p.add_argument("-o", "--out", default="patterns.npz", metavar="FILE",
                   help="pattern file to write (default patterns.npz)")
    p.add_argument("--type", dest="types", default="linear,relu", metavar="T[,T]",
                   help="pattern types, comma-separated: linear, relu (both relu components), relu.positive, "
                        "relu.negative (default linear,relu)")
    add_preprocessing(p.add_argument_group("image preprocessing (as for explain)"))
    add_run_options(p.add_argument_group("run"), budget="a batch that would need more is refused",
                    quiet="print nothing on success")
    add_model_selection(p)
    add_common(p)
    p.set_defaults(func=command("patterns", "cmd_patterns"))
    return p


def _types(text: str) -> tuple[str, ...]:
    from ..errors import UsageError
    chosen: list[str] = []
    for part in (t.strip() for t in text.split(",")):
        if part not in TYPE_CHOICES:
            raise UsageError(f"--type {part!r} is not a pattern type; choose from {', '.join(TYPE_CHOICES)}")
        chosen += [t for t in TYPE_CHOICES[part] if t not in chosen]
    return tuple(chosen)


def cmd_patterns(args: argparse.Namespace) -> int:
    import time

    import numpy as np

    from .. import limits
    from ..errors import ModelLoadError, UsageError
    from ..patterns import PatternStatistics, save_patterns
    from . import files as fileio
    from .inputs import expand_inputs, image_preprocessing, open_explainer, plan_items

    t0 = time.monotonic()
    types = _types(args.types)
    limits.check_file(args.model, "model", ModelLoadError, "model file")
    out = fileio.output_path(args.out, "--out")
    if out.is_dir():
        raise UsageError(f"--out {str(out)!r} is a folder; name the .npz file to write")
    files, archives = _data_files(args.data, expand_inputs)
    ex = open_explainer(args)
    session = ex.session
    input_shape = tuple(ex.input_shape)
    input_dtype = np.dtype(ex.input_dtype)
    prep = image_preprocessing(args, files, input_shape)
    items = plan_items(files, input_shape, input_dtype, ex.input_name)
    static = input_shape[0] if input_shape and isinstance(input_shape[0], int) else None
    stats = PatternStatistics(session, types)
    for x in _batches(items, archives, prep, input_shape, input_dtype, static or args.batch_size, ex.input_name):
        if static is not None and len(x) != static:
            import warnings
            warnings.warn(f"the model takes batches of exactly {static}: the last {len(x)} samples are not used",
                          stacklevel=1)
            continue
        stats.update(x)
    if stats.samples == 0:
        raise UsageError(f"no batch of {static} samples to fit on: the model takes batches of exactly {static}")
    patterns = stats.patterns()
    out.parent.mkdir(parents=True, exist_ok=True)
    with fileio.atomic_write(out, "wb") as handle:
        save_patterns(handle, patterns)
    if not args.quiet:
        print(f"fitted {', '.join(types)} patterns of {len(stats.layers)} layers "
              f"({', '.join(layer.name for layer in stats.layers)}) on {stats.samples} samples in "
              f"{time.monotonic() - t0:.1f} s; wrote {out}")
    return 0


def _data_files(paths, expand_inputs) -> tuple[list, list[Path]]:
    """``(image/.npy files as expand_inputs gives them, .npz archives)``; a folder may hold both."""
    from .. import limits
    from ..errors import InputFileError
    from ..inputs.images import IMAGE_SUFFIXES
    plain: list[str] = []
    archives: list[Path] = []
    for text in paths:
        p = Path(text)
        if p.suffix.lower() == ".npz" and not p.is_dir():
            limits.check_file(p, "array", InputFileError, "input")
            archives.append(p)
            continue
        if p.is_dir():
            found = sorted(e for e in p.iterdir() if e.suffix.lower() == ".npz" and e.is_file())
            archives += found
            if found and not any(e.suffix.lower() in (".npy", *IMAGE_SUFFIXES) for e in p.iterdir()):
                continue  # only archives: expand_inputs would call the folder empty
        plain.append(text)
    return (expand_inputs(plain) if plain else []), archives


def _batches(items, archives, prep, input_shape, input_dtype, size: int, input_name: str) -> Iterator:
    """Batches of at most ``size`` samples: the planned images and arrays, then each archive's arrays."""
    import numpy as np

    from .inputs import batches, load_sample, same_shape_runs
    layout = prep.layout if prep is not None else None
    for chunk in batches(items, size):
        loaded = [load_sample(item, prep, layout, input_dtype) for item in chunk]
        for group in same_shape_runs(list(zip(chunk, loaded))):
            yield np.stack([sample for _, (sample, _) in group])
    pending: list = []
    for path in archives:
        for sample in _archive_samples(path, input_shape, input_dtype, input_name):
            pending.append(sample)
            if len(pending) == size:
                yield np.stack(pending)
                pending = []
    if pending:
        yield np.stack(pending)


def _archive_samples(path: Path, input_shape, input_dtype, input_name: str) -> Iterator:
    """The samples of every array in a ``.npz`` (one sample, or a batch, of the model input), checked as ``.npy``
    inputs are."""
    import numpy as np

    from .. import limits
    from ..errors import InputDtypeError, InputFileError, InputShapeError
    limits.check_file(path, "array", InputFileError, "input")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InputFileError(f"cannot read archive {str(path)!r}: {' '.join(str(exc).split())[:120]}") from None
    rank = len(input_shape) - 1

    def fits(shape) -> bool:
        return len(shape) == rank and all(not isinstance(d, int) or d == s for d, s in zip(input_shape[1:], shape))

    with archive:
        for key in archive.files:
            try:
                array = archive[key]
            except (OSError, ValueError) as exc:
                raise InputFileError(f"cannot read {key!r} of archive {str(path)!r}: "
                                     f"{' '.join(str(exc).split())[:120]}") from None
            if array.dtype.kind != "f":
                raise InputDtypeError(f"array {key!r} of {str(path)!r} has dtype {array.dtype}; the model input "
                                      f"{input_name!r} takes floating point")
            if fits(array.shape):
                yield array.astype(input_dtype, copy=False)
            elif array.ndim == rank + 1 and fits(array.shape[1:]):
                yield from array.astype(input_dtype, copy=False)
            else:
                raise InputShapeError(f"array {key!r} of {str(path)!r} has shape {tuple(array.shape)}, neither one "
                                      f"sample nor a batch of the model input {input_name!r}")
