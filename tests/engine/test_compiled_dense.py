"""The compiled backend's dense emitters (``kernels/op_dense.py``: Gemm with transA/transB/alpha/beta, MatMul with a
constant on either side or a batched constant, the fused MatMul + Add) on a tiny model built here, torch-free.

``x (N, 4, 6)`` → MatMul W₁ (6, 5) + b₁ (fused into ``onnxlrp::Dense``; the VJP flattens the token axis into one
Gemm) → Relu → MatMul by a batched W₂ (1, 4, 4) on the left → Unsqueeze (N, 1, 4, 5) → MatMul by a batched W₃
(2, 5, 3), which broadcasts x (its VJP sums over that axis) → Reshape (N, 24) → MatMul W₄ (24, 6) → Relu → Gemm
(W₆, b₆, beta=2) → Relu → Transpose → Gemm (transA=1, transB=0, alpha=2, beta=0.5, bias). The compiled gradient,
LRP-ε (the kept outputs) and γ/z⁺ (each layer's forward emitted again under modified parameters, biases included),
run by onnxruntime alone, equal the numpy backend's. A second model (MatMul → ``com.microsoft`` BiasGelu → Gemm)
has a canonizer-made Dense whose output is no tensor of the model, so its forward is emitted. Written for the
untested mutants of mutation testing (``tools/mutation_report.md``).
"""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from onnxlrp import Explainer
from onnxlrp.lrp.rules import Gamma, ZPlus
from tests.helpers.compare import assert_rel
from tests.helpers.compiled import compiled_and_numpy
from tests.helpers.onnx_builders import make_model

#: float32 maps, rel. L2 against the numpy backend; measured 0 for all three; 1e-7, about one float32 rounding, leaves
#: room for a BLAS that sums in another order
TOL = 1e-7

#: rules that recompute each dense layer's forward with modified parameters: γ (its z with the bias, and the bias
#: raised) at the Gemms and the fused Dense, z⁺ at the MatMuls
RECOMPUTING = {"Gemm": Gamma(gamma=0.25), "Dense": Gamma(gamma=0.25), "MatMul": ZPlus()}


def dense_model(seed=0):
    rng = np.random.default_rng(seed)
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["m1"]), helper.make_node("Add", ["m1", "b1"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["r1"]),
        helper.make_node("MatMul", ["w2", "r1"], ["h2"]),
        helper.make_node("Unsqueeze", ["h2", "one"], ["u2"]),
        helper.make_node("MatMul", ["u2", "w3"], ["h3"]),  # (N, 1, 4, 5) @ (2, 5, 3): x broadcast against W
        helper.make_node("Reshape", ["h3", "flat"], ["f"]),
        helper.make_node("MatMul", ["f", "w4"], ["h4"]),
        helper.make_node("Relu", ["h4"], ["r4"]),
        helper.make_node("Gemm", ["r4", "w6", "b6"], ["h6"], beta=2.0),
        helper.make_node("Relu", ["h6"], ["r6"]),
        helper.make_node("Transpose", ["r6"], ["t"], perm=[1, 0]),
        helper.make_node("Gemm", ["t", "w5", "b5"], ["logits"], transA=1, alpha=2.0, beta=0.5),
    ]
    f32 = lambda *shape: rng.standard_normal(shape).astype(np.float32)  # noqa: E731
    inits = {"w1": f32(6, 5), "b1": f32(5), "w2": f32(1, 4, 4), "w3": f32(2, 5, 3), "one": np.array([1], np.int64),
             "flat": np.array([0, -1], np.int64), "w4": f32(24, 6), "w5": f32(6, 3), "b5": f32(3), "w6": f32(6, 6),
             "b6": f32(6)}
    return make_model(nodes, [("x", ["N", 4, 6])], [("logits", ["N", 3])], inits)


@pytest.mark.parametrize("method, rules", [("gradient", None), ("epsilon", None), ("epsilon", RECOMPUTING)],
                         ids=["gradient", "epsilon", "gamma_and_zplus"])
def test_compiled_dense_layers_equal_the_numpy_backend(method, rules):
    model = dense_model()
    assert {n.op_type for n in Explainer(model).session.path.nodes} >= {"Dense", "MatMul", "Gemm"}
    x = np.random.default_rng(1).standard_normal((3, 4, 6)).astype(np.float32)
    got, expected = compiled_and_numpy(model, method, x, np.array([0, 2, 1], np.int64), rules)
    assert np.abs(expected).sum() > 0
    assert_rel(got, expected, TOL, f"dense {method}{' γ, z+' if rules else ''}")


@pytest.mark.parametrize("method", ["gradient", "epsilon"])
def test_a_dense_layer_the_canonizer_made_inside_a_fused_op_is_emitted_forward(method):
    """MatMul → ``com.microsoft`` BiasGelu (decomposed into Add → Gelu; the MatMul + Add fused into a Dense whose output
    ``…::biased`` is not a tensor of the model, so the compiler emits the Dense's forward for the Gelu to read) → Gemm.
    Measured rel. L2 against the numpy backend: 8.6e-8 (gradient), 1.7e-7 (ε), the float32 Gelu of each backend."""
    rng = np.random.default_rng(3)
    f32 = lambda *shape: rng.standard_normal(shape).astype(np.float32)  # noqa: E731
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["m"]),
             helper.make_node("BiasGelu", ["m", "b1"], ["h"], domain="com.microsoft", name="g"),
             helper.make_node("Gemm", ["h", "w2", "b2"], ["logits"])]
    model = make_model(nodes, [("x", ["N", 6])], [("logits", ["N", 3])],
                       {"w1": f32(6, 5), "b1": f32(5), "w2": f32(5, 3), "b2": f32(3)},
                       extra_opsets=[("com.microsoft", 1)])
    assert [(n.op_type, n.outputs[0]) for n in Explainer(model).session.path.nodes] == [
        ("Dense", "g::biased"), ("Gelu", "h"), ("Gemm", "logits")]
    got, expected = compiled_and_numpy(model, method, f32(3, 6), np.array([0, 2, 1], np.int64))
    assert np.abs(expected).sum() > 0
    assert_rel(got, expected, 2e-6, f"BiasGelu {method}")
