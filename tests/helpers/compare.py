"""How results are compared with a peer's, and a record of every comparison's measured error against its tolerance.

Tolerances are set from the measured floor with a margin of about 10x (never more than ~100x): exact float64 paths
near 1e-14 .. 1e-10, float32 paths per model. So that the margin stays visible, every comparison made through
:func:`assert_rel`, :func:`assert_close` or :func:`within` is recorded with the running test's id; ``pytest
--tolerances`` (or ``ONNXLRP_TOLERANCES=1``, or ``ONNXLRP_TOLERANCES=path.json`` to also write them) prints them at
the end of the run, worst margin first (``tests/conftest.py``).
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Record:
    """One comparison: ``measured`` against ``tol`` (``used = measured / tol``: 1 is the limit, 0.1 a 10x margin)."""

    test: str
    label: str
    measured: float
    tol: float
    kind: str
    site: str = ""

    @property
    def used(self) -> float:
        if self.tol == 0:
            return 0.0 if self.measured == 0 else float("inf")
        return self.measured / self.tol


#: every comparison of the session, in the order made
RECORDS: list[Record] = []


def _current_test() -> str:
    current = os.environ.get("PYTEST_CURRENT_TEST", "")
    return current.rsplit(" ", 1)[0] if current else "?"


def _site() -> str:
    """``file:line`` of the first caller outside this module (the comparison in the test)."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename == __file__:
        frame = frame.f_back
    return "" if frame is None else f"{os.path.relpath(frame.f_code.co_filename)}:{frame.f_lineno}"


def record(measured: float, tol: float, label: str = "", kind: str = "rel") -> float:
    """Record ``measured`` against ``tol`` for the running test; returns ``measured``."""
    RECORDS.append(Record(_current_test(), label, float(measured), float(tol), kind, _site()))
    return float(measured)


def rel_err(actual, expected) -> float:
    """``||actual - expected|| / ||expected||`` over the whole array, in float64 (shapes must agree)."""
    actual, expected = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    return float(np.linalg.norm(actual - expected) / max(np.linalg.norm(expected), 1e-300))


def within(measured: float, tol: float, label: str = "") -> bool:
    """``measured <= tol``, recorded: for ``assert within(err, tol)`` where the error is computed by the test."""
    record(measured, tol, label, "value")
    return measured <= tol


def assert_rel(actual, expected, tol: float, label: str = "") -> float:
    """Assert the relative L2 error :func:`rel_err` is at most ``tol``; record it; return it."""
    err = rel_err(actual, expected)
    record(err, tol, label, "rel")
    assert err <= tol, f"{label + ': ' if label else ''}relative L2 error {err:.3e} > {tol:.1e}"
    return err


def assert_close(actual, desired, rtol: float = 1e-7, atol: float = 0.0, err_msg: str = "", label: str = "",
                 equal_nan: bool = True) -> None:
    """``np.testing.assert_allclose`` (same defaults), recorded at the element that uses most of its allowed error:
    ``measured = |a - d|`` there and ``tol = atol + rtol·|d|`` there."""
    a, d = np.asarray(actual), np.asarray(desired)
    if a.dtype.kind in "fiub" and d.dtype.kind in "fiub" and a.size and d.size:
        try:
            a64, d64 = np.broadcast_arrays(np.asarray(a, dtype=np.float64), np.asarray(d, dtype=np.float64))
        except ValueError:  # shapes differ: assert_allclose says so below
            a64 = d64 = np.zeros(0)
        finite = np.isfinite(a64) & np.isfinite(d64)
        diff = np.abs(a64 - d64)[finite]
        bound = (atol + rtol * np.abs(d64))[finite]
        if diff.size:
            with np.errstate(divide="ignore", invalid="ignore"):
                used = np.where(bound > 0, diff / np.where(bound > 0, bound, 1.0), np.where(diff > 0, np.inf, 0.0))
            worst = int(np.argmax(used))
            record(diff[worst], bound[worst], label or f"rtol={rtol:g} atol={atol:g}", "allclose")
    np.testing.assert_allclose(actual, desired, rtol=rtol, atol=atol, err_msg=err_msg, equal_nan=equal_nan)


def report_lines(records: list[Record] | None = None) -> list[str]:
    """The table printed at the end of a run: per comparison site (test id without parameters + label) the worst
    case, sorted by the fraction of the tolerance used (largest margin last)."""
    records = RECORDS if records is None else records
    lines = [f"{'test':78s} {'label':28s} {'measured':>9s} {'tol':>8s} {'margin':>8s}"]
    for r in sorted(records, key=lambda r: -r.used):
        margin = f"{1 / r.used:8.1f}x" if r.used > 0 else "   exact"
        lines.append(f"{r.test[:78]:78s} {r.label[:28]:28s} {r.measured:9.2e} {r.tol:8.1e} {margin}")
    return lines
