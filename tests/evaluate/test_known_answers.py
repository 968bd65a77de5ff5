"""Known answers on the shipped digits CNN, and properties every measure must have (seeded, batch-independent,
errors that are onnxlrp's own)."""
from __future__ import annotations

import importlib

import numpy as np
import pytest
from PIL import Image

import onnxlrp
import onnxlrp.evaluate as ev
from onnxlrp.errors import InputShapeError, MethodError, TargetError
from tests.conftest import DIGITS_MODEL

road_module = importlib.import_module("onnxlrp.evaluate.road")
SAMPLES = sorted((DIGITS_MODEL.parent / "samples").glob("*.png"))


@pytest.fixture(scope="module")
def digits():
    ex = onnxlrp.Explainer(str(DIGITS_MODEL))
    x = np.stack([np.asarray(Image.open(p), np.float32)[None] / 255 for p in SAMPLES])
    res = ex.explain(x, method="epsilon_plus")
    return ex, x, res.target, res.relevance


def test_morf_pixel_flipping_drops_the_logit_faster_than_random_and_lerf(digits):
    ex, x, y, a = digits
    auc = {order: ev.pixel_flipping(ex, x, y, a, features_in_step=32, order=order, output="logit", seed=1)
           for order in ("morf", "lerf", "random")}
    assert auc["morf"].curve.shape == (len(x), 33)
    np.testing.assert_allclose(auc["morf"].curve[:, 0], auc["lerf"].curve[:, 0])  # step 0: the logit itself
    assert auc["morf"].mean() < auc["random"].mean() < auc["lerf"].mean()
    assert np.all(auc["morf"].values < auc["lerf"].values)
    assert np.mean(auc["morf"].values < auc["random"].values) >= 0.9
    assert auc["morf"].higher_is_better is False and auc["lerf"].higher_is_better is True


def test_region_perturbation_morf_beats_its_random_order(digits):
    ex, x, y, a = digits
    s = ev.region_perturbation(ex, x, y, a, patch_size=4, regions_evaluation=20, output="logit", random_orders=2)
    assert s.curve.shape == (len(x), 21) and s.extra["curve_random"].shape == (len(x), 21)
    assert np.all(s.extra["aopc_relative"] > 0)
    np.testing.assert_allclose(s.values, (s.curve[:, :1] - s.curve).mean(axis=1))


def test_mprt_similarity_falls_as_layers_are_randomised(digits):
    ex, x, y, _ = digits
    s = ev.mprt(ex, x[:4], y[:4], method="input_x_gradient", order="top_down")
    mean = s.curve.mean(axis=0)
    assert s.extra["layers"][0] == "original" and len(s.extra["layers"]) == 6  # 3 Conv + 2 Gemm
    np.testing.assert_allclose(s.curve[:, 0], 1.0)
    assert np.all(np.diff(mean) < 0), mean
    assert np.all(np.diff(s.extra["ssim"].mean(axis=0)) < 0)
    assert mean[-1] < 0.95 and s.extra["ssim"].mean(axis=0)[-1] < 0.5
    independent = ev.mprt(ex, x[:2], y[:2], method="input_x_gradient", order="independent")
    assert np.all(independent.curve[:, 1:] < 1.0)


def test_randomised_models_are_seeded_and_cascade(digits):
    ex = digits[0]
    first = list(ev.randomised_models(ex.session, "top_down", seed=3))
    again = list(ev.randomised_models(ex.session, "top_down", seed=3))
    independent = list(ev.randomised_models(ex.session, "independent", seed=3))
    assert [n for n, _, _ in first] == [n for n, _, _ in reversed(independent)]
    for (_, _, a), (_, _, b) in zip(first, again):
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert len(first[-1][2]) == sum(len(d) for _, _, d in independent)  # the last cascade step holds every layer
    for _, _, drawn in independent:  # the same tensors in both orders
        assert all(np.array_equal(drawn[k], first[-1][2][k]) for k in drawn)
    weight = next(v for k, v in independent[0][2].items() if v.ndim >= 2)
    fan_in = int(np.prod(weight.shape[1:]))
    assert np.abs(weight).max() <= 1 / np.sqrt(fan_in) + 1e-7


def test_a_map_equal_to_the_mask_scores_one(digits):
    _, x, _, _ = digits
    masks = x[:, 0] > 0.5
    maps = masks.astype(np.float64)[:, None]
    assert np.all(ev.relevance_mass_accuracy(maps, masks).values == 1.0)
    assert np.all(ev.relevance_rank_accuracy(maps, masks).values == 1.0)
    assert np.all(ev.pointing_game(maps, masks).values == 1.0)
    ratio = ev.outside_inside_ratio(maps, masks)
    assert np.all(ratio.values == 0.0) and np.all(ratio.extra["positive_inside"] == 1.0)
    assert np.all(ev.relevance_mass_accuracy(-maps + 1, masks).values == 0.0)
    empty = np.zeros_like(masks)
    assert np.isnan(ev.relevance_mass_accuracy(maps, empty).values).all()


def test_boxes_and_pointing_tolerance():
    masks = ev.boxes_to_masks([(2, 3, 5, 7)], 8, 10)
    assert masks.shape == (1, 8, 10) and masks.sum() == 3 * 4 and masks[0, 2, 3] and not masks[0, 5, 7]
    a = np.zeros((1, 8, 10))
    a[0, 1, 7] = 1.0  # one pixel up and one right of the box's last pixel (4, 6)
    assert ev.pointing_game(a, masks).values[0] == 0.0
    assert ev.pointing_game(a, masks, tolerance=1).values[0] == 1.0


def test_seeded_measures_repeat_and_batches_do_not_matter(digits):
    ex, x, y, a = digits
    one = ev.faithfulness_correlation(ex, x[:3], y[:3], a[:3], subset_size=64, nr_runs=10, seed=5)
    two = ev.faithfulness_correlation(ex, x[:3], y[:3], a[:3], subset_size=64, nr_runs=10, seed=5)
    np.testing.assert_array_equal(one.values, two.values)
    small = ev.ModelRunner(ex.session, max_rows=3)  # many small onnxruntime calls: the same numbers
    three = ev.pixel_flipping(small, x[:2], y[:2], a[:2], features_in_step=128)
    big = ev.pixel_flipping(ex, x[:2], y[:2], a[:2], features_in_step=128)
    np.testing.assert_allclose(three.curve, big.curve, rtol=1e-6)
    assert small.calls >= 2 * 3
    r1 = ev.road(ex, x[:1], y[:1], a[:1], percentages=[10, 50], seed=2)
    r2 = ev.road(ex, x[:1], y[:1], a[:1], percentages=[10, 50], seed=2)
    np.testing.assert_array_equal(r1.curve, r2.curve)


def test_insertion_deletion_and_completeness(digits):
    ex, x, y, a = digits
    deletion = ev.insertion_deletion(ex, x[:3], y[:3], a[:3], mode="deletion", step=0.05)
    insertion = ev.insertion_deletion(ex, x[:3], y[:3], a[:3], mode="insertion", step=0.05)
    assert deletion.steps[0] == 0 and deletion.steps[-1] == 1 and deletion.curve.shape == (3, 22)  # 51 pixels a step
    np.testing.assert_allclose(insertion.curve[:, -1], deletion.curve[:, 0], rtol=1e-6)  # all back: x itself
    assert np.all(deletion.values < insertion.values)
    c = ev.completeness(ex, x, y, a)  # epsilon_plus keeps most of the logit
    assert np.all((c.values > 0.5) & (c.values < 1.2))
    g = ex.explain(x[:2], method="integrated_gradients", steps=64, target=y[:2])
    ig = ev.completeness(ex, x[:2], y[:2], g.relevance, baseline=0.0)
    np.testing.assert_allclose(ig.values, 1.0, atol=0.05)


def test_road_imputation_reproduces_a_linear_image():
    """The weighted 8-neighbour mean of a linear function is its value: an interior hole is filled exactly."""
    yy, xx = np.mgrid[0:12, 0:12]
    image = (0.3 * yy - 0.2 * xx + 1.0)[None, None]
    removed = np.zeros((1, 12, 12), dtype=bool)
    removed[0, 3:8, 4:10] = True
    filled = road_module.impute(image, removed)
    np.testing.assert_allclose(filled, image, atol=1e-9)


def test_similarities_and_complexity():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(3, 12, 12))
    np.testing.assert_allclose(ev.ssim(a, a), 1.0)
    np.testing.assert_allclose(ev.spearman(a, 2 * a + 1), 1.0)
    np.testing.assert_allclose(ev.spearman(a, -a), -1.0)
    one_hot = np.zeros((1, 100))
    one_hot[0, 7] = 5.0
    flat = np.ones((1, 100))
    assert ev.sparseness(one_hot).values[0] > 0.98 and ev.sparseness(flat).values[0] < 1e-6
    assert ev.complexity(one_hot).values[0] < 1e-6
    np.testing.assert_allclose(ev.complexity(flat).values[0], np.log(100))


def test_errors_are_onnxlrps_own(digits):
    ex, x, y, a = digits
    with pytest.raises(MethodError, match="order"):
        ev.pixel_flipping(ex, x[:1], y[:1], a[:1], order="sideways")
    with pytest.raises(MethodError, match="features_in_step"):
        ev.pixel_flipping(ex, x[:1], y[:1], a[:1], features_in_step=0)
    with pytest.raises(InputShapeError):
        ev.pixel_flipping(ex, x[:1], y[:1], a[:1, :, :5])
    with pytest.raises(TargetError):
        ev.pixel_flipping(ex, x[:1], [12], a[:1], features_in_step=512)
    with pytest.raises(MethodError, match="baseline"):
        ev.pixel_flipping(ex, x[:1], y[:1], a[:1], baseline="purple")
    with pytest.raises(MethodError, match="output"):
        ev.completeness(ex, x[:1], y[:1], a[:1], output="odds")
