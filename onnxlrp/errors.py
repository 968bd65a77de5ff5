"""Every exception onnxlrp raises on purpose, each with the exit code the command line returns for it.

Every error's first line is a complete, self-contained sentence (the CLI prints only that line unless ``--debug``);
further lines, when present, give a table or a fix. Messages quote names with ``repr`` as ONNX does.

:data:`EXIT_CODES` is the one table of exit codes: the README's table and the CLI's ``--help`` are checked against it.
"""
from __future__ import annotations


class OnnxLrpError(Exception):
    """Base class of every error onnxlrp raises on purpose."""

    #: Exit code the command line uses for this error class.
    exit_code = 1


class ModelLoadError(OnnxLrpError):
    """The model file is missing, unreadable, truncated or not ONNX."""

    exit_code = 3


class ModelCheckError(OnnxLrpError):
    """The model is ONNX but fails the ONNX checker or shape inference, or refers to unsafe external data."""

    exit_code = 4


class ModelRunError(ModelCheckError):
    """onnxruntime loaded the model but failed running it (a malformed node, or an input that does not fit)."""

    exit_code = 4


class ExternalDataError(ModelCheckError):
    """An initializer's external data lies outside the model's folder (refused: it could read any file)."""

    exit_code = 14


class UnsupportedOpError(OnnxLrpError, NotImplementedError):
    """An op on the relevance path has no kernel, or a kernel cannot handle this use of the op.

    ``unsupported`` lists ``(node, reason)`` for every such node (``onnxlrp inspect`` shows them as a table).
    """

    exit_code = 5

    def __init__(self, message: str, unsupported: list | tuple = ()):
        super().__init__(message)
        self.unsupported = list(unsupported)


class CompileError(OnnxLrpError, NotImplementedError):
    """A method, rule or op that cannot be written as an ONNX graph (``onnxlrp compile``, ``backend="onnx"``); the
    message names the node and what would make it work."""

    exit_code = 5


class UnsupportedGraphError(OnnxLrpError):
    """The graph has a structure the engine does not handle (control flow on the relevance path, cycles)."""

    exit_code = 5


class NameSelectionError(OnnxLrpError, ValueError):
    """An input or output name is missing, unknown or ambiguous."""

    exit_code = 6


class InputShapeError(OnnxLrpError, ValueError):
    """An input array does not have the shape the model declares."""

    exit_code = 7


class InputDtypeError(OnnxLrpError, TypeError):
    """An input array does not have a dtype the model can take."""

    exit_code = 7


class MemoryBudgetError(OnnxLrpError, MemoryError):
    """The planned memory of a pass exceeds the memory budget (checked before anything is allocated)."""

    exit_code = 7


class TargetError(OnnxLrpError, ValueError):
    """The explained class is outside the output's range or has the wrong form."""

    exit_code = 8


class MethodError(OnnxLrpError, ValueError):
    """Unknown method or parameter, or a parameter value the method rejects."""

    exit_code = 9


class RuleNotApplicableError(OnnxLrpError, TypeError):
    """A rule was assigned to a node whose op cannot use it (e.g. Gamma on a Relu)."""

    exit_code = 9


class RelevanceShapeError(OnnxLrpError, ValueError):
    """A kernel returned relevance whose shape does not match the tensor it belongs to (an engine bug)."""

    exit_code = 1


class NonFiniteError(OnnxLrpError, FloatingPointError):
    """NaN or inf appeared in the forward pass or in the relevance."""

    exit_code = 10


class BackendUnavailableError(OnnxLrpError, ImportError):
    """The GPU backend was requested but CuPy or the CUDA provider is missing."""

    exit_code = 11


class UsageError(OnnxLrpError, ValueError):
    """Options that cannot work together (found after argparse, e.g. against the model's input shape)."""

    exit_code = 2


class ImageDecodeError(OnnxLrpError, ValueError):
    """An input file has an image suffix but cannot be decoded."""

    exit_code = 12


class OutputDirError(OnnxLrpError, OSError):
    """The output folder cannot be created or written to."""

    exit_code = 13


class InputFileError(OnnxLrpError, FileNotFoundError):
    """An input path is missing, an empty folder, of an unknown kind, or an unreadable array."""

    exit_code = 15


class LabelsError(OnnxLrpError, ValueError):
    """The ``--labels`` file is missing or has a different number of lines than the model has classes."""

    exit_code = 16


class MissingDependencyError(OnnxLrpError, ImportError):
    """An optional dependency (``tokenizers`` for text explanations) is not installed."""

    exit_code = 17


class TokenizerError(OnnxLrpError, ValueError):
    """The tokenizer file is missing or not a ``tokenizers`` JSON file."""

    exit_code = 18


class EmbeddingNotFoundError(OnnxLrpError, ValueError):
    """No token-embedding lookup (``Gather`` of an embedding table by the token ids) was found in the model."""

    exit_code = 6


class OnnxLrpWarning(UserWarning):
    """Something about a model or a result the user should know; the command line prints it after the run and keeps
    it in ``summary.json``."""


class ModelCheckWarning(OnnxLrpWarning):
    """The ONNX checker or shape inference rejects the model, but onnxruntime loads it: it is explained anyway."""


class ZeroRelevanceWarning(OnnxLrpWarning):
    """A sample's relevance is zero everywhere (the explained output does not depend on the input there)."""


class FoldedBatchNormWarning(OnnxLrpWarning):
    """The exporter folded a BatchNormalization into a Conv/Gemm's weights, and the method (RAP) is not invariant to
    that folding: its map differs from the one of the model with BatchNorm kept."""


#: exit status of the command line when interrupted (Ctrl-C)
INTERRUPTED_EXIT = 130

#: exit code -> what it means; every error class's ``exit_code`` appears here (a test checks it, and that the
#: README's table says the same)
EXIT_CODES: dict[int, str] = {
    0: "ok",
    1: "internal error (a bug: please report it; `--debug` shows the traceback)",
    2: "usage: bad option, or options that contradict the model (e.g. `--size` against a static shape)",
    3: "model file missing, a folder, truncated or not ONNX",
    4: "model fails the ONNX checker or shape inference, or onnxruntime cannot load or run it (the node is named)",
    5: "an op on the relevance path has no kernel, or the graph has a structure the engine does not handle, or a "
       "method or op cannot be compiled to ONNX. The nodes are listed; `onnxlrp inspect` shows every op's status.",
    6: "several inputs/outputs and none chosen, an unknown name (`--input-name`, `--output-name`), or no token "
       "embedding found in a text model",
    7: "array of the wrong shape or dtype, or an input too large for the memory budget",
    8: "target out of range, or not a class or label",
    9: "unknown method or parameter (the valid ones are listed), or a rule that cannot apply to a node",
    10: "NaN or inf in the input, the model's output or the relevance",
    11: "GPU backend unavailable (CuPy or onnxruntime's CUDA provider missing)",
    12: "image cannot be decoded, or its header claims more pixels than the limit",
    13: "output folder not writable",
    14: "an initializer's external data lies outside the model's folder (refused)",
    15: "input path missing, an empty folder, a file of another kind, not a regular file or over its size limit, "
        "an unreadable or malformed `.npy`",
    16: "labels file missing, not a regular file or over its size limit, or its line count differs from the number "
        "of classes",
    17: "optional dependency missing (`tokenizers` for `explain-text`)",
    18: "tokenizer file missing, not a regular file, over its size limit or unreadable",
    INTERRUPTED_EXIT: "interrupted (Ctrl-C); files already written are complete",
}


def error_classes() -> list[type[OnnxLrpError]]:
    """Every error class defined here (the base included)."""
    found, stack = [], [OnnxLrpError]
    while stack:
        cls = stack.pop()
        found.append(cls)
        stack.extend(cls.__subclasses__())
    return sorted(set(found), key=lambda c: (c.exit_code, c.__name__))


def join_lines(*lines: str) -> str:
    """Build a multi-line message from lines, dropping empty ones."""
    return "\n".join(line for line in lines if line)
