"""The command line's vocabulary: the argument parser, ``--set`` values, and the methods chosen with ``--method``.

Nothing here imports numpy, onnxruntime or the engine at import time, so ``onnxlrp --help`` stays fast: each command's
function is imported when that command runs (:func:`_command`), and :func:`resolve_methods` imports the method
registry when it is called.
"""
from __future__ import annotations

import argparse
import importlib
import math
import re
import shutil
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import EXIT_CODES, MethodError, UsageError
from ..limits import parse_bytes

if TYPE_CHECKING:
    from ..methods.base import Method

PROG = "onnxlrp"
DEFAULT_METHOD = "epsilon_plus_flat"
TEXT_METHOD = "attnlrp"
#: ``--cmap`` choices: the names of :data:`onnxlrp.views.imaging.COLORMAP_STOPS`, repeated here so that building the
#: parser does not import numpy (:mod:`onnxlrp.cli.outputs` checks that the two agree when it is imported)
COLORMAPS = ("bwr", "seismic", "france", "coldnhot", "gray", "grey", "jet", "hot", "coolwarm", "seismic_mpl", "viridis",
             "inferno", "magma", "plasma")
DEFAULT_CMAP = "bwr"
#: ``--preprocess`` choices: the names of :data:`onnxlrp.inputs.images.PRESETS` (checked as COLORMAPS are)
PREPROCESS_PRESETS = ("caffe", "tf", "inception", "torch")


def version() -> str:
    try:
        from importlib.metadata import version as installed_version
        return installed_version("onnxlrp")
    except Exception:  # noqa: BLE001 - not installed (plain checkout)
        return "0+unknown"


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its class name when the message is empty)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# --------------------------------------------------------------------------------------------------- value types
def _scale(text: str) -> float:
    """``0.5``, ``1/255`` or ``1e-3``."""
    try:
        if "/" in text:
            num, den = text.split("/", 1)
            value = float(num) / float(den)
        else:
            value = float(text)
    except (ValueError, ZeroDivisionError, OverflowError):
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"invalid scale {text!r}; give a finite number such as 1/255 or 0.0039")
    return value


def _floats(text: str) -> tuple[float, ...]:
    """``0.5`` or ``0.485,0.456,0.406``."""
    try:
        values = tuple(float(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number list {text!r}; give e.g. 0.5 or 0.485,0.456,0.406") from None
    if not values:
        raise argparse.ArgumentTypeError("empty number list")
    if not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"invalid number list {text!r}; the numbers must be finite")
    return values


def _class_list(text: str) -> tuple[int, ...]:
    """``3`` or ``3,5,7``: class indices."""
    try:
        values = tuple(int(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid class list {text!r}; give e.g. 3 or 3,5,7") from None
    if not values:
        raise argparse.ArgumentTypeError("empty class list")
    if len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"class list {text!r} repeats a class")
    return values


def _bytes(text: str) -> int:
    """``2G``, ``512M``, ``1000000`` (binary suffixes: K = 1024)."""
    try:
        return parse_bytes(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


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


# ------------------------------------------------------------------------------------------------------ methods
@dataclass(frozen=True)
class ChosenMethod:
    """A method named with ``--method``, looked up once: ``params`` as the user set them, ``full`` with defaults."""

    name: str
    method: Method
    params: dict
    full: dict


def resolve_methods(spec: str, sets: Sequence[str], extra: Sequence[tuple[str | None, str, Any]] = ()
                    ) -> list[ChosenMethod]:
    """Split ``a,b,c``, look every method up once, and assign the ``--set`` values, then the already parsed
    ``(scope, key, value)`` settings in ``extra`` (e.g. ``--contrast``), to the methods that take them.

    An unscoped ``key=value`` goes to every chosen method that has the parameter and must fit at least one;
    ``method.key=value`` must name a chosen method that has it.

    Raises
    ------
    MethodError
        For an unknown method or a parameter no chosen method takes (both list the valid names).
    """
    from ..methods import METHODS, find_method
    names = [n.strip() for n in spec.split(",") if n.strip()]
    if not names:
        raise MethodError(f"no method given; methods are: {', '.join(sorted(METHODS))}")
    found = {}
    for name in names:  # registered names and names parsed from a method family's grammar
        method = find_method(name)
        if method is None:
            raise MethodError(f"unknown method {name!r}; methods are: {', '.join(sorted(METHODS))} "
                              "(and the families `onnxlrp methods` lists)")
        found[name] = method
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise MethodError(f"method {dupes[0]!r} is given twice")
    chosen: dict[str, dict] = {n: {} for n in names}
    for scope, key, value in [*parse_sets(sets), *extra]:
        if scope is not None:
            if scope not in names:
                raise MethodError(f"--set {scope}.{key}: method {scope!r} is not among the chosen methods "
                                  f"({', '.join(names)})")
            targets = [scope]
        else:
            targets = names
        targets = [n for n in targets if key in found[n].params]
        if not targets:
            valid = sorted({p for n in ([scope] if scope else names) for p in found[n].params})
            which = f"method {scope!r}" if scope else ("method " + repr(names[0]) if len(names) == 1
                                                       else "methods " + ", ".join(map(repr, names)))
            raise MethodError(f"unknown parameter {key!r} for {which}; valid parameters: "
                              f"{', '.join(valid) or 'none'}")
        for name in targets:
            chosen[name][key] = value
    return [ChosenMethod(n, found[n], p, {**found[n].params, **p}) for n, p in chosen.items()]


def one_method(args: argparse.Namespace, command: str) -> ChosenMethod:
    """The single method of ``inspect`` and ``explain-text``."""
    methods = resolve_methods(args.method, args.sets)
    if len(methods) != 1:
        raise UsageError(f"{command} takes one --method")
    return methods[0]


# ------------------------------------------------------------------------------------------------------- parser
def _command(module: str, function: str) -> Callable[[argparse.Namespace], int]:
    """A command's function, imported from ``onnxlrp.cli.<module>`` only when the command runs."""
    def run(args: argparse.Namespace) -> int:
        return getattr(importlib.import_module(f"{__package__}.{module}"), function)(args)

    return run


def exit_codes_text(width: int | None = None) -> str:
    """The exit codes of :data:`onnxlrp.errors.EXIT_CODES` as an indented two-column list (``--help``'s epilog),
    wrapped to ``width`` (default: the terminal's width, as argparse wraps the rest of the help)."""
    width = width or max(shutil.get_terminal_size().columns - 2, 40)
    lines = ["exit codes:"]
    for code, meaning in EXIT_CODES.items():
        lines.extend(textwrap.wrap(meaning, width, initial_indent=f"  {code:<4} ", subsequent_indent=" " * 7))
    return "\n".join(lines)


def _add_model_selection(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input-name", metavar="NAME", help="model input to explain (needed when it has several)")
    p.add_argument("--output-name", metavar="NAME", help="model output to explain (needed when it has several)")


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--debug", action="store_true", help="show the full traceback of an error")


def _add_run_options(run, budget: str, quiet: str) -> None:
    """Batch size, memory budget, device, dtype and --quiet, which ``explain`` and ``evaluate`` share."""
    run.add_argument("--batch-size", type=_positive_int, default=16, help="inputs per batch (default %(default)s); "
                     "memory use depends on this, not on the number of inputs")
    run.add_argument("--memory-budget", type=_bytes, metavar="BYTES",
                     help="memory one pass may plan to use, e.g. 2G or 512M (default ONNXLRP_MEMORY_BUDGET, else "
                          f"half the available memory); {budget}")
    run.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    run.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    run.add_argument("--backend", choices=["numpy", "onnx"], default="numpy",
                     help="numpy: the reference kernels (default); onnx: each method compiled into the model and run "
                          "by onnxruntime (float32; see `onnxlrp compile`)")
    run.add_argument("-q", "--quiet", action="store_true", help=quiet)


def _add_preprocessing(pre) -> None:
    """The image preprocessing options ``explain`` and ``evaluate`` share."""
    pre.add_argument("--size", nargs=2, type=_positive_int, metavar=("H", "W"), help="resize images to H x W")
    pre.add_argument("--preprocess", choices=PREPROCESS_PRESETS, metavar="PRESET",
                     help="Keras' preprocess_input modes, instead of --scale/--mean/--std: caffe (RGB->BGR, minus the "
                          "ImageNet mean 103.939,116.779,123.68, no scaling), tf or inception (x/127.5 - 1), torch "
                          "(x/255, ImageNet mean and std)")
    pre.add_argument("--mean", type=_floats, metavar="M[,M,M]", help="subtracted after scaling (default 0)")
    pre.add_argument("--std", type=_floats, metavar="S[,S,S]", help="divides after the mean (default 1)")
    pre.add_argument("--scale", type=_scale, metavar="F", help="pixel multiplier, e.g. 1/255 (default) or 1")
    pre.add_argument("--layout", type=str.upper, choices=["NCHW", "NHWC"], help="default: read from the model")
    pre.add_argument("--grayscale", action="store_true", help="convert images to one channel")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (also used to render ``--help``)."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Explain ONNX models with LRP and gradient methods.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run 'onnxlrp COMMAND --help' for a command's options. Docs: README.md.\n\n" + exit_codes_text())
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
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
               "--preprocess caffe|tf|inception|torch sets scale, mean and std as Keras' preprocess_input does\n"
               "(caffe also reverses RGB to BGR after scaling).\n"
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
                    help="what to explain: 'pred' (the predicted class, default), a class index or label name, or a "
                         "position in each sample's output such as '17,5' (box 17, class 5 of a detector's "
                         "(N, boxes, classes) output; the last index may be a label)")
    ex.add_argument("--feed", dest="feeds", action="append", default=[], metavar="NAME=FILE.npy",
                    help="hold another model input fixed at this array (repeatable; one sample is repeated over the "
                         "batch)")
    ex.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                    help="method parameter, repeatable; 'method.key=value' limits it to one method. Values: int, "
                         "float, true/false, none, or a comma list")
    ex.add_argument("--contrast", metavar="Q[,Q,...]", type=_class_list,
                    help="contrastive methods (clrp1, clrp2, contrastive_grad_cam): explain the target rather than "
                         "class Q; several classes give one map per Q (METHOD_vs_Q) side by side in the grid (the "
                         "P-vs-Q grid)")
    ex.add_argument("-o", "--out", default="onnxlrp-out", metavar="DIR", help="output folder (default onnxlrp-out)")
    ex.add_argument("--labels", metavar="FILE", help="text file with one class name per line")
    ex.add_argument("--report", action="store_true", help="also write report.html, a self-contained gallery")
    _add_preprocessing(ex.add_argument_group("image preprocessing"))
    out = ex.add_argument_group("output")
    out.add_argument("--cmap", choices=COLORMAPS, default=DEFAULT_CMAP, metavar="NAME",
                     help=f"heatmap colour map: {', '.join(COLORMAPS)} (default {DEFAULT_CMAP}; seismic is zennit's, "
                          "seismic_mpl matplotlib's; jet, hot, coolwarm, viridis, inferno, magma, plasma as in "
                          "matplotlib)")
    out.add_argument("--split-sign", action="store_true",
                     help="also write each map's positive and negative relevance as two images (NAME.METHOD.positive"
                          ".png, .negative.png), each on its own colour scale, in the grid and the report too")
    out.add_argument("--top-k", type=_positive_int, default=5, help="scores listed per input (default 5)")
    run = ex.add_argument_group("run")
    _add_run_options(run, budget="inputs that would need more are refused before decoding, batches are split to fit",
                     quiet="no progress bar and no summary on stdout")
    _add_model_selection(ex)
    _add_common(ex)
    ex.set_defaults(func=_command("explain", "cmd_explain"))

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
    ins.set_defaults(func=_command("inspect", "cmd_inspect"))

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
                     help=f"method, or several separated by commas (one row each; default {TEXT_METHOD}); see "
                          "'onnxlrp methods'")
    txt.add_argument("-t", "--target", default="pred",
                     help="class to explain: 'pred' (default), a class index, or a label name")
    txt.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                     help="method parameter, repeatable")
    txt.add_argument("--labels", metavar="FILE", help="text file with one class name per line")
    txt.add_argument("--html", metavar="FILE", help="write the token view (self-contained HTML) to FILE")
    txt.add_argument("--json", action="store_true", help="print JSON instead of text")
    txt.add_argument("--view", choices=["words", "pieces"], default="words",
                     help="relevance per word (the sum of its pieces; default) or per tokenizer piece")
    txt.add_argument("--per-layer", action="store_true",
                     help="also the relevance per token after each transformer block (HTML table, JSON arrays)")
    txt.add_argument("--embedding", metavar="TENSOR", help="the token-embedding tensor (default: found from the ids)")
    txt.add_argument("--max-length", type=_positive_int, metavar="N", help="truncate texts to N tokens")
    txt.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    txt.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    txt.add_argument("--output-name", metavar="NAME", help="model output to explain (needed when it has several)")
    _add_common(txt)
    txt.set_defaults(func=_command("explain_text", "cmd_explain_text"), command="explain-text")
    parser.text_parser = txt  # main() parses explain-text with parse_intermixed_args (texts around options)

    ev = sub.add_parser(
        "evaluate", help="measure how faithful each method's maps are (pixel flipping, AOPC, ROAD, MPRT, ...)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Explain the inputs with each method and run the chosen measures on the maps: faithfulness\n"
                    "(pixel_flipping, region_perturbation, insertion, deletion, road, faithfulness_correlation,\n"
                    "completeness), randomisation (mprt, random_logit), localisation with --masks (pointing_game,\n"
                    "relevance_mass_accuracy, relevance_rank_accuracy, outside_inside_ratio) and complexity\n"
                    "(sparseness, complexity). Writes summary.csv, evaluation.csv, evaluation.json, curves/*.png\n"
                    "(each method's mean curve and the random order's) and, with --report, report.html ranking the\n"
                    "methods. Definitions follow the papers and Quantus 0.6.",
        epilog="Example:\n"
               "  onnxlrp evaluate models/digits/digits_cnn.onnx models/digits/samples \\\n"
               "      --method epsilon_plus,input_x_gradient --metric pixel_flipping,region_perturbation --report")
    ev.add_argument("model", metavar="MODEL", help="path of the .onnx file")
    ev.add_argument("inputs", metavar="INPUT", nargs="+", help="image files, .npy arrays, or folders of them")
    ev.add_argument("-m", "--method", default=DEFAULT_METHOD, help=f"methods, comma-separated (default "
                                                                   f"{DEFAULT_METHOD})")
    ev.add_argument("--metric", default="pixel_flipping,region_perturbation,insertion,deletion,"
                    "faithfulness_correlation,sparseness,complexity", help="measures, comma-separated (default: "
                    "the faithfulness measures without ROAD, sparseness and complexity)")
    ev.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                    help="method parameter (or method.key=value), repeatable")
    ev.add_argument("--metric-set", dest="metric_sets", action="append", default=[], metavar="KEY=VALUE",
                    help="measure parameter (or metric.key=value, e.g. pixel_flipping.features_in_step=16), "
                         "repeatable")
    ev.add_argument("-t", "--target", default="pred",
                    help="classes to explain, comma-separated: 'pred' (default), class indices or label names; "
                         "each is evaluated as its own variant (METHOD@T)")
    ev.add_argument("--contrast", metavar="Q[,Q]",
                    help="contrast classes for the contrastive methods (clrp1, clrp2, contrastive_grad_cam): each "
                         "is a variant (METHOD vs Q)")
    ev.add_argument("--views", action="store_true",
                    help="write views/NAME.png per input: a row per target, a tile per method and contrast (on by "
                         "default with several targets, --contrast or --split-sign)")
    ev.add_argument("--split-sign", action="store_true",
                    help="draw each map's positive and negative relevance as separate images in the views")
    ev.add_argument("--cmap", choices=COLORMAPS, default=DEFAULT_CMAP, metavar="NAME",
                    help=f"colour map of the views: {', '.join(COLORMAPS)} (default {DEFAULT_CMAP})")
    ev.add_argument("--masks", metavar="DIR", help="folder with a mask per input, NAME.png or NAME.npy (for the "
                                                   "localisation measures)")
    ev.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
    ev.add_argument("-o", "--out", default="onnxlrp-eval", metavar="DIR", help="output folder (default onnxlrp-eval)")
    ev.add_argument("--labels", metavar="FILE", help="text file with one class name per line")
    ev.add_argument("--report", action="store_true", help="also write report.html")
    _add_preprocessing(ev.add_argument_group("image preprocessing (as for explain)"))
    run = ev.add_argument_group("run")
    _add_run_options(run, budget="also bounds the batches of perturbed inputs",
                     quiet="no progress bar and no table on stdout")
    _add_model_selection(ev)
    _add_common(ev)
    ev.set_defaults(func=_command("evaluate", "cmd_evaluate"))

    from .patterns import add_parser as add_patterns_parser  # argparse only: no numpy at --help
    add_patterns_parser(sub, _command, _add_preprocessing, _add_run_options, _add_model_selection, _add_common)
    from .audit_args import add_parsers as add_audit_parsers
    add_audit_parsers(sub, _command, _add_preprocessing, _add_run_options, _add_model_selection, _add_common)

    com = sub.add_parser(
        "compile", help="write a method into the model as ONNX: inputs + target -> outputs + relevance",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Compile a method's backward pass into the model as standard ONNX nodes. The result takes the\n"
                    "model's inputs plus `target` (int64, one class per sample; -1 explains the prediction; plus\n"
                    "`contrast` for contrastive methods, `noise` for smoothgrad) and returns the model's outputs\n"
                    "plus `relevance`, shaped like the explained input. It runs on any ONNX runtime without onnxlrp.",
        epilog="Example:\n  onnxlrp compile model.onnx --method epsilon_plus -o model.epsilon_plus.onnx\n"
               "  python -c \"import onnxruntime as ort, numpy as np; s = ort.InferenceSession('model.epsilon_plus."
               "onnx');\n    print(s.run(['relevance'], {'input': x, 'target': np.array([-1])})[0])\"")
    com.add_argument("model", help="path to the .onnx model")
    com.add_argument("-m", "--method", default="epsilon_plus_flat", help="method to compile (default "
                     "epsilon_plus_flat; `onnxlrp methods` lists them)")
    com.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                     help="method parameter, e.g. --set epsilon=0.25 (repeatable)")
    com.add_argument("-o", "--output", required=True, metavar="OUT.onnx", help="where to write the compiled model")
    com.add_argument("--explain-softmax", action="store_true",
                     help="explain a final Softmax's output instead of the logits before it")
    _add_model_selection(com)
    _add_common(com)
    com.set_defaults(func=_command("compile", "cmd_compile"))

    met = sub.add_parser("methods", help="list every method with its parameters and defaults",
                         description="List every method with its parameters, defaults and a one-line description.")
    met.add_argument("--json", action="store_true", help="print JSON instead of text")
    met.add_argument("--all-names", action="store_true", help="list every accepted iNNvestigate and signxai name "
                     "with the onnxlrp method and parameters it runs (docs/method-names.md)")
    _add_common(met)
    met.set_defaults(func=_command("list_methods", "cmd_methods"))
    return parser
