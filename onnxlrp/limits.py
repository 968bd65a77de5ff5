"""What onnxlrp refuses to read, and how to raise the limits.

Every file a user names is checked before it is opened: it must be a regular file (a FIFO, device or socket would
block or never end) no larger than the limit for its kind. Each limit can be raised with an environment variable:

===========  ==============================  =================
kind         environment variable            default
===========  ==============================  =================
model        ``ONNXLRP_MAX_MODEL_BYTES``     2 GiB (protobuf's own limit; larger models keep weights in
                                             external data files, each checked as ``external``)
external     ``ONNXLRP_MAX_EXTERNAL_BYTES``  64 GiB
array        ``ONNXLRP_MAX_ARRAY_BYTES``     4 GiB
image        ``ONNXLRP_MAX_IMAGE_BYTES``     256 MiB
labels       ``ONNXLRP_MAX_LABELS_BYTES``    16 MiB
tokenizer    ``ONNXLRP_MAX_TOKENIZER_BYTES`` 256 MiB
texts        ``ONNXLRP_MAX_TEXTS_BYTES``     64 MiB (``explain-text --file``)
dataset      ``ONNXLRP_MAX_DATASET_BYTES``   1 TiB (Parquet files and list files of ``audit``/``diff``,
                                             read in row groups or lines, never whole)
===========  ==============================  =================

Images are also limited in pixels (width x height, read from the header before anything is decoded):
``ONNXLRP_MAX_IMAGE_PIXELS``, default 89,478,485 (Pillow's own warning threshold), see :func:`image_pixel_limit`.
"""
from __future__ import annotations

import os
import stat

from .errors import OnnxLrpError

GIB = 1 << 30
MIB = 1 << 20

#: kind -> (environment variable, default limit in bytes)
FILE_LIMITS = {
    "model": ("ONNXLRP_MAX_MODEL_BYTES", 2 * GIB),
    "external": ("ONNXLRP_MAX_EXTERNAL_BYTES", 64 * GIB),
    "array": ("ONNXLRP_MAX_ARRAY_BYTES", 4 * GIB),
    "image": ("ONNXLRP_MAX_IMAGE_BYTES", 256 * MIB),
    "labels": ("ONNXLRP_MAX_LABELS_BYTES", 16 * MIB),
    "tokenizer": ("ONNXLRP_MAX_TOKENIZER_BYTES", 256 * MIB),
    "texts": ("ONNXLRP_MAX_TEXTS_BYTES", 64 * MIB),
    "dataset": ("ONNXLRP_MAX_DATASET_BYTES", 1024 * GIB),
}

#: what a file of each kind is called in messages
FILE_NOUNS = {"model": "an .onnx file", "array": "an .npy file", "image": "an image file", "labels": "a text file",
              "tokenizer": "a tokenizer JSON file", "texts": "a text file",
              "dataset": "a Parquet or list file"}


def file_limit(kind: str) -> int:
    """The size limit in bytes for ``kind`` (its environment variable, if set to a positive integer)."""
    variable, default = FILE_LIMITS[kind]
    value = os.environ.get(variable, "")
    return int(value) if value.isdigit() and int(value) > 0 else default


def _size(n: int) -> str:
    for unit, scale in (("GiB", GIB), ("MiB", MIB), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} bytes"


def check_file(path, kind: str, error: type[OnnxLrpError], what: str | None = None) -> str:
    """``path`` as a string if it names a regular file within the size limit for ``kind``; otherwise ``error`` with
    one line saying why (missing, a folder, a FIFO/device/socket, too large and how to raise the limit)."""
    what = what or f"{kind} file"
    try:
        text = os.fspath(path)
        info = os.stat(text)
    except FileNotFoundError:
        raise error(f"{what} {str(path)!r} does not exist") from None
    except (TypeError, ValueError) as exc:  # not a path, or a NUL byte in it
        raise error(f"{what} {str(path)!r} is not a usable path: {exc}") from None
    except OSError as exc:
        raise error(f"{what} {str(path)!r} cannot be read: {exc.strerror or exc}") from None
    if stat.S_ISDIR(info.st_mode):
        raise error(f"{what} {text!r} is a directory, not {FILE_NOUNS.get(kind, 'a file')}")
    if not stat.S_ISREG(info.st_mode):
        raise error(f"{what} {text!r} is not a regular file (a FIFO, device or socket); refusing to read it")
    limit = file_limit(kind)
    if info.st_size > limit:
        variable = FILE_LIMITS[kind][0]
        raise error(f"{what} {text!r} is {_size(info.st_size)}, over the {_size(limit)} limit for {kind} files; set "
                    f"{variable} (bytes) to raise it")
    return text


# ---------------------------------------------------------------------------------------------- memory

#: the share of the machine's available memory one explanation may plan to use, unless ONNXLRP_MEMORY_BUDGET is set
MEMORY_SHARE = 0.5
#: peak memory of one pass relative to the forward values it keeps (relevance per tensor, kernel temporaries)
PASS_OVERHEAD = 3


def available_memory() -> int:
    """Bytes of memory available now (``MemAvailable`` in ``/proc/meminfo``; 8 GiB where that is unreadable)."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 8 * GIB


def memory_budget(budget: int | None = None) -> int:
    """Bytes one explanation may plan to use: ``budget`` if given, else ``ONNXLRP_MEMORY_BUDGET`` (bytes), else
    half the available memory."""
    if budget is not None:
        return int(budget)
    value = os.environ.get("ONNXLRP_MEMORY_BUDGET", "")
    if value.isdigit() and int(value) > 0:
        return int(value)
    return int(available_memory() * MEMORY_SHARE)


# ---------------------------------------------------------------------------------------------- images

#: (environment variable, default) of the most pixels (width x height) an image may have; the default is Pillow's
#: ``Image.MAX_IMAGE_PIXELS``, above which Pillow itself warns of a decompression bomb
IMAGE_PIXELS = ("ONNXLRP_MAX_IMAGE_PIXELS", 89_478_485)


def image_pixel_limit() -> int:
    """The most pixels an image may have (``ONNXLRP_MAX_IMAGE_PIXELS``, if set to a positive integer)."""
    variable, default = IMAGE_PIXELS
    value = os.environ.get(variable, "").strip().replace("_", "")
    return int(value) if value.isdigit() and int(value) > 0 else default


#: binary multipliers of :func:`parse_bytes`'s suffixes
BYTE_SUFFIXES = {"": 1, "B": 1, "K": 1 << 10, "M": MIB, "G": GIB, "T": 1 << 40}


def parse_bytes(text: str) -> int:
    """``2G``, ``512M``, ``1.5GiB``, ``64k`` or ``1000000`` -> bytes (suffixes are binary: K = 1024); raises
    ``ValueError`` for anything else or a value below one byte."""
    s = str(text).strip().upper().replace("_", "")
    for tail in ("IB", "B"):
        if s.endswith(tail) and s[:-len(tail)][-1:] in ("K", "M", "G", "T"):
            s = s[:-len(tail)]
            break
    unit = s[-1:] if s[-1:] in BYTE_SUFFIXES and not s[-1:].isdigit() else ""
    number = s[:len(s) - len(unit)].strip()
    try:
        value = float(number)
    except ValueError:
        raise ValueError(f"invalid size {text!r}; give bytes, or a number with K, M, G or T (e.g. 512M, 2G)") from None
    if not value == value or value in (float("inf"), float("-inf")) or value * BYTE_SUFFIXES[unit] < 1:
        raise ValueError(f"invalid size {text!r}; it must be at least 1 byte (e.g. 512M, 2G)")
    return int(value * BYTE_SUFFIXES[unit])


def format_bytes(n: int) -> str:
    """``1.5 GiB``-style text for a byte count."""
    return _size(int(n))
