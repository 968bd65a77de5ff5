"""Rules against hand-derived golden vectors (docs/formulas.md §A.1: one dense layer, float64) and their
defining properties (limits, independence of x, conservation)."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from onnxlrp.engine.graph import Graph
from onnxlrp.engine.kernel import Call
from onnxlrp.engine.registry import resolve
from onnxlrp.lrp.rules import AlphaBeta, Epsilon, Flat, Gamma, StdxEpsilon, WSquare, ZBox, ZPlus
from tests.helpers.compare import assert_close
from tests.helpers.onnx_builders import make_model

W = np.array([[0.5, -1, 0.25, 2], [-0.75, 0.5, 1, -0.5], [1.5, 0.25, -2, 0.75]])
B = np.array([0.1, -0.2, 0.05])
X = np.array([[1, -0.5, 2, 0]], dtype=float)
R_OUT = np.array([[1, -0.5, 2]], dtype=float)

GOLDEN = [
    (Epsilon(1e-6), [-0.383799, 0.565837, 2.169296, 0]),
    (Epsilon(0.25), [-0.434534, 0.477813, 2.149748, 0]),
    (ZPlus(), [2.247982, 0.312500, -0.187500, 0]),
    (AlphaBeta(2, 1), [4.808465, 0.668560, -2.314393, 0]),
    (Gamma(0.25), [-0.230928, 0.495309, 2.123925, 0]),
    (ZBox(-1, 2), [1.633387, 0.439516, -0.180000, 0.607097]),
    (WSquare(), [0.567509, 0.146604, 0.937144, 0.855650]),
    (Flat(), [0.625, 0.625, 0.625, 0.625]),
    (StdxEpsilon(0.1), [-0.409840, 0.527913, 2.173872, 0]),
]


def dense_call(x=X, w=W, b=B):
    model = make_model([helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1)], [("x", [1, 4])], [("y", [1, 3])],
                       {"w": w.astype(np.float32), "b": b.astype(np.float32)})
    node = Graph(model).nodes[0]
    return resolve(node), Call(node, (np.asarray(x, float), np.asarray(w, float), np.asarray(b, float)), (),
                               (True, False, False), np)


@pytest.mark.parametrize("rule,expected", GOLDEN, ids=lambda v: v.describe() if hasattr(v, "describe") else "")
def test_dense_golden_vectors(rule, expected):
    kernel, call = dense_call()
    r_in = rule.propagate(kernel, call, (R_OUT.astype(float),))[0]
    assert_close(r_in[0], expected, atol=5e-6)


def test_gamma_limits():
    """Gamma(0) equals Epsilon(stabilizer) where z != 0; Gamma(1e8) approaches z+ on outputs with z > 0."""
    kernel, call = dense_call()
    r = (R_OUT.astype(float),)
    assert_close(Gamma(0.0).propagate(kernel, call, r)[0], Epsilon(1e-6).propagate(kernel, call, r)[0],
                               rtol=1e-9)
    positive = (R_OUT * np.array([[1, 1, 0]]),)  # outputs 0, 1 have z > 0; output 2 has z < 0
    assert_close(Gamma(1e8).propagate(kernel, call, positive)[0],
                               ZPlus().propagate(kernel, call, positive)[0], atol=2e-6)


def test_flat_and_wsquare_do_not_depend_on_x():
    k1, c1 = dense_call()
    k2, c2 = dense_call(x=np.array([[3.0, 1.0, -2.0, 0.5]]))
    for rule in (Flat(), WSquare()):
        np.testing.assert_array_equal(rule.propagate(k1, c1, (R_OUT.astype(float),))[0],
                                      rule.propagate(k2, c2, (R_OUT.astype(float),))[0])


@pytest.mark.parametrize("rule", [Epsilon(1e-12), ZPlus(), AlphaBeta(2, 1), Gamma(0.5), ZBox(-1, 2), Flat(),
                                  WSquare(zero_params=("bias",))], ids=lambda r: type(r).__name__)
def test_bias_free_layer_conserves(rule):
    kernel, call = dense_call(b=np.zeros(3), x=np.array([[1.0, 0.5, 2.0, 0.25]]))
    r_in = rule.propagate(kernel, call, (R_OUT.astype(float),))[0]
    assert_close(r_in.sum(), R_OUT.sum(), rtol=1e-5, atol=1e-12)


def test_alpha_beta_rejects_bad_parameters():
    with pytest.raises(ValueError, match="cannot both be 0"):
        AlphaBeta(0, 0)
    with pytest.raises(ValueError, match="non-negative"):
        AlphaBeta(-1, -2)


def test_zero_params_drops_the_bias():
    kernel, call = dense_call()
    with_bias = Epsilon(0.0).propagate(kernel, call, (R_OUT.astype(float),))[0]
    no_bias = Epsilon(0.0, zero_params=("bias",)).propagate(kernel, call, (R_OUT.astype(float),))[0]
    assert_close(no_bias.sum(), R_OUT.sum(), rtol=2e-15, atol=2e-21)
    assert not np.allclose(with_bias, no_bias)


def test_stdx_epsilon_is_finite_for_a_constant_input():
    """std(x) = 0 gives eps = 0; an output with z = 0 then passes no relevance instead of NaN (ALGORITHMS 2.6)."""
    kernel, call = dense_call(x=np.array([[1.0, 1.0, 1.0, 1.0]]), b=np.array([-1.75, 0.0, 0.0]))
    r_in = StdxEpsilon(0.25).propagate(kernel, call, (R_OUT.astype(float),))[0]
    assert np.isfinite(r_in).all()
    expected = Epsilon(0.0).propagate(kernel, call, (R_OUT.astype(float),))[0]
    assert_close(r_in, expected)


def test_stabilizer_sign_of_zero_is_positive():
    """``z + ε·sgn0(z)`` with ``sgn0(0) = sgn0(−0.0) = +1`` (zennit), for a scalar and an array ε."""
    from onnxlrp.lrp.rules import stabilize
    z = np.array([-2.0, -0.0, 0.0, 3.0], dtype=np.float32)
    np.testing.assert_array_equal(stabilize(np, z, 0.5), [-2.5, 0.5, 0.5, 3.5])
    eps = np.array([[0.5], [1.0]])
    np.testing.assert_array_equal(stabilize(np, np.stack([z, z]), eps), [[-2.5, 0.5, 0.5, 3.5], [-3, 1, 1, 4]])
    assert stabilize(np, -0.0, 0.5) == 0.5


@pytest.mark.parametrize("rule", [Epsilon(1e-6), Epsilon(0.25), StdxEpsilon(0.1), Epsilon(0.0, ("bias",))],
                         ids=lambda r: r.describe())
def test_epsilon_rules_reuse_the_forward_value_only_when_it_is_theirs(rule):
    """The ε-rules take ``z`` from the forward pass (one GEMM saved) when their parameters are the layer's own, else
    recompute it: a deliberately wrong forward value shows which was used."""
    kernel, call = dense_call()
    r = R_OUT.astype(float)
    recomputed = rule.propagate(kernel, call, (r,))[0]
    (z,) = kernel.forward(call)
    given = Call(call.node, call.inputs, (z,), call.varying, np)
    assert_close(rule.propagate(kernel, given, (r,))[0], recomputed, rtol=1e-12)
    wrong = Call(call.node, call.inputs, (2 * z,), call.varying, np)
    changed = not np.allclose(rule.propagate(kernel, wrong, (r,))[0], recomputed)
    assert changed == (rule.zero_params == ())


# ----------------------------------------------------------------------- survivors of mutation testing (make mutate)
def test_stabilizer_keeps_the_sign_of_small_and_scalar_denominators():
    """``sgn0`` is taken from ``z`` itself: a negative scalar ``z`` and array entries in (−1, 0) get ``−ε`` (the
    stabiliser must never move a denominator towards zero)."""
    from onnxlrp.lrp.core import stabilize
    assert stabilize(np, -2.0, 0.5) == -2.5 and stabilize(np, 0.0, 0.5) == 0.5 and stabilize(np, 3.0, 0.5) == 3.5
    z = np.array([-0.75, -0.25, 0.25, 0.75])
    np.testing.assert_array_equal(stabilize(np, z, 0.5), [-1.25, -0.75, 0.75, 1.25])


@pytest.mark.parametrize("rule", [r for r, _ in GOLDEN] + [Epsilon(0.0)], ids=lambda r: r.describe())
def test_rules_keep_float32(rule):
    """In float32 mode every rule returns float32 (a parameter or an ε-free division must not promote to float64),
    and the golden values hold to float32 precision."""
    kernel, call = dense_call()
    call32 = Call(call.node, tuple(np.asarray(v, np.float32) for v in call.inputs), (), call.varying, np)
    r_in = rule.propagate(kernel, call32, (R_OUT.astype(np.float32),))[0]
    assert r_in.dtype == np.float32
    expected = rule.propagate(kernel, call, (R_OUT.astype(float),))[0]
    assert_close(r_in, expected, rtol=2e-6, atol=2e-6)                   # float32 rounding: measured <= 4e-7


def test_box_bounds_of_the_wrong_shape_are_refused_by_name():
    from onnxlrp.errors import MethodError
    kernel, call = dense_call()
    with pytest.raises(MethodError) as info:
        ZBox(np.zeros(3), 2.0).propagate(kernel, call, (R_OUT.astype(float),))
    assert str(info.value) == "low of shape (3,) cannot be broadcast to the shape (1, 4) of the input it applies to"


@pytest.mark.parametrize("rule", [ZPlus(), AlphaBeta(2, 1)], ids=lambda r: r.describe())
def test_alpha_beta_keeps_the_bias_when_the_inputs_of_one_sign_are_all_zero(rule):
    """With every input negative, ``x⁺ = 0`` but the α denominator still holds ``b⁺`` (docs/formulas.md §A.1):
    ``s^α = R / (W⁻x⁻ + b⁺)``, ``s^β = R / (W⁺x⁻ + b⁻)``, ``R_i = x_i(α Σ_j w⁻_ij s^α_j − β Σ_j w⁺_ij s^β_j)``."""
    x = np.array([[-1.0, -0.5, -2.0, -0.25]])
    kernel, call = dense_call(x=x)
    r = R_OUT.astype(float)
    wp, wn = np.maximum(W, 0), np.minimum(W, 0)
    s_a = r / (x @ wn.T + np.maximum(B, 0) + 1e-6 * np.sign(x @ wn.T + np.maximum(B, 0)))
    z_b = x @ wp.T + np.minimum(B, 0)
    s_b = r / (z_b + 1e-6 * np.where(z_b >= 0, 1, -1))
    expected = x * (rule.alpha * (s_a @ wn) - rule.beta * (s_b @ wp))
    assert_close(rule.propagate(kernel, call, (r,))[0], expected, rtol=1e-14, atol=1e-15)


def test_lrp0_division_drops_zero_denominators_without_a_floating_point_warning():
    """``ε = 0``: a zero denominator gives 0, and no division by zero is ever evaluated (the CLI reports numpy's
    floating-point warnings to the user, so a silent inf/NaN that is masked afterwards would still surface)."""
    from onnxlrp.lrp.core import divide
    r, z = np.array([1.0, -2.0, 3.0]), np.array([0.5, 0.0, -0.0])
    with np.errstate(all="raise"):
        out = divide(np, r, z, 0)
    np.testing.assert_array_equal(out, [2.0, 0.0, 0.0])
    assert out.dtype == r.dtype
