"""The dataset of ``audit`` and ``diff``: the DATA paths with the command's labels, columns and preprocessing."""
from __future__ import annotations

import argparse

from ..audit.dataset import Dataset
from ..errors import UsageError
from ..inputs import images
from .inputs import preprocessing_options

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
    return preprocessing_options(args, input_shape)


def open_dataset(args: argparse.Namespace, explainer, labels: list[str] | None) -> Dataset:
    """The :class:`~onnxlrp.audit.dataset.Dataset` of ``args.data`` for ``explainer``'s input."""
    return Dataset(args.data, explainer.input_shape, explainer.input_dtype, explainer.input_name,
                   prep=preprocessing(args, explainer.input_shape), labels=labels,
                   column=getattr(args, "column", None), label_column=getattr(args, "label_column", None))
