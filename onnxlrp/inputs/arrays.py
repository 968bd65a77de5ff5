"""``.npy`` files in: the header read and checked by onnxlrp before numpy maps the data, so that a malformed or
hostile header (a negative or absurd shape, Python objects, a header that is not a dict) ends as one
:class:`~onnxlrp.errors.InputFileError` and never as a pickle load, an overflow warning or a huge allocation.

Arrays are memory-mapped read-only; one sample is copied when a batch is built.
"""
from __future__ import annotations

import ast
import math
import os
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import limits
from ..errors import InputFileError

MAGIC = b"\x93NUMPY"
#: longest header read (numpy's own default limit is 10,000 bytes)
MAX_HEADER_BYTES = 65536
#: numpy's limit on the number of dimensions
MAX_DIMS = 64


@dataclass(frozen=True)
class NpyHeader:
    """What a ``.npy`` header says: the array's shape, dtype and memory order, and where the data starts."""

    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool
    offset: int

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def _bad(path, reason: str) -> InputFileError:
    return InputFileError(f"cannot read array {str(path)!r}: {reason}")


def read_header(path: str | Path) -> NpyHeader:
    """Parse and check a ``.npy`` header (versions 1, 2 and 3) without numpy's loader.

    Raises
    ------
    InputFileError
        For a path that is not a regular file within the array size limit, a file without the NumPy magic, a
        header that is not ``{'descr': ..., 'fortran_order': ..., 'shape': (...)}``, a shape with negative or
        non-integer dimensions, an object (pickled) dtype, or data shorter than the shape needs.
    """
    text = limits.check_file(path, "array", InputFileError, "array")
    try:
        with open(text, "rb") as handle:
            head = handle.read(12)
            if len(head) < 10 or head[:6] != MAGIC:
                raise _bad(path, "not a .npy file (no NumPy header)")
            major = head[6]
            if major == 1:
                (length,), start = struct.unpack("<H", head[8:10]), 10
            elif major in (2, 3) and len(head) == 12:
                (length,), start = struct.unpack("<I", head[8:12]), 12
            else:
                raise _bad(path, f"unknown .npy format version {major}.{head[7]}")
            if length > MAX_HEADER_BYTES:
                raise _bad(path, f"its header claims {length:,} bytes (more than {MAX_HEADER_BYTES:,}); not a .npy "
                                 "file numpy writes")
            handle.seek(start)
            raw = handle.read(length)
            size = os.fstat(handle.fileno()).st_size
    except InputFileError:  # an OSError too
        raise
    except OSError as exc:
        raise _bad(path, exc.strerror or str(exc)) from exc
    if len(raw) != length:
        raise _bad(path, "the file ends inside its header")
    try:
        meta = ast.literal_eval(raw.decode("utf-8" if major == 3 else "latin1"))
    except Exception as exc:  # noqa: BLE001 - SyntaxError, ValueError, MemoryError, RecursionError, ...
        raise _bad(path, f"its header is not a Python literal ({type(exc).__name__})") from None
    if not isinstance(meta, dict) or set(meta) != {"descr", "shape", "fortran_order"}:
        raise _bad(path, "its header is not a dict with exactly 'descr', 'fortran_order' and 'shape'")
    shape, order = meta["shape"], meta["fortran_order"]
    if not isinstance(shape, tuple) or not all(type(d) is int for d in shape):
        raise _bad(path, f"its header's shape {shape!r} is not a tuple of integers")
    if any(d < 0 for d in shape):
        raise _bad(path, f"its header's shape {shape} has a negative dimension")
    if len(shape) > MAX_DIMS:
        raise _bad(path, f"its header's shape has {len(shape)} dimensions (numpy allows {MAX_DIMS})")
    if not isinstance(order, bool):
        raise _bad(path, f"its header's fortran_order {order!r} is not True or False")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dtype = np.lib.format.descr_to_dtype(meta["descr"])
    except Exception as exc:  # noqa: BLE001 - numpy raises ValueError, TypeError, ... for a bad descriptor
        raise _bad(path, f"its header's dtype {meta['descr']!r} is not a valid dtype ({type(exc).__name__})") from None
    if dtype.hasobject:
        raise _bad(path, "it holds Python objects, not numbers (onnxlrp never unpickles)")
    header = NpyHeader(tuple(shape), dtype, order, start + length)
    available = size - header.offset
    if header.nbytes > available:
        raise _bad(path, f"its header claims shape {tuple(shape)} of {dtype} ({limits.format_bytes(header.nbytes)}) "
                         f"but the file holds {limits.format_bytes(max(available, 0))} of data")
    return header


def open_array(path: str | Path) -> np.ndarray:
    """The array in a ``.npy`` file, memory-mapped read-only after :func:`read_header` checked it
    (``allow_pickle`` is never set).

    Raises
    ------
    InputFileError
        As :func:`read_header`, or when numpy cannot map the data.
    """
    header = read_header(path)
    try:
        if header.nbytes == 0:  # mmap cannot map zero bytes
            return np.zeros(header.shape, dtype=header.dtype)
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            return np.load(os.fspath(path), mmap_mode="r", allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - ValueError, OSError, OverflowError, ...: never an internal error
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise _bad(path, reason) from None
