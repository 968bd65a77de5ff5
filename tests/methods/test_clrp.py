"""CLRP and SGLRP (docs/formulas.md §A.3): equal to the formulas computed with zennit on the same weights (target
map and dual map through a modified final layer), plus the properties of ALGORITHMS.md 3.7 and 7 (items 18-21)."""
from __future__ import annotations

import copy
import io

import numpy as np
import pytest
import torch

import onnxlrp
from onnxlrp import errors
from tests.helpers.compare import assert_close, assert_rel

zennit = pytest.importorskip("zennit")
from zennit.attribution import Gradient  # noqa: E402
from zennit.composites import SpecialFirstLayerMapComposite  # noqa: E402
from zennit.rules import Pass, ZBox, ZPlus  # noqa: E402
from zennit.types import Activation, Convolution  # noqa: E402

LOW, HIGH = -3.0, 3.0


class Net(torch.nn.Module):
    """VGG-style: Conv-ReLU-MaxPool-Conv-ReLU-MaxPool, then Linear-ReLU-Linear (6 classes)."""

    def __init__(self):
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(3, 6, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(6, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2))
        self.head = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(8 * 4 * 4, 16), torch.nn.ReLU(),
                                        torch.nn.Linear(16, 6))

    def forward(self, x):
        return self.head(self.features(x))


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    net = Net().eval()
    x = torch.randn(3, 3, 16, 16).clamp(LOW, HIGH)
    f = io.BytesIO()
    torch.onnx.export(net, x, f, dynamo=False, opset_version=17, input_names=["x"], dynamic_axes={"x": {0: "n"}})
    ex = onnxlrp.Explainer(f.getvalue(), dtype="float64")
    return net.double(), x.double(), ex


def composite():
    """Gu et al.'s rules in zennit: zB on the first conv, bias-free z+ on every other Conv and Linear."""
    zplus = ZPlus(zero_params=["bias"])
    return SpecialFirstLayerMapComposite(
        layer_map=[(Activation, Pass()), (Convolution, zplus), (torch.nn.Linear, zplus)],
        first_map=[(Convolution, ZBox(LOW, HIGH))])


def zennit_map(net, x, seed):
    with Gradient(net, composite()) as attributor:
        _, relevance = attributor(x, seed)
    return relevance.detach().numpy()


def with_last_layer(net, weight, bias):
    """A copy of ``net`` whose logit layer is replaced by ``Linear`` with the given (out, in) weight and bias."""
    other = copy.deepcopy(net)
    last = torch.nn.Linear(weight.shape[1], weight.shape[0]).double()
    with torch.no_grad():
        last.weight.copy_(torch.as_tensor(weight))
        last.bias.copy_(torch.as_tensor(bias))
    other.head[-1] = last
    return other


def norm_diff(r, r_dual):
    """R/ΣR − R_dual/ΣR_dual per sample; a map that sums to zero contributes zeros."""
    def normalised(a):
        total = a.sum(axis=(1, 2, 3), keepdims=True)
        return np.divide(a, total, out=np.zeros_like(a), where=total != 0)
    return normalised(r) - normalised(r_dual)


def logits(net, x):
    with torch.no_grad():
        return net(x).numpy()


def test_clrp1_abs_logits_equals_zennit(setup):
    net, x, ex = setup
    z = logits(net, x)
    c = z.argmax(1)
    seed = np.zeros_like(z)
    seed[np.arange(3), c] = np.abs(z[np.arange(3), c])
    dual_seed = np.abs(z)
    dual_seed[np.arange(3), c] = 0
    r = zennit_map(net, x, torch.as_tensor(seed))
    r_dual = zennit_map(net, x, torch.as_tensor(dual_seed))
    res = ex.explain(x.numpy(), method="clrp1", low=LOW, high=HIGH)
    assert_rel(res.intermediate["target_relevance"], r, 4e-15)
    assert_rel(res.intermediate["dual_relevance"], r_dual, 3e-15)
    expected = norm_diff(r, r_dual)
    assert_rel(res.intermediate["difference"], expected, 2e-14)
    assert_close(res.relevance, np.maximum(expected, 0), rtol=2e-11, atol=9e-18)
    assert_close(res.intermediate["difference"].sum(axis=(1, 2, 3)), 0, atol=2e-15)


@pytest.mark.parametrize("mode", ["clrp2", "splice_sum", "contrast"])
def test_spliced_duals_equal_zennit_with_a_modified_last_layer(setup, mode):
    net, x, ex = setup
    z = logits(net, x)
    target = np.array([1, 4, 2])
    w, b = net.head[-1].weight.detach().numpy(), net.head[-1].bias.detach().numpy()
    seed = np.zeros_like(z)
    seed[np.arange(3), target] = np.abs(z[np.arange(3), target])
    r = zennit_map(net, x, torch.as_tensor(seed))
    duals = []
    for n in range(3):
        c = target[n]
        if mode == "clrp2":
            row, bias, value = -w[c:c + 1], -b[c:c + 1], abs(z[n, c])
        elif mode == "splice_sum":
            row, bias, value = w.sum(0, keepdims=True) - w[c:c + 1], b.sum(keepdims=True) - b[c:c + 1], abs(z[n, c])
        else:
            row, bias, value = w[5:6], b[5:6], abs(z[n, 5])
        duals.append(zennit_map(with_last_layer(net, row, bias), x[n:n + 1], torch.tensor([[value]])))
    r_dual = np.concatenate(duals)
    kwargs = {"clrp2": dict(method="clrp2"), "splice_sum": dict(method="clrp1", dual_seed="splice_sum"),
              "contrast": dict(method="clrp1", contrast=5)}[mode]
    res = ex.explain(x.numpy(), target=target, low=LOW, high=HIGH, **kwargs)
    assert_rel(res.intermediate["target_relevance"], r, 5e-15)
    assert_rel(res.intermediate["dual_relevance"], r_dual, 5e-15)
    assert_close(res.relevance, np.maximum(norm_diff(r, r_dual), 0), rtol=1e-10, atol=2e-17)


def test_uniform_target_and_raw_diff(setup):
    net, x, ex = setup
    z = logits(net, x)
    c = z.argmax(1)
    dual_seed = np.repeat((np.abs(z[np.arange(3), c]) / 5)[:, None], 6, axis=1)
    dual_seed[np.arange(3), c] = 0
    r_dual = zennit_map(net, x, torch.as_tensor(dual_seed))
    res = ex.explain(x.numpy(), method="clrp1", dual_seed="uniform_target", combine="raw_diff", low=LOW, high=HIGH)
    assert_rel(res.intermediate["dual_relevance"], r_dual, 4e-15)
    assert_close(res.relevance, np.maximum(res.intermediate["target_relevance"] - r_dual, 0),
                               rtol=2e-11, atol=2e-18)


def test_maps_are_non_negative_with_zplus(setup):
    _, x, ex = setup
    res = ex.explain(np.abs(x.numpy()), method="clrp1", low=0.0, high=HIGH)
    assert (res.intermediate["target_relevance"] >= -1e-12).all()
    assert (res.intermediate["dual_relevance"] >= -1e-12).all()
    assert (res.relevance >= 0).all()


def test_clrp1_abs_logits_is_linear_in_the_per_class_seeds(setup):
    """ALGORITHMS 7.20: the dual equals the sum over k != c of single-class maps weighted by |z_k|."""
    net, x, ex = setup
    res = ex.explain(x.numpy(), method="clrp1", low=LOW, high=HIGH)
    total = 0
    for k in range(6):
        single = ex.explain(x.numpy(), method="clrp1", target=k, low=LOW, high=HIGH).intermediate["target_relevance"]
        weight = np.where(res.target == k, 0.0, 1.0)[:, None, None, None]
        total = total + single * weight
    assert_rel(res.intermediate["dual_relevance"], total, 2e-15)


def test_clrp2_with_an_epsilon_head_is_rejected(setup):
    """clrp2 under epsilon_plus is refused; with z+ on the Gemm nodes (an override) it is the formula in zennit:
    epsilon_plus's rules with z+ on every Linear, target map and negated-row dual map."""
    net, x, ex = setup
    with pytest.raises(errors.MethodError) as e:
        ex.explain(x.numpy(), method="clrp2", preset="epsilon_plus")
    assert str(e.value).startswith("clrp2 with rule Epsilon(epsilon=1e-06, zero_params=()) at the spliced logit layer "
                                   "gives an identically zero map")
    res = ex.explain(x.numpy(), method="clrp2", preset="epsilon_plus", rules={"Gemm": "zplus"})
    from zennit.composites import LayerMapComposite, layer_map_base

    def zplus_dense(model, inputs, seed):
        composite = LayerMapComposite(layer_map_base() + [(Convolution, ZPlus()), (torch.nn.Linear, ZPlus())])
        with Gradient(model, composite) as attributor:
            _, relevance = attributor(inputs, seed)
        return relevance.detach().numpy()

    z = logits(net, x)
    c, rows = res.target, np.arange(3)
    w, b = net.head[-1].weight.detach().numpy(), net.head[-1].bias.detach().numpy()
    seed = np.zeros_like(z)
    seed[rows, c] = np.abs(z[rows, c])
    r = zplus_dense(net, x, torch.as_tensor(seed))
    r_dual = np.concatenate([zplus_dense(with_last_layer(net, -w[c[n]:c[n] + 1], -b[c[n]:c[n] + 1]), x[n:n + 1],
                                         torch.tensor([[abs(z[n, c[n]])]])) for n in range(3)])
    assert_rel(res.intermediate["target_relevance"], r, 1e-14)
    assert_rel(res.intermediate["dual_relevance"], r_dual, 1e-14)
    assert_close(res.relevance, np.maximum(norm_diff(r, r_dual), 0), rtol=5e-15, atol=5e-17)


def test_sglrp_equals_zennit_two_pass(setup):
    net, x, ex = setup
    z = logits(net, x)
    c = z.argmax(1)
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    pt = p[np.arange(3), c]
    seed = np.zeros_like(z)
    seed[np.arange(3), c] = pt * (1 - pt) + 1e-8
    dual = pt[:, None] * p
    dual[np.arange(3), c] = 0
    r, r_dual = zennit_map(net, x, torch.as_tensor(seed)), zennit_map(net, x, torch.as_tensor(dual))
    expected = r - r_dual * r.sum((1, 2, 3), keepdims=True) / r_dual.sum((1, 2, 3), keepdims=True)
    res = ex.explain(x.numpy(), method="sglrp", low=LOW, high=HIGH)
    assert_rel(res.relevance, expected, 2e-14)
    assert_close(res.relevance.sum(axis=(1, 2, 3)), 0, atol=6e-17)


def test_contrastive_parameters_are_checked(setup):
    _, x, ex = setup
    with pytest.raises(errors.MethodError, match="contrast 9 is out of range for output"):
        ex.explain(x.numpy(), method="clrp1", contrast=9)
    with pytest.raises(errors.MethodError, match="dual_seed must be one of"):
        ex.explain(x.numpy(), method="clrp1", dual_seed="paper")
    with pytest.raises(errors.MethodError, match="combine must be one of"):
        ex.explain(x.numpy(), method="clrp2", combine="max")


# ------------------------------------------------------------------------------------------ signed maps (a preset)
#: the preset's rules in zennit (``tests/peers/test_peers.py`` checks that onnxlrp's presets equal these): under
#: epsilon_plus the dense layers use ε = 1e-6, so the target and dual maps have both signs and ΣR ≠ Σ|R|
PRESET = "epsilon_plus"


def zennit_preset_map(net, x, seed):
    from zennit.composites import COMPOSITES
    with Gradient(net, COMPOSITES[PRESET]()) as attributor:
        _, relevance = attributor(x, seed)
    return relevance.detach().numpy()


@pytest.mark.parametrize("mode", ["abs_logits", "uniform_target", "contrast"])
def test_signed_clrp1_under_a_preset_equals_zennit(setup, mode):
    """CLRP with a preset: the maps are signed (unlike the z+ maps above), so the normalisation by ΣR (not Σ|R|)
    and the clipping of the difference are really tested (docs/formulas.md, CLRP)."""
    net, x, ex = setup
    z = logits(net, x)
    c = z.argmax(1)
    rows = np.arange(3)
    seed = np.zeros_like(z)
    seed[rows, c] = np.abs(z[rows, c])
    if mode == "contrast":
        q = np.where(c == 5, 0, 5)
        w, b = net.head[-1].weight.detach().numpy(), net.head[-1].bias.detach().numpy()
        r_dual = np.concatenate([zennit_preset_map(with_last_layer(net, w[q[n]:q[n] + 1], b[q[n]:q[n] + 1]),
                                                   x[n:n + 1], torch.tensor([[abs(z[n, q[n]])]]))
                                 for n in range(3)])
        res = ex.explain(x.numpy(), method="clrp1", preset=PRESET, contrast=q)
    else:
        dual_seed = np.abs(z) if mode == "abs_logits" else np.repeat((np.abs(z[rows, c]) / 5)[:, None], 6, axis=1)
        dual_seed[rows, c] = 0
        r_dual = zennit_preset_map(net, x, torch.as_tensor(dual_seed))
        res = ex.explain(x.numpy(), method="clrp1", preset=PRESET, dual_seed=mode)
    r = zennit_preset_map(net, x, torch.as_tensor(seed))
    assert (r < 0).any() and (r_dual < 0).any()                       # signed maps
    assert not np.allclose(np.abs(r).sum((1, 2, 3)), r.sum((1, 2, 3)))
    assert_rel(res.intermediate["target_relevance"], r, 5e-15)
    assert_rel(res.intermediate["dual_relevance"], r_dual, 5e-15)
    expected = norm_diff(r, r_dual)
    assert_rel(res.intermediate["difference"], expected, 1e-13)
    assert_close(res.relevance, np.maximum(expected, 0), rtol=1e-12, atol=1e-14)


def test_signed_sglrp_under_a_preset_equals_zennit(setup):
    net, x, ex = setup
    z = logits(net, x)
    c, rows = z.argmax(1), np.arange(3)
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    pt = p[rows, c]
    seed = np.zeros_like(z)
    seed[rows, c] = pt * (1 - pt) + 1e-8
    dual = pt[:, None] * p
    dual[rows, c] = 0
    r, r_dual = zennit_preset_map(net, x, torch.as_tensor(seed)), zennit_preset_map(net, x, torch.as_tensor(dual))
    assert (r < 0).any() and (r_dual < 0).any()
    expected = r - r_dual * r.sum((1, 2, 3), keepdims=True) / r_dual.sum((1, 2, 3), keepdims=True)
    for relu in (False, True):
        res = ex.explain(x.numpy(), method="sglrp", preset=PRESET, relu=relu)
        assert_rel(res.relevance, np.maximum(expected, 0) if relu else expected, 1e-12)
