"""Which output entries are explained, and the relevance a backward walk starts from.

``class_indices`` is the one validator for every class index a user gives (``target``, ``contrast``); ``targets``
picks the predicted class when none is given; ``seed`` places the target logit (``"logit"``) or 1 (``"one_hot"``)
at each sample's explained entry of the flattened output.
"""
from __future__ import annotations

import numpy as np

from ..errors import TargetError
from .backend import to_numpy

SEED_MODES = ("logit", "one_hot")


def class_indices(value, n: int, classes: int, output_name: str, what: str, error=TargetError) -> np.ndarray:
    """``value`` (one class index, or one per sample) as an int64 array of ``n`` indices in ``[0, classes)``;
    ``error(message)`` is raised otherwise (``what`` names the parameter: target, contrast)."""
    a = np.asarray(value)
    if a.dtype.kind not in "iu" or a.ndim > 1:
        shown = " ".join(repr(value).split())  # one line: an array's repr spans several
        raise error(f"{what} must be an int or one int per sample; got {shown[:80]}")
    a = np.broadcast_to(a, (n,)) if a.ndim == 0 else a
    if a.shape != (n,):
        raise error(f"{what} has {a.size} entries but the batch has {n} samples")
    bad = a[(a < 0) | (a >= classes)]
    if bad.size:
        raise error(f"{what} {int(bad[0])} is out of range for output {output_name!r} with {classes} classes "
                    f"(valid: 0..{classes - 1})")
    return a.astype(np.int64)


def targets(output, target, output_name: str) -> np.ndarray:
    """The explained entry of each sample's flattened ``output``: ``target`` checked, or the arg-max."""
    out = to_numpy(output).reshape(output.shape[0], -1)
    if target is None:
        return out.argmax(axis=1)
    return class_indices(target, out.shape[0], out.shape[1], output_name, "target", TargetError)


def seed(xp, output, indices, mode: str):
    """Zeros shaped like ``output`` except each sample's entry ``indices[i]`` of the flattened output: the logit
    there (``mode="logit"``) or 1 (``"one_hot"``)."""
    flat = output.reshape(output.shape[0], -1)
    out = xp.zeros_like(flat)
    rows = xp.arange(flat.shape[0])
    cols = xp.asarray(indices)
    out[rows, cols] = flat[rows, cols] if mode == "logit" else 1.0
    return out.reshape(output.shape)
