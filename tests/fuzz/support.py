"""What every fuzz example must end in, and the watchdog that keeps each one bounded.

An example ends either with a result (finite relevance shaped like the input) or with an
:class:`onnxlrp.errors.OnnxLrpError` whose ``exit_code`` is a documented code other than 1 (1 means a bug) and whose
first line is a complete sentence. Anything else (a bare Python exception, a hang, a NaN/inf map) fails the test.
"""
from __future__ import annotations

import contextlib
import faulthandler
import signal
import sys
import threading
import time

import numpy as np
from hypothesis import settings

from onnxlrp.errors import EXIT_CODES, OnnxLrpError

#: seconds one example may run before the watchdog fails it (the models are tiny: a few ms each normally)
EXAMPLE_SECONDS = 20
#: seconds after which a process stuck in C code (where SIGALRM's Python handler cannot run) is killed, with every
#: thread's traceback on stderr: a hung CI run is worse than a failed one
HARD_SECONDS = 120


def examples(weight: float = 1.0) -> int:
    """The active profile's example count scaled by ``weight`` (at least 1)."""
    return max(1, round(settings.default.max_examples * weight))


class ExampleTimeout(AssertionError):
    """An example ran longer than :data:`EXAMPLE_SECONDS` (a hang or an unbounded computation)."""


@contextlib.contextmanager
def bounded(seconds: float = EXAMPLE_SECONDS, what: str = "the example"):
    """Fail with :class:`ExampleTimeout` when the body runs longer than ``seconds`` (SIGALRM on the main thread,
    so it interrupts Python code, and onnxruntime/numpy as soon as they return to Python); a hard kill after
    :data:`HARD_SECONDS` catches code that never returns. An alarm already set (pytest-timeout's, which uses
    SIGALRM too) is put back afterwards with the time it had left."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def on_alarm(signum, frame):
        raise ExampleTimeout(f"{what} ran longer than {seconds} s (a hang or an unbounded computation)")

    started = time.monotonic()
    previous = signal.signal(signal.SIGALRM, on_alarm)
    outer, _ = signal.setitimer(signal.ITIMER_REAL, seconds)
    faulthandler.dump_traceback_later(HARD_SECONDS, exit=True, file=sys.__stderr__)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        faulthandler.cancel_dump_traceback_later()
        if outer > 0:  # the enclosing alarm, less the time spent here (at once if it is already due)
            signal.setitimer(signal.ITIMER_REAL, max(outer - (time.monotonic() - started), 1e-3))



_TRAILING = (",", ";", "(", "[", "{", "-", " e.g.", " and", " or", " the", " of")


def sentence_problem(message: str) -> str | None:
    """Why the first line of ``message`` is not a complete sentence (``None`` when it is): empty, fewer than three
    words, cut off (ends in ``,``, an open bracket, ``e.g.`` or ``the``: a repr that spans lines), or ending in
    ``:`` with the rest on the next lines. Brackets are not counted: onnxruntime's own messages, which onnxlrp
    quotes, have unbalanced ones; a single line may end in ``:`` when it quotes an empty name."""
    lines = message.strip().splitlines()
    text = lines[0].strip() if lines else ""
    if not text:
        return "it is empty"
    if len(text.split()) < 3:
        return "it has fewer than three words"
    if text.endswith(_TRAILING) or (text.endswith(":") and len(lines) > 1):
        return "it ends mid-sentence"
    return None


def check_error(exc: BaseException) -> OnnxLrpError:
    """``exc`` must be one of onnxlrp's errors with a documented, non-internal exit code and a one-sentence first
    line; re-raised otherwise so hypothesis shows the traceback of the bug."""
    if isinstance(exc, ExampleTimeout):
        raise exc
    if not isinstance(exc, OnnxLrpError):
        raise AssertionError(f"a bare {type(exc).__name__} escaped instead of an onnxlrp error: {exc!r}") from exc
    code = exc.exit_code
    assert code in EXIT_CODES and code not in (0, 1), \
        f"{type(exc).__name__} has exit code {code}, which is not a documented error code: {exc}"
    problem = sentence_problem(str(exc))
    assert problem is None, f"{type(exc).__name__}'s first line is not a complete sentence ({problem}): {str(exc)!r}"
    return exc


def outcome(call, what: str = "the example"):
    """Run ``call()`` bounded in time: ``("ok", value)`` or ``("error", the onnxlrp error)``; anything else fails."""
    try:
        with bounded(what=what), np.errstate(all="ignore"):
            return "ok", call()
    except ExampleTimeout:
        raise
    except Exception as exc:  # noqa: BLE001 - the point: every exception is judged
        return "error", check_error(exc)


def check_explanation(res, x) -> None:
    """A returned explanation: relevance shaped like the input, finite (NaN/inf must have been a NonFiniteError),
    with finite outputs and one target per sample."""
    relevance = np.asarray(res.relevance)
    assert relevance.shape == tuple(np.shape(x)), f"relevance shape {relevance.shape} != input shape {np.shape(x)}"
    assert np.isfinite(relevance).all(), "a NaN/inf relevance map came back instead of a NonFiniteError"
    assert np.isfinite(np.asarray(res.output)).all(), "a NaN/inf output came back instead of a NonFiniteError"
    assert np.asarray(res.target).shape == (relevance.shape[0],), f"targets {res.target!r} for {relevance.shape[0]}"
