"""The compiled backend's pooling emitters (``kernels/op_pool.py``: AveragePool's forward and its ``ConvTranspose``
VJP with the divisor map, MaxPool's ``Indices`` + ``ScatterElements`` VJP) on a tiny model built here, torch-free.

``x (N, 3, 7, 7)`` → Conv → MaxPool (3x3, stride 2, padded, column-major ``Indices`` asked for) → AveragePool (3x3,
padded, the padding not counted) → AveragePool (2x2, stride 2, ``ceil_mode``, the padding counted) → Flatten → Gemm.
The compiled gradient, LRP-ε and LRP-ε with z⁺ at the average pools, run by onnxruntime alone, equal the numpy
backend's. Written for the untested mutants of mutation testing (``tools/mutation_report.md``).
"""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from onnxlrp.lrp.rules import ZPlus
from tests.helpers.compare import assert_rel
from tests.helpers.compiled import compiled_and_numpy
from tests.helpers.onnx_builders import make_model

#: float32 maps, rel. L2 against the numpy backend; measured 7.3e-8 (gradient), 7.7e-8 (LRP-ε), 9.4e-8 (z⁺)
TOL = 1e-6


def pooling_model(seed=0):
    rng = np.random.default_rng(seed)
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("MaxPool", ["c"], ["m"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                         storage_order=1),  # column-major Indices: the VJP must not ask for them that way
        helper.make_node("AveragePool", ["m"], ["a"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("AveragePool", ["a"], ["p"], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1,
                         count_include_pad=1),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "d"], ["logits"], transB=1, beta=3.0),  # no C: beta is ignored
    ]
    inits = {"w": rng.standard_normal((5, 3, 3, 3)).astype(np.float32),
             "b": rng.standard_normal(5).astype(np.float32),
             "d": rng.standard_normal((4, 5 * 2 * 2)).astype(np.float32)}
    return make_model(nodes, [("x", ["N", 3, 7, 7])], [("logits", ["N", 4])], inits)


@pytest.mark.parametrize("method, rules", [("gradient", None), ("epsilon", None),
                                           ("epsilon", {"AveragePool": ZPlus()})],
                         ids=["gradient", "epsilon", "zplus_at_the_average_pools"])
def test_compiled_pooling_equals_the_numpy_backend(method, rules):
    """z⁺ at the average pools recomputes their forward on ``x⁺`` (the emitted forward); ε uses the kept output."""
    model = pooling_model()
    x = np.random.default_rng(1).standard_normal((2, 3, 7, 7)).astype(np.float32)
    got, expected = compiled_and_numpy(model, method, x, np.array([1, 3], np.int64), rules)
    assert np.abs(expected).sum() > 0
    assert_rel(got, expected, TOL, f"pooling {method}{' z+' if rules else ''}")
