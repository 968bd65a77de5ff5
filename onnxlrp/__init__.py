"""onnxlrp: explain any ONNX model's predictions with LRP and gradient methods.

>>> import onnxlrp
>>> ex = onnxlrp.Explainer("model.onnx")
>>> res = ex.explain(x, method="epsilon_plus_flat")
>>> res.relevance.shape == x.shape

Layers (each a folder; arrows point one way): ``engine`` (graph, kernels registry, runners, walker, the public
:class:`Session`) ← ``lrp`` (rules and presets) ← ``methods`` (one module per family) ← ``explainer`` (this
facade), ``text``, ``views`` (pixels and HTML) and ``cli``.
"""
from __future__ import annotations

from .engine.registry import load_builtin_kernels

kernels = load_builtin_kernels()

from . import errors  # noqa: E402
from .engine.registry import register_kernel, registered  # noqa: E402
from .engine.session import Session  # noqa: E402
from .errors import OnnxLrpError  # noqa: E402
from .explainer import Explainer, Explanation, explain  # noqa: E402
from .lrp import rules  # noqa: E402
from .methods import methods  # noqa: E402

__version__ = "0.1.0"
__all__ = ["Explainer", "Explanation", "Session", "explain", "methods", "errors", "rules", "OnnxLrpError",
           "register_kernel", "registered", "kernels"]
