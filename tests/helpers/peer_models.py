"""Small PyTorch models for the peer comparisons in ``test_peers.py``, and their ONNX export.

Every model registers its submodules in forward order (zennit's ``SequentialMergeBatchNorm`` pairs a Conv with the
BatchNorm that follows it in registration order) and uses one ``nn.ReLU``/``nn.ReLU6`` module per activation (zennit
and Captum hook activation *modules*; Captum's guided backprop must not see a module twice).

:func:`randomise_` gives BatchNorm running statistics, affine parameters and every bias non-trivial values, so that
BatchNorm folding and bias handling are really exercised (a fresh ``torchvision`` init has identity BatchNorms and
zero biases).
"""
from __future__ import annotations

import io
import warnings

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet
from zennit.layer import Sum


class VGGNet(nn.Module):
    """VGG-style: Conv/ReLU(/BatchNorm)/MaxPool stack, Flatten, Linear/ReLU/Dropout/Linear head. Input (3, 16, 16)."""

    def __init__(self, batch_norm: bool = False, classes: int = 10):
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for width in (8, 8, "M", 16, 16, "M"):
            if width == "M":
                layers.append(nn.MaxPool2d(2))
                continue
            layers.append(nn.Conv2d(channels, width, 3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(width))
            layers.append(nn.ReLU())
            channels = width
        self.features = nn.Sequential(*layers)
        self.flatten = nn.Flatten()
        self.classifier = nn.Sequential(nn.Linear(16 * 4 * 4, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, classes))

    def forward(self, x):
        return self.classifier(self.flatten(self.features(x)))


class DenseLayer(nn.Module):
    """Pre-activation BN -> ReLU -> Conv 3x3 producing ``growth`` channels, concatenated onto its input."""

    def __init__(self, channels: int, growth: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()
        self.conv = nn.Conv2d(channels, growth, 3, padding=1)

    def forward(self, x):
        return torch.cat([x, self.conv(self.relu(self.norm(x)))], dim=1)


class DenseNetBlock(nn.Module):
    """DenseNet-style: conv stem, two dense layers (Concat), a transition (BN/ReLU/Conv 1x1/AvgPool), final BN/ReLU,
    global average pool, Linear. No Conv->BN pair: every BatchNorm precedes a ReLU and stays in the ONNX graph."""

    def __init__(self, classes: int = 10, growth: int = 6):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.dense1 = DenseLayer(8, growth)
        self.dense2 = DenseLayer(8 + growth, growth)
        channels = 8 + 2 * growth
        self.transition = nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(), nn.Conv2d(channels, 12, 1),
                                        nn.AvgPool2d(2))
        self.norm = nn.BatchNorm2d(12)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(12, classes)

    def forward(self, x):
        x = self.transition(self.dense2(self.dense1(self.stem(x))))
        return self.fc(self.flatten(self.pool(self.relu(self.norm(x)))))


class InvertedResidual(nn.Module):
    """MobileNetV2-style block: 1x1 expand Conv/BN/ReLU6, depthwise 3x3 Conv (groups=C)/BN/ReLU6, 1x1 project Conv/BN,
    residual add.

    ``zennit_sum=False`` adds with ``a + b`` (what is exported). zennit cannot hook a functional ``+`` (it would give
    the full relevance to both branches), so the zennit copy sets ``zennit_sum=True`` and sums with
    ``zennit.layer.Sum`` over ``torch.stack([a, b], -1)`` -- the same rewrite zennit's ``ResNetCanonizer`` does; the
    weights are the same and the forward is equal.
    """

    def __init__(self, channels: int, expand: int = 2):
        super().__init__()
        hidden = channels * expand
        self.expand = nn.Conv2d(channels, hidden, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.relu1 = nn.ReLU6()
        self.depthwise = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden, bias=False)
        self.bn2 = nn.BatchNorm2d(hidden)
        self.relu2 = nn.ReLU6()
        self.project = nn.Conv2d(hidden, channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(channels)
        self.sum = Sum()
        self.zennit_sum = False

    def forward(self, x):
        out = self.bn3(self.project(self.relu2(self.bn2(self.depthwise(self.relu1(self.bn1(self.expand(x))))))))
        if self.zennit_sum:
            return self.sum(torch.stack([x, out], dim=-1))
        return x + out


class MobileNetBlock(nn.Module):
    """MobileNet-style: Conv/BN/ReLU6 stem (stride 2), two inverted residual blocks with depthwise convs, 1x1
    Conv/BN/ReLU6, global average pool, Linear. Input (3, 16, 16)."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU6())
        self.block1 = InvertedResidual(8)
        self.block2 = InvertedResidual(8)
        self.head = nn.Sequential(nn.Conv2d(8, 16, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU6())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(16, classes)

    def forward(self, x):
        return self.fc(self.flatten(self.pool(self.head(self.block2(self.block1(self.stem(x)))))))


def use_zennit_sum(model: nn.Module, enabled: bool = True) -> nn.Module:
    """Switch every :class:`InvertedResidual` of ``model`` to zennit's ``Sum`` module (in place)."""
    for module in model.modules():
        if isinstance(module, InvertedResidual):
            module.zennit_sum = enabled
    return model


def resnet_basic(classes: int = 10) -> ResNet:
    """torchvision ``ResNet(BasicBlock, [1, 1, 1, 1])``; zennit's ``ResNetCanonizer`` applies. Input (3, 32, 32)."""
    return ResNet(BasicBlock, [1, 1, 1, 1], num_classes=classes)


def resnet_bottleneck(classes: int = 10) -> ResNet:
    """torchvision ``ResNet(Bottleneck, [1, 1, 1, 1])``; zennit's ``ResNetCanonizer`` applies. Input (3, 32, 32)."""
    return ResNet(Bottleneck, [1, 1, 1, 1], num_classes=classes)


@torch.no_grad()
def randomise_(model: nn.Module, seed: int, bn_eps: float | None = None) -> nn.Module:
    """Give every BatchNorm random running mean (N(0, 0.3)), running variance (U(0.5, 2)), weight (±U(0.5, 1.5),
    about one in five negative) and bias (N(0, 0.2)); give every Conv/Linear bias N(0, 0.1). ``bn_eps`` overrides
    the BatchNorms' ``eps`` (see the zennit note in ``test_peers.py``). In place; returns ``model`` in eval mode."""
    gen = torch.Generator().manual_seed(seed)

    def rand(shape, kind, a, b):
        if kind == "normal":
            return torch.randn(shape, generator=gen) * b + a
        return torch.rand(shape, generator=gen) * (b - a) + a

    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            n = module.num_features
            module.running_mean.copy_(rand(n, "normal", 0.0, 0.3))
            module.running_var.copy_(rand(n, "uniform", 0.5, 2.0))
            sign = torch.where(torch.rand(n, generator=gen) < 0.2, -1.0, 1.0)
            module.weight.copy_(sign * rand(n, "uniform", 0.5, 1.5))
            module.bias.copy_(rand(n, "normal", 0.0, 0.2))
            if bn_eps is not None:
                module.eps = bn_eps
        elif isinstance(module, (nn.Conv2d, nn.Linear)) and module.bias is not None:
            module.bias.copy_(rand(module.bias.shape, "normal", 0.0, 0.1))
    return model.eval()


def build(name: str, seed: int = 0, bn_eps: float | None = 0.0) -> nn.Module:
    """A seeded, randomised float32 model in eval mode by name (see ``MODELS``)."""
    torch.manual_seed(seed)
    model = MODELS[name][0]()
    return randomise_(model, seed + 1, bn_eps=bn_eps)


#: name -> (constructor, input shape without the batch axis)
MODELS = {
    "vgg": (VGGNet, (3, 16, 16)),
    "vgg_bn": (lambda: VGGNet(batch_norm=True), (3, 16, 16)),
    "resnet_basic": (resnet_basic, (3, 32, 32)),
    "resnet_bottleneck": (resnet_bottleneck, (3, 32, 32)),
    "densenet": (DenseNetBlock, (3, 16, 16)),
    "mobilenet": (MobileNetBlock, (3, 16, 16)),
}


def export_onnx(model: nn.Module, example: torch.Tensor, *, dynamo: bool = False, fold: bool = True) -> bytes:
    """Serialised ONNX of ``model`` (float32) with a dynamic batch axis, input ``x`` and output ``logits``.

    Legacy exporter (``dynamo=False``, opset 17): ``fold=True`` is its default ``do_constant_folding``, whose eval
    peephole folds every Conv->BatchNorm pair in float32; ``fold=False`` keeps the ``BatchNormalization`` nodes so
    that onnxlrp's own folding runs. ``dynamo=True`` uses the torch.export-based exporter (its default opset, 18+;
    ReduceMean/Reshape heads; all-zero biases dropped).
    """
    model = model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            batch = torch.export.Dim("batch", min=1, max=1024)
            program = torch.onnx.export(model, (example,), dynamo=True, input_names=["x"], output_names=["logits"],
                                        dynamic_shapes={"x": {0: batch}}, verbose=False)
            return program.model_proto.SerializeToString()
        buffer = io.BytesIO()
        torch.onnx.export(model, (example,), buffer, dynamo=False, opset_version=17, input_names=["x"],
                          output_names=["logits"], dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}},
                          do_constant_folding=fold)
        return buffer.getvalue()
