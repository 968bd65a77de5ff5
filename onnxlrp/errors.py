"""Exceptions raised by onnxlrp.

Every error's first line is a complete, self-contained sentence (the CLI prints only that line unless ``--debug``);
further lines, when present, give a table or a fix. Messages quote names with ``repr`` as ONNX does.
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


class ExternalDataError(ModelCheckError):
    """An initializer's external data lies outside the model's folder (refused: it could read any file)."""

    exit_code = 14


class UnsupportedOpError(OnnxLrpError, NotImplementedError):
    """An op on the relevance path has no kernel, or a kernel cannot handle this use of the op."""

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


def join_lines(*lines: str) -> str:
    """Build a multi-line message from lines, dropping empty ones."""
    return "\n".join(line for line in lines if line)
