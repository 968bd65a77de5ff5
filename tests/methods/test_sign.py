"""SIGN (docs/formulas.md §A.4): gradient-SIGN methods against signxai2 0.5.0 on the same weights, LRP-SIGN names
against an independent float64 torch reference written from the formulas (signxai's TensorFlow semantics), the §7
invariants 14-17, the rules' golden vectors (docs/formulas.md §A.4), the name grammar, and where signxai2 0.5.0's
PyTorch port does not do what its method names say.

signxai2 is installed with ``pip install --no-deps signxai2==0.5.0`` (it imports torch, zennit, numpy, scipy,
matplotlib, pillow; no extra dependency). Two of its PyTorch entry points are used:

* ``signxai.torch_signxai.calculate_relevancemap(model, x, method, target_class=...)`` ("ZI"): what the unified
  ``signxai.explain`` calls for a PyTorch model (``methods/zennit_impl``);
* ``signxai.torch_signxai.methods.wrappers.<method>(model, x, ...)`` ("W"): the per-method functions of the
  original signxai API.
"""
from __future__ import annotations

import copy
import io
import warnings

import numpy as np
import pytest
from onnx import helper

import onnxlrp
from onnxlrp.engine.graph import Graph
from onnxlrp.engine.kernel import Call
from onnxlrp.engine.registry import resolve
from onnxlrp.errors import MethodError
from onnxlrp.lrp.rules import StdxEpsilon
from onnxlrp.lrp.sign import AlphaBetaINN, Sign, SignMu, Z
from onnxlrp.methods import find_method
from onnxlrp.methods.gradients import smoothgrad_noise
from onnxlrp.methods.sign import _number
from tests.helpers.compare import assert_close, assert_rel, within
from tests.helpers.compare import rel_err as rel
from tests.helpers.onnx_builders import make_model
from tests.lrp.test_rules import R_OUT, X, dense_call  # the one-dense-layer fixture, docs/formulas.md §A.1

torch = pytest.importorskip("torch")
F = torch.nn.functional
nn = torch.nn

# float64 onnxlrp against float64 torch/signxai2 on the same weights (relative L2 over the batch): each comparison's
# tolerance is about 10x its measured error (`pytest --tolerances` prints them; tests/helpers/compare.py)


# ---------------------------------------------------------------------------------------------- model


class Net(nn.Module):
    """Conv/ReLU/MaxPool, Conv/ReLU/AvgPool, Flatten, Linear/ReLU/Linear; one module per activation. Input 3x8x8."""

    def __init__(self):
        super().__init__()
        self.c1, self.r1, self.p1 = nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)
        self.c2, self.r2, self.p2 = nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2)
        self.flatten = nn.Flatten()
        self.l1, self.r3, self.l2 = nn.Linear(8 * 2 * 2, 12), nn.ReLU(), nn.Linear(12, 5)

    def layers(self):
        return [self.c1, self.r1, self.p1, self.c2, self.r2, self.p2, self.flatten, self.l1, self.r3, self.l2]

    def forward(self, x):
        for layer in self.layers():
            x = layer(x)
        return x


@pytest.fixture(scope="module")
def case():
    torch.manual_seed(7)
    model = Net().eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                module.bias.normal_(0.0, 0.1)
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(3, 3, 8, 8, generator=gen)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), buffer, dynamo=False, opset_version=17, input_names=["x"],
                          output_names=["logits"], dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}})
    m64 = copy.deepcopy(model).double().eval()
    x64 = x.double()
    # exact zeros in some pixels: SIGN gives them relevance (sgn0(0) = +1); signxai2's torch.sign(0) = 0 differs
    # there, so the signxai2 comparisons use ``x64`` and the formula tests use ``xz``
    xz = x64.clone()
    xz[:, :, 0, :3] = 0.0
    ex = onnxlrp.Explainer(buffer.getvalue(), dtype="float64")
    targets = m64(x64).argmax(1).numpy()
    return {"model": m64, "x": x64, "xz": xz, "ex": ex, "targets": targets, "onnx": buffer.getvalue()}


def explain(case, method, x=None, **kw):
    x = case["x"] if x is None else x
    return case["ex"].explain(x.numpy(), method=method, target=case["targets"], **kw)


# ---------------------------------------------------------------------------------------------- signxai2


@pytest.fixture(scope="module")
def sx():
    pytest.importorskip("zennit")
    signxai = pytest.importorskip("signxai", reason="pip install --no-deps signxai2==0.5.0")
    from signxai.torch_signxai import calculate_relevancemap
    from signxai.torch_signxai.methods import wrappers
    assert signxai is not None
    return {"ZI": calculate_relevancemap, "W": wrappers}


def sx_zi(sx, case, method, x=None, **kw):
    x = case["x"] if x is None else x
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sx["ZI"](case["model"], x.clone(), method, target_class=torch.from_numpy(case["targets"]), **kw)


def sx_w(sx, case, method, x=None, **kw):
    x = case["x"] if x is None else x
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return getattr(sx["W"], method)(case["model"], x.clone(), target_class=torch.from_numpy(case["targets"]),
                                        **kw)


GRADIENT_SIGN_ZI = ["gradient_x_sign", "gradient_x_sign_mu_0", "gradient_x_sign_mu_0_5", "gradient_x_sign_mu_neg_0_5",
                    "guided_backprop_x_sign_mu_0_5"]


@pytest.mark.parametrize("method", GRADIENT_SIGN_ZI)
def test_gradient_sign_equals_signxai2(sx, case, method):
    """signxai2's gradient x sign(x - mu) (``torch.sign``, so 0 at x == mu; no input equals mu here)."""
    expected = sx_zi(sx, case, method)
    assert_rel(explain(case, method).relevance, expected, 4e-15)


@pytest.mark.parametrize("method", ["gradient_x_sign", "guided_backprop_x_sign"])
def test_gradient_sign_equals_signxai2_wrappers(sx, case, method):
    """The wrappers API: gradient / zennit guided backprop times ``nan_to_num(x/|x|, nan=1)``."""
    expected = sx_w(sx, case, method)
    assert_rel(explain(case, method).relevance, expected, 4e-15)


@pytest.mark.parametrize("method", ["smoothgrad_x_sign", "smoothgrad_x_sign_mu_0_5", "smoothgrad_x_sign_mu_neg_0_5"])
def test_smoothgrad_sign_equals_signxai2_same_noise(sx, case, method, monkeypatch):
    """signxai2 draws its noise with ``torch.normal(0, noise_level·(max − min), shape)``; given the standard normal
    draws onnxlrp makes (scaled by the std signxai2 asks for; one sample per call, where onnxlrp's per-sample range
    equals signxai2's whole-tensor range) both agree."""
    samples, level, seed = 6, 0.2, 11
    for i in range(case["x"].shape[0]):
        xi = case["x"][i:i + 1]
        draws = np.random.default_rng(seed).standard_normal((samples,) + tuple(xi.shape))
        assert_close(draws * level * float(xi.max() - xi.min()),
                                   smoothgrad_noise(xi.numpy(), level, samples, seed), rtol=1e-15)
        noise = iter(draws)
        monkeypatch.setattr(torch, "normal",
                            lambda mean, std, size, device=None: mean + std * torch.from_numpy(next(noise)))  # noqa: B023
        target = case["targets"][i:i + 1]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = sx["ZI"](case["model"], xi.clone(), method, target_class=torch.from_numpy(target),
                                noise_level=level, num_samples=samples)
        monkeypatch.undo()
        ours = case["ex"].explain(xi.numpy(), method=method, target=target, samples=samples, noise_level=level,
                                  random_state=seed).relevance
        assert_rel(ours, expected, 3e-15)


def test_deconvnet_sign_equals_zennit_deconvnet(case):
    """signxai2 0.5.0 has no working DeconvNet (see the findings below); the reference is zennit's DeconvNet
    composite times sgn0(x)."""
    from zennit.attribution import Gradient
    from zennit.composites import DeconvNet
    one_hot = F.one_hot(torch.from_numpy(case["targets"]), 5).double()
    x = case["xz"]
    with Gradient(model=case["model"], composite=DeconvNet()) as attributor:
        _, grad = attributor(x.clone(), one_hot)
    sgn = np.where(x.numpy() >= 0, 1.0, -1.0)
    assert_rel(explain(case, "deconvnet_x_sign", x).relevance, grad.numpy() * sgn, 3e-15)
    sgn_mu = np.where(x.numpy() >= -0.5, 1.0, -1.0)
    assert_rel(explain(case, "deconvnet_x_sign_mu_neg_0_5", x).relevance, grad.numpy() * sgn_mu, 3e-15)


# ---------------------------------------------------------------------------------------------- signxai2 findings


def test_signxai2_lrpsign_std_x_is_plain_epsilon(sx, case):
    """signxai2 0.5.0 (PyPI) does not implement the LRP-SIGN names as named: ``lrpsign_epsilon_0_1_std_x`` and
    ``lrpz_epsilon_0_1_std_x`` ignore the input-layer rule (the analyzer stores ``input_layer_rule`` / ``variant``
    and never reads them) and the std-x rule falls back to a fixed stabiliser (``StdxEpsilon.gradient_mapper`` is a
    method shadowed by the instance attribute zennit's ``BasicHook`` sets, so it runs ``Epsilon(1e-6)``; the ZI
    entry point also never passes the std factor). Both names give one map: LRP-ε(1e-6) on every Conv/Linear, the
    plain gradient through everything else (ReLU, average pooling: its composite maps them to ``None``) and a
    one-hot seed, far from the formulas of ALGORITHMS.md §2.4."""
    outputs = {(api, name): fn(sx, case, name)
               for api, fn in (("ZI", sx_zi), ("W", sx_w))
               for name in ("lrpsign_epsilon_0_1_std_x", "lrpz_epsilon_0_1_std_x")}
    outputs["ZI", "lrpsign_epsilon_0_5_std_x"] = sx_zi(sx, case, "lrpsign_epsilon_0_5_std_x")
    plain = explain(case, "epsilon", epsilon=1e-6, relevance_init="one_hot",
                    rules={"Relu": "gradient", "AveragePool": "gradient"}).relevance
    for key, value in outputs.items():
        assert_rel(value, plain, 2e-13, str(key))
    formula_sign = explain(case, "lrpsign_epsilon_0_1_std_x", relevance_init="one_hot").relevance
    formula_z = explain(case, "lrpz_epsilon_0_1_std_x", relevance_init="one_hot").relevance
    assert rel(formula_z, formula_sign) > 0.1                       # the input rule matters...
    assert rel(outputs["ZI", "lrpsign_epsilon_0_1_std_x"], formula_sign) > 0.1  # ...signxai2 has neither
    assert rel(outputs["ZI", "lrpz_epsilon_0_1_std_x"], formula_z) > 1e-3


def test_signxai2_wrappers_sign_mu_uses_the_gradient_sign(sx, case):
    """signxai2's wrappers ``gradient_x_sign_mu_*`` (default ``batchmode=False``) threshold the **gradient**, not the
    input, with a three-level sign (``+1 if v > μ, −1 if v < −μ, else 0``): ``G·sign(G) = |G|`` for μ = 0. (It also
    cannot take a target: ``target_class`` reaches ``calculate_sign_mu`` and raises a TypeError; the default target,
    the predicted class, is the one used here.)"""
    grad = explain(case, "gradient").relevance
    assert (case["targets"] == case["model"](case["x"]).argmax(1).numpy()).all()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mapped = sx["W"].gradient_x_sign_mu_0(case["model"], case["x"].clone())
    assert_rel(mapped, np.abs(grad), 4e-15)
    assert rel(explain(case, "gradient_x_sign_mu_0").relevance, np.abs(grad)) > 0.5


def test_signxai2_deconvnet_is_the_plain_gradient(sx, case):
    """signxai2's ``DeconvNetAnalyzer`` builds a DeconvNet composite but never uses it: its ``deconvnet*`` maps are
    plain gradients (and ``deconvnet_x_sign`` is missing from its method table)."""
    assert_rel(sx_zi(sx, case, "deconvnet_x_sign_mu_0_5"), explain(case, "gradient_x_sign_mu_0_5").relevance, 4e-15)
    assert rel(sx_zi(sx, case, "deconvnet_x_sign_mu_0_5"), explain(case, "deconvnet_x_sign_mu_0_5").relevance) > 1e-3


# ---------------------------------------------------------------------------------------------- formula reference


def _sdiv(r, z):
    return torch.where(z == 0, torch.zeros_like(r), r / torch.where(z == 0, torch.ones_like(z), z))


def _sgn0(v, mu=0.0):
    return torch.where(v >= mu, 1.0, -1.0).to(v.dtype)


def _affine(layer, weight=None, bias=False):
    """``a -> layer(a)`` with ``weight`` in place of the layer's and the bias kept (``True``), dropped (``False``)
    or replaced (a tensor)."""
    w = layer.weight if weight is None else weight
    b = layer.bias if bias is True else (None if bias is False else bias)
    if isinstance(layer, nn.Conv2d):
        return lambda a: F.conv2d(a, w, b, layer.stride, layer.padding)
    return lambda a: F.linear(a, w, b)


def _jt(fn, a, s):
    """``Jᵀ s`` of the linear map ``fn`` (autograd)."""
    a = a.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad((fn(a) * s).sum(), a)
    return g


def _eps(z, e):
    return z + e * _sgn0(z)


def ref_z(layer, a, r):
    return a * _jt(_affine(layer), a, _sdiv(r, _affine(layer, bias=True)(a)))


def ref_eps(e):
    return lambda layer, a, r: a * _jt(_affine(layer), a, r / _eps(_affine(layer, bias=True)(a), e))


def ref_stdx(f):
    def rule(layer, a, r):
        std = a.reshape(a.shape[0], -1).std(dim=1, unbiased=False)
        e = (f * std).reshape((-1,) + (1,) * (r.ndim - 1))
        return a * _jt(_affine(layer), a, r / _eps(_affine(layer, bias=True)(a), e))
    return rule


def ref_sign(mu=0.0, e=0.0):
    def rule(layer, a, r):
        z = _affine(layer, bias=True)(a)
        s = _sdiv(r, z) if e == 0 else r / _eps(z, e)
        return _sgn0(a, mu) * _jt(_affine(layer), a, s)
    return rule


def ref_alpha_beta(alpha, beta):
    """iNNvestigate AlphaBetaRule(bias=True): both denominators carry the full bias."""
    def rule(layer, a, r):
        wp, wn = layer.weight.clamp(min=0), layer.weight.clamp(max=0)
        bp, bn = layer.bias.clamp(min=0), layer.bias.clamp(max=0)
        ap, an = a.clamp(min=0), a.clamp(max=0)

        def part(w1, b1, w2, b2):
            s = _sdiv(r, _affine(layer, w1, b1)(ap) + _affine(layer, w2, b2)(an))
            return ap * _jt(_affine(layer, w1), ap, s) + an * _jt(_affine(layer, w2), an, s)

        out = alpha * part(wp, bp, wn, bn)
        return out - beta * part(wn, bn, wp, bp) if beta else out
    return rule


def ref_wsquare(layer, a, r):
    w2 = layer.weight ** 2
    ones = torch.ones_like(a)
    return _jt(_affine(layer, w2), ones, _sdiv(r, _affine(layer, w2)(ones)))


def ref_flat(layer, a, r):
    w1 = torch.ones_like(layer.weight)
    ones = torch.ones_like(a)
    return _jt(_affine(layer, w1), ones, _sdiv(r, _affine(layer, w1)(ones)))


def ref_zbox(low=None, high=None):
    def rule(layer, a, r):
        axes = tuple(range(1, a.ndim))
        lo = torch.full_like(a, low) if low is not None else a.amin(dim=axes, keepdim=True).expand_as(a)
        hi = torch.full_like(a, high) if high is not None else a.amax(dim=axes, keepdim=True).expand_as(a)
        wp, wn = layer.weight.clamp(min=0), layer.weight.clamp(max=0)
        z = _affine(layer)(a) - _affine(layer, wp)(lo) - _affine(layer, wn)(hi)
        s = _sdiv(r, z)
        return a * _jt(_affine(layer), a, s) - lo * _jt(_affine(layer, wp), lo, s) - hi * _jt(_affine(layer, wn), hi, s)
    return rule


def ref_lrp(model, x, targets, conv, dense, first=None, seed="logit"):
    """LRP on ``model`` from the formulas: ``conv``/``dense`` rules, ``first`` on the first Conv; ReLU passes,
    max-pooling routes by its gradient, average pooling uses the z-rule, the seed is the target logit."""
    with torch.no_grad():
        inputs, a = [], x
        for layer in model.layers():
            inputs.append(a)
            a = layer(a)
    rows = torch.arange(x.shape[0])
    r = torch.zeros_like(a)
    r[rows, targets] = a[rows, targets] if seed == "logit" else 1.0
    layers = model.layers()
    for k in reversed(range(len(layers))):
        layer, a = layers[k], inputs[k]
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            rule = first if (k == 0 and first is not None) else (conv if isinstance(layer, nn.Conv2d) else dense)
            r = rule(layer, a, r)
        elif isinstance(layer, nn.ReLU):
            pass
        elif isinstance(layer, nn.MaxPool2d):
            r = _jt(layer, a, r)
        elif isinstance(layer, nn.AvgPool2d):
            r = a * _jt(layer, a, _sdiv(r, layer(a)))
        elif isinstance(layer, nn.Flatten):
            r = r.reshape(a.shape)
    return r.detach().numpy()


A10, A21 = ref_alpha_beta(1, 0), ref_alpha_beta(2, 1)
#: name -> (conv rule, dense rule, input-layer rule), written from ALGORITHMS.md §2.4
REFERENCE = {
    "lrp_z": (ref_z, ref_z, None),
    "lrpsign_z": (ref_z, ref_z, ref_sign()),
    "lrp_epsilon_0_1": (ref_eps(0.1), ref_eps(0.1), None),
    "lrpsign_epsilon_0_1": (ref_eps(0.1), ref_eps(0.1), ref_sign()),
    "lrpz_epsilon_0_1": (ref_eps(0.1), ref_eps(0.1), ref_z),
    "lrpsign_epsilon_100_mu_0_5": (ref_eps(100), ref_eps(100), ref_sign(0.5)),
    "lrpsign_epsilon_100_mu_neg_0_5": (ref_eps(100), ref_eps(100), ref_sign(-0.5)),
    "lrp_epsilon_0_25_std_x": (ref_stdx(0.25), ref_stdx(0.25), None),
    "lrpsign_epsilon_0_1_std_x": (ref_stdx(0.1), ref_stdx(0.1), ref_sign()),
    "lrpz_epsilon_0_1_std_x": (ref_stdx(0.1), ref_stdx(0.1), ref_z),
    "lrpsign_epsilon_0_25_std_x_mu_0_5": (ref_stdx(0.25), ref_stdx(0.25), ref_sign(0.5)),
    "lrp_alpha_1_beta_0": (A10, A10, None),
    "lrpsign_alpha_1_beta_0": (A10, A10, ref_sign()),
    "lrpz_alpha_1_beta_0": (A10, A10, ref_z),
    "lrp_alpha_2_beta_1": (A21, A21, None),
    "lrp_sequential_composite_a": (A10, ref_eps(0.1), None),
    "lrpsign_sequential_composite_a": (A10, ref_eps(0.1), ref_sign()),
    "lrpz_sequential_composite_b": (A21, ref_eps(0.1), ref_z),
    "w2lrp_epsilon_0_1": (ref_eps(0.1), ref_eps(0.1), ref_wsquare),
    "flatlrp_z": (ref_z, ref_z, ref_flat),
    "flatlrp_sequential_composite_b": (A21, ref_eps(0.1), ref_flat),
    "zblrp_epsilon_1": (ref_eps(1.0), ref_eps(1.0), ref_zbox()),
    "zblrp_z_VGG16ILSVRC": (ref_z, ref_z, ref_zbox(-123.68, 151.061)),
}


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_lrp_names_equal_the_formulas(case, name):
    conv, dense, first = REFERENCE[name]
    expected = ref_lrp(case["model"], case["xz"], case["targets"], conv, dense, first)
    assert_rel(explain(case, name, case["xz"]).relevance, expected, 6e-14)


def test_one_hot_seed_and_sign_input_stabilizer(case):
    """``relevance_init="one_hot"`` seeds 1 (zennit); ``sign_input_stabilizer="same_as_layer"`` stabilises the SIGN
    layer with the layer ε (signxai2's git PyTorch hooks)."""
    model, x, t = case["model"], case["xz"], case["targets"]
    expected = ref_lrp(model, x, t, ref_eps(0.1), ref_eps(0.1), ref_sign(), seed="one_hot")
    assert_rel(explain(case, "lrpsign_epsilon_0_1", x, relevance_init="one_hot").relevance, expected, 5e-15)
    expected = ref_lrp(model, x, t, ref_eps(0.1), ref_eps(0.1), ref_sign(e=0.1))
    ours = explain(case, "lrpsign_epsilon_0_1", x, sign_input_stabilizer="same_as_layer").relevance
    assert_rel(ours, expected, 5e-15)
    assert rel(ours, explain(case, "lrpsign_epsilon_0_1", x).relevance) > 1e-6


# ---------------------------------------------------------------------------------------------- §7 invariants 14-17


def test_sign_times_abs_x_is_z_and_sign_mu_0_is_sign(case):
    """§7.14: ``R_SIGN ⊙ |x| == R_Z`` (the same ``s`` reaches the input layer) and ``SIGNmu(0) == SIGN``, zeros
    included (both +1)."""
    x = case["xz"]
    sign = explain(case, "lrpsign_epsilon_0_1", x).relevance
    z = explain(case, "lrpz_epsilon_0_1", x).relevance
    assert_close(sign * np.abs(x.numpy()), z, rtol=1e-10, atol=1e-14)
    assert np.abs(sign[x.numpy() == 0]).min() > 0                 # zero inputs receive relevance
    np.testing.assert_array_equal(explain(case, "lrpsign_epsilon_100_mu_0", x).relevance,
                                  explain(case, "lrpsign_epsilon_100", x).relevance)
    np.testing.assert_array_equal(explain(case, "gradient_x_sign_mu_0", x).relevance,
                                  explain(case, "gradient_x_sign", x).relevance)


def test_gradient_sign_invariants(case):
    """§7.15: ``gradient_x_sign ⊙ |x| == gradient_x_input`` and ``gradient_x_sign_mu(μ) ∈ {±G}``."""
    x = case["xz"]
    assert_close(explain(case, "gradient_x_sign", x).relevance * np.abs(x.numpy()),
                               explain(case, "input_x_gradient", x).relevance, rtol=1e-12, atol=1e-15)
    grad = explain(case, "gradient", x).relevance
    for mu in (0.5, -0.5, 1.3):
        mapped = explain(case, "gradient_x_sign_mu", x, mu=mu).relevance
        np.testing.assert_array_equal(mapped, grad * np.where(x.numpy() >= mu, 1.0, -1.0))
    np.testing.assert_array_equal(explain(case, "gradient_x_sign_mu", x, mu=0.5).relevance,
                                  explain(case, "gradient_x_sign_mu_0_5", x).relevance)


def test_sign_and_z_agree_above_the_first_layer(case):
    """§7.16: ``lrpsign_epsilon_f_std_x`` and ``lrpz_epsilon_f_std_x`` differ only at the input: every tensor above the
    first Conv gets the same relevance."""
    x = case["xz"].numpy()
    a = case["ex"].explain(x, method="lrpsign_epsilon_0_25_std_x", keep="all")
    b = case["ex"].explain(x, method="lrpz_epsilon_0_25_std_x", keep="all")
    assert set(a.intermediate) == set(b.intermediate) and len(a.intermediate) >= 8
    for name in a.intermediate:
        np.testing.assert_array_equal(a.intermediate[name], b.intermediate[name])
    assert rel(a.relevance, b.relevance) > 0.1


def test_stdx_limits_and_per_sample_std(case):
    """§7.17: StdxEpsilon with ``stdfactor → 0`` is LRP-0 (z-rule); ε is ``stdfactor·std`` with ddof 0, per sample:
    a sample's map does not depend on the rest of the batch (signxai pools the std over the batch)."""
    x = case["xz"]
    assert_rel(explain(case, "lrp_epsilon_0_000000001_std_x", x).relevance, explain(case, "lrp_z", x).relevance, 3e-7)
    whole = explain(case, "lrpsign_epsilon_0_5_std_x", x).relevance
    scaled = x.clone()
    scaled[1:] *= 10.0
    assert_rel(explain(case, "lrpsign_epsilon_0_5_std_x", scaled).relevance[:1], whole[:1], 1e-15)
    kernel, call = dense_call()
    eps = 0.1 * np.std(X)
    assert within(abs(eps - 0.096014), 1e-6, "printed constant")
    expected = [-0.409840, 0.527913, 2.173872, 0]
    assert_close(StdxEpsilon(0.1).propagate(kernel, call, (R_OUT,))[0][0], expected, atol=2e-6)


# ---------------------------------------------------------------------------------------------- rules


GOLDEN = [  # docs/formulas.md §A.4 (on the §A.1 layer)
    (Z(), [-0.383799, 0.565837, 2.169296, 0]),
    (Sign(), [-0.383799, 1.131675, 1.084648, 0.979976]),
    (SignMu(mu=0.5), [-0.383799, 1.131675, 1.084648, -0.979976]),
    (SignMu(mu=0.0), [-0.383799, 1.131675, 1.084648, 0.979976]),
    (AlphaBetaINN(1, 0), [2.247984, 0.312500, -0.243056, 0]),
    (AlphaBetaINN(2, 1), [4.808468, 0.667817, -2.449301, 0]),
]


@pytest.mark.parametrize("rule,expected", GOLDEN, ids=lambda v: v.describe() if hasattr(v, "describe") else "")
def test_golden_vectors(rule, expected):
    kernel, call = dense_call()
    assert_close(rule.propagate(kernel, call, (R_OUT,))[0][0], expected, atol=5e-6)


def test_sign_rule_identities():
    """``R_SIGN ⊙ |x| == R_Z`` on one layer; per-feature μ; no conservation expected."""
    kernel, call = dense_call()
    sign = Sign().propagate(kernel, call, (R_OUT,))[0]
    assert_close(sign * np.abs(X), Z().propagate(kernel, call, (R_OUT,))[0], rtol=1e-14, atol=1e-15)
    per_feature = SignMu(mu=(0.0, 0.0, 3.0, -1.0)).propagate(kernel, call, (R_OUT,))[0]
    assert_close(per_feature, sign * np.array([[1, 1, -1, 1]]), rtol=1e-14, atol=1e-15)


def test_zero_denominator_modes():
    """``division="safe"`` drops an output with ``z = 0``; ``"innvestigate"`` divides by 1e-7 (``SafeDivide``)."""
    w = np.array([[1.0, 1.0], [1.0, -1.0]])
    x, r = np.array([[1.0, 1.0]]), np.array([[1.0, 1.0]])
    model = make_model([helper.make_node("Gemm", ["x", "w"], ["y"], transB=1)], [("x", [1, 2])], [("y", [1, 2])],
                       {"w": w.astype(np.float32)})
    node = Graph(model).nodes[0]
    kernel, call = resolve(node), Call(node, (x, w), (), (True, False), np)
    assert_close(Z().propagate(kernel, call, (r,))[0], [[0.5, 0.5]], rtol=1e-14)
    assert_close(Z(division="innvestigate").propagate(kernel, call, (r,))[0], [[0.5 + 1e7, 0.5 - 1e7]])
    assert_close(Sign(division="innvestigate").propagate(kernel, call, (r,))[0],
                               [[0.5 + 1e7, 0.5 - 1e7]])
    with pytest.raises(ValueError):
        Z(division="other")
    with pytest.raises(ValueError):
        AlphaBetaINN(2, 0)


# ---------------------------------------------------------------------------------------------- names


def test_number_grammar():
    assert [_number(t) for t in ("0_1", "0_25", "100", "neg_0_5", "0_001", "1")] == [0.1, 0.25, 100, -0.5, 0.001, 1]


def test_methods_lists_the_families():
    listed = onnxlrp.methods()
    for name in ("gradient_x_sign", "gradient_x_sign_mu"):
        assert listed[name]["kind"] == "gradient" and listed[name]["description"]
    assert listed["gradient_x_sign_mu"]["params"] == {"mu": 0.0}
    families = {k: v for k, v in listed.items() if v["kind"] == "family"}
    sign_families = [v for k, v in families.items() if "_x_sign" in k or "lrpsign" in k]
    assert len(sign_families) == 2
    for family in sign_families:
        assert family["description"] and len(family["examples"]) >= 8
        for example in family["examples"]:
            method = find_method(example)
            assert method is not None and method.name == example and method.description, example


def test_rule_assignment(case):
    rules = dict((n, r) for n, _, r in case["ex"].rules_for("lrpsign_epsilon_0_1_std_x"))
    ops = dict(case["ex"].path_nodes())
    convs = [n for n, op in ops.items() if op == "Conv"]
    assert rules[convs[0]].startswith("Sign(epsilon=0.0, stdfactor=0.0")
    assert rules[convs[1]].startswith("StdxEpsilon(stdfactor=0.1")
    assert all(rules[n].startswith("StdxEpsilon(stdfactor=0.1") for n, op in ops.items() if op == "Gemm")
    assert all(rules[n].startswith("Z(") for n, op in ops.items() if op == "AveragePool")
    rules = dict((n, r) for n, _, r in case["ex"].rules_for("lrpsign_epsilon_0_25_std_x_mu_neg_0_5"))
    assert rules[convs[0]].startswith("SignMu(") and "mu=-0.5" in rules[convs[0]]
    rules = dict((n, r) for n, _, r in case["ex"].rules_for("lrp_sequential_composite_b", division="innvestigate"))
    assert rules[convs[0]] == "AlphaBetaINN(alpha=2.0, beta=1.0, bias=True, division='innvestigate')"
    assert all(rules[n] == "Epsilon(epsilon=0.1, zero_params=())" for n, op in ops.items() if op == "Gemm")


@pytest.mark.parametrize("name,message", [
    ("lrp_epsilon_0_1_mu_0_5", "needs the 'lrpsign' prefix"),
    ("lrp_alpha_2_beta_0", "alpha - beta = 1"),
    ("lrpsign_epsilon_0", "must be positive"),
    ("lrp_z_VGG16ILSVRC", "zblrp"),
    ("lrpsign_foo", "unknown method"),
    ("gradient_x_sign_mu_x", "unknown method"),
])
def test_bad_names(case, name, message):
    with pytest.raises(MethodError, match=message):
        explain(case, name)


def test_bad_parameters(case):
    with pytest.raises(MethodError, match="division"):
        explain(case, "lrp_z", division="zero")
    with pytest.raises(MethodError, match="sign_input_stabilizer"):
        explain(case, "lrpsign_epsilon_0_1", sign_input_stabilizer="yes")
    with pytest.raises(MethodError, match="has no parameter"):
        explain(case, "lrpsign_z", sign_input_stabilizer="none")
