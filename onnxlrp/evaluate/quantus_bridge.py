"""A bridge for Quantus users: onnxlrp methods as a Quantus ``explain_func``, and the ONNX model as a torch module.

Quantus 0.6 evaluates torch or Keras models only. :func:`torch_module` wraps an ONNX model in a small
``torch.nn.Module`` whose forward pass runs the model in onnxruntime (no gradients flow through it: Quantus's
metrics only call it for predictions), so every Quantus metric that perturbs inputs accepts it;
:func:`quantus_explain_func` follows Quantus's ``explain_func(model, inputs, targets, **kwargs)`` contract::

    module = torch_module("model.onnx")
    quantus.PixelFlipping(features_in_step=16)(module, x, y, a_batch=None,
                                               explain_func=quantus_explain_func("epsilon_plus"))

Quantus's MPRT re-initialises torch modules, which a wrapped ONNX model has none of: use
:func:`onnxlrp.evaluate.mprt`, which re-draws the ONNX initializers. torch is imported only when
:func:`torch_module` is called (it is in the ``test`` extra, never a runtime dependency).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..errors import MissingDependencyError, UsageError
from .model import as_runner, explainer_for


def _explainer_of(model, fallback):
    explainer = getattr(model, "onnxlrp_explainer", None) or fallback
    if explainer is None:
        raise UsageError("quantus_explain_func needs the model wrapped by onnxlrp.evaluate.torch_module, or an "
                         "Explainer or model path passed as model=")
    return explainer


def quantus_explain_func(method: str, model=None, **params) -> Callable:
    """An ``explain_func(model, inputs, targets, **kwargs) -> np.ndarray`` for Quantus explaining with onnxlrp's
    ``method`` (and its ``params``). The model Quantus passes must come from :func:`torch_module`; or give the
    ONNX model (a path, Session or Explainer) here as ``model``. Quantus's own keyword arguments (``device``,
    ``softmax``, ...) are ignored; the relevance has the inputs' shape."""
    fallback = None if model is None else explainer_for(model)

    def explain_func(model=None, inputs=None, targets=None, **kwargs) -> np.ndarray:
        explainer = _explainer_of(model, fallback)
        x = inputs.detach().cpu().numpy() if hasattr(inputs, "detach") else np.asarray(inputs)
        x = np.asarray(x, dtype=np.float32)
        t = targets.detach().cpu().numpy() if hasattr(targets, "detach") else np.asarray(targets)
        return explainer.explain(x, method=method, target=np.asarray(t, dtype=np.int64).reshape(-1),
                                 **params).relevance

    explain_func.__name__ = f"onnxlrp_{method}"
    return explain_func


def torch_module(model, **kwargs):
    """A ``torch.nn.Module`` (in eval mode) computing the explained output of ``model`` (a path, Session,
    Explainer or :class:`~.model.ModelRunner`; ``kwargs`` go to the Session) with onnxruntime. It carries the
    :class:`~onnxlrp.Explainer` for :func:`quantus_explain_func` as ``onnxlrp_explainer``."""
    try:
        import torch
    except ImportError as exc:
        raise MissingDependencyError("torch_module needs torch (`pip install torch`; it is in onnxlrp's test "
                                     "extra)") from exc
    explainer = explainer_for(model, **kwargs)
    runner = as_runner(explainer)

    class OnnxModule(torch.nn.Module):
        """The ONNX model's explained output, computed by onnxruntime (no autograd)."""

        def __init__(self):
            super().__init__()
            self.onnxlrp_runner = runner
            self.onnxlrp_explainer = explainer

        def forward(self, x):
            out = runner.outputs(x.detach().cpu().numpy())
            dtype = x.dtype if x.is_floating_point() else torch.float32
            return torch.as_tensor(out, dtype=dtype, device=x.device)

        def __deepcopy__(self, memo):  # Quantus deep-copies the model; the onnxruntime session is shared
            return self

    return OnnxModule().eval()
