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

from ..errors import OutputDirError, UsageError


def _describe(exc: OSError) -> str:
    return exc.strerror or errno.errorcode.get(exc.errno or 0, type(exc).__name__)


def output_path(path: str | os.PathLike[str], option: str = "--out") -> Path:
    """``path`` checked and with ``missing/..`` pairs removed, so that creating it makes no folder that is not
    part of the result (``--out new/../out2`` must not leave ``new/`` behind). A ``..`` after a folder that exists
    is kept as it is: that folder may be a symbolic link, whose ``..`` is not its lexical parent.

    Raises
    ------
    UsageError
        For an empty path (it would mean the current folder by accident) or one with a NUL byte.
    """
    text = os.fspath(path)
    if not str(text).strip():
        raise UsageError(f"{option} is empty; name a folder (use {option} . for the current one)")
    if "\0" in str(text):
        raise UsageError(f"{option} {str(text)!r} contains a NUL byte")
    parts: list[str] = []
    for part in Path(text).parts:
        if part == ".." and parts and parts[-1] not in ("..", os.sep) and not os.path.lexists(os.path.join(*parts)):
            parts.pop()
        else:
            parts.append(part)
    return Path(*parts) if parts else Path(".")


def make_output_dir(path: str | os.PathLike[str], option: str = "--out") -> tuple[Path, list[Path]]:
    """:func:`prepare_output_dir`, also returning the folders it created, outermost first (for cleaning up after a
    failed run)."""
    out = output_path(path, option)
    created: list[Path] = []
    missing = [out, *out.parents]
    missing = [p for p in missing if not os.path.lexists(p)][::-1]
    if os.path.lexists(out) and not out.is_dir():
        raise OutputDirError(f"output directory {str(out)!r} is not writable: a file of that name exists")
    try:
        for folder in missing:
            try:
                folder.mkdir()
            except FileExistsError:
                if not folder.is_dir():
                    raise
                continue  # made by someone else meanwhile
            created.append(folder)
    except FileExistsError:
        remove_created(created)
        raise OutputDirError(f"output directory {str(out)!r} is not writable: a file of that name exists") from None
    except OSError as exc:
        remove_created(created)
        raise OutputDirError(f"output directory {str(out)!r} is not writable: {_describe(exc)}") from exc
    try:
        _probe(out)
    except OutputDirError:
        remove_created(created)
        raise
    return out, created


def remove_created(created: list[Path]) -> None:
    """Remove the folders :func:`make_output_dir` created, innermost first, where they are still empty."""
    for folder in reversed(created):
        with contextlib.suppress(OSError):
            folder.rmdir()


def prepare_output_dir(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` if needed (:func:`output_path` first) and prove it writable by creating and removing a probe
    file.

    Raises
    ------
    UsageError
        For an empty path or one with a NUL byte.
    OutputDirError
        When the folder cannot be created (a file is in the way, no permission, read-only file system) or a file
        cannot be created in it.
    """
    return make_output_dir(path)[0]


def _probe(out: Path) -> None:
    if not out.is_dir():
        raise OutputDirError(f"output directory {str(out)!r} is not writable: it is not a directory")
    try:
        fd, probe = tempfile.mkstemp(prefix=".onnxlrp-probe-", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputDirError(f"output directory {str(out)!r} is not writable: {_describe(exc)}") from exc


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
