"""Built-in relevance kernels, installed as ``onnxlrp.kernels``.

Importing this package registers every kernel. This list is the single view of what is supported; a test asserts
that every module in this folder is imported here.
"""
from . import elementwise, op_arith, op_batchnorm, op_conv, op_dense, op_pool, op_softmax, structural  # noqa: F401

MODULES = ("elementwise", "op_arith", "op_batchnorm", "op_conv", "op_dense", "op_pool", "op_softmax", "structural")
