"""Built-in relevance kernels, installed as ``onnxlrp.kernels``.

Importing this package registers every kernel. This list is the single view of what is supported; a test asserts
that every module in this folder is imported here.
"""
if __name__ != "onnxlrp.kernels":
    # From a source checkout the repository root is on sys.path and this folder shadows any top-level package named
    # ``kernels`` (transformers probes Hugging Face's ``kernels`` with ``from kernels import ...`` and catches
    # ImportError). Importing it under another name would register every kernel twice.
    raise ImportError("this folder is onnxlrp.kernels, not a top-level 'kernels' package")

from . import (  # noqa: F401
    elementwise,
    op_arith,
    op_batchnorm,
    op_conv,
    op_conv_transpose,
    op_dense,
    op_fused,
    op_gather,
    op_math,
    op_minmax,
    op_ml,
    op_norm,
    op_pool,
    op_quant,
    op_recurrent,
    op_resize,
    op_softmax,
    structural,
)

MODULES = ("elementwise", "op_arith", "op_batchnorm", "op_conv", "op_dense", "op_gather", "op_math", "op_norm",
           "op_pool", "op_softmax", "structural",
           "op_resize", "op_conv_transpose", "op_minmax",
           "op_recurrent",
           "op_quant",
           "op_fused",
           "op_ml")
