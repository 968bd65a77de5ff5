"""Warnings raised while a command runs: collected instead of printed, so that a failed run prints nothing but its
error line, and a successful one prints each distinct warning once, after its output (``explain`` also keeps them
in ``summary.json`` under ``"warnings"``).

onnxlrp's own notes (an all-zero relevance map, ...) are :class:`RunWarning`; numpy's floating-point warnings and
any other library's are kept too, with their category and source file. Deprecation and import warnings are
ignored, as Python ignores them by default. With ``--debug`` every warning is also printed when it happens.
"""
from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator

from ..errors import OnnxLrpWarning, ZeroRelevanceWarning

#: distinct warnings kept; later ones are only counted
MAX_WARNINGS = 50


class RunWarning(OnnxLrpWarning):
    """Something about a finished run the user should know (printed after the run, kept in ``summary.json``)."""


class WarningLog:
    """Distinct warnings in the order they were first raised (see the module docstring)."""

    def __init__(self, echo: bool = False):
        self.lines: list[str] = []
        self.dropped = 0
        self.echo = echo

    def add(self, message, category: type[Warning], filename: str = "", lineno: int = 0) -> None:
        if issubclass(category, ZeroRelevanceWarning):  # the CLI says it per input file instead (outputs.py)
            return
        text = str(message).strip().splitlines()[0] if str(message).strip() else category.__name__
        if not issubclass(category, OnnxLrpWarning):
            where = f" ({os.path.basename(filename)}:{lineno})" if filename else ""
            text = f"{category.__name__}: {text}{where}"
        if text in self.lines:
            return
        if len(self.lines) >= MAX_WARNINGS:
            self.dropped += 1
            return
        self.lines.append(text)

    def summary(self) -> list[str]:
        """The warnings, one line each, and how many more were dropped."""
        more = [f"... and {self.dropped} more warnings"] if self.dropped else []
        return [*self.lines, *more]

    @contextlib.contextmanager
    def capture(self) -> Iterator[WarningLog]:
        """Route every warning raised inside the block to :meth:`add` (and, with ``echo``, to stderr as well)."""
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
                warnings.simplefilter("ignore", category)
            shown = warnings.showwarning

            def show(message, category, filename, lineno, file=None, line=None):
                self.add(message, category, filename, lineno)
                if self.echo:
                    shown(message, category, filename, lineno, file, line)

            warnings.showwarning = show
            yield self
