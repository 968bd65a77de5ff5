"""The ``onnxlrp`` command line: ``explain``, ``explain-text``, ``inspect`` and ``methods``.

``main(argv) -> int`` runs in-process (tests call it directly); ``python -m onnxlrp`` and the ``onnxlrp`` script
call it too. Every error onnxlrp raises on purpose prints one line, ``onnxlrp: error: <first line>``, to stderr and
returns the error class's ``exit_code``; ``--debug`` re-raises it to show the traceback.

Exit codes: 0 ok; 1 internal error; 2 usage; 3 model file missing/unreadable/not ONNX; 4 model fails the ONNX
checker or points to external data outside its folder; 5 op without a kernel; 6 input/output name missing or
ambiguous; 7 array of the wrong shape or dtype; 8 target out of range; 9 unknown method or parameter; 10 NaN/inf;
11 GPU backend unavailable; 12 image cannot be decoded; 13 output directory not writable; 15 input file missing or
of an unknown kind; 16 labels file unusable; 17 optional dependency missing (tokenizers for explain-text); 18
tokenizer file missing or unreadable; 130 interrupted (Ctrl-C).
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import re
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ..errors import (INTERRUPTED_EXIT, ImageDecodeError, InputDtypeError, InputFileError, InputShapeError, LabelsError,
                      MethodError, NameSelectionError, OnnxLrpError, TargetError, UnsupportedOpError, UsageError)
from ..inputs import images
from ..inputs.images import Preprocessing, format_shape
from ..views import imaging
from . import files as fileio
from .progress import Progress

PROG = "onnxlrp"
DEFAULT_METHOD = "epsilon_plus_flat"
TEXT_METHOD = "attnlrp"





# --------------------------------------------------------------------------------------------------- arguments
def _scale(text: str) -> float:
    """``0.5``, ``1/255`` or ``1e-3``."""
    try:
        if "/" in text:
            num, den = text.split("/", 1)
            return float(num) / float(den)
        return float(text)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"invalid scale {text!r}; give a number such as 1/255 or 0.0039") from None


def _floats(text: str) -> tuple[float, ...]:
    """``0.5`` or ``0.485,0.456,0.406``."""
    try:
        values = tuple(float(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number list {text!r}; give e.g. 0.5 or 0.485,0.456,0.406") from None
    if not values:
        raise argparse.ArgumentTypeError("empty number list")
    return values


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid integer {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def parse_value(text: str) -> Any:
    """Turn a ``--set`` value into a Python value.

    ``true/false/yes/no/on/off`` -> bool, ``none/null`` -> None, integers -> int, numbers -> float (``inf``,
    ``1e-6``), ``a,b,c`` or ``[a,b,c]`` -> list of parsed items, anything else -> the string.
    """
    s = text.strip()
    if s.startswith("[") and s.endswith("]"):
        inner = s[1:-1].strip()
        return [parse_value(p) for p in inner.split(",")] if inner else []
    if "," in s:
        return [parse_value(p) for p in s.split(",")]
    low = s.lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    if low in ("none", "null"):
        return None
    if re.fullmatch(r"[+-]?\d+", s):
        return int(s)
    try:
        return float(s)
    except ValueError:
        return s


def parse_sets(items: Sequence[str]) -> list[tuple[str | None, str, Any]]:
    """``key=value`` or ``method.key=value`` -> (method or None, key, value).

    Raises
    ------
    UsageError
        For an item without ``=`` or with an empty key.
    """
    out = []
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"--set takes key=value (or method.key=value), got {item!r}")
        method, _, name = key.rpartition(".")
        out.append((method or None, name, parse_value(value)))
    return out


def _add_model_selection(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input-name", metavar="NAME", help="model input to explain (needed when it has several)")
    p.add_argument("--output-name", metavar="NAME", help="model output to explain (needed when it has several)")


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--debug", action="store_true", help="show the full traceback of an error")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (also used to render ``--help``)."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Explain ONNX models with LRP and gradient methods.",
        epilog="Run 'onnxlrp COMMAND --help' for a command's options. Docs: README.md.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    _add_common(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    ex = sub.add_parser(
        "explain", help="explain inputs (images or .npy arrays) and write heatmaps, arrays, summary.json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Explain a model's prediction for each input and write, per input and method: the raw\n"
                    "relevance (.npy, the input's shape), a heatmap PNG and an overlay PNG; a side-by-side grid PNG\n"
                    "when several methods are given; one summary.json; with --report a self-contained report.html.",
        epilog="Image preprocessing, in this order:\n"
               "  1. decode; convert to greyscale or RGB (channels from the model input, or --grayscale)\n"
               "  2. resize to --size H W (bilinear; default: the model's static H and W)\n"
               "  3. x = pixel * scale; x = (x - mean) / std\n"
               "  4. arrange as --layout\n"
               "Defaults: --scale 1/255, --mean 0, --std 1, layout read from the model's input shape.\n"
               ".npy inputs are used as they are: one sample shaped like the model input without its batch\n"
               "axis, or a batch with it.\n\n"
               "Example (ImageNet-style model):\n"
               "  onnxlrp explain resnet50.onnx photos/ --method epsilon_plus_flat,gradient \\\n"
               "      --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225 --report")
    ex.add_argument("model", metavar="MODEL", help="path of the .onnx file")
    ex.add_argument("inputs", metavar="INPUT", nargs="+",
                    help="image files (PNG, JPEG, ...), .npy arrays, or folders of them (not recursive)")
    ex.add_argument("-m", "--method", default=DEFAULT_METHOD,
                    help=f"method, or several separated by commas (default {DEFAULT_METHOD}); see 'onnxlrp methods'")
    ex.add_argument("-t", "--target", default="pred",
                    help="class to explain: 'pred' (the predicted class, default), a class index, or a label name")
    ex.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                    help="method parameter, repeatable; 'method.key=value' limits it to one method. Values: int, "
                         "float, true/false, none, or a comma list")
    ex.add_argument("--contrast", metavar="Q", type=int,
                    help="contrastive methods (clrp1, clrp2, contrastive_grad_cam): explain the target rather than "
                         "class Q")
    ex.add_argument("-o", "--out", default="onnxlrp-out", metavar="DIR", help="output folder (default onnxlrp-out)")
    ex.add_argument("--labels", metavar="FILE", help="text file with one class name per line")
    ex.add_argument("--report", action="store_true", help="also write report.html, a self-contained gallery")
    pre = ex.add_argument_group("image preprocessing")
    pre.add_argument("--size", nargs=2, type=_positive_int, metavar=("H", "W"), help="resize images to H x W")
    pre.add_argument("--mean", type=_floats, metavar="M[,M,M]", help="subtracted after scaling (default 0)")
    pre.add_argument("--std", type=_floats, metavar="S[,S,S]", help="divides after the mean (default 1)")
    pre.add_argument("--scale", type=_scale, metavar="F", help="pixel multiplier, e.g. 1/255 (default) or 1")
    pre.add_argument("--layout", type=str.upper, choices=["NCHW", "NHWC"], help="default: read from the model")
    pre.add_argument("--grayscale", action="store_true", help="convert images to one channel")
    out = ex.add_argument_group("output")
    out.add_argument("--cmap", choices=imaging.colormap_names(), default=imaging.DEFAULT_CMAP,
                     help=f"heatmap colour map (default {imaging.DEFAULT_CMAP})")
    out.add_argument("--top-k", type=_positive_int, default=5, help="scores listed per input (default 5)")
    run = ex.add_argument_group("run")
    run.add_argument("--batch-size", type=_positive_int, default=16, help="inputs per batch (default 16); memory "
                     "use depends on this, not on the number of inputs")
    run.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    run.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no summary on stdout")
    _add_model_selection(ex)
    _add_common(ex)
    ex.set_defaults(func=cmd_explain)

    ins = sub.add_parser("inspect", help="inputs, outputs, ops, kernels, relevance path and rules of a model",
                         description="Describe a model: inputs and outputs with shapes, opset, producer, op "
                                     "histogram with kernel support, the relevance path, and the rule each node on "
                                     "it gets under --method. Exits 5 when an op on the path has no kernel.")
    ins.add_argument("model", metavar="MODEL", help="path of the .onnx file")
    ins.add_argument("-m", "--method", default=DEFAULT_METHOD, help=f"method for the rule table (default "
                                                                    f"{DEFAULT_METHOD})")
    ins.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                     help="method parameter for the rule table, repeatable")
    ins.add_argument("--json", action="store_true", help="print JSON instead of text")
    _add_model_selection(ins)
    _add_common(ins)
    ins.set_defaults(func=cmd_inspect)

    txt = sub.add_parser(
        "explain-text", help="explain a text classifier per token (needs its tokenizer.json)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Explain a text classifier exported to ONNX for one or more texts, token by token. The texts\n"
                    "are tokenised with the model's tokenizer.json (the 'tokenizers' package: pip install\n"
                    "'onnxlrp[text]'); relevance is computed for the token embeddings (the Gather that looks the\n"
                    "ids up) and summed over the embedding axis. Prints each token's relevance; --html writes a page\n"
                    "with the tokens coloured by signed relevance, --json prints everything as JSON.",
        epilog="Example:\n"
               "  onnxlrp explain-text classifier.onnx --tokenizer tokenizer.json \"I loved this film\" \\\n"
               "      --labels labels.txt --html tokens.html")
    txt.add_argument("model", metavar="MODEL", help="path of the .onnx file")
    txt.add_argument("texts", metavar="TEXT", nargs="*", help="texts to explain (or use --file)")
    txt.add_argument("--tokenizer", required=True, metavar="FILE", help="the model's tokenizer.json")
    txt.add_argument("--file", metavar="FILE", help="read texts from FILE, one per line ('-' for standard input)")
    txt.add_argument("-m", "--method", default=TEXT_METHOD,
                     help=f"method (default {TEXT_METHOD}); see 'onnxlrp methods'")
    txt.add_argument("-t", "--target", default="pred",
                     help="class to explain: 'pred' (default), a class index, or a label name")
    txt.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                     help="method parameter, repeatable")
    txt.add_argument("--labels", metavar="FILE", help="text file with one class name per line")
    txt.add_argument("--html", metavar="FILE", help="write the token view (self-contained HTML) to FILE")
    txt.add_argument("--json", action="store_true", help="print JSON instead of text")
    txt.add_argument("--embedding", metavar="TENSOR", help="the token-embedding tensor (default: found from the ids)")
    txt.add_argument("--max-length", type=_positive_int, metavar="N", help="truncate texts to N tokens")
    txt.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    txt.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    txt.add_argument("--output-name", metavar="NAME", help="model output to explain (needed when it has several)")
    _add_common(txt)
    txt.set_defaults(func=cmd_explain_text, command="explain-text")
    parser.text_parser = txt  # main() parses explain-text with parse_intermixed_args (texts around options)

    met = sub.add_parser("methods", help="list every method with its parameters and defaults",
                         description="List every method with its parameters, defaults and a one-line description.")
    met.add_argument("--json", action="store_true", help="print JSON instead of text")
    _add_common(met)
    met.set_defaults(func=cmd_methods)
    return parser


def _version() -> str:
    try:
        from importlib.metadata import version
        return version("onnxlrp")
    except Exception:  # noqa: BLE001 - not installed (plain checkout)
        return "0+unknown"


# ------------------------------------------------------------------------------------------------------ entry
def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (never raises except with ``--debug``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = _parse(parser, argv)
    except SystemExit as exc:  # usage error (2) or --help/--version (0)
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    try:
        return int(args.func(args) or 0)
    except OnnxLrpError as exc:
        if args.debug:
            raise
        print(f"{PROG}: error: {_first_line(exc)}", file=sys.stderr)
        if isinstance(exc, UnsupportedOpError):  # the node table is the actionable part: show it too
            for line in str(exc).strip().splitlines()[1:]:
                print(f"{PROG}:   {line.strip()}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"{PROG}: interrupted; files already written are complete, nothing is half-written",
              file=sys.stderr)
        return INTERRUPTED_EXIT
    except BrokenPipeError:  # e.g. `onnxlrp methods | head`
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keep the interpreter from failing at exit
        except OSError:
            pass
        return 0
    except Exception as exc:  # noqa: BLE001 - a bug: one line, traceback with --debug
        if args.debug:
            raise
        print(f"{PROG}: internal error: {type(exc).__name__}: {_first_line(exc)} (run with --debug for the "
              f"traceback and please report it)", file=sys.stderr)
        return 1


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


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _engine():
    """Import the engine lazily so ``--help`` is fast and works even when an optional part is broken."""
    import onnxlrp
    return onnxlrp


# ---------------------------------------------------------------------------------------------------- methods
def resolve_methods(spec: str, sets: Sequence[str]) -> list[tuple[str, dict]]:
    """Split ``a,b,c`` and assign ``--set`` values to the methods that take them.

    An unscoped ``key=value`` goes to every chosen method that has the parameter and must fit at least one;
    ``method.key=value`` must name a chosen method that has it.

    Raises
    ------
    MethodError
        For an unknown method or a parameter no chosen method takes (both list the valid names).
    """
    from onnxlrp.methods import METHODS, find_method
    names = [n.strip() for n in spec.split(",") if n.strip()]
    if not names:
        raise MethodError(f"no method given; methods are: {', '.join(sorted(METHODS))}")
    registry = {}
    for name in names:  # registered names and names parsed from a method family's grammar
        method = find_method(name)
        if method is None:
            raise MethodError(f"unknown method {name!r}; methods are: {', '.join(sorted(METHODS))} "
                              "(and the families `onnxlrp methods` lists)")
        registry[name] = {"params": dict(method.params)}
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise MethodError(f"method {dupes[0]!r} is given twice")
    chosen: list[tuple[str, dict]] = [(n, {}) for n in names]
    for scope, key, value in parse_sets(sets):
        if scope is not None:
            if scope not in names:
                raise MethodError(f"--set {scope}.{key}: method {scope!r} is not among the chosen methods "
                                  f"({', '.join(names)})")
            targets = [scope]
        else:
            targets = [n for n in names if key in registry[n]["params"]]
        targets = [n for n in targets if key in registry[n]["params"]]
        if not targets:
            valid = sorted({p for n in ([scope] if scope else names) for p in registry[n]["params"]})
            which = f"method {scope!r}" if scope else ("method " + repr(names[0]) if len(names) == 1
                                                       else "methods " + ", ".join(map(repr, names)))
            raise MethodError(f"unknown parameter {key!r} for {which}; valid parameters: "
                              f"{', '.join(valid) or 'none'}")
        for params in (p for n, p in chosen if n in targets):
            params[key] = value
    return chosen


def cmd_methods(args: argparse.Namespace) -> int:
    registry = _engine().methods()
    if args.json:
        print(json.dumps(_jsonable(registry), indent=2))
        return 0
    width = max(len(n) for n in registry)
    for name in sorted(registry, key=lambda n: (registry[n].get("kind", ""), n)):
        info = registry[name]
        params = ", ".join(f"{k}={_fmt_default(v)}" for k, v in info["params"].items()) or "(no parameters)"
        kind = info.get("kind")
        print(f"{name:<{width}}  {('[' + kind + '] ') if kind else ''}{info['description']}")
        print(f"{'':<{width}}    {params}")
    print(f"\n{len(registry)} methods. Set parameters with: onnxlrp explain MODEL INPUT --method NAME "
          f"--set key=value")
    return 0


def _fmt_default(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"array{value.shape}"
    return repr(value) if isinstance(value, str) else str(value)


# ---------------------------------------------------------------------------------------------------- inspect
def _open_explainer(args: argparse.Namespace):
    kwargs: dict[str, Any] = {"input_name": args.input_name, "output_name": args.output_name}
    if getattr(args, "device", None):
        kwargs["device"] = args.device
    if getattr(args, "dtype", None):
        kwargs["dtype"] = args.dtype
    try:
        return _engine().Explainer(args.model, **kwargs)
    except NameSelectionError as exc:  # the engine speaks API (input_name=); say the CLI option instead
        text = str(exc).replace("input_name=", "--input-name").replace("output_name=", "--output-name")
        raise NameSelectionError(text) from exc


def cmd_inspect(args: argparse.Namespace) -> int:
    methods = resolve_methods(args.method, args.sets)
    if len(methods) != 1:
        raise UsageError("inspect takes one --method")
    method, params = methods[0]
    try:
        ex = _open_explainer(args)
    except UnsupportedOpError as exc:
        _inspect_unexplainable(args, exc)
        raise
    info = ex.model_info()
    path = ex.path_nodes()
    rules = ex.rules_for(method, **params)
    registered = _engine().registered()
    on_path = {op for _, op in path}
    ops = [{"op_type": op, "count": n, "kernel": _kernel_status(op, op in on_path, registered)}
           for op, n in sorted(info["op_histogram"].items(), key=lambda kv: (-kv[1], kv[0]))]
    explained_output = ex.output_name
    usable, unusable = method_coverage(ex)
    if args.json:
        doc = {"model": str(args.model), "info": info, "explained_input": ex.input_name,
               "explained_output": explained_output, "ops": ops,
               "coverage": {"explainable": True, "methods": usable, "not_applicable": dict(unusable)},
               "relevance_path": [{"node": n, "op_type": op} for n, op in path], "method": method,
               "params": params, "rules": [{"node": n, "op_type": op, "rule": r} for n, op, r in rules]}
        print(json.dumps(_jsonable(doc), indent=2))
        return 0
    _print_header(args.model, info, ex.input_name, explained_output)
    _print_coverage(usable, unusable)
    if args.output_name and args.output_name != explained_output:
        print(f"{'':<9} (--output-name {args.output_name!r} ends in a Softmax; its input, the logits, is explained)")
    _print_ops(ops)
    print(f"\nrelevance path: {len(path)} nodes from {ex.input_name!r} to {explained_output!r}; rules under "
          f"{method}{' (' + ', '.join(f'{k}={v!r}' for k, v in params.items()) + ')' if params else ''}")
    nw = max([len(n) for n, _, _ in rules] + [4])
    ow = max([len(o) for _, o, _ in rules] + [2])
    for name, op, rule in rules:
        print(f"  {name:<{nw}}  {op:<{ow}}  {rule}")
    return 0


def method_coverage(ex) -> tuple[list[str], list[tuple[str, str]]]:
    """Which registered methods can explain this model: ``(usable names, [(name, reason), ...])``.

    Decided without running the model: a method that assigns rules must be able to assign them to every node on the
    relevance path (an LRP rule that cannot handle a node's category, RAP without a dense logit layer, ...); a CAM
    method needs a convolution with a spatial output on the path (or a ``layer=``). Methods that need a parameter
    without a default (``contrast=``) count as usable. Method families are checked through their base methods.
    """
    from onnxlrp.methods import METHODS
    usable: list[str] = []
    unusable: list[tuple[str, str]] = []
    for name, method in METHODS.items():
        try:
            if method.assign is not None:
                ex.rules_for(name)
            if method.kind == "cam" and method.params.get("layer") is None:
                from . import cam
                cam.default_layer(ex)
        except (MethodError, UnsupportedOpError) as exc:
            if "contrast" in str(exc) and "needs" in str(exc):  # a required parameter, not an incompatibility
                usable.append(name)
            else:
                unusable.append((name, _first_line(exc)))
        except OnnxLrpError as exc:
            unusable.append((name, _first_line(exc)))
        else:
            usable.append(name)
    return usable, unusable


def _print_coverage(usable: list[str], unusable: list[tuple[str, str]]) -> None:
    total = len(usable) + len(unusable)
    print(f"\ncoverage  explainable: yes, with {len(usable)} of {total} methods: {', '.join(usable)}")
    for name, reason in unusable:
        print(f"{'':<9} not with {name}: {reason}")
    print(f"{'':<9} (method families, see 'onnxlrp methods', apply where their base method does)")


def _kernel_status(op: str, on_path: bool, registered: dict) -> str:
    if not on_path:
        return "not needed (off the relevance path)"
    return "yes" if op in registered else "MISSING"


def _inspect_unexplainable(args: argparse.Namespace, exc: UnsupportedOpError) -> None:
    """Describe a model the engine refuses (an op without a kernel) from the ONNX file alone, then the error."""
    import onnx
    try:
        proto = onnx.load(args.model, load_external_data=False)
    except Exception:  # noqa: BLE001 - the engine loaded it; if we cannot, just show the error
        return
    inits = {t.name for t in proto.graph.initializer}
    info = {"producer": f"{proto.producer_name} {proto.producer_version}".strip(),
            "opset": {o.domain: o.version for o in proto.opset_import},
            "inputs": [(v.name, _value_shape(v), _value_dtype(v)) for v in proto.graph.input if v.name not in inits],
            "outputs": [(v.name, _value_shape(v), _value_dtype(v)) for v in proto.graph.output]}
    hist: dict[str, int] = {}
    for node in proto.graph.node:
        key = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}"
        hist[key] = hist.get(key, 0) + 1
    registered = _engine().registered()
    ops = [{"op_type": op, "count": n, "kernel": "yes" if op in registered else "no kernel"}
           for op, n in sorted(hist.items(), key=lambda kv: (-kv[1], kv[0]))]
    first = _first_line(exc)
    missing = first.split("no usable kernel: ", 1)[1].rstrip(".") if "no usable kernel: " in first else first
    if args.json:
        print(json.dumps(_jsonable({"model": str(args.model), "info": info, "ops": ops,
                                    "coverage": {"explainable": False, "methods": [], "missing": missing},
                                    "error": str(exc)}), indent=2))
        return
    _print_header(args.model, info, args.input_name, args.output_name)
    print(f"\ncoverage  explainable: no, with no method: on the relevance path without a kernel: {missing}")
    for node in proto.graph.node:  # scikit-learn's ZipMap turns probabilities into maps: explain the tensor before it
        if node.op_type == "ZipMap" and f"'{node.name}'" in first and node.input:
            print(f"{'':<9} hint: ZipMap turns a tensor into a list of maps; explain the tensor before it with "
                  f"--output-name {node.input[0]}")
    _print_ops(ops, note="kernel: whether onnxlrp has one for the op type")
    print(f"\nsupported op types: {', '.join(sorted(op for op in registered if not op.startswith('onnxlrp::')))}")
    print("(the nodes without a kernel are listed on stderr)")


def _value_shape(v) -> tuple:
    dims = v.type.tensor_type.shape.dim
    return tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in dims)


def _value_dtype(v) -> str:
    import onnx
    try:
        return str(onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type))
    except Exception:  # noqa: BLE001
        return "?"


def _opset_text(opset: Any) -> str:
    if isinstance(opset, dict):
        return ", ".join(f"{d or 'ai.onnx'} {v}" for d, v in sorted(opset.items()))
    return str(opset)


def _print_header(model: str, info: dict, input_name: str | None, output_name: str | None) -> None:
    size = os.path.getsize(model) if os.path.exists(model) else 0
    print(f"model     {model}  ({size / 1024:.0f} KiB, producer {info.get('producer') or '?'}, "
          f"opset {_opset_text(info.get('opset'))})")
    outputs = [name for name, _, _ in info["outputs"]]
    for title, key, chosen in (("inputs", "inputs", input_name), ("outputs", "outputs", output_name)):
        for i, (name, shape, dtype) in enumerate(info[key]):
            mark = "   <- explained" if name == chosen else ""
            print(f"{title if i == 0 else '':<9} {name}  {dtype}  {format_shape(tuple(shape or ()))}{mark}")
    if output_name is not None and output_name not in outputs:
        print(f"{'':<9} explained output: {output_name!r} (the logits before the final Softmax)")


def _print_ops(ops: list[dict], note: str = "kernel: yes = on the relevance path and supported") -> None:
    print(f"\nops ({note})")
    width = max([len(o["op_type"]) for o in ops] + [2])
    for o in ops:
        print(f"  {o['op_type']:<{width}}  {o['count']:>5}  kernel: {o['kernel']}")


# ---------------------------------------------------------------------------------------------------- explain-text
def cmd_explain_text(args: argparse.Namespace) -> int:
    from .. import text as textmod
    methods = resolve_methods(args.method, args.sets)
    if len(methods) != 1:
        raise UsageError("explain-text takes one --method")
    method, params = methods[0]
    texts = list(args.texts)
    if args.file:
        try:
            content = sys.stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputFileError(f"cannot read texts from {args.file!r}: {exc}") from exc
        texts += [line for line in content.splitlines() if line.strip()]
    if not texts:
        raise UsageError("no text given: pass TEXT arguments or --file")
    tx = textmod.TextExplainer(args.model, args.tokenizer, embedding=args.embedding, output_name=args.output_name,
                               max_length=args.max_length, dtype=args.dtype, device=args.device)
    shape = tx.explainer.output_shape
    classes = shape[-1] if shape and isinstance(shape[-1], int) else None
    labels = read_labels(args.labels, classes)
    tx.label_names = labels
    target = resolve_target(args.target, labels, classes, tx.explainer.output_name)
    res = tx.explain(texts, method=method, target=target, **params)
    if args.html:
        fileio.write_text(Path(args.html), res.html(title=f"onnxlrp: {Path(args.model).name}, {method}"))
    if args.json:
        print(json.dumps(_jsonable(res.to_dict()), indent=2))
        return 0
    for i, item in enumerate(res.to_dict()["texts"]):
        print(f"text {i + 1}: {item['text']!r}")
        pred = item["predicted"]
        print(f"  predicted {res.label(pred)}; explained {item['target_label']} (logit {item['logit']:.4g}, "
              f"p={item['probability']:.3f}) with {method}; sum of token relevance {item['relevance_sum']:.4g}")
        scale = max((abs(t["relevance"]) for t in item["tokens"]), default=0.0) or 1.0
        width = max([len(t["token"]) for t in item["tokens"]] + [5])
        for t in item["tokens"]:
            r = t["relevance"]
            bar = ("+" if r > 0 else "-") * int(round(20 * abs(r) / scale))
            print(f"  {t['token']:<{width}}  {r:+.4e}  {bar}")
    if args.html:
        print(f"wrote {args.html}")
    return 0


# ---------------------------------------------------------------------------------------------------- explain
@dataclass
class Item:
    """One input sample: an image file, or one sample of an .npy file (``index`` set for batched arrays)."""

    source: Path
    kind: str            # "image" or "array"
    index: int | None
    name: str            # unique stem used for output file names
    shape: tuple | None  # sample shape for arrays (known up front), None for images


def _safe_stem(text: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._+-]+", "_", text).strip("._") or "input"
    return stem[:100]


def expand_inputs(paths: Sequence[str]) -> list[tuple[Path, str]]:
    """Files and folders -> [(path, "image"|"array")], folders sorted by name, not recursive.

    Raises
    ------
    InputFileError
        For a missing path, a folder without images or arrays, or a file of another kind.
    """
    found: list[tuple[Path, str]] = []
    for text in paths:
        p = Path(text)
        if p.is_dir():
            entries = sorted(e for e in p.iterdir() if e.is_file() and _kind(e) is not None)
            if not entries:
                raise InputFileError(f"input folder {text!r} has no images ({', '.join(images.IMAGE_SUFFIXES)}) "
                                     f"or .npy arrays")
            found.extend((e, _kind(e)) for e in entries)  # type: ignore[misc]
        elif p.is_file():
            kind = _kind(p)
            if kind is None:
                raise InputFileError(f"input {text!r} is neither an image ({', '.join(images.IMAGE_SUFFIXES)}) "
                                     f"nor a .npy array")
            found.append((p, kind))
        elif p.exists():
            raise InputFileError(f"input {text!r} is not a regular file or folder")
        else:
            raise InputFileError(f"input {text!r} does not exist")
    return found


def _kind(path: Path) -> str | None:
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return "array"
    if suffix in images.IMAGE_SUFFIXES:
        return "image"
    return None


def _open_array(path: Path) -> np.ndarray:
    try:
        with open(path, "rb") as handle:
            magic = handle.read(6)
    except OSError as exc:
        raise InputFileError(f"cannot read array {str(path)!r}: {exc.strerror or exc}") from exc
    if magic != b"\x93NUMPY":
        raise InputFileError(f"cannot read array {str(path)!r}: not a .npy file (no NumPy header)")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc) or "Python objects" in str(exc):
            raise InputFileError(f"cannot read array {str(path)!r}: it holds Python objects, not numbers "
                                 f"(onnxlrp never unpickles)") from exc
        raise InputFileError(f"cannot read array {str(path)!r}: {_first_line(exc)}") from exc
    except (OSError, EOFError) as exc:
        raise InputFileError(f"cannot read array {str(path)!r}: {_first_line(exc)}") from exc


def plan_items(files: Sequence[tuple[Path, str]], input_shape: tuple, input_dtype: np.dtype,
               input_name: str) -> list[Item]:
    """Check arrays' shapes and dtypes up front (headers only) and name every sample uniquely.

    Raises
    ------
    InputShapeError, InputDtypeError
        For an array that is neither one sample nor a batch of the model input, or not floating point.
    ImageDecodeError
        For an image file that is not an image (header check; a truncated body fails when it is decoded).
    """
    items: list[Item] = []
    used: set[str] = set()

    def unique(stem: str) -> str:
        name, k = stem, 2
        while name.lower() in used:
            name, k = f"{stem}-{k}", k + 1
        used.add(name.lower())
        return name

    want = format_shape(input_shape)
    sample_rank = len(input_shape) - 1
    for path, kind in files:
        if kind == "image":
            _check_image_header(path)
            items.append(Item(path, "image", None, unique(_safe_stem(path.stem)), None))
            continue
        arr = _open_array(path)
        if np.dtype(input_dtype).kind == "f":
            if arr.dtype.kind != "f":
                raise InputDtypeError(f"array {str(path)!r} has dtype {arr.dtype}, but the model input {input_name!r} "
                                      f"takes {np.dtype(input_dtype)}; save it as floating point")
        elif arr.dtype != input_dtype:
            raise InputDtypeError(f"array {str(path)!r} has dtype {arr.dtype}, but the model input {input_name!r} "
                                  f"takes {np.dtype(input_dtype)}")

        def fits(shape: tuple) -> bool:
            return len(shape) == sample_rank and all(d is None or d == s for d, s in zip(input_shape[1:], shape))

        if fits(arr.shape):
            items.append(Item(path, "array", None, unique(_safe_stem(path.stem)), tuple(arr.shape)))
        elif arr.ndim == sample_rank + 1 and fits(arr.shape[1:]):
            if arr.shape[0] == 0:
                raise InputShapeError(f"array {str(path)!r} holds an empty batch {tuple(arr.shape)}")
            for i in range(arr.shape[0]):
                items.append(Item(path, "array", i, unique(_safe_stem(f"{path.stem}_{i}")), tuple(arr.shape[1:])))
        else:
            raise InputShapeError(f"array {str(path)!r} has shape {tuple(arr.shape)}, but the model input "
                                  f"{input_name!r} takes {want}: one sample {format_shape(input_shape[1:])} or a "
                                  f"batch {want}")
        del arr
    return items


def _check_image_header(path: Path) -> None:
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as img:
            img.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        reason = "not a format Pillow can decode" if isinstance(exc, UnidentifiedImageError) else _first_line(exc)
        raise ImageDecodeError(f"cannot decode image {str(path)!r}: {reason}") from exc


def read_labels(path: str | None, classes: int | None) -> list[str] | None:
    """One label per line (trailing blank lines ignored); the count must match the model's classes.

    Raises
    ------
    LabelsError
        When the file cannot be read or its line count differs from the number of classes.
    """
    if path is None:
        return None
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise LabelsError(f"cannot read labels file {path!r}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise LabelsError(f"cannot read labels file {path!r}: not UTF-8 text") from exc
    labels = [line.strip() for line in text.rstrip("\n").split("\n")] if text.strip() else []
    if classes is not None and len(labels) != classes:
        raise LabelsError(f"labels file {path!r} has {len(labels)} lines but the model output has {classes} classes")
    return labels


def resolve_target(spec: str, labels: list[str] | None, classes: int | None, output_name: str) -> int | None:
    """``pred`` -> None (the engine takes the argmax); an integer or a label name -> the class index.

    Raises
    ------
    TargetError
        For an index outside ``0 .. classes-1`` or text that is neither ``pred``, an integer nor a label.
    """
    s = spec.strip()
    if s.lower() in ("pred", "predicted", "argmax"):
        return None
    if re.fullmatch(r"[+-]?\d+", s):
        target = int(s)
    elif labels is not None and s in labels:
        target = labels.index(s)
    else:
        hint = " or a label from --labels" if labels is not None else ""
        raise TargetError(f"target {spec!r} is not 'pred', a class index{hint}")
    if classes is not None and not 0 <= target < classes:
        raise TargetError(f"target {target} is out of range: the output {output_name!r} has {classes} classes "
                          f"(0..{classes - 1})")
    return target


def batches(items: Sequence[Item], size: int) -> Iterator[list[Item]]:
    """Consecutive runs of at most ``size`` items (images are grouped further by size once decoded)."""
    for start in range(0, len(items), size):
        yield list(items[start:start + size])


def _load(item: Item, prep: Preprocessing | None, layout: str | None, dtype: np.dtype):
    """-> (sample array, picture uint8 (H, W, 3) or None)."""
    if item.kind == "image":
        assert prep is not None
        sample, picture = images.preprocess(images.load_image(item.source), prep)
        return sample.astype(dtype, copy=False), picture
    arr = _open_array(item.source)
    sample = np.array(arr[item.index] if item.index is not None else arr, dtype=dtype)
    del arr
    return sample, imaging.array_picture(sample, layout)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(z - z.max())
    return e / e.sum()


def _sha256(path: str) -> str | None:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    if isinstance(obj, np.dtype):
        return str(obj)
    return repr(obj)


def _label(labels: list[str] | None, k: int) -> str | None:
    return labels[k] if labels is not None and 0 <= k < len(labels) else None


def cmd_explain(args: argparse.Namespace) -> int:
    contrast = [] if args.contrast is None else [f"contrast={args.contrast}"]  # goes to the methods that take it
    methods = resolve_methods(args.method, list(args.sets) + contrast)
    files = expand_inputs(args.inputs)
    created = not os.path.lexists(args.out)
    out_dir = fileio.prepare_output_dir(args.out)  # before the model loads: fail fast on an unusable folder
    try:
        return _explain(args, methods, files, out_dir)
    except BaseException:
        if created:  # do not leave an empty folder behind a failed run
            with contextlib.suppress(OSError):
                out_dir.rmdir()
        raise


def _explain(args: argparse.Namespace, methods: list[tuple[str, dict]], files: list[tuple[Path, str]],
             out_dir: Path) -> int:
    t0 = time.monotonic()
    ex = _open_explainer(args)
    input_shape = tuple(ex.input_shape)
    output_shape = tuple(ex.output_shape)
    classes = output_shape[-1] if output_shape and isinstance(output_shape[-1], int) else None
    labels = read_labels(args.labels, classes)
    target = resolve_target(args.target, labels, classes, ex.output_name)
    input_dtype = np.dtype(ex.input_dtype)

    prep: Preprocessing | None = None
    if any(kind == "image" for _, kind in files):
        try:
            prep = images.resolve_preprocessing(
                input_shape, size=args.size, layout=args.layout, grayscale=args.grayscale or None,
                scale=args.scale, mean=args.mean, std=args.std)
        except ValueError as exc:
            raise UsageError(str(exc)) from exc
    layout = prep.layout if prep is not None else (args.layout or images.image_layout_from_shape(input_shape))
    items = plan_items(files, input_shape, input_dtype, ex.input_name)

    # a model exported with a fixed batch size B gets batches of exactly B (the last one padded, extras dropped)
    static_batch = input_shape[0] if input_shape and isinstance(input_shape[0], int) else None
    batch_size = static_batch or args.batch_size
    lrp_methods = {n for n, info in _engine().methods().items() if info.get("kind") == "lrp"}
    summary_inputs: list[dict] = []
    rows: list[str] = []
    method_params: dict[str, dict] = {name: dict(params) for name, params in methods}
    with ExitStack() as stack:
        report = None
        if args.report:
            from ..views.report import HtmlReport
            handle = stack.enter_context(fileio.atomic_write(out_dir / "report.html", "w", encoding="utf-8"))
            meta = [("model", f"{args.model}  ({ex.input_name} {format_shape(input_shape)} -> {ex.output_name} "
                              f"{format_shape(output_shape)})"),
                    ("target", "predicted class" if target is None else f"class {target}"),
                    ("preprocessing", _prep_text(prep)),
                    ("inputs", f"{len(items)}")]
            registry = _engine().methods()
            shown = [(n, {**registry[n]["params"], **p}) for n, p in methods]
            report = HtmlReport(handle, title=f"onnxlrp: {Path(args.model).name}", meta=meta, methods=shown,
                                cmap=args.cmap)
        progress = stack.enter_context(Progress(len(items), "inputs", enabled=False if args.quiet else None))
        for chunk in batches(items, batch_size):
            loaded = [_load(item, prep, layout, input_dtype) for item in chunk]
            # images of a dynamic-size model may differ in size: run each same-shape run as its own batch
            for group in _same_shape_runs(list(zip(chunk, loaded))):
                x = np.stack([sample for _, (sample, _) in group])
                if static_batch is not None and len(x) < static_batch:
                    x = np.concatenate([x, np.repeat(x[-1:], static_batch - len(x), axis=0)])
                results = {}
                for name, params in methods:
                    res = ex.explain(x, method=name, target=target, **params)
                    results[name] = res
                    if getattr(res, "params", None):
                        method_params[name] = dict(res.params)
                for i, (item, (sample, picture)) in enumerate(group):
                    entry, card_row = _write_outputs(out_dir, item, i, picture, results, labels, args, layout,
                                                     report, lrp_methods)
                    summary_inputs.append(entry)
                    if len(rows) < 20:
                        rows.append(card_row)
                del x, results
                progress.update(len(group))
            del loaded
        if report is not None:
            report.close(footer=f"Made by onnxlrp {_version()}.")
        summary = {
            "onnxlrp": {"version": _version(), "command": "explain"},
            "model": {"path": str(args.model), "sha256": _sha256(args.model), "input": {
                "name": ex.input_name, "shape": list(input_shape), "dtype": str(input_dtype)},
                "output": {"name": ex.output_name, "shape": list(output_shape)}},
            "device": args.device, "dtype": args.dtype,
            "methods": [{"name": n, "params": method_params[n]} for n, _ in methods],
            "target": "pred" if target is None else target,
            "labels": args.labels, "cmap": args.cmap,
            "preprocessing": None if prep is None else prep.to_dict(),
            "inputs": summary_inputs,
            "report": "report.html" if args.report else None,
            "elapsed_s": round(time.monotonic() - t0, 3),
        }
        fileio.write_text(out_dir / "summary.json", json.dumps(_jsonable(summary), indent=2) + "\n")
    if not args.quiet:
        _print_done(rows, out_dir, len(items), [n for n, _ in methods], args.report, time.monotonic() - t0)
    return 0


def _same_shape_runs(pairs: list) -> Iterator[list]:
    run: list = []
    for pair in pairs:
        if run and pair[1][0].shape != run[-1][1][0].shape:
            yield run
            run = []
        run.append(pair)
    if run:
        yield run


def _prep_text(prep: Preprocessing | None) -> str:
    if prep is None:
        return "none (.npy arrays used as given)"
    size = "keep" if prep.height is None else f"{prep.height}x{prep.width}"
    mean = ",".join(f"{m:g}" for m in prep.mean)
    std = ",".join(f"{s:g}" for s in prep.std)
    return (f"{'greyscale' if prep.channels == 1 else 'RGB'}, resize {size}, x = pixel * {prep.scale:.6g}, "
            f"(x - {mean}) / {std}, {prep.layout}")


def _write_outputs(out_dir: Path, item: Item, i: int, picture: np.ndarray | None, results: dict,
                   labels: list[str] | None, args: argparse.Namespace, layout: str | None, report,
                   lrp_methods: set[str]) -> tuple[dict, str]:
    """Write one input's files for every method; return its summary entry and a line for the console."""
    first = next(iter(results.values()))
    logits = np.asarray(first.output[i], dtype=np.float64).reshape(-1)
    probs = _softmax(logits)
    pred = int(np.argmax(logits))
    order = np.argsort(-logits, kind="stable")[: args.top_k]
    top = [{"class": int(k), "label": _label(labels, int(k)), "logit": float(logits[k]),
            "probability": float(probs[k])} for k in order]
    factor = imaging.zoom_factor(picture.shape if picture is not None else
                                 imaging.relevance_map(first.relevance[i], layout).shape)
    pic_zoomed = imaging.zoom(picture, factor) if picture is not None else None
    explanations = []
    views = []
    tiles, titles = [], []
    if pic_zoomed is not None:
        tiles.append(pic_zoomed)
        titles.append(f"input: {_label(labels, pred) or pred}")
    for name, res in results.items():
        rel = np.asarray(res.relevance[i])
        tgt = int(np.asarray(res.target).reshape(-1)[i])
        out_logits = np.asarray(res.output[i], dtype=np.float64).reshape(-1)
        logit = float(out_logits[tgt]) if 0 <= tgt < out_logits.size else float("nan")
        rsum = float(rel.sum(dtype=np.float64))
        stem = f"{item.name}.{name}"
        files = {"relevance": f"{stem}.npy", "heatmap": f"{stem}.heatmap.png"}
        with fileio.atomic_write(out_dir / files["relevance"]) as fh:
            np.save(fh, rel)
        rmap = imaging.relevance_map(rel, layout)
        heat = imaging.zoom(imaging.heatmap_rgb(rmap, args.cmap), imaging.zoom_factor(rmap.shape))
        heat_png = imaging.png_bytes(heat)
        fileio.write_bytes(out_dir / files["heatmap"], heat_png)
        overlay_png = None
        if picture is not None:
            files["overlay"] = f"{stem}.overlay.png"
            over = imaging.zoom(imaging.overlay_rgb(picture, rmap, args.cmap), factor)
            overlay_png = imaging.png_bytes(over)
            fileio.write_bytes(out_dir / files["overlay"], overlay_png)
        if pic_zoomed is not None and heat.shape != pic_zoomed.shape:  # keep grid tiles the same size
            heat = imaging.zoom(imaging.heatmap_rgb(imaging.resize_map(rmap, picture.shape[:2]), args.cmap), factor)
        tiles.append(heat)
        titles.append(name)
        explanations.append({
            "method": name, "target": tgt, "target_label": _label(labels, tgt), "logit": logit,
            "relevance_sum": rsum, "relevance_sum_over_logit": (rsum / logit) if logit not in (0.0,) and
            math.isfinite(logit) else None, "files": files})
        if report is not None:
            from .report import MethodView
            views.append(MethodView(name, tgt, _label(labels, tgt), logit, rsum, heat_png, overlay_png))
    entry: dict[str, Any] = {
        "name": item.name, "source": str(item.source), "index_in_file": item.index,
        "predicted": {"class": pred, "label": _label(labels, pred), "logit": float(logits[pred]),
                      "probability": float(probs[pred])},
        "top_k": top, "explanations": explanations}
    if len(results) > 1:
        entry["grid"] = f"{item.name}.grid.png"
        fileio.write_bytes(out_dir / entry["grid"], imaging.png_bytes(imaging.grid(tiles, titles)))
    if report is not None:
        from ..views.report import InputCard
        report.add(InputCard(
            name=item.name, source=str(item.source),
            picture_png=imaging.png_bytes(pic_zoomed) if pic_zoomed is not None else None,
            predicted=pred, predicted_label=_label(labels, pred),
            top=[(t["class"], t["label"], t["logit"], t["probability"]) for t in top], methods=views))
    # LRP starts from the logit, so sum(R)/logit shows how much relevance reached the input (gradients: n/a)
    ratio = "  ".join(f"{e['method']} ΣR/logit {e['relevance_sum_over_logit']:.3f}" for e in explanations
                      if e["method"] in lrp_methods and e["relevance_sum_over_logit"] is not None)
    shown = _label(labels, pred)
    row = (f"{item.name}: predicted {pred}{' (' + shown + ')' if shown and shown != str(pred) else ''} "
           f"p={probs[pred]:.3f}{'; ' + ratio if ratio else ''}")
    return entry, row


def _print_done(rows: list[str], out_dir: Path, n: int, methods: list[str], report: bool, elapsed: float) -> None:
    for row in rows:
        print(row)
    if n > len(rows):
        print(f"... {n - len(rows)} more in summary.json")
    per = "relevance .npy, heatmap and overlay PNGs" + (", a grid PNG" if len(methods) > 1 else "")
    print(f"explained {n} input{'s' if n != 1 else ''} with {', '.join(methods)} in {elapsed:.1f} s")
    print(f"wrote {out_dir}/: {per} per input, summary.json")
    if report:
        print(f"report: {out_dir / 'report.html'}")
