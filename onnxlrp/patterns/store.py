"""The pattern file: what ``onnxlrp patterns`` writes and ``pattern_net`` / ``pattern_attribution`` read.

A ``.npz`` holding one array per fitted type and layer (``p0``, ``p1``, ...) and ``meta``, a JSON text::

    {"format": "onnxlrp-patterns", "version": 1, "samples": 1000, "rows": {...},
     "patterns": [{"type": "relu.positive", "layer": "/features/0/Conv", "op_type": "Conv", "key": "p0",
                   "shape": [16, 3, 3, 3]}, ...]}

``layer`` is the node name in the model as onnxlrp canonizes it (``onnxlrp inspect`` lists them); a pattern has the
shape of its layer's effective weight: ``(M, C/group, *K)`` for a Conv, ``(K, M)`` (in × out features) for a dense
layer (Gemm's ``transB`` and ``alpha`` applied), the constant operand's shape for a MatMul. Types:

* ``linear``: ``a = cov(x, y) / (wᵀ cov(x, y))`` over every row (the paper's ``S_a``, the linear estimator);
* ``relu.positive`` and ``relu.negative``: the two-component estimator ``S_a+-``: the same statistics over the rows
  where the layer's output (bias included, the input of the ReLU that follows) is ``> 0``, respectively ``≤ 0``, with
  ``E[y]`` over every row (iNNvestigate's ``ReLUPositivePattern`` / ``ReLUNegativePattern``).

The methods use ``relu.positive`` (``pattern_type="relu"``, iNNvestigate's default) or ``linear``.
"""
from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from .. import limits
from ..errors import InputFileError, MethodError

FORMAT = "onnxlrp-patterns"
VERSION = 1
#: the types a pattern file may hold
FIT_TYPES = ("linear", "relu.positive", "relu.negative")
#: what the methods' ``pattern_type`` takes -> the fitted type it reads
PATTERN_TYPES = {"relu": "relu.positive", "linear": "linear", "relu.positive": "relu.positive",
                 "relu.negative": "relu.negative"}


@dataclass
class Patterns:
    """Fitted patterns: ``arrays[type][layer]`` (float64), the number of samples fitted on, and per layer the number
    of rows (samples × output positions) each pattern's statistics ran over."""

    arrays: dict[str, dict[str, np.ndarray]]
    samples: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    op_types: dict[str, str] = field(default_factory=dict)

    def of_type(self, pattern_type: str) -> dict[str, np.ndarray]:
        """The layer -> pattern map the methods use for ``pattern_type`` (``relu`` reads ``relu.positive``)."""
        wanted = PATTERN_TYPES.get(pattern_type, pattern_type)
        if wanted not in self.arrays:
            have = ", ".join(sorted(self.arrays)) or "none"
            raise MethodError(f"the patterns hold no {wanted!r} patterns (pattern_type={pattern_type!r}); they hold: "
                              f"{have}; fit them with `onnxlrp patterns --type`")
        return self.arrays[wanted]


class PatternSource:
    """The declaration of the methods' ``patterns`` parameter (:data:`onnxlrp.methods.params.PARAMS`): a path to a
    pattern file, a :class:`Patterns`, or a mapping (``{layer: array}`` for one type, or ``{type: {layer: array}}``).
    The file is read, and its layers matched to the model, when a method runs."""

    kind = "patterns"
    optional = True
    low = high = None
    choices = ()

    def describe(self) -> str:
        return "a pattern file (.npz from `onnxlrp patterns`), or a mapping layer -> array"

    def check(self, method: str, name: str, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if (isinstance(value, str) and value) or isinstance(value, (Patterns, Mapping)):
            return value
        shown = " ".join(repr(value).split())
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        raise MethodError(f"{name} must be {self.describe()}; got {shown} (a parameter of method {method!r})")


PATTERN_SOURCE = PatternSource()


def save_patterns(target, patterns: Patterns) -> None:
    """Write ``patterns`` to ``target``, a path or a binary file (``.npz``, uncompressed)."""
    arrays: dict[str, np.ndarray] = {}
    entries = []
    for kind in sorted(patterns.arrays):
        for layer, array in patterns.arrays[kind].items():
            key = f"p{len(arrays)}"
            arrays[key] = np.asarray(array, dtype=np.float64)
            entries.append({"type": kind, "layer": layer, "op_type": patterns.op_types.get(layer, ""), "key": key,
                            "shape": list(array.shape)})
    meta = {"format": FORMAT, "version": VERSION, "samples": int(patterns.samples),
            "rows": {k: int(v) for k, v in patterns.rows.items()}, "patterns": entries}
    arrays["meta"] = np.array(json.dumps(meta))
    if hasattr(target, "write"):
        np.savez(target, **arrays)
        return
    with open(target, "wb") as handle:
        np.savez(handle, **arrays)


def load_patterns(source) -> Patterns:
    """A :class:`Patterns` from a file path, a :class:`Patterns`, ``{layer: array}`` (taken as every type) or
    ``{type: {layer: array}}``.

    Raises
    ------
    InputFileError
        For a path that is missing, not a regular file, over the array size limit, or not a pattern file.
    MethodError
        For a mapping of another form.
    """
    if isinstance(source, Patterns):
        return source
    if isinstance(source, Mapping):
        return _from_mapping(source)
    path = limits.check_file(os.fspath(source), "array", InputFileError, "pattern file")
    stat = os.stat(path)
    return _read(os.path.realpath(path), stat.st_mtime_ns, stat.st_size)


def _from_mapping(source: Mapping) -> Patterns:
    if all(isinstance(v, Mapping) for v in source.values()) and source:
        unknown = sorted(set(source) - set(FIT_TYPES))
        if unknown:
            raise MethodError(f"patterns: unknown pattern type {unknown[0]!r}; types are {', '.join(FIT_TYPES)}")
        return Patterns({k: {str(n): _array(a, n) for n, a in v.items()} for k, v in source.items()})
    if any(isinstance(v, Mapping) for v in source.values()):
        raise MethodError("patterns must map layer names to arrays, or pattern types to such maps; got a mix")
    layers = {str(n): _array(a, n) for n, a in source.items()}
    return Patterns({kind: layers for kind in FIT_TYPES})


def _array(value, layer) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise MethodError(f"the pattern of layer {layer!r} is not an array of numbers") from None
    if not np.isfinite(array).all():
        raise MethodError(f"the pattern of layer {layer!r} contains NaN or inf")
    return array


@lru_cache(maxsize=4)
def _read(path: str, mtime_ns: int, size: int) -> Patterns:
    """The file's patterns, cached by path, modification time and size (a method reads them once per batch)."""
    bad = f"pattern file {path!r} is not a pattern file written by `onnxlrp patterns`"
    try:
        with np.load(path, allow_pickle=False) as data:
            if "meta" not in data.files:
                raise InputFileError(f"{bad} (no 'meta' entry)")
            meta = json.loads(str(data["meta"]))
            if not isinstance(meta, dict) or meta.get("format") != FORMAT:
                raise InputFileError(f"{bad} (format {meta.get('format') if isinstance(meta, dict) else None!r})")
            if meta.get("version") != VERSION:
                raise InputFileError(f"pattern file {path!r} has format version {meta.get('version')!r}; this "
                                     f"onnxlrp reads version {VERSION}")
            arrays: dict[str, dict[str, np.ndarray]] = {}
            op_types = {}
            for entry in meta["patterns"]:
                if entry["type"] not in FIT_TYPES or entry["key"] not in data.files:
                    raise InputFileError(f"{bad} (entry {entry.get('key')!r} of type {entry.get('type')!r})")
                array = np.asarray(data[entry["key"]], dtype=np.float64)
                if not np.isfinite(array).all():
                    raise InputFileError(f"pattern file {path!r}: the pattern of layer {entry['layer']!r} contains "
                                         "NaN or inf")
                arrays.setdefault(entry["type"], {})[str(entry["layer"])] = array
                op_types[str(entry["layer"])] = str(entry.get("op_type", ""))
            return Patterns(arrays, int(meta.get("samples", 0)), dict(meta.get("rows", {})), op_types)
    except InputFileError:
        raise
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        raise InputFileError(f"{bad}: {type(exc).__name__}: {' '.join(str(exc).split())[:120]}") from None
