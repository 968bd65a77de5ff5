"""Whole-network invariants on small float64 models (ALGORITHMS.md section 7)."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import helper

import onnxlrp
from tests.helpers.compare import assert_close, assert_rel
from tests.helpers.onnx_builders import make_model, relu_cnn, residual_net


def data(shape, seed=0, positive=False):
    x = np.random.default_rng(seed).normal(size=shape).astype(np.float32)
    return np.abs(x) if positive else x


def numerical_gradient(model, x, target, h=1e-3):
    """Central finite differences of the target logit through onnxruntime (an oracle independent of the kernels).
    float32 ORT: use a moderately large step on a piecewise-linear net (exact away from kinks)."""
    session = ort.InferenceSession(model.SerializeToString())
    flat = x.reshape(-1).astype(np.float64)
    grad = np.zeros_like(flat)
    batch = np.stack([flat + h * e for e in np.eye(flat.size)] + [flat - h * e for e in np.eye(flat.size)])
    out = session.run(None, {"x": batch.reshape((-1,) + x.shape[1:]).astype(np.float32)})[0][:, target]
    grad = (out[:flat.size].astype(np.float64) - out[flat.size:]) / (2 * h)
    return grad.reshape(x.shape)


@pytest.mark.parametrize("build", [relu_cnn, residual_net], ids=["cnn", "residual"])
def test_lrp0_equals_gradient_times_input(build):
    model = build(bias=True)
    ex = onnxlrp.Explainer(model, dtype="float64")
    x = data((2,) + tuple(ex.input_shape[1:]), seed=1)
    lrp = ex.explain(x, method="lrp0", target=[0, 1])
    gxi = ex.explain(x, method="input_x_gradient", target=[0, 1])
    assert_close(lrp.relevance, gxi.relevance, rtol=5e-14, atol=5e-17)


def test_gradient_matches_finite_differences_through_onnxruntime():
    model = relu_cnn(bias=True)
    x = data((1, 2, 8, 8), seed=3)
    res = onnxlrp.Explainer(model, dtype="float64").explain(x, method="gradient", target=2)
    assert_close(res.relevance, numerical_gradient(model, x, 2), rtol=2e-2, atol=2e-3)


@pytest.mark.parametrize("pool", ["MaxPool", "AveragePool"])
@pytest.mark.parametrize("method", ["lrp0", "epsilon_plus", "epsilon_alpha2_beta1", "zplus", "epsilon_plus_flat"])
def test_conservation_on_bias_free_relu_nets(method, pool):
    ex = onnxlrp.Explainer(relu_cnn(bias=False, pool=pool), dtype="float64")
    x = data((3, 2, 8, 8), seed=2, positive=method.endswith("flat") is False and method != "lrp0")
    params = {"epsilon": 1e-12} if method.startswith("epsilon") else {}
    res = ex.explain(x, method=method, **params)
    logits = res.output[np.arange(3), res.target]
    assert_close(res.relevance.reshape(3, -1).sum(axis=1), logits, rtol=1e-5)


def test_conservation_through_residual_add():
    ex = onnxlrp.Explainer(residual_net(bias=False), dtype="float64")
    x = data((2, 3, 6, 6), seed=4)
    res = ex.explain(x, method="lrp0", keep=["a", "c3", "s"])
    kept = res.intermediate
    assert_close(kept["a"].sum() - res.relevance.sum(), 0, atol=4e-15)
    assert_close(res.relevance.reshape(2, -1).sum(1), res.output[np.arange(2), res.target], rtol=8e-14)
    assert "s" in kept and "c3" in kept


def test_one_hot_seed_scales_by_the_logit():
    ex = onnxlrp.Explainer(relu_cnn(bias=False), dtype="float64")
    x = data((2, 2, 8, 8), seed=5)
    logit = ex.explain(x, method="epsilon_plus")
    one_hot = ex.explain(x, method="epsilon_plus", relevance_init="one_hot")
    scale = logit.output[np.arange(2), logit.target].reshape(2, 1, 1, 1)
    assert_close(logit.relevance, one_hot.relevance * scale, rtol=9e-13)


def test_zplus_maps_are_non_negative_for_non_negative_inputs():
    ex = onnxlrp.Explainer(relu_cnn(bias=True), dtype="float64")
    x = data((3, 2, 8, 8), seed=6, positive=True)
    res = ex.explain(x, method="alpha_beta", target=[0, 1, 2], relevance_init="one_hot")  # alpha=1, beta=0
    assert (res.relevance >= -1e-12).all() and res.relevance.sum() > 0
    res = ex.explain(x, method="zplus", target=[0, 1, 2], relevance_init="one_hot")
    assert (res.relevance >= -1e-12).all()


def test_fan_out_sums_contributions():
    """y = W(x) + W(x) read through Add(x, x): the multi-edge keeps both contributions."""
    w = np.array([[1.0, -2.0], [0.5, 1.0]], np.float32)
    model = make_model([helper.make_node("Add", ["x", "x"], ["d"]), helper.make_node("Relu", ["d"], ["r"]),
                        helper.make_node("Gemm", ["r", "w"], ["y"], transB=1)], [("x", ["N", 2])], [("y", ["N", 2])],
                       {"w": w})
    ex = onnxlrp.Explainer(model, dtype="float64")
    x = np.array([[1.0, 0.5]], np.float32)
    grad = ex.explain(x, method="gradient", target=0).relevance
    assert_close(grad, [[2.0, -4.0]], rtol=1e-14)
    res = ex.explain(x, method="lrp0", target=0)
    assert_close(res.relevance.sum(), res.output[0, 0], rtol=1e-14, atol=1e-16)


def test_float64_forward_matches_onnxruntime():
    model = residual_net(bias=True)
    x = data((2, 3, 6, 6), seed=7)
    ref = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    out = onnxlrp.Explainer(model, dtype="float64").explain(x, method="gradient").output
    assert_close(out, ref, rtol=2e-6, atol=2e-6)


def test_float32_and_float64_agree():
    model = relu_cnn(bias=True)
    x = data((2, 2, 8, 8), seed=8)
    a = onnxlrp.Explainer(model).explain(x, method="epsilon_plus_flat", target=1).relevance
    b = onnxlrp.Explainer(model, dtype="float64").explain(x, method="epsilon_plus_flat", target=1).relevance
    assert a.dtype == np.float32 and b.dtype == np.float64
    assert_rel(a, b, 3e-6)


def test_integrated_gradients_completeness():
    """Sum of IG ~ f(x) - f(baseline) on a smooth path with many steps."""
    ex = onnxlrp.Explainer(relu_cnn(bias=True), dtype="float64")
    x = data((1, 2, 8, 8), seed=9)
    res = ex.explain(x, method="integrated_gradients", target=1, steps=200, integration="riemann_trapezoid")
    base = ex.explain(np.zeros_like(x), method="gradient", target=1).output[0, 1]
    assert_close(res.relevance.sum(), res.output[0, 1] - base, rtol=1e-2, atol=1e-2)


def test_smoothgrad_without_noise_is_the_gradient():
    ex = onnxlrp.Explainer(relu_cnn(bias=True), dtype="float64")
    x = data((2, 2, 8, 8), seed=10)
    sg = ex.explain(x, method="smoothgrad", noise_level=0.0, samples=3, random_state=0)
    g = ex.explain(x, method="gradient")
    assert_close(sg.relevance, g.relevance, rtol=7e-15)


def test_rule_overrides_by_op_type_and_name():
    ex = onnxlrp.Explainer(relu_cnn(bias=True))
    rules = dict((name, rule) for name, _, rule in ex.rules_for("epsilon_plus", rules={"Gemm": ("epsilon", {
        "epsilon": 0.5}), "Conv_0": "flat"}))
    assert rules["Gemm_7"] == "Epsilon(epsilon=0.5, zero_params=())"
    assert rules["Conv_0"].startswith("Flat(")
    assert rules["Conv_3"].startswith("ZPlus(")
    assert rules["Relu_1"] == "Pass()" and rules["MaxPool_2"] == "Gradient()"


def test_first_layer_rules_follow_the_graph():
    ex = onnxlrp.Explainer(relu_cnn(bias=True))
    rules = {name: rule for name, _, rule in ex.rules_for("epsilon_gamma_box", low=-3.0, high=3.0)}
    assert rules["Conv_0"].startswith("ZBox(") and rules["Conv_3"].startswith("Gamma(")
    assert rules["Gemm_7"].startswith("Epsilon(") and rules["GlobalAveragePool_5"].startswith("Norm(")
    mlp = make_model([helper.make_node("Gemm", ["x", "w"], ["h"], transB=1), helper.make_node("Relu", ["h"], ["a"]),
                      helper.make_node("Gemm", ["a", "w2"], ["y"], transB=1)], [("x", ["N", 3])], [("y", ["N", 2])],
                     {"w": np.ones((4, 3), np.float32), "w2": np.ones((2, 4), np.float32)})
    rules = {n: r for n, _, r in onnxlrp.Explainer(mlp).rules_for("epsilon_gamma_box")}
    assert rules["Gemm_0"].startswith("Epsilon(")  # a dense first layer gets no box rule (zennit)
    rules = {n: r for n, _, r in onnxlrp.Explainer(mlp).rules_for("epsilon_plus_flat")}
    assert rules["Gemm_0"].startswith("Flat(") and rules["Gemm_2"].startswith("Epsilon(")
