"""Grad-CAM, Grad-CAM++ and contrastive Grad-CAM (``onnxlrp/cam.py``, ALGORITHMS.md §5).

Parity: PyTorch VGG- and ResNet-style models exported with ``torch.onnx.export(dynamo=False, opset_version=17)``;
onnxlrp in float64 against the same weights in float64 torch:

* ``grad_cam`` against Captum's ``LayerGradCam`` + ReLU + ``LayerAttribution.interpolate(..., "bilinear")``
  (``F.interpolate(align_corners=False)``) + per-sample min-max;
* ``contrastive_grad_cam`` against the Grad-CAM pipeline on ``F.cross_entropy(logits, Q)`` back-propagated by
  autograd to the layer (batch > 1, one Q per sample);
* ``grad_cam_pp`` against torch transcriptions (written here from §5.3) of the 1Konny formula and of the paper /
  authors' variant, both *with* the ``exp(S)`` factor that onnxlrp drops.

Closed forms of ALGORITHMS §7 items 26-28, the upsampling against torch, layer selection and errors.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest

from tests.helpers import REPO
from tests.helpers.compare import assert_close, assert_rel, rel_err, within

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")
pytest.importorskip("captum")
pytest.importorskip("zennit")  # tests.helpers.peer_models imports it

import torch.nn.functional as F  # noqa: E402
from captum.attr import LayerAttribution, LayerGradCam  # noqa: E402
from torch import nn  # noqa: E402

import onnxlrp  # noqa: E402
from onnxlrp.engine.splice import splice_after_output  # noqa: E402
from onnxlrp.errors import MethodError  # noqa: E402
from onnxlrp.methods import cam  # noqa: E402
from tests.helpers import peer_models  # noqa: E402

# float64 onnxlrp against float64 torch/Captum: each tolerance is about 10x its measured error (`pytest --tolerances`)


def minmax(m: torch.Tensor) -> torch.Tensor:
    """Per-sample min-max of (N, 1, *spatial); constant -> zeros."""
    flat = m.flatten(1)
    lo, hi = flat.min(1).values, flat.max(1).values
    span = (hi - lo).view(-1, *([1] * (m.ndim - 1)))
    lo = lo.view_as(span)
    return torch.where(span > 0, (m - lo) / torch.where(span > 0, span, torch.ones_like(span)), torch.zeros_like(m))


def upsample_normalise(m: torch.Tensor, x: torch.Tensor) -> np.ndarray:
    """(N, 1, h, w) -> bilinear to x's size -> min-max -> broadcast over x's channels."""
    up = LayerAttribution.interpolate(m, tuple(x.shape[2:]), interpolate_mode="bilinear")
    return minmax(up).expand_as(x).detach().numpy()


def layer_and_grad(model, layer: nn.Module, x: torch.Tensor, objective):
    """(A, ∂objective(logits)/∂A) at ``layer``'s output by autograd."""
    store = {}
    handle = layer.register_forward_hook(lambda mod, inp, out: store.__setitem__("a", out))
    try:
        logits = model(x)
        (grad,) = torch.autograd.grad(objective(logits), store["a"])
    finally:
        handle.remove()
    return store["a"].detach(), grad.detach(), logits.detach()


class Case:
    """A seeded model, its float64 copy, the ONNX export (BatchNorms kept for onnxlrp's own folding) and a batch."""

    def __init__(self, name: str, size: int | None = None, batch: int = 3, seed: int = 0):
        model = peer_models.build(name, seed=seed)
        shape = peer_models.MODELS[name][1]
        if size is not None:
            shape = (shape[0], size, size)
        gen = torch.Generator().manual_seed(seed + 7)
        x32 = torch.randn((batch,) + shape, generator=gen)
        self.onnx = peer_models.export_onnx(model, x32[:1], fold=False)
        self.model = copy.deepcopy(model).double().eval()
        self.x = x32.double()
        self.xn = self.x.numpy()
        self.ex = onnxlrp.Explainer(self.onnx, dtype="float64")

    def explain(self, method, target=None, **params):
        return self.ex.explain(self.xn, method, target=target, **params)


@pytest.fixture(scope="module")
def vgg():
    return Case("vgg_bn")


@pytest.fixture(scope="module")
def resnet():
    return Case("resnet_basic", size=96)          # layer4 is 3x3


@pytest.fixture(scope="module")
def bottleneck():
    return Case("resnet_bottleneck", size=64)     # layer3 is 4x4, layer4 2x2


def vgg_last_relu(case):
    return case.model.features[12]


def captum_grad_cam(model, layer, x, target) -> np.ndarray:
    attr = LayerGradCam(model, layer).attribute(x, target=target)
    return upsample_normalise(F.relu(attr), x)


def torch_grad_cam(a, g) -> torch.Tensor:
    return F.relu((g.mean((2, 3), keepdim=True) * a).sum(1, keepdim=True))


def torch_gcpp_1konny(a, g, score) -> torch.Tensor:
    """1Konny/gradcam_plus_plus-pytorch ``GradCAMpp.forward`` as formulas (ALGORITHMS §5.3), exp(S) included."""
    e = score.exp().view(-1, 1, 1, 1)
    num = g.pow(2)
    den = 2 * g.pow(2) + (a * g.pow(3)).sum((2, 3), keepdim=True)
    den = torch.where(den != 0, den, torch.ones_like(den))
    alpha = num / (den + 1e-7)
    weights = (alpha * F.relu(e * g)).sum((2, 3), keepdim=True)
    return F.relu((weights * a).sum(1, keepdim=True))


def torch_gcpp_paper(a, g, score) -> torch.Tensor:
    """The authors' TF code (adityac94 ``misc/utils.py``) as formulas: global activation sum times local g³,
    derivatives carrying exp(S), alpha renormalised over positive-gradient positions (zero-guarded)."""
    e = score.exp().view(-1, 1, 1, 1)
    first, second, third = e * g, e * g.pow(2), e * g.pow(3)
    global_sum = a.sum((2, 3), keepdim=True)
    den = 2 * second + third * global_sum
    den = torch.where(den != 0, den, torch.ones_like(den))
    alpha = second / den
    weights = F.relu(first)
    norm = torch.where(weights != 0, alpha, torch.zeros_like(alpha)).sum((2, 3), keepdim=True)
    alpha = alpha / torch.where(norm != 0, norm, torch.ones_like(norm))
    w = (weights * alpha).sum((2, 3), keepdim=True)
    return F.relu((w * a).sum(1, keepdim=True))


def assert_normalised(rel):
    """ALGORITHMS §7.27: every sample's map lies in [0, 1] with min 0 and max 1, or is all zeros."""
    for m in rel:
        assert np.isfinite(m).all()
        if np.any(m != 0):
            assert m.min() == 0.0 and within(abs(m.max() - 1.0), 1e-15, "max is 1")
        assert m.min() >= 0 and m.max() <= 1 + 1e-12


def assert_informative(rel):
    """Guard against a vacuous parity (all-zero maps agree with anything): most samples have a non-constant map
    (a class the net does not see anywhere legitimately gives an all-zero Grad-CAM map)."""
    informative = sum(bool(np.ptp(m) > 0.5) for m in rel)
    assert informative >= max(1, len(rel) - 1), f"only {informative} of {len(rel)} maps are non-constant"


# ---------------------------------------------------------------------------------------------- Grad-CAM parity


def test_default_layers(vgg, resnet, bottleneck):
    assert cam.default_layer(vgg.ex.session) == "/features/features.12/Relu_output_0"
    assert cam.default_layer(resnet.ex.session) == "/layer4/layer4.0/relu_1/Relu_output_0"
    assert cam.default_layer(bottleneck.ex.session) == "/layer4/layer4.0/relu_2/Relu_output_0"
    digits = onnxlrp.Explainer(str(REPO / "models" / "digits" / "digits_cnn.onnx"))
    # the ReLU, not the MaxPool after it
    assert cam.default_layer(digits.session) == "/features/features.7/Relu_output_0"


@pytest.mark.parametrize("targets", [None, [1, 4, 7]])
def test_grad_cam_matches_captum_vgg(vgg, targets):
    res = vgg.explain("grad_cam", targets)
    target = torch.as_tensor(res.target) if targets is None else targets
    ref = captum_grad_cam(vgg.model, vgg_last_relu(vgg), vgg.x, target)
    assert res.relevance.shape == vgg.xn.shape
    assert_informative(ref[:, 0])
    assert_rel(res.relevance, ref, 7e-15)
    assert_normalised(res.relevance)


def test_grad_cam_matches_captum_resnet(resnet):
    res = resnet.explain("grad_cam")
    ref = captum_grad_cam(resnet.model, resnet.model.layer4, resnet.x, torch.as_tensor(res.target))
    assert_informative(ref[:, 0])
    assert_rel(res.relevance, ref, 3e-14)
    # the module scope name and the explicit tensor give the same layer
    np.testing.assert_array_equal(resnet.explain("grad_cam", layer="layer4").relevance, res.relevance)


def test_grad_cam_matches_captum_bottleneck_named_layer(bottleneck):
    res = bottleneck.explain("grad_cam", [0, 3, 9], layer="layer3")
    ref = captum_grad_cam(bottleneck.model, bottleneck.model.layer3, bottleneck.x, [0, 3, 9])
    assert_informative(ref[:, 0])
    assert_rel(res.relevance, ref, 4e-14)


def test_grad_cam_float32_close_to_captum(vgg):
    ex = onnxlrp.Explainer(vgg.onnx)                            # float32 through onnxruntime
    model32 = copy.deepcopy(vgg.model).float()
    x32 = vgg.x.float()
    res = ex.explain(x32.numpy(), "grad_cam", target=[2, 5, 8])
    assert res.relevance.dtype == np.float32
    ref = captum_grad_cam(model32, model32.features[12], x32, [2, 5, 8])
    assert_rel(res.relevance, ref, 4e-6)


# ---------------------------------------------------------------------------------------------- contrastive


@pytest.mark.parametrize("which", ["vgg", "resnet"])
def test_contrastive_grad_cam_matches_torch_cross_entropy(which, vgg, resnet):
    case = {"vgg": vgg, "resnet": resnet}[which]
    layer = vgg_last_relu(vgg) if which == "vgg" else resnet.model.layer4
    q = [3, 0, 6]
    res = case.explain("contrastive_grad_cam", contrast=q)
    a, g, _ = layer_and_grad(case.model, layer, case.x,
                             lambda z: F.cross_entropy(z, torch.as_tensor(q), reduction="mean"))
    ref = upsample_normalise(torch_grad_cam(a, g), case.x)
    assert_informative(ref[:, 0])
    assert_rel(res.relevance, ref, 3e-14)
    assert_normalised(res.relevance)
    # one Q for the whole batch
    res1 = case.explain("contrastive_grad_cam", contrast=5)
    a, g, _ = layer_and_grad(case.model, layer, case.x,
                             lambda z: F.cross_entropy(z, torch.full((3,), 5), reduction="sum"))
    assert_rel(res1.relevance, upsample_normalise(torch_grad_cam(a, g), case.x), 3e-14)


@pytest.mark.parametrize("batch", [1, 3])
def test_contrastive_seed_is_autograd_of_cross_entropy(vgg, batch):
    """ALGORITHMS §7.28: seeding the spliced LogSoftmax with −e_Q gives ∂CE(z, Q)/∂z = softmax(z) − e_Q at the
    logits, and the same gradient at the layer as autograd."""
    ex, x = vgg.ex, vgg.xn[:batch]
    q = np.array([7, 2, 9][:batch])
    session = ex.session
    values, output = session.forward(x, {})
    head = splice_after_output(session, "LogSoftmax", {"axis": -1}, "cross_entropy")
    layer = cam.default_layer(session)
    _, kept = session.propagate(values, {}, {head.output: -session.seed(output, q, "one_hot")},
                                keep=[ex.output_name, layer], head=head)
    z = vgg.model(vgg.x[:batch]).detach().requires_grad_(True)
    (gz,) = torch.autograd.grad(F.cross_entropy(z, torch.as_tensor(q), reduction="sum"), z)
    assert_rel(kept[ex.output_name], gz.numpy(), 1e-15)
    p = np.exp(output - output.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    assert_close(kept[ex.output_name], p - np.eye(output.shape[1])[q], atol=1e-14)
    _, ga, _ = layer_and_grad(vgg.model, vgg_last_relu(vgg), vgg.x[:batch],
                              lambda zz: F.cross_entropy(zz, torch.as_tensor(q), reduction="sum"))
    assert_rel(kept[layer], ga.numpy(), 3e-15)


def test_contrastive_needs_contrast(vgg):
    with pytest.raises(MethodError, match="contrast=Q"):
        vgg.explain("contrastive_grad_cam")
    with pytest.raises(MethodError, match="out of range"):
        vgg.explain("contrastive_grad_cam", contrast=10)
    with pytest.raises(MethodError, match="batch has 3 samples"):
        vgg.explain("contrastive_grad_cam", contrast=[1, 2])
    with pytest.raises(MethodError, match="contrast must be an int or one int per sample; got 1.5"):
        vgg.explain("contrastive_grad_cam", contrast=1.5)


# ---------------------------------------------------------------------------------------------- Grad-CAM++


@pytest.mark.parametrize("variant", ["1konny", "paper"])
@pytest.mark.parametrize("which", ["vgg", "resnet"])
def test_grad_cam_pp_matches_transcription(which, variant, vgg, resnet):
    """Also ALGORITHMS §7.27's "Grad-CAM++ is unchanged when exp(S) is dropped": the transcriptions keep it."""
    case = {"vgg": vgg, "resnet": resnet}[which]
    layer = vgg_last_relu(vgg) if which == "vgg" else resnet.model.layer4
    targets = [1, 5, 8]
    params = {} if variant == "1konny" else {"variant": variant}
    res = case.explain("grad_cam_pp", targets, **params)
    rows = torch.arange(3)
    a, g, logits = layer_and_grad(case.model, layer, case.x, lambda z: z[rows, targets].sum())
    formula = torch_gcpp_1konny if variant == "1konny" else torch_gcpp_paper
    ref = upsample_normalise(formula(a, g, logits[rows, targets]), case.x)
    assert_informative(ref[:, 0])
    assert_rel(res.relevance, ref, 3e-14)
    assert_normalised(res.relevance)


def test_grad_cam_pp_variants_differ_and_bad_variant(vgg):
    a = vgg.explain("grad_cam_pp", [1, 5, 8]).relevance
    b = vgg.explain("grad_cam_pp", [1, 5, 8], variant="paper").relevance
    assert rel_err(a, b) > 1e-3
    with pytest.raises(MethodError, match="variant"):
        vgg.explain("grad_cam_pp", variant="nope")


# ---------------------------------------------------------------------------------------------- closed forms


class GapNet(nn.Module):
    """Conv (same padding) / ReLU / global average pool / Linear: the CAM architecture."""

    def __init__(self, classes: int = 5):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(8, classes)

    def forward(self, x):
        return self.fc(self.flatten(self.pool(self.relu(self.conv(x)))))


@pytest.fixture(scope="module")
def gapnet():
    torch.manual_seed(3)
    model = GapNet().eval()
    x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    onnx_bytes = peer_models.export_onnx(model, x[:1])
    return model.double(), x.double(), onnxlrp.Explainer(onnx_bytes, dtype="float64")


def _np_minmax(m):
    out = []
    for s in m:
        span = s.max() - s.min()
        out.append((s - s.min()) / span if span > 0 else np.zeros_like(s))
    return np.stack(out)


def test_grad_cam_is_cam_with_gap_head(gapnet):
    """ALGORITHMS §7.26: with A -> GAP -> Linear, α_k = w_ck/(u·v), so Grad-CAM = normalised ReLU(Σ_k w_ck A_k)."""
    model, x, ex = gapnet
    a = model.relu(model.conv(x)).detach().numpy()
    w = model.fc.weight.detach().numpy()
    targets = np.array([0, 1, 2, 4])
    res = ex.explain(x.numpy(), "grad_cam", target=targets)
    cam_map = np.maximum(np.einsum("nk,nkij->nij", w[targets], a), 0)
    expected = np.broadcast_to(_np_minmax(cam_map)[:, None], x.shape)
    assert_rel(res.relevance, expected, 2e-15)
    # contrastive: α_k ∝ Σ_m p_m w_mk − w_Qk
    q = np.array([3, 3, 0, 1])
    z = model(x).detach().numpy()
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    alpha = p @ w - w[q]
    contrast_map = np.maximum(np.einsum("nk,nkij->nij", alpha, a), 0)
    res = ex.explain(x.numpy(), "contrastive_grad_cam", contrast=q)
    assert_rel(res.relevance, np.broadcast_to(_np_minmax(contrast_map)[:, None], x.shape), 4e-15)


def test_constant_map_is_zeros(gapnet):
    """ALGORITHMS §7.27: a map that ReLU makes constant (here: a class whose weights are all negative on
    non-negative activations) is returned as zeros, not NaN."""
    model, x, _ = gapnet
    neg = copy.deepcopy(model).float()
    with torch.no_grad():
        neg.fc.weight[2] = -neg.fc.weight[2].abs() - 0.1
    ex = onnxlrp.Explainer(peer_models.export_onnx(neg, x[:1].float()), dtype="float64")
    for method in ("grad_cam", "grad_cam_pp"):
        res = ex.explain(x.numpy(), method, target=2)
        assert np.all(res.relevance == 0)
    assert_normalised(ex.explain(x.numpy(), "grad_cam", target=0).relevance)


# ---------------------------------------------------------------------------------------------- pieces


@pytest.mark.parametrize("src,dst", [((3, 3), (96, 96)), ((4, 5), (16, 23)), ((7, 7), (7, 7)), ((9, 6), (4, 5)),
                                     ((1, 4), (3, 9)), ((5,), (17,)), ((2, 3, 4), (5, 7, 4))])
def test_resize_matches_torch_interpolate(src, dst):
    rng = np.random.default_rng(0)
    maps = rng.normal(size=(2,) + src)
    mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[len(src)]
    expected = F.interpolate(torch.from_numpy(maps)[:, None], size=dst, mode=mode, align_corners=False)[:, 0]
    assert_close(cam.resize_linear(np, maps, dst), expected.numpy(), rtol=8e-15, atol=8e-15)


def test_channels_last_input(vgg):
    """An NHWC model input gets an NHWC map equal to the NCHW model's map transposed."""
    class Nhwc(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x.permute(0, 3, 1, 2))

    model = peer_models.build("vgg_bn")
    ex = onnxlrp.Explainer(peer_models.export_onnx(Nhwc(model), torch.zeros(1, 16, 16, 3), fold=False),
                           dtype="float64")
    x = np.ascontiguousarray(vgg.xn.transpose(0, 2, 3, 1))
    res = ex.explain(x, "grad_cam", target=[1, 4, 7])
    assert res.relevance.shape == x.shape
    expected = vgg.explain("grad_cam", [1, 4, 7]).relevance.transpose(0, 2, 3, 1)
    assert_rel(res.relevance, expected, 1e-15)
    forced = ex.explain(x, "grad_cam", target=[1, 4, 7], layout="NHWC").relevance
    np.testing.assert_array_equal(forced, res.relevance)


def test_layer_names(resnet):
    ex = resnet.ex
    default = cam.default_layer(ex.session)
    # node name -> its first output; a folded BatchNormalization's name -> the fused Conv's output
    assert cam.resolve_layer(ex.session, "/layer4/layer4.0/relu_1/Relu") == default
    assert cam.resolve_layer(ex.session, "/layer4/layer4.0/bn2/BatchNormalization") == \
        "/layer4/layer4.0/bn2/BatchNormalization_output_0"
    assert cam.resolve_layer(ex.session, "/layer4/layer4.0/conv2/Conv") == \
        "/layer4/layer4.0/bn2/BatchNormalization_output_0"
    assert cam.resolve_layer(ex.session, "layer4") == default
    with pytest.raises(MethodError, match=r"folded away.*bn2/BatchNormalization_output_0"):
        cam.resolve_layer(ex.session, "/layer4/layer4.0/conv2/Conv_output_0")
    with pytest.raises(MethodError, match=r"not a tensor, node or module scope.*spatial feature maps on the path: "
                                          r".*relu_1/Relu_output_0.*the default is"):
        resnet.explain("grad_cam", layer="no_such_layer")
    with pytest.raises(MethodError, match=r"has shape \(3, 10\); Grad-CAM needs a feature map"):
        resnet.explain("grad_cam", layer="logits")
    with pytest.raises(MethodError, match="layout"):
        resnet.explain("grad_cam", layout="HWC")


def test_keep_returns_gradients(vgg):
    layer = cam.default_layer(vgg.ex.session)
    res = vgg.explain("grad_cam", [1, 4, 7], keep=[layer])
    _, g, _ = layer_and_grad(vgg.model, vgg_last_relu(vgg), vgg.x, lambda z: z[torch.arange(3), [1, 4, 7]].sum())
    assert_rel(res.intermediate[layer], g.numpy(), 1e-15)
    assert_close(res.relevance, vgg.explain("grad_cam", [1, 4, 7]).relevance, atol=1e-15)


def test_methods_listed():
    listed = onnxlrp.methods()
    assert listed["grad_cam"]["kind"] == "cam" and listed["grad_cam"]["params"] == {"layer": None, "layout": "auto"}
    assert listed["grad_cam_pp"]["params"]["variant"] == "1konny"
    assert listed["contrastive_grad_cam"]["params"]["contrast"] is None


def test_cli_digits_contrastive(tmp_path, capsys):
    from onnxlrp.cli import main
    root = REPO / "models" / "digits"
    sample = sorted((root / "samples").glob("digit3_*.png"))[0]
    rc = main(["explain", str(root / "digits_cnn.onnx"), str(sample), "-m", "grad_cam,contrastive_grad_cam",
               "--contrast", "8", "-o", str(tmp_path), "-q"])
    capsys.readouterr()
    assert rc == 0
    arrays = sorted(tmp_path.rglob("*.npy"))
    assert len(arrays) == 2
    for path in arrays:
        m = np.load(path)
        assert m.shape == (1, 32, 32) or m.shape == (1, 1, 32, 32)
        assert m.min() == 0 and m.max() == 1
