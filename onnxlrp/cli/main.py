"""The ``onnxlrp`` command line: ``explain``, ``explain-text``, ``evaluate``, ``inspect`` and ``methods``.

``main(argv) -> int`` runs in-process (tests call it directly); ``python -m onnxlrp`` and the ``onnxlrp`` script
call it too. Every error onnxlrp raises on purpose prints one line, ``onnxlrp: error: <first line>``, to stderr and
returns the error class's ``exit_code``; ``--debug`` re-raises it to show the traceback. Warnings raised meanwhile
are collected (:mod:`.warnlog`): a failed run prints only its error line, a successful one prints each distinct
warning once, ``onnxlrp: warning: ...``, after it finished.

Exit codes: :data:`onnxlrp.errors.EXIT_CODES` is the table (``onnxlrp --help`` prints it; the README's table is
tested against it).

Modules: :mod:`.args` (parser, ``--set`` values, method resolution), :mod:`.inputs` (input files, labels, target,
the model), :mod:`.outputs` (files written per input, summary, console lines), one module per command
(:mod:`.explain`, :mod:`.explain_text`, :mod:`.inspect`, :mod:`.list_methods`), :mod:`.files` (atomic writes) and
:mod:`.progress`. Only the command that runs is imported, so ``--help`` loads neither numpy nor onnxruntime.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from ..errors import INTERRUPTED_EXIT, MemoryBudgetError, OnnxLrpError, UnsupportedOpError
from .args import PROG, build_parser, first_line
from .warnlog import WarningLog


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (never raises except with ``--debug``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = _parse(parser, argv)
    except SystemExit as exc:  # usage error (2) or --help/--version (0)
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    log = WarningLog(echo=bool(args.debug))
    args.warning_log = log  # explain writes the warnings into summary.json
    try:
        with log.capture():
            status = int(args.func(args) or 0)
    except OnnxLrpError as exc:
        if args.debug:
            raise
        print(f"{PROG}: error: {first_line(exc)}", file=sys.stderr)
        if isinstance(exc, UnsupportedOpError):  # the node table is the actionable part: show it too
            for line in str(exc).strip().splitlines()[1:]:
                print(f"{PROG}:   {line.strip()}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        if args.debug:
            raise
        hint = getattr(args, "interrupt_hint", None)  # a command's own way to finish (audit: --resume)
        print(f"{PROG}: interrupted; files already written are complete, nothing is half-written"
              f"{'; ' + hint if hint else ''}", file=sys.stderr)
        return INTERRUPTED_EXIT
    except BrokenPipeError:  # e.g. `onnxlrp methods | head`
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keep the interpreter from failing at exit
        except OSError:
            pass
        return 0
    except MemoryError:  # a plan the memory budget could not foresee
        if args.debug:
            raise
        print(f"{PROG}: error: out of memory; lower --batch-size or the input size, or set a smaller "
              f"--memory-budget", file=sys.stderr)
        return MemoryBudgetError.exit_code
    except Exception as exc:  # noqa: BLE001 - a bug: one line, traceback with --debug
        if args.debug:
            raise
        print(f"{PROG}: internal error: {type(exc).__name__}: {first_line(exc)} (run with --debug for the "
              f"traceback and please report it)", file=sys.stderr)
        return 1
    if not args.debug:  # with --debug they were printed as they came
        for line in log.summary():
            print(f"{PROG}: warning: {line}", file=sys.stderr)
    return status


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """``parser.parse_args``, except that ``explain-text``'s texts may stand before, between or after its options."""
    global_opts = []
    rest = list(argv)
    while rest and rest[0] == "--debug":
        global_opts.append(rest.pop(0))
    if rest and rest[0] == "explain-text":
        args = parser.text_parser.parse_intermixed_args(rest[1:])
        args.debug = args.debug or bool(global_opts)
        return args
    return parser.parse_args(argv)
