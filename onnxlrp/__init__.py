"""onnxlrp: explain any ONNX model's predictions with LRP and gradient methods.

>>> import onnxlrp
>>> ex = onnxlrp.Explainer("model.onnx")
>>> res = ex.explain(x, method="epsilon_plus_flat")
>>> res.relevance.shape == x.shape

Layers (each a folder; arrows point one way): ``engine`` (graph, kernel registry, runners, walker, the public
:class:`Session`) ← ``lrp`` (rules and presets) ← ``methods`` (one module per family) ← ``explainer`` (this
facade), ``text``; ``inputs`` (files in) and ``views`` (pixels and HTML out) beside them; ``cli`` on top. The names
below are imported on first use, so ``onnxlrp --help`` loads neither numpy nor onnxruntime.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

#: public name -> (module, attribute); ``None`` as attribute means the module itself
_EXPORTS = {
    "Explainer": ("onnxlrp.explainer", "Explainer"),
    "Explanation": ("onnxlrp.explainer", "Explanation"),
    "explain": ("onnxlrp.explainer", "explain"),
    "compile": ("onnxlrp.compiler", "compile"),
    "Session": ("onnxlrp.engine.session", "Session"),
    "Position": ("onnxlrp.engine.seeds", "Position"),
    "methods": ("onnxlrp.methods", None),
    "register_kernel": ("onnxlrp.engine.registry", "register_kernel"),
    "registered": ("onnxlrp.engine.registry", "registered"),
    "OnnxLrpError": ("onnxlrp.errors", "OnnxLrpError"),
    "errors": ("onnxlrp.errors", None),
    "rules": ("onnxlrp.lrp.rules", None),
    "text": ("onnxlrp.text", None),
    "evaluate": ("onnxlrp.evaluate", None),
    "kernels": ("onnxlrp.engine.registry", "load_builtin_kernels"),
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'onnxlrp' has no attribute {name!r}")
    module_name, attribute = _EXPORTS[name]
    module = importlib.import_module(module_name)
    if name == "kernels":
        value = module.load_builtin_kernels()
    else:
        value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
