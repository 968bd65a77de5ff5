"""Models for ``test_exporters.py``: torchvision architectures with random weights exported by both PyTorch exporters,
scikit-learn MLPs through skl2onnx, and the paths of the committed Keras fixtures and of a real ONNX file that a PyPI
package ships.

Exports are cached per process (``functools.lru_cache``): a model is exported once however many tests use it; the
largest (``UNCACHED``), each used by one test, are not held for the rest of the session.
"""
from __future__ import annotations

import functools
import io
import os
import warnings

import numpy as np

from tests.helpers import REPO

ROOT = str(REPO)
FIXTURES = os.path.join(ROOT, "models", "fixtures")
CLASSES = 10
SIZE = 32        # every torchvision model here downsamples by 32: a 32x32 input leaves a 1x1 final feature map
BATCH = 2

#: exporter name -> description; ``legacy`` is the TorchScript exporter (opset given), ``dynamo`` torch.export's
EXPORTERS = ("legacy", "dynamo")


def keras_fixture(opset: int) -> tuple[str, str]:
    """``(model path, reference npz path)`` of a committed tf2onnx fixture (``tools/make_keras_fixtures.py``)."""
    stem = os.path.join(FIXTURES, f"keras_cnn_opset{opset}")
    return stem + ".onnx", stem + ".npz"


def keras_opsets() -> list[int]:
    return sorted(int(f[len("keras_cnn_opset"):-len(".onnx")]) for f in os.listdir(FIXTURES)
                  if f.startswith("keras_cnn_opset") and f.endswith(".onnx"))


def shipped_onnx(name: str = "light_squeezenet") -> str:
    """A real model file shipped inside the ``onnx`` wheel: the ONNX model zoo's networks with their weights replaced
    by ``ConstantOfShape`` fills (``onnx/backend/test/data/light/``), used by onnx's own backend tests."""
    import onnx
    return os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light", f"{name}.onnx")


# ------------------------------------------------------------------------------------------------- torchvision
def torchvision_model(name: str, seed: int = 0, bias_free: bool = False):
    """A torchvision classifier (``num_classes=10``) with random weights in eval mode, float32.

    BatchNorm statistics and affine parameters and every bias are randomised so that the exporters' BN folding and
    bias handling matter. ``bias_free=True`` instead zeroes every bias, BatchNorm shift and running mean (BatchNorm
    becomes a per-channel scaling): then a ReLU network is positively homogeneous and LRP-0 conserves exactly.
    """
    import torch
    import torchvision
    from torch import nn

    torch.manual_seed(seed)
    extra = {"image_size": SIZE} if name.startswith("vit_") else {}   # ViT: 2x2 patches of 16 + the class token
    model = getattr(torchvision.models, name)(weights=None, num_classes=CLASSES, **extra).eval()
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        if name.startswith("vit_"):
            # torchvision zero-initialises the head (every logit would be its bias, every gradient zero), the class
            # token and the attention's input-projection bias. bias_free: the class token and the position
            # embedding (additive constants) are zero too, so that nothing but the image carries relevance.
            head = model.heads.head
            head.weight.copy_(torch.randn(head.weight.shape, generator=gen) * 0.05)
            if bias_free:
                model.class_token.zero_()
                model.encoder.pos_embedding.zero_()
            else:
                model.class_token.copy_(torch.randn(model.class_token.shape, generator=gen) * 0.5)
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                n = module.num_features
                module.running_var.copy_(torch.rand(n, generator=gen) * 1.5 + 0.5)
                sign = torch.where(torch.rand(n, generator=gen) < 0.2, -1.0, 1.0)
                module.weight.copy_(sign * (torch.rand(n, generator=gen) + 0.5))
                if bias_free:
                    module.running_mean.zero_()
                    module.bias.zero_()
                else:
                    module.running_mean.copy_(torch.randn(n, generator=gen) * 0.3)
                    module.bias.copy_(torch.randn(n, generator=gen) * 0.2)
            elif isinstance(module, (nn.LayerNorm,)) and module.elementwise_affine:
                module.weight.copy_(torch.rand(module.weight.shape, generator=gen) + 0.5)
                if module.bias is not None:
                    module.bias.copy_(torch.zeros_like(module.bias) if bias_free
                                      else torch.randn(module.bias.shape, generator=gen) * 0.1)
            elif isinstance(module, nn.MultiheadAttention) and module.in_proj_bias is not None:
                if bias_free:
                    module.in_proj_bias.zero_()
                else:
                    module.in_proj_bias.copy_(torch.randn(module.in_proj_bias.shape, generator=gen) * 0.1)
            elif isinstance(module, (nn.Conv2d, nn.Linear)) and module.bias is not None:
                if bias_free:
                    module.bias.zero_()
                else:
                    module.bias.copy_(torch.randn(module.bias.shape, generator=gen) * 0.1)
    return model


def example_input(seed: int = 0, size: int = SIZE):
    import torch
    gen = torch.Generator().manual_seed(100 + seed)
    return torch.randn(BATCH, 3, size, size, generator=gen)


#: models whose ONNX is over 100 MB (ViT-B/16: 343 MB, ConvNeXt-Tiny: 112 MB), each used by a single test: exported
#: afresh on each call instead of being held in memory for the rest of the session
UNCACHED = frozenset({"vit_b_16", "convnext_tiny"})


def exported(name: str, exporter: str, opset: int | None = None, bias_free: bool = False) -> bytes:
    """:func:`export`, cached per process except for the models in :data:`UNCACHED`."""
    if name in UNCACHED:
        return export(name, exporter, opset, bias_free)
    return _exported(name, exporter, opset, bias_free)


@functools.cache
def _exported(name: str, exporter: str, opset: int | None, bias_free: bool) -> bytes:
    return export(name, exporter, opset, bias_free)


def export(name: str, exporter: str, opset: int | None = None, bias_free: bool = False) -> bytes:
    """Serialised ONNX of :func:`torchvision_model` for a fixed ``(2, 3, 32, 32)`` input.

    ``legacy``: the TorchScript exporter, ``torch.onnx.export(..., dynamo=False, opset_version=opset or 17)`` with
    its default constant folding (Conv->BN pairs folded by torch). ``dynamo``: the torch.export-based exporter at
    its default (newest) opset; ``opset`` is ignored.
    """
    import torch

    model = torchvision_model(name, bias_free=bias_free)
    x = example_input()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            program = torch.onnx.export(model, (x,), dynamo=True, input_names=["x"], output_names=["logits"],
                                        verbose=False)
            return program.model_proto.SerializeToString()
        if exporter != "legacy":
            raise ValueError(exporter)
        buffer = io.BytesIO()
        torch.onnx.export(model, (x,), buffer, dynamo=False, opset_version=opset or 17, input_names=["x"],
                          output_names=["logits"])
        return buffer.getvalue()


def autograd(model, x: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(logits, d logit[target] / d x)`` of ``model`` in float64 (a double copy), one target per sample."""
    import copy

    import torch
    m64 = copy.deepcopy(model).double().eval()
    xt = torch.tensor(np.asarray(x, dtype=np.float64), requires_grad=True)
    logits = m64(xt)
    picked = logits[torch.arange(len(target)), torch.as_tensor(np.asarray(target))].sum()
    (grad,) = torch.autograd.grad(picked, xt)
    return logits.detach().numpy(), grad.numpy()


# ------------------------------------------------------------------------------------------------- scikit-learn
@functools.cache
def sklearn_mlp(seed: int = 0):
    """``(classifier, X)``: an ``MLPClassifier((32, 16))`` trained briefly on scikit-learn's bundled digits data
    (64 features scaled to [0, 1], 10 classes)."""
    from sklearn.datasets import load_digits
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MLPClassifier((32, 16), max_iter=40, random_state=seed).fit(X, y)
    return clf, X


def sklearn_onnx(clf, X, zipmap: bool, opset: int | None) -> bytes:
    """skl2onnx's export: a label output beside probabilities (a tensor, or a ZipMap'd list of maps)."""
    from skl2onnx import to_onnx
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        proto = to_onnx(clf, X[:1], options={id(clf): {"zipmap": zipmap}}, target_opset=opset)
    return proto.SerializeToString()


def mlp_torch(clf, intercepts: bool = True):
    """The same network in PyTorch (float64), for autograd."""
    import torch
    from torch import nn

    layers: list = []
    for i, (w, b) in enumerate(zip(clf.coefs_, clf.intercepts_)):
        lin = nn.Linear(w.shape[0], w.shape[1]).double()
        with torch.no_grad():
            lin.weight.copy_(torch.tensor(w.T.astype(np.float32), dtype=torch.float64))  # as exported
            bias = (b if intercepts else np.zeros_like(b)).astype(np.float32)
            lin.bias.copy_(torch.tensor(bias, dtype=torch.float64))
        layers.append(lin)
        if i < len(clf.coefs_) - 1:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers).eval()
