"""onnxlrp: explain any ONNX model's predictions with LRP and gradient methods.

>>> import onnxlrp
>>> ex = onnxlrp.Explainer("model.onnx")
>>> res = ex.explain(x, method="epsilon_plus_flat")
>>> res.relevance.shape == x.shape
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys


def _load_builtin_kernels():
    """Import ``onnxlrp.kernels``; from a source checkout (no install) load the repo's top-level ``kernels/``."""
    try:
        return importlib.import_module("onnxlrp.kernels")
    except ModuleNotFoundError as exc:
        if exc.name != "onnxlrp.kernels":
            raise
    folder = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "kernels")
    spec = importlib.util.spec_from_file_location("onnxlrp.kernels", os.path.join(folder, "__init__.py"),
                                                  submodule_search_locations=[folder])
    module = importlib.util.module_from_spec(spec)
    sys.modules["onnxlrp.kernels"] = module
    spec.loader.exec_module(module)
    return module


kernels = _load_builtin_kernels()

from . import errors, rules  # noqa: E402
from .errors import OnnxLrpError  # noqa: E402
from .explainer import Explainer, Explanation, explain  # noqa: E402
from .methods import methods  # noqa: E402
from . import cam, clrp, rap, sign  # noqa: E402,F401  (they register their methods)
from . import attnlrp  # noqa: E402,F401  (AttnLRP and CP-LRP)
from .registry import register_kernel, registered  # noqa: E402

__version__ = "0.1.0"
__all__ = ["Explainer", "Explanation", "explain", "methods", "errors", "rules", "OnnxLrpError", "register_kernel",
           "registered", "kernels"]
