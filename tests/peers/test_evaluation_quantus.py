"""onnxlrp.evaluate against Quantus 0.6 on the same torch model, inputs, maps and baseline.

A small seeded CNN (one channel, 16 x 16, 5 classes: ROAD in Quantus handles one channel only) is exported to ONNX
in the test; onnxlrp runs the export in onnxruntime, and Quantus runs it twice: on the torch model itself and on the
ONNX model through onnxlrp's bridge (:func:`onnxlrp.evaluate.torch_module`, the same onnxruntime arithmetic). The
measures are deterministic, so against the bridge the bound is 1e-6 relative L2 (``rel_err``; measured <= 2e-7,
Quantus's float32 softmax); against the torch model it is 1e-5, because torch and onnxruntime round the float32
convolutions differently and AOPC and correlations amplify that (measured up to 3.2e-6). Random parts are shared:
faithfulness correlation gets Quantus's own subsets (recorded from its ``np.random.choice`` calls), ROAD runs with
``noise=0`` (its imputation is also compared directly with Quantus's sparse solve). Quantus's MPRT re-initialises
torch modules and cannot randomise an ONNX graph: onnxlrp's MPRT is checked against a torch re-implementation that
loads the very tensors onnxlrp re-drew (float64 on both sides). The measured errors are printed at the end.

Quantus is installed ``--no-deps`` (Makefile), with the packages it imports listed in the ``test`` extra; numpy 2.4
removed ``np.trapz``, which Quantus's AUC calls, so it is aliased to ``np.trapezoid`` (the same rule) here.
"""
from __future__ import annotations

import copy
import importlib
import warnings

import numpy as np
import pytest

from tests.helpers.compare import rel_err

torch = pytest.importorskip("torch")
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    quantus = pytest.importorskip("quantus")

import onnxlrp  # noqa: E402
import onnxlrp.evaluate as ev  # noqa: E402
from tests.helpers.peer_models import export_onnx  # noqa: E402

road_module = importlib.import_module("onnxlrp.evaluate.road")
if not hasattr(np, "trapz"):  # Quantus 0.6 calls np.trapz, which numpy 2.4 removed (np.trapezoid is the same rule)
    np.trapz = np.trapezoid
N, SIDE, CLASSES = 6, 16, 5
TOL = 1e-6
#: against Quantus on the torch model: the same computation on float32 outputs that differ by ~1e-7 (see above)
TOL_TORCH = 1e-5
#: measured relative errors, printed at the end of the module
MEASURED: dict[str, float] = {}


class SmallCNN(torch.nn.Module):
    def __init__(self, channels: int = 1):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(channels, 6, 3, padding=1)
        self.relu1 = torch.nn.ReLU()
        self.pool = torch.nn.MaxPool2d(2)
        self.conv2 = torch.nn.Conv2d(6, 8, 3, padding=1)
        self.relu2 = torch.nn.ReLU()
        self.flatten = torch.nn.Flatten()
        self.fc = torch.nn.Linear(8 * 8 * 8, CLASSES)

    def forward(self, x):
        return self.fc(self.flatten(self.relu2(self.conv2(self.pool(self.relu1(self.conv1(x)))))))


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = SmallCNN().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)  # livelier logits than the default init
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (N, 1, SIDE, SIDE)).astype(np.float32)
    with torch.no_grad():
        y = model(torch.from_numpy(x)).argmax(1).numpy()
    onnx_bytes = export_onnx(model, torch.from_numpy(x[:1]))
    ex = onnxlrp.Explainer(onnx_bytes)
    maps = {"random": rng.normal(size=(N, 1, SIDE, SIDE)),
            "epsilon_plus": ex.explain(x, method="epsilon_plus", target=y).relevance.astype(np.float64)}
    yield model, onnx_bytes, ex, x, y, maps
    print("\nrelative errors onnxlrp.evaluate vs Quantus 0.6:")
    for name, err in sorted(MEASURED.items()):
        print(f"  {name:<48} {err:.2e}")


def _record(name: str, ours, theirs, tol: float = TOL) -> None:
    err = rel_err(ours, theirs)
    MEASURED[name] = err
    assert err <= tol, f"{name}: relative error {err:.3e}"


def _models(setup):
    """Quantus's two models: the torch model (TOL_TORCH) and the ONNX model through the bridge (TOL)."""
    model, _, ex, *_ = setup
    return (("torch", model, TOL_TORCH), ("onnx", ev.torch_module(ex), TOL))


def _quiet(metric, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(metric(*args, **kwargs), dtype=np.float64)


@pytest.mark.parametrize("which", ["random", "epsilon_plus"])
def test_pixel_flipping(setup, which):
    _, _, ex, x, y, maps = setup
    a = maps[which]
    ours = ev.pixel_flipping(ex, x, y, a, features_in_step=16)
    for label, model, tol in _models(setup):
        q = _quiet(quantus.PixelFlipping(features_in_step=16, disable_warnings=True), model, x, y, a_batch=a)
        _record(f"pixel_flipping curve ({which}, {label})", ours.curve[:, 1:], q, tol)
        q_auc = _quiet(quantus.PixelFlipping(features_in_step=16, return_auc_per_sample=True, disable_warnings=True),
                       model, x, y, a_batch=a)
        _record(f"pixel_flipping AUC ({which}, {label})", ours.values, q_auc, tol)


def test_pixel_flipping_logits_and_constant_baseline(setup):
    _, _, ex, x, y, maps = setup
    ours = ev.pixel_flipping(ex, x, y, maps["random"], features_in_step=32, baseline=0.25, output="logit")
    for label, model, tol in _models(setup):
        metric = quantus.PixelFlipping(features_in_step=32, perturb_baseline=0.25, disable_warnings=True)
        q = _quiet(metric, model, x, y, a_batch=maps["random"], softmax=False)
        _record(f"pixel_flipping curve (logit, baseline 0.25, {label})", ours.curve[:, 1:], q, tol)


@pytest.mark.parametrize("order, patch", [("morf", 4), ("lerf", 4), ("morf", 5)])
def test_region_perturbation(setup, order, patch):
    _, _, ex, x, y, maps = setup
    ours = ev.region_perturbation(ex, x, y, maps["random"], patch_size=patch, regions_evaluation=10, order=order,
                                  random_orders=0)
    for label, model, tol in _models(setup):
        metric = quantus.RegionPerturbation(patch_size=patch, regions_evaluation=10, order=order,
                                            disable_warnings=True)
        q = _quiet(metric, model, x, y, a_batch=maps["random"])
        _record(f"region_perturbation ({order}, patch {patch}, {label})", ours.extra["quantus"], q, tol)
        aopc = q.sum(axis=1) / (q.shape[1] + 1)  # Quantus's curve holds f(x0) - f(xk) for k >= 1
        _record(f"region_perturbation AOPC ({order}, patch {patch}, {label})", ours.values, aopc, tol)


def test_road_accuracy(setup):
    _, _, ex, x, y, maps = setup
    percentages = list(range(1, 100, 7))
    ours = ev.road(ex, x, y, maps["epsilon_plus"], percentages=percentages, noise=0.0)
    for label, model, tol in _models(setup):
        metric = quantus.ROAD(percentages=percentages, noise=0.0, disable_warnings=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            q = metric(model, x, y, a_batch=maps["epsilon_plus"])
        assert list(q) == percentages
        _record(f"road accuracy (noise 0, {label})", ours.extra["accuracy"], np.array([q[p] for p in percentages]),
                tol)


def test_road_imputation_equals_quantus_sparse_solve(setup):
    from quantus.functions.perturb_func import noisy_linear_imputation
    _, _, _, x, _, maps = setup
    order = np.argsort(-maps["random"].reshape(N, -1), axis=1)
    for k, p in enumerate((3, 41, 97)):
        idx = order[k, :int(SIDE * SIDE * p / 100)]
        removed = np.zeros(SIDE * SIDE, dtype=bool)
        removed[idx] = True
        theirs = noisy_linear_imputation(x[k].astype(np.float64), idx, noise=0.0)
        ours = road_module.impute(x[k:k + 1].astype(np.float64), removed.reshape(1, SIDE, SIDE))[0]
        _record(f"road imputation ({p} %)", ours, theirs, 1e-8)


def test_faithfulness_correlation(setup, monkeypatch):
    _, _, ex, x, y, maps = setup
    runs, size = 20, 32
    choice = np.random.choice
    for label, model, tol in _models(setup):
        metric = quantus.FaithfulnessCorrelation(nr_runs=runs, subset_size=size, return_aggregate=False,
                                                 disable_warnings=True)
        drawn = []

        def recording_choice(*args, drawn=drawn, **kwargs):  # Quantus's own subsets: per run, one per sample
            out = choice(*args, **kwargs)
            drawn.append(out)
            return out

        monkeypatch.setattr(np.random, "choice", recording_choice)
        np.random.seed(123)
        q = _quiet(metric, model, x, y, a_batch=maps["random"])
        monkeypatch.undo()
        subsets = np.stack(drawn).reshape(runs, N, size).transpose(1, 0, 2)
        ours = ev.faithfulness_correlation(ex, x, y, maps["random"], subsets=subsets)
        _record(f"faithfulness_correlation ({label})", ours.values, q, tol)


def test_sparseness_and_complexity(setup):
    model, _, _, x, y, maps = setup
    for which, a in maps.items():
        q = _quiet(quantus.Sparseness(normalise_func_kwargs={"normalise_axes": (1, 2, 3)}, disable_warnings=True),
                   model, x, y, a_batch=a)
        _record(f"sparseness ({which})", ev.sparseness(a).values, q)
        q = _quiet(quantus.Complexity(disable_warnings=True), model, x, y, a_batch=a)
        _record(f"complexity ({which})", ev.complexity(a).values, q)


def test_localisation_equals_quantus_on_non_negative_maps(setup):
    model, _, _, x, y, maps = setup
    a = np.abs(maps["random"])
    masks = np.zeros((N, 1, SIDE, SIDE), dtype=bool)
    masks[:, :, 3:11, 5:13] = True
    for name, metric in (("relevance_mass_accuracy", quantus.RelevanceMassAccuracy),
                         ("relevance_rank_accuracy", quantus.RelevanceRankAccuracy),
                         ("pointing_game", quantus.PointingGame)):
        q = _quiet(metric(disable_warnings=True), model, x, y, a_batch=a, s_batch=masks)
        _record(name, getattr(ev, name)(a, masks).values, q)


def test_bridge_runs_quantus_on_the_onnx_model(setup):
    """Quantus's PixelFlipping on the ONNX model through the bridge: the module runs onnxruntime, explain_func is an
    onnxlrp method; the result equals onnxlrp's own pixel flipping on the same maps."""
    _, onnx_bytes, ex, x, y, _ = setup
    module = ev.torch_module(ex)
    explain = ev.quantus_explain_func("epsilon_plus")
    a = explain(model=module, inputs=x, targets=y)
    np.testing.assert_allclose(a, ex.explain(x, method="epsilon_plus", target=y).relevance)
    metric = quantus.PixelFlipping(features_in_step=16, disable_warnings=True)
    q = _quiet(metric, module, x, y, a_batch=None, explain_func=explain)
    ours = ev.pixel_flipping(ex, x, y, a, features_in_step=16)
    _record("bridge: Quantus PixelFlipping on the ONNX module", ours.curve[:, 1:], q)


def test_three_channels_with_a_pixel_map():
    """An RGB input explained by a map without channels: Quantus repeats the map over the channels, so do we, and
    ties (a pixel's three channels) fall in the same order (both sort with numpy's default argsort). Quantus wants
    features_in_step to divide H * W. Logits: Quantus's float32 softmax would blur small AOPC drops."""
    torch.manual_seed(1)
    model = SmallCNN(channels=3).eval()
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, (4, 3, SIDE, SIDE)).astype(np.float32)
    with torch.no_grad():
        y = model(torch.from_numpy(x)).argmax(1).numpy()
    ex = onnxlrp.Explainer(export_onnx(model, torch.from_numpy(x[:1])))
    a = rng.normal(size=(4, 1, SIDE, SIDE))
    ours_pf = ev.pixel_flipping(ex, x, y, a, features_in_step=16, output="logit")
    ours_rp = ev.region_perturbation(ex, x, y, a, patch_size=4, regions_evaluation=8, random_orders=0,
                                     output="logit")
    for label, qmodel, tol in (("torch", model, TOL_TORCH), ("onnx", ev.torch_module(ex), TOL)):
        q = _quiet(quantus.PixelFlipping(features_in_step=16, disable_warnings=True), qmodel, x, y, a_batch=a,
                   softmax=False)
        _record(f"pixel_flipping RGB, pixel map ({label})", ours_pf.curve[:, 1:], q, tol)
        q = _quiet(quantus.RegionPerturbation(patch_size=4, regions_evaluation=8, disable_warnings=True), qmodel, x,
                   y, a_batch=a, softmax=False)
        _record(f"region_perturbation RGB, pixel map ({label})", ours_rp.extra["quantus"], q, tol)


def _torch_input_x_gradient(model, x, y):
    xt = torch.from_numpy(x.astype(np.float64)).requires_grad_(True)
    out = model(xt)
    out[torch.arange(len(y)), torch.from_numpy(y)].sum().backward()
    return (xt * xt.grad).detach().numpy()


def test_mprt_against_torch_reimplementation(setup):
    """The same re-drawn tensors loaded into the torch model, explained with autograd (gradient x input), compared
    by SciPy's Spearman and scikit-image's SSIM."""
    from scipy.stats import spearmanr
    from skimage.metrics import structural_similarity
    model, onnx_bytes, _, x, y, _ = setup
    ex = onnxlrp.Explainer(onnx_bytes, dtype="float64")
    ours = ev.mprt(ex, x, y, method="input_x_gradient", order="top_down", seed=42)
    reference = copy.deepcopy(model).double()
    base = np.abs(_torch_input_x_gradient(reference, x, y))
    state = reference.state_dict()
    rank_curve, ssim_curve = [np.ones(N)], [np.ones(N)]
    layer_names = []
    for name, _, drawn in ev.randomised_models(ex.session, "top_down", 42):
        layer_names.append(name)
        randomised = copy.deepcopy(reference)
        assert set(drawn) <= set(state), sorted(drawn)
        randomised.load_state_dict({**state, **{k: torch.from_numpy(v.astype(np.float64)) for k, v in drawn.items()}})
        other = np.abs(_torch_input_x_gradient(randomised, x, y))
        rank_curve.append([spearmanr(b.ravel(), o.ravel())[0] for b, o in zip(base, other)])
        ssim_curve.append([structural_similarity(b[0], o[0], data_range=float(max(b.max(), o.max()) -
                                                                               min(b.min(), o.min())))
                           for b, o in zip(base, other)])
    assert ours.extra["layers"][1:] == layer_names and len(layer_names) == 3
    _record("mprt Spearman (vs torch re-implementation)", ours.curve, np.stack(rank_curve, axis=1), 1e-10)
    _record("mprt SSIM (vs torch re-implementation)", ours.extra["ssim"], np.stack(ssim_curve, axis=1), 1e-10)
    assert np.all(ours.curve[:, -1] < ours.curve[:, 0])
