"""The parsers of ``onnxlrp audit`` and ``onnxlrp diff``.

Imported while the parser is built, so this module imports neither numpy nor the engine: the commands' functions are
in :mod:`onnxlrp.cli.audit` and :mod:`onnxlrp.cli.diff`, imported when they run.
"""
from __future__ import annotations

import argparse
from collections.abc import Callable

DATA_HELP = ("a folder of images or .npy arrays (class subfolders are taken as labels), a list file (.txt/.csv: "
             "one 'path [label]' per line), .npy/.npz shards (.npz: arrays x and optional y), or a Parquet file of "
             "image bytes or arrays (with an optional label column); several may be given")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


#: the largest stored map side: a shard's maps are held in memory (rows x S x S float32)
MAX_MAP_SIZE = 1024


def _map_size(text: str) -> int:
    value = _positive(text)
    if value > MAX_MAP_SIZE:
        raise argparse.ArgumentTypeError(f"at most {MAX_MAP_SIZE} (maps are resized to S x S and a shard's maps are "
                                         f"held in memory); got {value}")
    return value


def add_parsers(sub, command: Callable, add_preprocessing: Callable, add_run_options: Callable,
                add_model_selection: Callable, add_common: Callable) -> None:
    """Add ``audit`` and ``diff`` to the sub-command parsers ``sub``."""
    au = sub.add_parser(
        "audit", help="explain a whole dataset: a Parquet table, chunked maps, SpRAy strategies per class, a report",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Explain every input of a dataset with each method, in bounded memory, and write to --out:\n"
                    "  audit.parquet   one row per input: source, label, prediction, top-k scores, per method the\n"
                    "                  explained class, the explained score, the sum of relevance, the --metric\n"
                    "                  values and the SpRAy cluster\n"
                    "  maps/METHOD/    relevance maps summed over channels and resized to --map-size, one .npy\n"
                    "                  per shard of --shard-size rows (onnxlrp.audit.AuditMaps reads them by row)\n"
                    "  spray.json      per method and class: spectral relevance analysis (Lapuschkin et al.\n"
                    "                  2019), the strategies found, ranked by how distinct they are\n"
                    "  report.html     confusion summary, per-class strategies with example inputs, measures\n"
                    "Work is committed shard by shard: after a crash or Ctrl-C, the same command with --resume\n"
                    "finishes the run with every input exactly once. --engine ray runs the shards on Ray Data.",
        epilog="Example:\n"
               "  onnxlrp audit models/shortcut/shortcut_cnn.onnx models/shortcut/data \\\n"
               "      --labels models/shortcut/labels.txt --method epsilon_plus --out audit-out")
    au.add_argument("model", metavar="MODEL", help="path of the .onnx file")
    au.add_argument("data", metavar="DATA", nargs="+", help=DATA_HELP)
    au.add_argument("-m", "--method", default="epsilon_plus", help="methods, comma-separated (default epsilon_plus)")
    au.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                    help="method parameter (or method.key=value), repeatable")
    au.add_argument("--metric", default=None, help="measures per input, comma-separated (e.g. sparseness,complexity,"
                    "pixel_flipping; `onnxlrp evaluate --help` lists them; default none)")
    au.add_argument("--metric-set", dest="metric_sets", action="append", default=[], metavar="KEY=VALUE",
                    help="measure parameter, repeatable")
    au.add_argument("-o", "--out", default="onnxlrp-audit", metavar="DIR", help="output folder (default onnxlrp-audit)")
    au.add_argument("--labels", metavar="FILE", help="text file with one class name per line")
    au.add_argument("--column", metavar="NAME", help="Parquet data: the column holding the images or arrays "
                    "(default: the first of image, img, pixel_values, x, input, array, or the first binary column)")
    au.add_argument("--label-column", metavar="NAME", help="Parquet data: the column holding labels (default: "
                    "label, labels, y, target when present)")
    au.add_argument("-t", "--target", choices=["pred", "label"], default="pred",
                    help="what each method explains (and SpRAy groups by): pred, the predicted class (default), or "
                         "label, each input's label where it is known (the prediction otherwise)")
    au.add_argument("--resume", action="store_true", help="finish an interrupted audit in --out (same command)")
    au.add_argument("--top-k", type=_positive, default=5, help="scores kept per input (default 5)")
    au.add_argument("--map-size", type=_map_size, default=32, metavar="S",
                    help="maps are stored resized to S x S (default 32)")
    au.add_argument("--shard-size", type=_positive, default=256, metavar="ROWS",
                    help="rows per committed shard (default 256)")
    spray = au.add_argument_group("SpRAy (spectral relevance analysis per class)")
    spray.add_argument("--no-spray", action="store_true", help="skip SpRAy")
    spray.add_argument("--spray-max", type=_positive, default=1000, metavar="N",
                       help="at most N maps per class and method (a seeded uniform sample; default 1000)")
    spray.add_argument("--spray-neighbours", type=_positive, default=10, metavar="K",
                       help="neighbours of the k-NN affinity graph (default 10)")
    spray.add_argument("--spray-max-clusters", type=_positive, default=8, metavar="K",
                       help="largest number of strategies the eigengap may choose (default 8)")
    spray.add_argument("--spray-embedding", choices=["spectral", "tsne"], default="spectral",
                       help="the 2-D picture of each class's maps: spectral (Laplacian eigenmap coordinates, instant; "
                            "default) or tsne (t-SNE as CoRelAy draws it; seconds to minutes per class)")
    spray.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
    eng = au.add_argument_group("engine")
    eng.add_argument("--engine", choices=["local", "ray"], default="local",
                     help="local: this process (default); ray: Ray Data, one Explainer per actor")
    eng.add_argument("--num-workers", type=_positive, default=2, metavar="N", help="Ray actors (default 2)")
    eng.add_argument("--address", metavar="ADDR", help="an existing Ray cluster (e.g. ray://head:10001 or auto); "
                     "default: a local cluster of --num-workers CPUs")
    add_preprocessing(au.add_argument_group("image preprocessing (as for explain)"))
    run = au.add_argument_group("run")
    add_run_options(run, budget="batches are split to fit", quiet="no progress bar and no summary on stdout")
    add_model_selection(au)
    add_common(au)
    # larger batches amortise the walk's overhead; an interrupted audit is finished with --resume
    au.set_defaults(func=command("audit", "cmd_audit"), batch_size=64,
                    interrupt_hint="run the same command with --resume to finish the audit")

    di = sub.add_parser(
        "diff", help="compare two exports of one model on the same inputs: predictions and explanation drift",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run the same inputs through two exports of one model (float32 vs float16, vs int8 QDQ, vs an\n"
                    "onnxruntime-optimised graph), explain both with --method, and report prediction agreement and,\n"
                    "per input, the Spearman correlation and top-k overlap of the two maps. Writes diff.parquet\n"
                    "(one row per input), diff.json (the summary) and report.html (the least similar inputs).",
        epilog="Example:\n"
               "  onnxlrp diff model.onnx model.int8.onnx images/ --method epsilon_plus --out drift")
    di.add_argument("model_a", metavar="A", help="the reference .onnx file")
    di.add_argument("model_b", metavar="B", help="the other export")
    di.add_argument("data", metavar="DATA", nargs="+", help=DATA_HELP)
    di.add_argument("-m", "--method", default="epsilon_plus", help="method (default epsilon_plus)")
    di.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                    help="method parameter, repeatable")
    di.add_argument("-o", "--out", default="onnxlrp-diff", metavar="DIR", help="output folder (default onnxlrp-diff)")
    di.add_argument("--labels", metavar="FILE", help="text file with one class name per line")
    di.add_argument("--column", metavar="NAME", help="Parquet data: the column holding the images or arrays")
    di.add_argument("--label-column", metavar="NAME", help="Parquet data: the column holding labels")
    di.add_argument("--top-k", type=float, default=0.1, metavar="K",
                    help="top-k overlap of the two maps: K features if K >= 1, else the fraction K of them "
                         "(default 0.1)")
    di.add_argument("--worst", type=_positive, default=12, metavar="N",
                    help="least similar inputs shown in the report (default 12)")
    di.add_argument("--target", choices=["ref", "own"], default="ref",
                    help="ref: both models explain the class model A predicts, so that the maps answer the same "
                         "question (default); own: each model explains its own prediction")
    add_preprocessing(di.add_argument_group("image preprocessing (as for explain)"))
    run = di.add_argument_group("run")
    add_run_options(run, budget="batches are split to fit", quiet="no progress bar and no summary on stdout")
    add_model_selection(di)
    add_common(di)
    di.set_defaults(func=command("diff", "cmd_diff"), batch_size=64)
