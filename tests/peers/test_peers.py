"""Peer equality: onnxlrp against zennit 0.5.1 (LRP presets) and Captum 0.9.0 (gradient methods) on the same weights.

Each case builds a small seeded PyTorch model (``tests/helpers/peer_models.py``: VGG-style with and without BatchNorm,
torchvision ResNet with BasicBlock and Bottleneck, a DenseNet-style block, a MobileNet-style block), exports it to ONNX
once per module and runs the peer on a float64 copy of the same float32 weights, on the same input. onnxlrp runs the
export with ``dtype="float64"`` and ``dtype="float32"``, each asserted against the float64 peer within 10x its
measured floor (``peer_floors.json``, see :func:`bound_for`). The measured relative L2 errors ``||a - b|| / ||b||``
are collected and, at the end of the module, written to ``<pytest basetemp>/peer_errors.json`` (or
``$ONNXLRP_PEER_ERRORS``) and printed as a table.

Peer conventions accounted for (each documented where it is handled):

* zennit's ``MergeBatchNorm`` leaves the merged BatchNorm's ``eps`` in place (see :func:`test_zennit_merge_keeps_eps`):
  the canonized model divides by ``sqrt(1 + eps)`` once more at every merged BatchNorm. Most models therefore use
  ``eps=0`` BatchNorms; the ``*_eps`` cases use ``eps=1e-3`` with the defect removed from the reference
  (:class:`_MergeBatchNormZeroEps`), so that onnxlrp's fold of ``eps`` is compared too.
* zennit's base layer map stabilises ``Norm`` (residual sums, average pools) with 1e-6, onnxlrp's ``lrp0`` with 0 (see
  :func:`zennit_composite` and :func:`test_lrp0_norm_stabiliser_convention`).
* Captum's ``riemann_trapezoid`` weights sum to ``(n - 1) / n`` (see :func:`test_integrated_gradients_riemann`).
* Captum casts the IG quadrature weights and the Riemann alphas to float32, so its float64 IG carries ~1e-9 errors.

Run with ``pytest tests/peers/test_peers.py -q`` (marker ``peers``; deselect with ``-m "not peers"``).
"""
from __future__ import annotations

import contextlib
import copy
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest

from tests.helpers.compare import assert_rel, record, rel_err

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")
pytest.importorskip("zennit")
pytest.importorskip("captum")

import onnx  # noqa: E402
from captum.attr import Deconvolution, GuidedBackprop, InputXGradient, IntegratedGradients, Saliency  # noqa: E402
from zennit.attribution import Gradient  # noqa: E402
from zennit.canonizers import CompositeCanonizer, SequentialMergeBatchNorm  # noqa: E402
from zennit.composites import COMPOSITES, LayerMapComposite, layer_map_base  # noqa: E402
from zennit.rules import Epsilon  # noqa: E402
from zennit.torchvision import ResNetBasicBlockCanonizer, ResNetBottleneckCanonizer, ResNetCanonizer  # noqa: E402
from zennit.types import Convolution  # noqa: E402

import onnxlrp  # noqa: E402
from onnxlrp.methods.gradients import smoothgrad_noise  # noqa: E402
from tests.helpers import peer_models  # noqa: E402

pytestmark = [pytest.mark.peers,
              # Captum warns that it sets requires_grad on the input and hooks ReLUs (both expected here)
              pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients:UserWarning"),
              pytest.mark.filterwarnings("ignore:Setting backward hooks on ReLU activations:UserWarning")]

TARGETS = np.array([3, 7])
CLASSES = 10
BOX = (-3.0, 3.0)                 # ZBox bounds for epsilon_gamma_box, passed to both
IG_STEPS = 16
SMOOTHGRAD = dict(noise_level=0.2, samples=8, random_state=3)

LRP_PRESETS = ["epsilon_plus", "epsilon_plus_flat", "epsilon_gamma_box", "epsilon_alpha2_beta1",
               "epsilon_alpha2_beta1_flat", "lrp0", "epsilon"]
CAPTUM_METHODS = ["gradient", "input_x_gradient", "integrated_gradients", "guided_backprop", "deconvnet"]

#: Each comparison's bound is ``MARGIN`` times its measured floor, the relative L2 error of the calibration run kept
#: in ``peer_floors.json`` (per model, method and dtype), and at least ``MINIMUM[dtype]`` (a few ulps of the
#: relative L2 error of an exact result). float64 floors are 1e-16 .. 1e-12 (Captum's IG, which casts its quadrature
#: to float32, ~1e-9); float32 floors are model-dependent: ~1e-7 where every denominator is well away from 0, up to
#: ~5e-4 for the DenseNet block, whose transition average-pools a signed Conv output (Norm rule: windows can sum to
#: nearly 0) and whose lrp0/epsilon heads divide by small pre-activations. After a deliberate change of numerics,
#: recalibrate with ``ONNXLRP_PEER_ERRORS=tests/peers/peer_floors.json pytest tests/peers/test_peers.py`` and review
#: the diff of that file.
FLOORS_FILE = os.path.join(os.path.dirname(__file__), "peer_floors.json")
with open(FLOORS_FILE, encoding="utf-8") as _f:
    FLOORS: dict[str, float] = json.load(_f)
MARGIN = 10.0
MINIMUM = {"float64": 1e-15, "float32": 1e-7}
#: the old blanket float64 bound, kept for the documentation checks below (a defect must exceed it by far)
TOL64 = 1e-4


def bound_for(key: str, dtype: str) -> float:
    """``MARGIN`` x the measured floor of ``key`` in ``dtype`` (at least ``MINIMUM[dtype]``)."""
    floor = FLOORS.get(f"{key}/{dtype}")
    assert floor is not None, f"no measured floor for {key}/{dtype} in {FLOORS_FILE}: recalibrate (see above)"
    return max(MARGIN * floor, MINIMUM[dtype])

ERRORS: dict[str, float] = {}


def check(key: str, method: str, dtype: str, actual, expected) -> float:
    """Record the error of ``actual`` (onnxlrp) against ``expected`` (peer) under ``key`` and assert its bound."""
    err = rel_err(actual, expected)
    ERRORS[f"{key}/{dtype}"] = err
    bound = bound_for(key, dtype)
    record(err, bound, f"{key}/{dtype}")
    assert err <= bound, f"{key} ({dtype}): relative L2 error {err:.3e} > {bound:.0e}"
    return err


# ------------------------------------------------------------------------------------------------ model cases


def _merge_bn():
    return [SequentialMergeBatchNorm()]


def _resnet():
    return [ResNetCanonizer()]


def _none():
    return []


class _MergeBatchNormZeroEps(SequentialMergeBatchNorm):
    """zennit's ``SequentialMergeBatchNorm`` that also sets the merged BatchNorm's ``eps`` to 0 (restored on
    removal), so that the BatchNorm left behind really is the identity."""

    def register(self, linears, batch_norm):
        self.saved_eps = batch_norm.eps
        super().register(linears, batch_norm)
        batch_norm.eps = 0.0

    def remove(self):
        super().remove()
        self.batch_norm.eps = self.saved_eps


def _merge_bn_zero_eps():
    """zennit's merge with its defect removed (:class:`_MergeBatchNormZeroEps`): for BatchNorms with ``eps != 0``."""
    return [_MergeBatchNormZeroEps()]


def _resnet_zero_eps():
    """``ResNetCanonizer`` with :class:`_MergeBatchNormZeroEps` in place of zennit's merge."""
    return [CompositeCanonizer((_MergeBatchNormZeroEps(), ResNetBottleneckCanonizer(), ResNetBasicBlockCanonizer()))]


@dataclass(frozen=True)
class Spec:
    """One exported model: ``model`` names a builder in ``peer_models.MODELS``; ``canonizers`` makes zennit's
    canonizers for it; ``fold`` lets the legacy exporter fold Conv->BN itself (in float32) instead of leaving the
    BatchNormalization nodes for onnxlrp to fold; ``zero`` names parameters zeroed before export."""

    model: str
    canonizers: Callable[[], list]
    fold: bool = False
    dynamo: bool = False
    bn_eps: float | None = 0.0
    zero: tuple[str, ...] = ()


SPECS = {
    "vgg": Spec("vgg", _merge_bn),
    "vgg_bn": Spec("vgg_bn", _merge_bn),
    "resnet_basic": Spec("resnet_basic", _resnet),
    "resnet_bottleneck": Spec("resnet_bottleneck", _resnet),
    # pre-activation BN -> ReLU -> Conv: no Conv->BN pair, zennit passes relevance through BN and so does onnxlrp
    # (no canonizer: SequentialMergeBatchNorm would wrongly merge the stem Conv into dense1's BN, whose input is also
    # concatenated)
    "densenet": Spec("densenet", _none),
    "mobilenet": Spec("mobilenet", _merge_bn),
    # the legacy exporter's default: Conv->BN folded by torch in float32 (errors ~1e-7 against zennit's float64 merge)
    "mobilenet_torchfold": Spec("mobilenet", _merge_bn, fold=True),
    # torch.export-based exporter: opset 18+, ReduceMean/Reshape head, BN folded by onnxscript, zero fc bias dropped
    "resnet_basic_dynamo": Spec("resnet_basic", _resnet, dynamo=True, zero=("fc.bias",)),
    # BatchNorms with eps != 0 (1e-3, so that the fold's eps term is ~1e-3 of the scale): onnxlrp folds them itself;
    # zennit's reference merge has its eps defect removed (test_zennit_merge_keeps_eps)
    "vgg_bn_eps": Spec("vgg_bn", _merge_bn_zero_eps, bn_eps=1e-3),
    "resnet_bottleneck_eps": Spec("resnet_bottleneck", _resnet_zero_eps, bn_eps=1e-3),
    "mobilenet_eps": Spec("mobilenet", _merge_bn_zero_eps, bn_eps=1e-3),
}


@dataclass
class Case:
    """A model exported once, with its float64 peer copies, inputs, onnxlrp explainers and cached peer results."""

    name: str
    spec: Spec
    model: torch.nn.Module          # float32, as exported
    x: torch.Tensor                 # float32 input (2, C, H, W)
    onnx_bytes: bytes
    torch64: torch.nn.Module        # float64 copy with the plain residual `+` (Captum, autograd references)
    zennit64: torch.nn.Module       # float64 copy with zennit's Sum module on residual adds
    explainers: dict = field(default_factory=dict)
    cache: dict = field(default_factory=dict)

    @property
    def x64(self) -> torch.Tensor:
        return self.x.double()

    def inputs(self, dtype: str) -> np.ndarray:
        return self.x.numpy() if dtype == "float32" else self.x64.numpy()

    def explainer(self, dtype: str) -> onnxlrp.Explainer:
        if dtype not in self.explainers:
            self.explainers[dtype] = onnxlrp.Explainer(self.onnx_bytes, dtype=dtype)
        return self.explainers[dtype]

    def explain(self, dtype: str, method: str, **params) -> np.ndarray:
        if method in LRP_PRESETS:
            params.setdefault("relevance_init", "one_hot")
        result = self.explainer(dtype).explain(self.inputs(dtype), method=method, target=TARGETS, **params)
        assert list(result.target) == list(TARGETS)
        return result.relevance

    def peer(self, key, compute):
        """``compute()`` once per key (the float32 and float64 runs share the float64 peer reference)."""
        if key not in self.cache:
            self.cache[key] = compute()
        return self.cache[key]


def build_case(name: str) -> Case:
    spec = SPECS[name]
    model = peer_models.build(spec.model, seed=0, bn_eps=spec.bn_eps)
    with torch.no_grad():
        for param in spec.zero:
            model.get_parameter(param).zero_()
    shape = peer_models.MODELS[spec.model][1]
    x = torch.randn((len(TARGETS),) + shape, generator=torch.Generator().manual_seed(1234))
    onnx_bytes = peer_models.export_onnx(model, x, dynamo=spec.dynamo, fold=spec.fold)
    torch64 = copy.deepcopy(model).double().eval()
    zennit64 = peer_models.use_zennit_sum(copy.deepcopy(model).double().eval())
    return Case(name, spec, model, x, onnx_bytes, torch64, zennit64)


class Cases:
    """Lazily built cases: each model is built and exported at most once per module."""

    def __init__(self):
        self._cases: dict[str, Case] = {}

    def __getitem__(self, name: str) -> Case:
        if name not in self._cases:
            self._cases[name] = build_case(name)
        return self._cases[name]


@pytest.fixture(scope="module")
def cases():
    return Cases()


@pytest.fixture(scope="module", autouse=True)
def error_summary(request, tmp_path_factory):
    """After the module: write the measured errors to JSON and print them (worst first per dtype)."""
    yield
    if not ERRORS:
        return
    path = os.environ.get("ONNXLRP_PEER_ERRORS") or str(tmp_path_factory.getbasetemp() / "peer_errors.json")
    with open(path, "w") as f:
        json.dump(dict(sorted(ERRORS.items())), f, indent=1)
    rows: dict[str, dict[str, float]] = {}
    for key, err in ERRORS.items():
        case, dtype = key.rsplit("/", 1)
        rows.setdefault(case, {})[dtype] = err
    lines = [f"peer relative L2 errors (written to {path})", f"{'case':70s} {'float64':>10s} {'float32':>10s}"]
    for case in sorted(rows):
        cells = [f"{rows[case][d]:10.2e}" if d in rows[case] else f"{'-':>10s}" for d in ("float64", "float32")]
        lines.append(f"{case:70s} {' '.join(cells)}")
    # print past pytest's output capture (this runs in a fixture teardown), so the table shows without -s
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
        if reporter is not None:
            reporter.write_line("")
            for line in lines:
                reporter.write_line(line)
        else:  # pragma: no cover
            print("\n".join(lines))


def one_hot(n_classes=CLASSES) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.from_numpy(TARGETS), n_classes).double()


# ------------------------------------------------------------------------------------------------ sanity


@pytest.mark.parametrize("name", list(SPECS))
def test_models_agree(cases, name):
    """The zennit copy (Sum on residuals) computes what torch computes; onnxlrp's float64 forward equals torch's
    float64 forward (exactly where onnxlrp folds BN itself, to ~1e-7 where the exporter folded it in float32)."""
    case = cases[name]
    with torch.no_grad():
        plain = case.torch64(case.x64).numpy()
        zennit_form = case.zennit64(case.x64).numpy()
    assert_rel(zennit_form, plain, 1e-15, "zennit form")                           # measured: 0
    out64 = case.explainer("float64").explain(case.inputs("float64"), method="gradient", target=TARGETS).output
    out32 = case.explainer("float32").explain(case.inputs("float32"), method="gradient", target=TARGETS).output
    # measured: <= 6.1e-8 where the exporter folded BatchNorm in float32, else <= 9.5e-16; float32 <= 4.2e-7
    assert_rel(out64, plain, 7e-7 if case.spec.fold or case.spec.dynamo else 1e-14, "float64 forward")
    assert_rel(out32, plain, 5e-6, "float32 forward")
    ops = {n.op_type for n in onnx.load_from_string(case.onnx_bytes).graph.node}
    if name in ("vgg_bn", "resnet_basic", "resnet_bottleneck", "mobilenet", "vgg_bn_eps", "resnet_bottleneck_eps",
                "mobilenet_eps"):
        assert "BatchNormalization" in ops          # folded by onnxlrp, not by the exporter
    if name == "densenet":
        assert {"BatchNormalization", "Concat"} <= ops


def test_dynamo_export_graph(cases):
    """The dynamo export really is the other graph flavour: opset >= 18, ReduceMean + Reshape head, no BN left, and
    the zeroed fc bias dropped from the Gemm."""
    model = onnx.load_from_string(cases["resnet_basic_dynamo"].onnx_bytes)
    opset = {o.domain: o.version for o in model.opset_import}[""]
    assert opset >= 18
    ops = [n.op_type for n in model.graph.node]
    assert "ReduceMean" in ops and "Reshape" in ops and "BatchNormalization" not in ops and "Flatten" not in ops
    gemms = [n for n in model.graph.node if n.op_type == "Gemm"]
    assert len(gemms) == 1 and len([i for i in gemms[0].input if i]) == 2


# ------------------------------------------------------------------------------------------------ zennit (LRP)

#: zennit's Norm stabiliser for the lrp0 reference. onnxlrp's ``lrp0`` is LRP-0 on every node, the residual sums and
#: average pools included (stabiliser 0, with 0/0 -> 0, so that LRP-0 equals gradient x input); zennit's
#: ``layer_map_base`` always stabilises Norm with 1e-6, and with 0 it returns NaN at all-zero pooling windows. A
#: stabiliser of 1e-300 is the same division as 0 in float64 except that 0/0 gives 0.
LRP0_NORM_STABILISER = 1e-300


def zennit_composite(preset: str, canonizers: list, norm_stabiliser: float | None = None):
    """The zennit composite matching onnxlrp's preset ``preset``."""
    if preset == "lrp0":
        stab = LRP0_NORM_STABILISER if norm_stabiliser is None else norm_stabiliser
        return LayerMapComposite(layer_map_base(stab) + [(Convolution, Epsilon(0.0)), (torch.nn.Linear, Epsilon(0.0))],
                                 canonizers=canonizers)
    if preset == "epsilon":
        return LayerMapComposite(layer_map_base() + [(Convolution, Epsilon(1e-6)), (torch.nn.Linear, Epsilon(1e-6))],
                                 canonizers=canonizers)
    if preset == "epsilon_gamma_box":
        return COMPOSITES[preset](low=BOX[0], high=BOX[1], canonizers=canonizers)
    return COMPOSITES[preset](canonizers=canonizers)


def zennit_relevance(model, x, composite) -> np.ndarray:
    with Gradient(model, composite) as attributor:
        _, relevance = attributor(x.clone(), one_hot())
    return relevance.detach().numpy()


def lrp_params(preset: str) -> dict:
    return {"low": BOX[0], "high": BOX[1]} if preset == "epsilon_gamma_box" else {}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("preset", LRP_PRESETS)
@pytest.mark.parametrize("name", list(SPECS))
def test_lrp_matches_zennit(cases, name, preset, dtype):
    case = cases[name]
    expected = case.peer(("zennit", preset), lambda: zennit_relevance(
        case.zennit64, case.x64, zennit_composite(preset, case.spec.canonizers())))
    assert np.isfinite(expected).all()
    actual = case.explain(dtype, preset, **lrp_params(preset))
    check(f"{name}/{preset}", preset, dtype, actual, expected)


def test_lrp0_norm_stabiliser_convention(cases):
    """Documents why the lrp0 reference uses a zero Norm stabiliser: with zennit's default base map (1e-6 on the
    residual sums and average pools) the DenseNet block differs from onnxlrp's lrp0 by more than TOL64 (it has an
    average pool over a Conv output, whose windows can sum to nearly 0); with LRP-0 there too it matches."""
    case = cases["densenet"]
    actual = case.explain("float64", "lrp0")
    default = zennit_relevance(case.zennit64, case.x64, zennit_composite("lrp0", [], norm_stabiliser=1e-6))
    matched = zennit_relevance(case.zennit64, case.x64, zennit_composite("lrp0", []))
    ERRORS["densenet/lrp0 vs zennit base map (Norm stabiliser 1e-6)/float64"] = rel_err(actual, default)
    assert rel_err(actual, default) > TOL64
    assert_rel(actual, matched, 2e-11)                                                 # measured 1.1e-12


def test_zennit_merge_keeps_eps():
    """zennit 0.5.1 quirk: ``MergeBatchNorm.merge_batch_norm`` folds ``γ/√(σ²+ε)`` into the Conv and resets the
    BatchNorm to mean 0 / var 1 / weight 1 / bias 0, but leaves ``eps``; the canonized model still divides by
    ``√(1+ε)`` at every merged BatchNorm, so its forward is not the model's forward. onnxlrp folds exactly (its output
    equals torch's), which leaves a small nonzero difference to zennit with the default ``eps=1e-5``. Here the defect
    is shown and then removed by also zeroing ``eps`` (:class:`_MergeBatchNormZeroEps`), which is how the ``*_eps``
    cases (``eps=1e-3``) compare onnxlrp's fold of ``eps`` with zennit; the other cases use ``eps=0`` BatchNorms."""
    model = peer_models.build("resnet_basic", seed=0, bn_eps=None)
    assert model.bn1.eps == 1e-5
    x = torch.randn((len(TARGETS), 3, 32, 32), generator=torch.Generator().manual_seed(1234))
    onnx_bytes = peer_models.export_onnx(model, x, fold=False)
    zennit64, x64 = copy.deepcopy(model).double(), x.double()
    with torch.no_grad():
        plain = zennit64(x64).numpy()
    ours = onnxlrp.Explainer(onnx_bytes, dtype="float64").explain(
        x64.numpy(), method="epsilon_plus", target=TARGETS, relevance_init="one_hot")

    with Gradient(zennit64, zennit_composite("epsilon_plus", [ResNetCanonizer()])) as attributor:
        zennit_out, zennit_rel = attributor(x64.clone(), one_hot())
    fixed = CompositeCanonizer((_MergeBatchNormZeroEps(), ResNetBottleneckCanonizer(), ResNetBasicBlockCanonizer()))
    with Gradient(zennit64, zennit_composite("epsilon_plus", [fixed])) as attributor:
        fixed_out, fixed_rel = attributor(x64.clone(), one_hot())

    assert_rel(ours.output, plain, 1e-14)                    # onnxlrp: the model's own forward
    assert rel_err(zennit_out.detach().numpy(), plain) > 1e-6       # zennit: off by the leftover 1/sqrt(1+eps)
    assert_rel(fixed_out.detach().numpy(), plain, 1e-14)
    quirk = rel_err(ours.relevance, zennit_rel.numpy())
    ERRORS["resnet_basic (BN eps=1e-5)/epsilon_plus vs stock zennit/float64"] = quirk
    ERRORS["resnet_basic (BN eps=1e-5)/epsilon_plus vs zennit with eps zeroed/float64"] = rel_err(
        ours.relevance, fixed_rel.numpy())
    assert 1e-9 < quirk <= TOL64                                    # small but nonzero
    assert_rel(ours.relevance, fixed_rel.numpy(), 1e-14)                           # measured 8.4e-16


# ------------------------------------------------------------------------------------------------ Captum


def captum_attribution(case: Case, method: str, **kw) -> np.ndarray:
    model, x, target = case.torch64, case.x64, torch.from_numpy(TARGETS)
    if method == "gradient":
        out = Saliency(model).attribute(x, target=target, abs=False)
    elif method == "input_x_gradient":
        out = InputXGradient(model).attribute(x, target=target)
    elif method == "integrated_gradients":
        out = IntegratedGradients(model).attribute(x, baselines=torch.zeros_like(x), target=target,
                                                   n_steps=kw.get("steps", IG_STEPS),
                                                   method=kw.get("integration", "gausslegendre"))
    elif method == "guided_backprop":
        out = GuidedBackprop(model).attribute(x, target=target)
    elif method == "deconvnet":
        out = Deconvolution(model).attribute(x, target=target)
    else:  # pragma: no cover
        raise ValueError(method)
    return out.detach().numpy()


CAPTUM_MODELS = ["vgg", "vgg_bn", "resnet_basic", "resnet_bottleneck", "densenet", "mobilenet",
                 "resnet_basic_dynamo"]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("method", CAPTUM_METHODS)
@pytest.mark.parametrize("name", CAPTUM_MODELS)
def test_gradient_methods_match_captum(cases, name, method, dtype):
    """Saliency(abs=False) ~ gradient, InputXGradient, IntegratedGradients (Gauss-Legendre, 16 steps, zero
    baseline), GuidedBackprop, Deconvolution. torchvision's BasicBlock/Bottleneck reuse one nn.ReLU per block; Captum
    0.9 still hooks every call of it, and the results agree."""
    case = cases[name]
    expected = case.peer(("captum", method), lambda: captum_attribution(case, method))
    params = {"steps": IG_STEPS} if method == "integrated_gradients" else {}
    check(f"{name}/{method}", method, dtype, case.explain(dtype, method, **params), expected)


def trapezoid_ig(case: Case, steps: int) -> np.ndarray:
    """IG with the textbook trapezoid rule on ``linspace(0, 1, steps)`` (spacing ``1/(steps-1)``), by autograd."""
    alphas = np.linspace(0.0, 1.0, steps)
    weights = np.full(steps, 1.0 / (steps - 1))
    weights[[0, -1]] /= 2
    total = torch.zeros_like(case.x64)
    for alpha, weight in zip(alphas, weights):
        xi = (alpha * case.x64).requires_grad_()
        out = case.torch64(xi)
        (grad,) = torch.autograd.grad(out[torch.arange(len(TARGETS)), torch.from_numpy(TARGETS)].sum(), xi)
        total += weight * grad
    return (case.x64 * total).numpy()


@pytest.mark.parametrize("integration", ["riemann_trapezoid", "riemann_left", "riemann_right", "riemann_middle"])
@pytest.mark.parametrize("name", ["vgg", "mobilenet"])
def test_integrated_gradients_riemann(cases, name, integration):
    """IG with Captum's Riemann methods. Captum's ``riemann_trapezoid`` evaluates at ``linspace(0, 1, n)`` but uses
    step sizes ``1/n`` (halved at both ends), which sum to ``(n-1)/n``; onnxlrp uses the trapezoid rule's ``1/(n-1)``
    (weights summing to 1, so completeness holds as n grows). The two differ by exactly the factor ``n/(n-1)``:
    onnxlrp is checked against Captum's result times ``n/(n-1)`` and against a direct autograd trapezoid sum."""
    case, n = cases[name], IG_STEPS
    expected = case.peer(("captum", integration), lambda: captum_attribution(
        case, "integrated_gradients", steps=n, integration=integration))
    for dtype in ("float64", "float32"):
        actual = case.explain(dtype, "integrated_gradients", steps=n, integration=integration)
        if integration == "riemann_trapezoid":
            ERRORS[f"{name}/ig_{integration} vs raw captum/{dtype}"] = rel_err(actual, expected)
            reference = case.peer(("torch", "trapezoid"), lambda: trapezoid_ig(case, n))
            check(f"{name}/ig_{integration} vs autograd trapezoid", "integrated_gradients", dtype, actual, reference)
            check(f"{name}/ig_{integration} vs captum x n/(n-1)", "integrated_gradients", dtype, actual,
                  expected * n / (n - 1))
        else:
            check(f"{name}/ig_{integration}", "integrated_gradients", dtype, actual, expected)


SMOOTHGRAD_MODELS = ["vgg", "resnet_basic", "densenet", "mobilenet"]


@pytest.mark.parametrize("name", SMOOTHGRAD_MODELS)
def test_smoothgrad_matches_autograd(cases, name):
    """onnxlrp's smoothgrad equals the mean torch gradient over exactly the noisy inputs ``x + noise[k]`` from
    ``onnxlrp.methods.smoothgrad_noise`` (Captum's NoiseTunnel draws its own noise, so it is not used)."""
    case = cases[name]
    x64 = case.x64.numpy()
    noise = smoothgrad_noise(x64, SMOOTHGRAD["noise_level"], SMOOTHGRAD["samples"], SMOOTHGRAD["random_state"])
    assert noise.shape == (SMOOTHGRAD["samples"],) + x64.shape
    samples, batch = noise.shape[0], x64.shape[0]
    noisy = torch.from_numpy((x64[None] + noise).reshape((samples * batch,) + x64.shape[1:])).requires_grad_()
    out = case.torch64(noisy)
    (grad,) = torch.autograd.grad(out[torch.arange(samples * batch), torch.from_numpy(np.tile(TARGETS, samples))].sum(),
                                  noisy)
    expected = grad.reshape((samples,) + x64.shape).mean(0).numpy()
    for dtype in ("float64", "float32"):
        check(f"{name}/smoothgrad", "smoothgrad", dtype, case.explain(dtype, "smoothgrad", **SMOOTHGRAD), expected)
