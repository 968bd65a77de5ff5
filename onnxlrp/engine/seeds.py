"""Which output entries are explained, and the relevance a backward walk starts from.

``class_indices`` is the one validator for every class index a user gives (``target``, ``contrast``); ``targets``
picks the predicted class when none is given and turns a :class:`Position` (``target=Position(box, class)`` for a
detector's ``(N, boxes, classes)`` output) into an index of the flattened output; ``seed`` places the target
logit (``"logit"``) or 1 (``"one_hot"``) at each sample's explained entry of the flattened output.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import TargetError
from .backend import to_numpy

SEED_MODES = ("logit", "one_hot")


@dataclass(frozen=True)
class Position:
    """A position in each sample's output, e.g. ``Position(17, 5)``: the class-5 score of box 17 in a detector's
    ``(N, boxes, classes)`` output. ``target=`` takes one, or one per sample."""

    index: tuple[int, ...]

    def __init__(self, *index):
        if len(index) == 1 and isinstance(index[0], (tuple, list)):
            index = tuple(index[0])
        object.__setattr__(self, "index", tuple(index))

    def flat(self, shape: tuple, output_name: str) -> int:
        """The index into the flattened per-sample output of ``shape``; a :class:`TargetError` when it does not fit."""
        if len(self.index) != len(shape) or not all(isinstance(i, (int, np.integer)) for i in self.index):
            noun = "index" if len(shape) == 1 else "indices"
            raise TargetError(f"target position {list(self.index)} does not fit output {output_name!r}, whose samples "
                              f"have shape {tuple(shape)}: give {len(shape)} integer {noun}")
        if not all(0 <= i < n for i, n in zip(self.index, shape)):
            raise TargetError(f"target position {list(self.index)} is out of range for output {output_name!r}, "
                              f"whose samples have shape {tuple(shape)}")
        return int(np.ravel_multi_index(tuple(int(i) for i in self.index), tuple(shape)))


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
    shape = tuple(output.shape[1:])
    if isinstance(target, Position):
        target = target.flat(shape, output_name)
    elif isinstance(target, (list, tuple)) and any(isinstance(t, Position) for t in target):
        if not all(isinstance(t, Position) for t in target):
            raise TargetError("target mixes positions and class indices; give one kind")
        target = [t.flat(shape, output_name) for t in target]
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
