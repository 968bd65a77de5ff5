"""Atomic file output for the command line: every result file appears whole or not at all.

A file is written to a hidden temporary name in its final folder and moved into place with :func:`os.replace`,
which is atomic on POSIX and Windows within one file system. An error or Ctrl-C while writing removes the
temporary file, so an interrupted run leaves only complete files behind.
"""
from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from ..errors import OutputDirError


def _describe(exc: OSError) -> str:
    return exc.strerror or errno.errorcode.get(exc.errno or 0, type(exc).__name__)


def prepare_output_dir(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` if needed and prove it writable by creating and removing a probe file.

    Raises
    ------
    OutputDirError
        When the folder cannot be created (a file is in the way, no permission, read-only file system) or a file
        cannot be created in it.
    """
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputDirError(f"output directory {str(out)!r} is not writable: a file of that name exists") from None
    except OSError as exc:
        raise OutputDirError(f"output directory {str(out)!r} is not writable: {_describe(exc)}") from exc
    if not out.is_dir():
        raise OutputDirError(f"output directory {str(out)!r} is not writable: it is not a directory")
    try:
        fd, probe = tempfile.mkstemp(prefix=".onnxlrp-probe-", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputDirError(f"output directory {str(out)!r} is not writable: {_describe(exc)}") from exc
    return out


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb", encoding: str | None = None) -> Iterator[IO]:
    """Open a temporary file next to ``path``; on normal exit it is closed and renamed onto ``path``.

    (No fsync: the guarantee is against errors and interrupts, not power loss, and syncing every small PNG of a
    large run costs more than it protects.)

    On any exception (``KeyboardInterrupt`` included) the temporary file is removed and ``path`` is untouched.

    Raises
    ------
    OutputDirError
        When the temporary file cannot be created, written or renamed.
    """
    target = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise OutputDirError(f"cannot write {str(target)!r}: {_describe(exc)}") from exc
    ok = False
    try:
        with os.fdopen(fd, mode, encoding=encoding if "b" not in mode else None) as handle:
            yield handle
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
        ok = True
    except OutputDirError:
        raise
    except OSError as exc:
        raise OutputDirError(f"cannot write {str(target)!r}: {_describe(exc)}") from exc
    finally:
        if not ok:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_write(path, "wb") as handle:
        handle.write(data)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    with atomic_write(path, "w", encoding="utf-8") as handle:
        handle.write(text)
