"""Rules against their formulas (docs/formulas.md §A.1, the rules' docstrings) on the branches the golden vectors do
not reach: α = 0 or β = 0, ``zero_params``, box bounds taken from the input, a per-sample ε over a batch, an exactly
zero output under γ, the routing rules of ReLU, and the refusals. Written to kill the survivors of ``make mutate`` on
``onnxlrp/lrp/rules.py`` (tools/mutation_report.md). Every expected value is computed here in float64 from the
formula, and compared at rtol 1e-13 (measured: 0 on every case here; the margin leaves room for a BLAS that sums in
another order)."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from onnxlrp.engine.graph import Graph
from onnxlrp.engine.kernel import Call
from onnxlrp.engine.registry import resolve
from onnxlrp.errors import MethodError, RuleNotApplicableError
from onnxlrp.lrp.rules import (
    AlphaBeta,
    DeconvNet,
    Epsilon,
    Flat,
    Gamma,
    GuidedBackprop,
    StdxEpsilon,
    WSquare,
    ZBox,
    ZPlus,
)
from tests.helpers.compare import assert_close
from tests.helpers.onnx_builders import make_model
from tests.lrp.test_rules import R_OUT, B, W, X

RTOL = 1e-13
X2 = np.array([[1.0, -0.5, 2.0, 0.0], [-1.5, 0.25, 0.5, 3.0]])     # two samples, different ranges and spreads
R2 = np.array([[1.0, -0.5, 2.0], [0.5, 1.5, -1.0]])


def gemm_call(x, w=W, b=B):
    """``y = x Wᵀ + b`` (``b=None``: a Gemm without C) in float64."""
    inputs = ["x", "w"] + ([] if b is None else ["b"])
    consts = {"w": w.astype(np.float32)} | ({} if b is None else {"b": b.astype(np.float32)})
    model = make_model([helper.make_node("Gemm", inputs, ["y"], transB=1)], [("x", list(x.shape))],
                       [("y", [x.shape[0], w.shape[0]])], consts)
    node = Graph(model).nodes[0]
    values = (np.asarray(x, float), np.asarray(w, float)) + (() if b is None else (np.asarray(b, float),))
    return resolve(node), Call(node, values, (), (True,) + (False,) * (len(values) - 1), np)


def stab(z, eps):
    """``z + ε·sgn0(z)``, ``sgn0(0) = +1``."""
    return z + eps * np.where(z >= 0, 1.0, -1.0)


def pos(a):
    return np.maximum(a, 0)


def neg(a):
    return np.minimum(a, 0)


# ------------------------------------------------------------------------------------------------- LRP-αβ


def alpha_beta_formula(x, r, alpha, beta, eps=1e-6, w=W, b=B):
    """``α[x⁺(W⁺ᵀs^α) + x⁻(W⁻ᵀs^α)] − β[x⁺(W⁻ᵀs^β) + x⁻(W⁺ᵀs^β)]``, ``s^α = R/(W⁺x⁺ + W⁻x⁻ + b⁺)``,
    ``s^β = R/(W⁻x⁺ + W⁺x⁻ + b⁻)``."""
    s_a = r / stab(pos(x) @ pos(w).T + neg(x) @ neg(w).T + pos(b), eps)
    s_b = r / stab(pos(x) @ neg(w).T + neg(x) @ pos(w).T + neg(b), eps)
    r_a = pos(x) * (s_a @ pos(w)) + neg(x) * (s_a @ neg(w))
    r_b = pos(x) * (s_b @ neg(w)) + neg(x) * (s_b @ pos(w))
    return alpha * r_a - beta * r_b


@pytest.mark.parametrize("alpha,beta", [(0, 1), (0, 2), (1, 0), (2, 0), (3, 0), (2, 1), (1.5, 0.5)])
def test_alpha_beta_matches_its_formula_on_every_branch(alpha, beta):
    """α = 0 (the β-only map), β = 0 with α = 1, 2 or 3 (α scales the map), and both terms."""
    kernel, call = gemm_call(X2)
    got = AlphaBeta(alpha, beta).propagate(kernel, call, (R2,))[0]
    assert_close(got, alpha_beta_formula(X2, R2, alpha, beta), rtol=RTOL, atol=1e-15)


@pytest.mark.parametrize("alpha,beta", [(-1, 1), (1, -1), (-0.5, 0)])
def test_alpha_beta_refuses_one_negative_parameter_by_its_message(alpha, beta):
    with pytest.raises(ValueError) as info:
        AlphaBeta(alpha, beta)
    assert str(info.value) == f"alpha and beta must be non-negative; got alpha={alpha}, beta={beta}"


# ------------------------------------------------------------------------------------------------- zero_params


@pytest.mark.parametrize("rule_type", [Epsilon, StdxEpsilon, AlphaBeta, ZPlus, Gamma, ZBox, WSquare, Flat],
                         ids=lambda t: t.__name__)
def test_zero_params_bias_equals_the_layer_with_a_zero_bias(rule_type):
    """``zero_params=('bias',)`` sets the bias to zero in every term the rule computes, the β and γ terms included:
    the map equals the same rule's on the layer with ``b = 0``, and differs from the map with the bias (ZBox and Flat
    never count the bias, so theirs is the same)."""
    kernel, call = gemm_call(X2)
    zero_kernel, zero_call = gemm_call(X2, b=np.zeros(3))
    got = rule_type(zero_params=("bias",)).propagate(kernel, call, (R2,))[0]
    expected = rule_type().propagate(zero_kernel, zero_call, (R2,))[0]
    assert_close(got, expected, rtol=RTOL, atol=1e-15)
    with_bias = rule_type().propagate(kernel, call, (R2,))[0]
    assert np.allclose(with_bias, expected, rtol=1e-9, atol=0) == (rule_type in (ZBox, Flat))


# ------------------------------------------------------------------------------------------------- LRP-γ


def test_gamma_passes_nothing_through_an_output_that_is_exactly_zero():
    """``s↑ = [z>0]·R/(W↑x⁺ + W↓x⁻)``, ``s↓ = [z<0]·R/(W↓x⁺ + W↑x⁻)`` on a Gemm without bias: the third output has
    ``z = 1 − 1 + 0 + 0 = 0`` exactly while both modified denominators are non-zero, so it passes no relevance."""
    w = np.vstack([W[:2], [1.0, 2.0, 0.0, 5.0]])
    gamma = 0.25
    kernel, call = gemm_call(X, w=w, b=None)
    z = X @ w.T
    assert z[0, 2] == 0
    up, down = w + gamma * pos(w), w + gamma * neg(w)
    s_up = (z > 0) * (R_OUT / stab(pos(X) @ up.T + neg(X) @ down.T, 1e-6))
    s_down = (z < 0) * (R_OUT / stab(pos(X) @ down.T + neg(X) @ up.T, 1e-6))
    expected = pos(X) * (s_up @ up + s_down @ down) + neg(X) * (s_up @ down + s_down @ up)
    got = Gamma(gamma).propagate(kernel, call, (R_OUT,))[0]
    assert_close(got, expected, rtol=RTOL, atol=1e-15)


# ------------------------------------------------------------------------------------------------- zᴮ


def zbox_formula(x, r, low, high, w=W, eps=1e-6):
    """``R = x(Wᵀs) − l(W⁺ᵀs) − h(W⁻ᵀs)``, ``s = R/(Wx − W⁺l − W⁻h)`` (bias not counted)."""
    s = r / stab(x @ w.T - low @ pos(w).T - high @ neg(w).T, eps)
    return x * (s @ w) - low * (s @ pos(w)) - high * (s @ neg(w))


def test_box_bounds_default_to_each_samples_minimum_and_maximum():
    kernel, call = gemm_call(X2)
    low = np.broadcast_to(X2.min(axis=1, keepdims=True), X2.shape)
    high = np.broadcast_to(X2.max(axis=1, keepdims=True), X2.shape)
    got = ZBox().propagate(kernel, call, (R2,))[0]
    assert_close(got, zbox_formula(X2, R2, low, high), rtol=RTOL, atol=1e-15)


@pytest.mark.parametrize("low,high", [(-1.0, 3.0), (-2.0, None), (None, 4.0), (np.array([[-1, -1, -2, -1.5]]), 3.5)])
def test_given_box_bounds_are_used_as_given(low, high):
    """A bound that is given is used, the other taken from the sample (``high = 3`` is not the samples' maximum)."""
    kernel, call = gemm_call(X2)
    lo = np.broadcast_to(X2.min(axis=1, keepdims=True) if low is None else low, X2.shape)
    hi = np.broadcast_to(X2.max(axis=1, keepdims=True) if high is None else high, X2.shape)
    got = ZBox(low, high).propagate(kernel, call, (R2,))[0]
    assert_close(got, zbox_formula(X2, R2, lo, hi), rtol=RTOL, atol=1e-15)


def test_a_high_bound_of_the_wrong_shape_is_refused_by_name():
    kernel, call = gemm_call(X)
    with pytest.raises(MethodError) as info:
        ZBox(-1.0, np.ones((2, 3))).propagate(kernel, call, (R_OUT,))
    assert str(info.value) == "high of shape (2, 3) cannot be broadcast to the shape (1, 4) of the input it applies to"


# ------------------------------------------------------------------------------------------------- StdxEpsilon


def test_stdx_epsilon_takes_each_samples_own_spread():
    """``ε_n = f·std(x_n)`` (population std over the sample's own entries), ``R = x(Wᵀ(R/(z + ε_n·sgn0 z)))``."""
    f = 0.5
    kernel, call = gemm_call(X2)
    eps = f * X2.std(axis=1, keepdims=True)
    assert eps[0, 0] != eps[1, 0]
    expected = X2 * ((R2 / stab(X2 @ W.T + B, eps)) @ W)
    assert_close(StdxEpsilon(f).propagate(kernel, call, (R2,))[0], expected, rtol=RTOL, atol=1e-15)


def test_stdx_epsilon_on_a_mean_that_drops_axes():
    """A ReduceMean over H, W with keepdims=0: ε_n (from the 4-D input) must meet the 2-D output per sample.
    ``R_in = x ⊙ s/(HW)`` with ``s = R/(z + ε_n·sgn0 z)``, ``z`` the channel means."""
    rng = np.random.default_rng(16)
    x = rng.normal(size=(2, 3, 2, 2)) * np.array([1.0, 4.0]).reshape(2, 1, 1, 1)
    model = make_model([helper.make_node("ReduceMean", ["x"], ["y"], axes=[2, 3], keepdims=0)],
                       [("x", [2, 3, 2, 2])], [("y", [2, 3])], opset=13)
    node = Graph(model).nodes[0]
    kernel, call = resolve(node), Call(node, (x,), (), (True,), np)
    r = rng.normal(size=(2, 3))
    eps = 0.25 * x.std(axis=(1, 2, 3)).reshape(2, 1)
    s = r / stab(x.mean(axis=(2, 3)), eps)
    expected = x * s[:, :, None, None] / 4
    assert_close(StdxEpsilon(0.25).propagate(kernel, call, (r,))[0], expected, rtol=RTOL, atol=1e-15)


def test_stdx_epsilon_on_a_constant_input_divides_no_zero():
    """std(x) = 0 gives ε = 0, and the first output has z = 0: its relevance is dropped without evaluating 1/0."""
    kernel, call = gemm_call(np.ones((1, 4)), b=np.array([-1.75, 0.0, 0.0]))
    with np.errstate(all="raise"):
        got = StdxEpsilon(0.25).propagate(kernel, call, (R_OUT,))[0]
    z = np.ones((1, 4)) @ W.T + np.array([-1.75, 0.0, 0.0])
    assert z[0, 0] == 0
    s = np.where(z == 0, 0.0, R_OUT / np.where(z == 0, 1.0, z))
    assert_close(got, np.ones((1, 4)) * (s @ W), rtol=RTOL, atol=1e-15)


# ------------------------------------------------------------------------------------------------- ReLU routings


def relu_call(x):
    model = make_model([helper.make_node("Relu", ["x"], ["y"])], [("x", list(x.shape))], [("y", list(x.shape))])
    node = Graph(model).nodes[0]
    return resolve(node), Call(node, (x,), (), (True,), np)


XR = np.array([[-1.0, 0.0, 2.0, 3.0, -2.0, 0.0, 1.0, 0.5, 4.0]])   # inputs and gradients in (0, 1] too
GR = np.array([[1.0, 2.0, -1.0, 3.0, 0.5, -4.0, 0.0, 2.0, 0.75]])


def test_guided_backprop_keeps_a_gradient_only_where_input_and_gradient_are_positive():
    kernel, call = relu_call(XR)
    (got,) = GuidedBackprop().propagate(kernel, call, (GR,))
    np.testing.assert_array_equal(got, np.where((XR > 0) & (GR > 0), GR, 0.0))


def test_deconvnet_keeps_the_positive_gradient_whatever_the_input():
    kernel, call = relu_call(XR)
    (got,) = DeconvNet().propagate(kernel, call, (GR,))
    np.testing.assert_array_equal(got, np.maximum(GR, 0.0))


def test_a_linear_rule_on_a_nonlinear_node_is_refused_by_its_message():
    kernel, call = relu_call(XR)
    node = call.node
    with pytest.raises(RuleNotApplicableError) as info:
        Epsilon().propagate(kernel, call, (GR,))
    assert str(info.value) == (f"rule {Epsilon().describe()} needs a linear op but node {node.name!r} (Relu) is not "
                               "linear in its inputs")
