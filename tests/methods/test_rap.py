"""RAP (Nam et al. 2020): the golden vectors of docs/formulas.md §A.2, equality with the authors' algorithm (a torch
transcription of their ``RAP_relprop``, written for this test) on VGG-style and Bottleneck-ResNet nets, a BasicBlock
ResNet (where their ``Clone`` crashes), and the properties of ALGORITHMS.md §4.7 / §7 items 22-25."""
from __future__ import annotations

import copy
import io
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from onnx import helper
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

import onnxlrp
from onnxlrp import errors
from onnxlrp.engine.graph import Graph
from onnxlrp.engine.kernel import Call
from onnxlrp.engine.registry import resolve
from onnxlrp.lrp.rap import (
    RapBatchNorm,
    RapFirst,
    RapHidden,
    RapInput,
    RapMaxPool,
    branch_contributions,
    first_contributions,
    redistribute,
    shift,
)
from onnxlrp.methods.rap import logit_node
from tests.helpers.compare import assert_close, assert_rel, within
from tests.helpers.compare import rel_err as rel_l2
from tests.helpers.onnx_builders import make_model

# ============================================================================================ the authors' algorithm
# A transcription of wjNam/Relative_Attributing_Propagation @ 7fa9682 ``modules/layers.py`` ``RAP_relprop`` (and the
# graph walks of ``modules/vgg.py`` / ``modules/resnet.py``), written for this test: per-layer functions computing
# their Z's with torch ops and their C's with ``torch.autograd.grad``, in the order the code does. ``X`` is a layer's
# recorded input (detached, requiring grad), as their ``forward_hook`` stores it.


def safe_divide(a, b):
    """Their ``safe_divide``: ``a / (b + 1e-9·[b = 0]) · [b ≠ 0]``."""
    zero = b.eq(0).type(b.type())
    return a / (b + zero * 1e-9) * b.ne(0).type(b.type())


def gradprop(z, x, s):
    return torch.autograd.grad(z, x, s, retain_graph=True)


def _shift_rel(c, excess, dims):
    active = c.ne(0).type(c.type())
    return c - safe_divide(excess, active.sum(dim=dims, keepdim=True)) * active


def _pos_prop(c_layer, r, za1, za2, x1, dims):
    """``pos_prop``: positive relevance through ``Za1`` in full and through ``Za2`` by the share ``Za2/(Za1+Za2)``;
    negative relevance through ``Za1`` (Linear) or ``Za2`` (Conv2d) in full plus the same share; then the shift."""
    r_pos, r_neg = r.clamp(min=0), r.clamp(max=0)
    nonzero = safe_divide(za1 + za2, za1 + za2)
    share = safe_divide(za2, za1 + za2)
    c1 = x1 * gradprop(za1, x1, safe_divide(r_pos * nonzero, za1))[0]
    if c_layer == "linear":
        c1n = x1 * gradprop(za1, x1, safe_divide(r_neg * nonzero, za1))[0]
    else:
        c1n = x1 * gradprop(za2, x1, safe_divide(r_neg * nonzero, za2))[0]
    c2 = x1 * gradprop(za2, x1, safe_divide(r_pos * share, za2))[0]
    c2n = x1 * gradprop(za2, x1, safe_divide(r_neg * share, za2))[0]
    c = (c1 + c2) + (c2n + c1n)
    return _shift_rel(c, c.sum(dim=dims, keepdim=True) - r.sum(dim=dims, keepdim=True), dims)


def _hidden(kind, r, forward, w, x):
    """``backward``/``f``: bias ignored; branch a on ``x⁺``, branch b on ``x⁻`` (sign-flipped Z's), summed."""
    dims = -1 if kind == "linear" else [1, 2, 3]
    pw, nw = w.clamp(min=0), w.clamp(max=0)
    px, nx = x.clamp(min=0), x.clamp(max=0)
    mask = r.ne(0).type(r.type())
    za1, za2 = forward(px, pw) * mask, -forward(px, nw) * mask
    zb1, zb2 = -forward(nx, pw) * mask, forward(nx, nw) * mask
    return _pos_prop(kind, r, za1, za2, px, dims) + _pos_prop(kind, r, zb1, zb2, nx, dims)


def linear_rap(layer, x, r):
    """``Linear.RAP_relprop``, first propagation triggered by ``R.max() == 1`` as in their code."""
    w = layer.weight
    if r.max() == 1:
        pd = r
        pw, nw = w.clamp(min=0), w.clamp(max=0)
        px, nx = x.clamp(min=0), x.clamp(max=0)
        z1, z2, z3, z4 = F.linear(px, pw), F.linear(px, nw), F.linear(nx, pw), F.linear(nx, nw)
        rpp, rpn, rnp, rnn = z1 * pd, z2 * pd, z3 * pd, z4 * pd
        pos = (rpp + rnn).sum(dim=-1, keepdim=True)
        neg = (rpn + rnp).sum(dim=-1, keepdim=True)
        c1 = px * gradprop(z1, px, safe_divide(rpp, z1))[0]
        c2 = px * gradprop(z2, px, safe_divide(rpn, z2))[0]
        c3 = nx * gradprop(z3, nx, safe_divide(rnp, z3))[0]
        c4 = nx * gradprop(z4, nx, safe_divide(rnn, z4))[0]
        bp = layer.bias * pd * safe_divide(pos, pos + neg)
        bn = layer.bias * pd * safe_divide(neg, pos + neg)
        cb1 = px * gradprop(z1, px, safe_divide(bp, z1))[0]
        cb2 = px * gradprop(z2, px, safe_divide(bn, z2))[0]
        raw = c1 + c4 + cb1 + c2 + c3 + cb2
        # redistribute: absolute influence
        rp, rn = raw.clamp(min=0), raw.clamp(max=0)
        total = (rp - rn).sum(dim=-1, keepdim=True)
        net = (rp + rn).sum(dim=-1, keepdim=True)
        return safe_divide(rp, total) * net - safe_divide(rn, total) * net
    return _hidden("linear", r, lambda a, b: F.linear(a, b), w, x)


def _conv_transpose(layer, x, dy, weight):
    """Their ``gradprop2``: a transposed convolution with the output padding computed from the height."""
    z = F.conv2d(x, layer.weight, stride=layer.stride, padding=layer.padding)
    pad = x.size(2) - ((z.size(2) - 1) * layer.stride[0] - 2 * layer.padding[0] + layer.kernel_size[0])
    return F.conv_transpose2d(dy, weight, stride=layer.stride, padding=layer.padding, output_padding=pad)


def conv_rap(layer, x, r):
    """``Conv2d.RAP_relprop``: zᴮ with the image's min/max when the input has 3 channels, else the hidden rule."""
    w = layer.weight

    def conv(a, b):
        return F.conv2d(a, b, bias=None, stride=layer.stride, padding=layer.padding)

    if x.shape[1] == 3:
        pw, nw = w.clamp(min=0), w.clamp(max=0)
        low = x * 0 + x.min(dim=1, keepdim=True)[0].min(dim=2, keepdim=True)[0].min(dim=3, keepdim=True)[0]
        high = x * 0 + x.max(dim=1, keepdim=True)[0].max(dim=2, keepdim=True)[0].max(dim=3, keepdim=True)[0]
        za = conv(x, w) - conv(low, pw) - conv(high, nw)
        s = safe_divide(r, za)
        return (x * _conv_transpose(layer, x, s, w) - low * _conv_transpose(layer, x, s, pw)
                - high * _conv_transpose(layer, x, s, nw))
    return _hidden("conv", r, conv, w, x)


def batchnorm_rap(layer, x, r):
    """``BatchNorm2d.RAP_relprop``: bias spread over the positions with ``R ≠ 0``, both parts through
    ``f(R) = x·⟦R/(x·k)⟧·k`` (``k`` with the squared running variance, as the code), added back."""
    k = layer.weight[None, :, None, None] / (layer.running_var[None, :, None, None].pow(2) + layer.eps).pow(0.5)

    def f(rel):
        return x * (safe_divide(rel, x * k) * k)

    nonzero = r.ne(0).type(r.type())
    bias_p = safe_divide(layer.bias[None, :, None, None] * nonzero, nonzero.sum(dim=[2, 3], keepdim=True))
    return f(r - bias_p) + f(bias_p)


def simple_rap(forward, x, r):
    """``RelPropSimple.RAP_relprop`` (MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, Add): the z-rule."""
    z = forward(*x) if isinstance(x, list) else forward(x)
    s = safe_divide(r, z)
    c = gradprop(z, x, s)[0]
    return [xi * c for xi in x] if isinstance(x, list) else x * c


def layer_rap(module, x, r):
    if isinstance(module, nn.Linear):
        return linear_rap(module, x, r)
    if isinstance(module, nn.Conv2d):
        return conv_rap(module, x, r)
    if isinstance(module, nn.BatchNorm2d):
        return batchnorm_rap(module, x, r)
    if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
        return simple_rap(module, x, r)
    assert isinstance(module, (nn.ReLU, nn.Dropout)), module
    return r  # RelProp.RAP_relprop: identity


class Recorder:
    """Their ``forward_hook``: keep every layer's input, detached and requiring grad."""

    def __init__(self):
        self.x = {}

    def __call__(self, key, fn, *inputs):
        stored = [t.detach().requires_grad_(True) for t in inputs]
        self.x[key] = stored if len(stored) > 1 else stored[0]
        return fn(*inputs)


def vgg_rap(net, x, seed):
    """``VGG.RAP_relprop``: classifier, reshape, pooling, features."""
    rec = Recorder()
    with torch.no_grad():
        h = x
        for m in net.features:
            h = rec(m, m, h)
        h = rec(net.avgpool, net.avgpool, h)
        flat = h.flatten(1)
        for m in net.classifier:
            flat = rec(m, m, flat)
    r = seed
    for m in reversed(net.classifier):
        r = layer_rap(m, rec.x[m], r)
    r = layer_rap(net.avgpool, rec.x[net.avgpool], r.reshape_as(h))
    for m in reversed(net.features):
        r = layer_rap(m, rec.x[m], r)
    return r


def _block_forward(block, x, rec):
    out = F.relu(rec(block.bn1, block.bn1, rec(block.conv1, block.conv1, x)))
    out = rec(block.bn2, block.bn2, rec(block.conv2, block.conv2, out))
    if isinstance(block, Bottleneck):
        out = rec(block.bn3, block.bn3, rec(block.conv3, block.conv3, F.relu(out)))
    identity = x
    if block.downsample is not None:
        identity = rec(block.downsample[1], block.downsample[1], rec(block.downsample[0], block.downsample[0], x))
    return F.relu(rec((block, "add"), torch.add, out, identity))


def _block_rap(block, rec, r):
    """``Bottleneck.RAP_relprop``: the Add's z-rule, the shortcut, the conv branch in reverse, ``x1 + x``. For a
    BasicBlock the same walk with the fan-out summed (their ``Clone`` would crash here)."""
    out, x = simple_rap(torch.add, rec.x[(block, "add")], r)
    if block.downsample is not None:
        x = batchnorm_rap(block.downsample[1], rec.x[block.downsample[1]], x)
        x = conv_rap(block.downsample[0], rec.x[block.downsample[0]], x)
    names = ("conv3", "bn3", "conv2", "bn2", "conv1", "bn1") if isinstance(block, Bottleneck) else (
        "conv2", "bn2", "conv1", "bn1")
    for conv_name, bn_name in zip(names[0::2], names[1::2]):
        bn, conv = getattr(block, bn_name), getattr(block, conv_name)
        out = conv_rap(conv, rec.x[conv], batchnorm_rap(bn, rec.x[bn], out))
    return out + x


def resnet_rap(net, x, seed):
    """``ResNet.RAP_relprop``: fc, reshape, average pool, the blocks in reverse, maxpool, relu, bn1, conv1."""
    rec = Recorder()
    blocks = [b for layer in (net.layer1, net.layer2, net.layer3, net.layer4) for b in layer]
    with torch.no_grad():
        h = rec(net.maxpool, net.maxpool, F.relu(rec(net.bn1, net.bn1, rec(net.conv1, net.conv1, x))))
        for block in blocks:
            h = _block_forward(block, h, rec)
        pooled = rec(net.avgpool, net.avgpool, h)
        rec(net.fc, net.fc, pooled.flatten(1))
    r = linear_rap(net.fc, rec.x[net.fc], seed).reshape_as(pooled)
    r = simple_rap(net.avgpool, rec.x[net.avgpool], r)
    for block in reversed(blocks):
        r = _block_rap(block, rec, r)
    r = simple_rap(net.maxpool, rec.x[net.maxpool], r)
    r = batchnorm_rap(net.bn1, rec.x[net.bn1], r)
    return conv_rap(net.conv1, rec.x[net.conv1], r)


def authors_rap(net, x: np.ndarray, targets) -> np.ndarray:
    """Their ``main.py``: one-hot seed ``T`` (value 1) at the target, ``model.RAP_relprop(R=T)``, in float64."""
    net = copy.deepcopy(net).double().eval()
    xt = torch.as_tensor(x, dtype=torch.float64)
    with torch.no_grad():
        n_classes = net(xt).shape[1]
    seed = torch.zeros(len(x), n_classes, dtype=torch.float64)
    seed[torch.arange(len(x)), torch.as_tensor(targets)] = 1.0
    walk = resnet_rap if isinstance(net, ResNet) else vgg_rap
    return walk(net, xt, seed).detach().numpy()


# ============================================================================================ models


class VGG(nn.Module):
    """VGG-style: Conv/(BN)/ReLU/MaxPool features, AdaptiveAvgPool2d, Linear-ReLU-Dropout x2, Linear."""

    def __init__(self, batch_norm=False, classes=10):
        super().__init__()
        layers, channels = [], 3
        for width in (8, 8, "M", 16, 16, "M"):
            if width == "M":
                layers.append(nn.MaxPool2d(2))
                continue
            layers.append(nn.Conv2d(channels, width, 3, padding=1))
            layers += [nn.BatchNorm2d(width), nn.ReLU()] if batch_norm else [nn.ReLU()]
            channels = width
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((2, 2))
        self.classifier = nn.Sequential(nn.Linear(16 * 2 * 2, 24), nn.ReLU(), nn.Dropout(), nn.Linear(24, 16),
                                        nn.ReLU(), nn.Dropout(), nn.Linear(16, classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


@torch.no_grad()
def randomise(model, seed, negative_scales=True):
    """Random BatchNorm statistics and affine parameters (about one scale in five negative unless
    ``negative_scales=False``), random Conv/Linear biases; eval mode."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=gen) * 0.3)
            m.running_var.copy_(torch.rand(n, generator=gen) * 1.5 + 0.5)
            sign = torch.where(torch.rand(n, generator=gen) < 0.2, -1.0, 1.0) if negative_scales else torch.ones(n)
            m.weight.copy_(sign * (torch.rand(n, generator=gen) + 0.5))
            m.bias.copy_(torch.randn(n, generator=gen) * 0.2)
        elif isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
            m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
    return model.eval()


def export(model, shape, keep_batchnorm=True) -> bytes:
    """Legacy exporter, opset 17. ``keep_batchnorm`` turns constant folding off so its eval peephole does not fold
    BatchNorm into the Conv (onnxlrp folds it, and RAP unfolds it)."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (torch.zeros((1,) + shape),), buffer, dynamo=False, opset_version=17,
                          input_names=["x"], output_names=["logits"],
                          dynamic_axes={"x": {0: "n"}, "logits": {0: "n"}}, do_constant_folding=not keep_batchnorm)
    return buffer.getvalue()


def build(name, seed=0):
    torch.manual_seed(seed)
    if name == "vgg":
        return VGG(), (3, 16, 16)
    if name == "vgg_bn":
        return VGG(batch_norm=True), (3, 16, 16)
    if name == "resnet_bottleneck":
        return ResNet(Bottleneck, [1, 1, 1, 1], num_classes=10), (3, 32, 32)
    return ResNet(BasicBlock, [1, 1, 1, 1], num_classes=10), (3, 32, 32)


_CACHE = {}


def case(name, seed=0):
    """``(torch model, explainer, x, targets)``; targets: the predicted class and a class with a negative logit."""
    if (name, seed) not in _CACHE:
        model, shape = build(name, seed)
        randomise(model, seed + 1)
        ex = onnxlrp.Explainer(export(model, shape), dtype="float64")
        x = torch.randn((2,) + shape, generator=torch.Generator().manual_seed(seed + 2)).numpy().astype(np.float64)
        with torch.no_grad():
            logits = copy.deepcopy(model).double()(torch.as_tensor(x)).numpy()
        targets = np.array([logits[0].argmax(), logits[1].argmin()])
        _CACHE[name, seed] = model, ex, x, targets, logits
    return _CACHE[name, seed]


# ============================================================================================ golden vectors (A.2)


def dense_call(w, x, b=None):
    """A Gemm node ``y = x Wᵀ + b`` (W is outputs x inputs) and its call, float64."""
    inputs = ["x", "w"] + (["b"] if b is not None else [])
    init = {"w": np.asarray(w, np.float32), **({"b": np.asarray(b, np.float32)} if b is not None else {})}
    model = make_model([helper.make_node("Gemm", inputs, ["y"], transB=1)], [("x", [1, len(x[0])])],
                       [("y", [1, len(w)])], init)
    node = Graph(model).nodes[0]
    values = (np.asarray(x, float), np.asarray(w, float)) + ((np.asarray(b, float),) if b is not None else ())
    return resolve(node), Call(node, values, (), (True, False, False)[:len(values)], np)


def conv_call(w, x):
    """A 1x1 Conv on a 1x1 image with the same numbers (W is outputs x inputs)."""
    w = np.asarray(w, float)[:, :, None, None]
    model = make_model([helper.make_node("Conv", ["x", "w"], ["y"])], [("x", [1, w.shape[1], 1, 1])],
                       [("y", [1, w.shape[0], 1, 1])], {"w": w.astype(np.float32)})
    node = Graph(model).nodes[0]
    return resolve(node), Call(node, (np.asarray(x, float)[:, :, None, None], w), (), (True, False), np)


def test_golden_first_step():
    w = [[0.5, -1, 0.25, 2], [1.0, 1.0, 1.0, 1.0]]  # target row c = 0; the second class gets seed 0
    kernel, call = dense_call(w, [[1, 0.5, 2, 0]], [0.3, -7.0])
    seed = np.array([[1.0, 0.0]])
    op = kernel.linear_op(call)
    assert_close(op.forward(op.inputs, op.params)[0, 0], 0.8, rtol=1e-14, atol=1e-16)
    raw = first_contributions(np, op, seed)
    assert_close(raw[0], [0.8, -0.8, 0.8, 0], rtol=1e-14, atol=1e-15)
    assert_close(redistribute(np, raw)[0], [0.266667, 0.266667, 0.266667, 0], atol=1e-6)
    assert_close(RapFirst().propagate(kernel, call, (seed,))[0][0], [0.8 / 3] * 3 + [0], rtol=1e-14, atol=1e-15)


W_HIDDEN = [[1, -0.5, 0.25], [-1, 2, 0.5], [0.5, 0.5, -1], [0, -0.25, 1.5]]
X_HIDDEN = [[0.5, 1, 2]]
R_HIDDEN = np.array([[0.8, -0.3, 0, 0.5]])
GOLDEN_HIDDEN = {"linear": ([0.357143, 0.105128, 0.8], [0.269719, 0.017705, 0.712576]),
                 "conv": ([0.057143, 0.305128, 0.9], [-0.030281, 0.217705, 0.812576])}


@pytest.mark.parametrize("variant,node", [("linear", "Gemm"), ("conv", "Gemm"), ("conv", "Conv")])
def test_golden_hidden_layer(variant, node):
    before, after = GOLDEN_HIDDEN[variant]
    if node == "Gemm":
        kernel, call = dense_call(W_HIDDEN, X_HIDDEN)
        r = R_HIDDEN
    else:
        kernel, call = conv_call(W_HIDDEN, X_HIDDEN)
        r = R_HIDDEN[:, :, None, None]
    op = kernel.linear_op(call)
    c = branch_contributions(np, op, r, op.inputs[0], variant)
    assert_close(c.ravel(), before, atol=1e-6)
    axes = (-1,) if variant == "linear" else tuple(range(1, r.ndim))
    assert_close(shift(np, c, r, axes).ravel(), after, atol=1e-6)
    k = RapHidden(variant).propagate(kernel, call, (r,))[0]
    assert_close(k.ravel(), after, atol=1e-6)
    assert_close(k.sum(), 1.0, rtol=1e-14, atol=1e-16)


# ============================================================================================ parity with the authors


@pytest.mark.parametrize("name", ["vgg", "vgg_bn", "resnet_bottleneck"])
def test_equal_to_the_authors_code(name):
    model, ex, x, targets, _ = case(name)
    ours = ex.explain(x, method="rap", target=targets).relevance
    theirs = authors_rap(model, x, targets)
    for n in range(len(x)):
        err = rel_l2(ours[n], theirs[n])
        assert within(err, 6e-12, f"sample {n}"), f"{name} sample {n}: relative L2 {err:.3g}"


def test_basicblock_resnet_runs_and_matches_the_fixed_walk():
    """Their ``Clone`` crashes on BasicBlock; fan-out summed, onnxlrp equals the transcription with ``x1 + x``."""
    model, ex, x, targets, logits = case("resnet_basic")
    res = ex.explain(x, method="rap", target=targets)
    theirs = authors_rap(model, x, targets)
    for n in range(len(x)):
        assert_rel(res.relevance[n], theirs[n], 5e-11)
        z = logits[n, targets[n]]
        assert_close(res.relevance[n].sum(), z, rtol=2e-14, atol=2e-20)


# ============================================================================================ properties (§4.7)


@pytest.mark.parametrize("name", ["vgg", "vgg_bn", "resnet_bottleneck", "resnet_basic"])
def test_conservation_end_to_end(name):
    """Σ R_input = z_c for the predicted class (z_c > 0) and a class with a negative logit."""
    _, ex, x, targets, logits = case(name)
    r = ex.explain(x, method="rap", target=targets).relevance
    for n in range(len(x)):
        assert_close(r[n].sum(), logits[n, targets[n]], rtol=2e-14, atol=2e-20)


@pytest.mark.parametrize("name", ["vgg", "resnet_bottleneck"])
def test_first_step_shares_the_sign_of_the_logit_and_sums_to_it(name):
    _, ex, x, targets, logits = case(name)
    penultimate = logit_node(ex.session).inputs[0]
    res = ex.explain(x, method="rap", target=targets, keep=[penultimate])
    a = res.intermediate[penultimate]
    for n in range(len(x)):
        z = logits[n, targets[n]]
        assert_close(a[n].sum(), z, rtol=5e-15, atol=5e-18)
        assert np.all(a[n] * np.sign(z) >= 0) and np.any(a[n] != 0)


def test_every_node_conserves_on_vgg():
    """Hidden Conv/Linear (non-negative inputs), MaxPool, AvgPool, ReLU, Dropout, reshapes and zᴮ: Σ R_in = Σ R_out;
    activations pass relevance through unchanged."""
    _, ex, x, targets, logits = case("vgg_bn")
    res = ex.explain(x, method="rap", target=targets, keep="all")
    kept = {**res.intermediate, ex.input_name: res.relevance}
    logits = logit_node(ex.session).name
    for node in ex.path.nodes:
        if node.name == logits:
            continue  # the first step maps the seed (sum 1) to z_c: test_first_step_...
        r_out, r_in = kept[node.outputs[0]], kept[node.inputs[0]]
        assert_close(r_in.reshape(2, -1).sum(1), r_out.reshape(2, -1).sum(1), rtol=3e-15,
                                   err_msg=node.name)
        if ex.categories[node.name] == "activation":
            np.testing.assert_array_equal(r_in, r_out)


def test_residual_add_and_fan_out_conserve():
    """On a BasicBlock ResNet every block output and the stem's output are cuts of the graph: each carries Σ = z_c,
    which needs the Add's z-rule to conserve and the fan-out (shortcut + conv branch) to be summed."""
    _, ex, x, targets, logits = case("resnet_basic")
    res = ex.explain(x, method="rap", target=targets, keep="all")
    producer = {t: n for n in ex.path.nodes for t in n.outputs}
    cuts = [n.outputs[0] for n in ex.path.nodes
            if n.op_type == "Relu" and producer[n.inputs[0]].op_type == "Add"]
    cuts.append(next(n.outputs[0] for n in ex.path.nodes if n.op_type == "MaxPool"))
    assert len(cuts) == 5
    z = logits[np.arange(2), targets]
    for t in cuts:
        assert_close(res.intermediate[t].reshape(2, -1).sum(1), z, rtol=2e-14, err_msg=t)
    rules = {name: rule for name, _, rule in ex.rules_for("rap")}
    assert all(rules[n.name] == "Norm(epsilon=0.0, zero_params=())" for n in ex.path.nodes if n.op_type == "Add")


def _random_conv(seed, cin=4, cout=5, shape=(6, 6), stride=1):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((cout, cin, 3, 3))
    model = make_model([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1], strides=[stride, stride])],
                       [("x", [2, cin, *shape])], [("y", [2, cout, *[(s - 1) // stride + 1 for s in shape]])],
                       {"w": w.astype(np.float32)})
    node = Graph(model).nodes[0]
    x = rng.standard_normal((2, cin, *shape))
    return resolve(node), node, x, w.astype(np.float32).astype(float), rng


def test_hidden_layer_conserves_for_non_negative_inputs_and_doubles_otherwise():
    kernel, node, x, w, rng = _random_conv(1, stride=2)
    relu = np.maximum(x, 0)
    r = rng.standard_normal((2, 5, 3, 3)) * (rng.random((2, 5, 3, 3)) < 0.7)
    axes = (1, 2, 3)
    out = RapHidden("conv").propagate(kernel, Call(node, (relu, w), (), (True, False), np), (r,))[0]
    assert_close(out.sum(axis=axes), r.sum(axis=axes), rtol=3e-15)
    assert np.all(out[relu == 0] == 0)
    # [code quirk] signed input: each branch is conserved separately, so the layer outputs 2ΣR
    out = RapHidden("conv").propagate(kernel, Call(node, (x, w), (), (True, False), np), (r,))[0]
    assert_close(out.sum(axis=axes), 2 * r.sum(axis=axes), rtol=2e-15)
    # the dense variant, per sample over the last axis
    dense_w = rng.standard_normal((6, 9))
    kernel, call = dense_call(dense_w, np.maximum(rng.standard_normal((1, 9)), 0))
    call = Call(call.node, (np.maximum(rng.standard_normal((3, 9)), 0), dense_w), (), (True, False), np)
    r = rng.standard_normal((3, 6))
    out = RapHidden("linear").propagate(kernel, call, (r,))[0]
    assert_close(out.sum(axis=1), r.sum(axis=1), rtol=3e-15)


def test_input_zbox_conserves_and_keeps_the_sign_of_r():
    kernel, node, x, w, rng = _random_conv(2)
    r = np.abs(rng.standard_normal((2, 5, 6, 6)))
    out = RapInput().propagate(kernel, Call(node, (x, w), (), (True, False), np), (r,))[0]
    assert_close(out.sum(axis=(1, 2, 3)), r.sum(axis=(1, 2, 3)), rtol=3e-15)
    assert np.all(out >= -1e-12)


def test_maxpool_conserves_and_drops_zero_windows():
    x = np.maximum(np.random.default_rng(3).standard_normal((1, 2, 4, 4)), 0)
    x[0, 0, :2, :2] = 0  # one window with max 0
    model = make_model([helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2])],
                       [("x", [1, 2, 4, 4])], [("y", [1, 2, 2, 2])])
    node = Graph(model).nodes[0]
    kernel = resolve(node)
    call = Call(node, (x,), (None,), (True,), np)
    r = np.arange(1.0, 9.0).reshape(1, 2, 2, 2)
    out = RapMaxPool().propagate(kernel, call, (r,))[0]
    assert_close(out.sum(), r.sum() - r[0, 0, 0, 0], rtol=1e-14, atol=1e-16)
    assert np.count_nonzero(out) == 7


def test_batchnorm_passes_relevance_where_x_k_is_nonzero():
    x = np.random.default_rng(4).standard_normal((2, 3, 4, 4))
    x[0, 1, 0, 0] = 0
    gamma = np.array([1.5, -0.5, 0.0])
    model = make_model([helper.make_node("BatchNormalization", ["x", "g", "b", "m", "v"], ["y"])],
                       [("x", [2, 3, 4, 4])], [("y", [2, 3, 4, 4])],
                       {k: np.ones(3, np.float32) for k in ("g", "b", "m", "v")})
    node = Graph(model).nodes[0]
    call = Call(node, (x, gamma, np.ones(3), np.zeros(3), np.ones(3)), (None,), (True,) + (False,) * 4, np)
    r = np.random.default_rng(5).standard_normal(x.shape)
    out = RapBatchNorm().propagate(resolve(node), call, (r,))[0]
    expected = r * (x != 0) * (gamma != 0)[None, :, None, None]
    np.testing.assert_array_equal(out, expected)


# ============================================================================================ decisions


def test_rule_assignment():
    ex = onnxlrp.Explainer("models/digits/digits_cnn.onnx", dtype="float64")
    rules = ex.rules_for("rap")
    assert rules[0][2].startswith("RapInput(")  # a 1-channel input Conv still gets zᴮ (graph-based detection)
    assert rules[-1][2].startswith("RapFirst(")  # the logit Gemm
    assert [r for _, op, r in rules if op == "Gemm"][0].startswith("RapHidden(variant='linear'")
    assert [r for _, op, r in rules if op == "Conv"][1].startswith("RapHidden(variant='conv'")
    _, ex_bn, _, _, _ = case("vgg_bn")
    assert any("unfolded=BatchNorm(" in r for _, _, r in ex_bn.rules_for("rap"))


def test_seed_is_one_hot_whatever_relevance_init():
    _, ex, x, targets, _ = case("vgg")
    a = ex.explain(x, method="rap", target=targets).relevance
    b = ex.explain(x, method="rap", target=targets, relevance_init="one_hot").relevance
    np.testing.assert_array_equal(a, b)


def test_logit_layer_without_bias_and_non_dense_logits():
    rng = np.random.default_rng(6)
    w1, w2 = rng.standard_normal((5, 4)).astype(np.float32), rng.standard_normal((3, 5)).astype(np.float32)
    nodes = [helper.make_node("Gemm", ["x", "w1"], ["h"], transB=1), helper.make_node("Relu", ["h"], ["a"]),
             helper.make_node("Gemm", ["a", "w2"], ["y"], transB=1)]
    model = make_model(nodes, [("x", [2, 4])], [("y", [2, 3])], {"w1": w1, "w2": w2})
    ex = onnxlrp.Explainer(model.SerializeToString(), dtype="float64")
    x = np.abs(rng.standard_normal((2, 4)))
    res = ex.explain(x, method="rap", target=0)
    assert_close(res.relevance.sum(1), res.output[:, 0], rtol=2e-15)
    # [code quirk] the first dense layer gets the hidden rule (the code's Linear has no input rule): on a signed input
    # both branches are conserved, so the map sums to 2 z_c
    signed = ex.explain(x * np.array([1, -1, 1, -1]), method="rap", target=0)
    assert_close(signed.relevance.sum(1), 2 * signed.output[:, 0], rtol=2e-15)
    conv_head = make_model([helper.make_node("Conv", ["x", "w"], ["y"])], [("x", [1, 2, 1, 1])], [("y", [1, 3, 1, 1])],
                           {"w": rng.standard_normal((3, 2, 1, 1)).astype(np.float32)})
    with pytest.raises(errors.MethodError, match="RAP needs the logits"):
        onnxlrp.Explainer(conv_head.SerializeToString(), dtype="float64").explain(
            rng.standard_normal((1, 2, 1, 1)), method="rap")


def test_batchnorm_folded_by_the_exporter_with_negative_scales_changes_rap():
    """RAP is not invariant to folding a BatchNorm with a negative scale (W⁺ and |W⁻| swap): with BatchNorm kept
    in the ONNX graph onnxlrp matches the authors; folded by the exporter it cannot. With positive scales only, the
    exporter-folded graph gives the same map up to float32 rounding of the folded weights."""
    for negative, close in ((True, False), (False, True)):
        model, shape = build("vgg_bn", 3)
        randomise(model, 4, negative_scales=negative)
        x = torch.randn((1,) + shape, generator=torch.Generator().manual_seed(5)).numpy().astype(np.float64)
        kept = onnxlrp.Explainer(export(model, shape), dtype="float64").explain(x, method="rap", target=0)
        folded = onnxlrp.Explainer(export(model, shape, keep_batchnorm=False), dtype="float64").explain(
            x, method="rap", target=0)
        err = rel_l2(folded.relevance, kept.relevance)
        assert (err < 1e-3) == close, err


def test_unfolding_recovers_the_original_dense_parameters_and_the_fallback_agrees(monkeypatch):
    """A BatchNorm1d folded into a Gemm is unfolded to the Gemm's own weight and bias; without the originals the
    fallback (folded weight with each channel's sign restored, a positive rescaling) gives the same map."""
    from onnxlrp.methods import rap

    torch.manual_seed(7)
    net = randomise(nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 3)), 8)
    with torch.no_grad():
        net[1].weight[:2] *= -1  # negative scales
    ex = onnxlrp.Explainer(export(net, (6,)), dtype="float64")
    hidden = [n for n in ex.path.nodes if ex.categories[n.name] == "dense"][0]
    unfold = rap.unfolded(ex.session, hidden)
    np.testing.assert_array_equal(unfold.weight, net[0].weight.detach().double().numpy().T)
    np.testing.assert_array_equal(unfold.bias, net[0].bias.detach().double().numpy())
    assert list(unfold.sign) == [-1, -1, 1, 1, 1]
    x = np.abs(np.random.default_rng(9).standard_normal((4, 6)))
    exact = ex.explain(x, method="rap", target=1).relevance
    monkeypatch.setattr(rap, "_original_params", lambda ex, pre: None)
    fallback = ex.explain(x, method="rap", target=1).relevance
    assert_close(fallback, exact, rtol=2e-14, atol=2e-17)
    monkeypatch.setattr(rap, "unfolded", lambda ex, node: None)
    assert rel_l2(ex.explain(x, method="rap", target=1).relevance, exact) > 1e-3  # folded as is: not RAP's map
