"""The dataset of ``audit`` and ``diff``: the DATA paths with the command's labels, columns and preprocessing."""
from __future__ import annotations

import argparse

from ..audit.dataset import Dataset
from ..errors import UsageError
from ..inputs import images

IMAGE_OPTIONS = ("size", "preprocess", "mean", "std", "scale", "layout")


def preprocessing(args: argparse.Namespace, input_shape) -> images.Preprocessing | None:
    """The image preprocessing the options ask for, or ``None`` when the model input is not an image batch (then
    image options are refused)."""
    if len(tuple(input_shape)) != 4:
        given = [f"--{name}" for name in IMAGE_OPTIONS if getattr(args, name, None)]
        if given or getattr(args, "grayscale", False):
            raise UsageError(f"{', '.join(given) or '--grayscale'}: the model input "
                             f"{images.format_shape(input_shape)} is not an image batch")
        return None
    try:
        return images.resolve_preprocessing(input_shape, size=args.size, layout=args.layout,
                                            grayscale=args.grayscale or None, scale=args.scale, mean=args.mean,
                                            std=args.std, preset=getattr(args, "preprocess", None))
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


def open_dataset(args: argparse.Namespace, explainer, labels: list[str] | None) -> Dataset:
    """The :class:`~onnxlrp.audit.dataset.Dataset` of ``args.data`` for ``explainer``'s input."""
    return Dataset(args.data, explainer.input_shape, explainer.input_dtype, explainer.input_name,
                   prep=preprocessing(args, explainer.input_shape), labels=labels,
                   column=getattr(args, "column", None), label_column=getattr(args, "label_column", None))
