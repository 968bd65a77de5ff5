"""A dependency-free progress bar that draws only on a terminal.

It writes to ``stderr`` (so ``stdout`` stays clean for pipes) and only when that stream is a TTY and the user did
not pass ``--quiet``. Off a terminal (CI logs, redirects, pytest's capture) it writes nothing at all.
"""
from __future__ import annotations

import shutil
import sys
import time
from typing import IO


class Progress:
    """``[#####.....]  12/40 inputs  3.1/s  eta 9s`` redrawn in place with ``\\r``.

    Parameters
    ----------
    total : int
        Number of units of work.
    unit : str
        Word shown after the counts.
    stream : IO[str] or None
        Where to draw; ``sys.stderr`` by default.
    enabled : bool or None
        Force on or off; ``None`` means "on when ``stream.isatty()``".
    min_interval : float
        Seconds between redraws (the final state is always drawn).
    """

    def __init__(self, total: int, unit: str = "inputs", stream: IO[str] | None = None,
                 enabled: bool | None = None, min_interval: float = 0.1) -> None:
        self.total = max(0, int(total))
        self.unit = unit
        self.stream = sys.stderr if stream is None else stream
        if enabled is None:
            isatty = getattr(self.stream, "isatty", None)
            enabled = bool(isatty and isatty())
        self.enabled = enabled
        self.done = 0
        self._start = time.monotonic()
        self._last = 0.0
        self._min_interval = min_interval
        self._drawn = False

    def update(self, n: int = 1) -> None:
        """Count ``n`` more units done and redraw if enough time has passed."""
        self.done += n
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last >= self._min_interval or self.done >= self.total:
            self._last = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        width = shutil.get_terminal_size((80, 20)).columns
        elapsed = max(now - self._start, 1e-9)
        rate = self.done / elapsed
        eta = (self.total - self.done) / rate if rate > 0 and self.total else 0.0
        text = f" {self.done}/{self.total} {self.unit}  {rate:.1f}/s  eta {eta:.0f}s"
        bar_width = max(10, min(40, width - len(text) - 3))
        filled = int(bar_width * self.done / self.total) if self.total else bar_width
        line = "[" + "#" * filled + "." * (bar_width - filled) + "]" + text
        self.stream.write("\r" + line[: max(width - 1, 1)])
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        """End the bar's line (only if something was drawn)."""
        if self.enabled and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
