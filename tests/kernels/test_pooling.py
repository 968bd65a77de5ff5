"""Pooling kernels (``kernels/op_pool.py``) where onnxruntime cannot be the reference: AveragePool-1 (opset < 7,
which onnxruntime no longer runs), MaxPool over integers, MaxPool with its optional ``Indices`` output. Each is
compared with a case that ``tests/kernels/test_kernels.py`` checks against onnxruntime. Written for the survivors of
mutation testing (``tools/mutation_report.md``)."""
from __future__ import annotations

import numpy as np
from onnx import helper

from onnxlrp.engine.graph import Graph
from onnxlrp.engine.kernel import Call
from onnxlrp.engine.registry import resolve
from tests.helpers.compare import assert_close
from tests.helpers.onnx_builders import make_model


def _node(op, attrs, opset=17, outputs=("y",), shape=("N", 2, 5, 5)):
    """The one node of a model that is only parsed (not checked: onnxruntime does not load opset 6)."""
    nodes = [helper.make_node(op, ["x"], list(outputs), **attrs)]
    model = make_model(nodes, [("x", list(shape))], [(o, ["N"]) for o in outputs], opset=opset)
    return Graph(model, check=False).nodes[0]


def _forward(node, x):
    return resolve(node).forward(Call(node=node, inputs=(x,), outputs=(), varying=(True,), xp=np))


def test_average_pool_1_never_counts_the_padding():
    """AveragePool-1 has no ``count_include_pad``: it equals AveragePool-7 with ``count_include_pad=0``, and a
    window of ones averages to one at the border too."""
    attrs = {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}
    old, new = _node("AveragePool", attrs, opset=6), _node("AveragePool", {**attrs, "count_include_pad": 0})
    assert old.since == 1 and "count_include_pad" not in old.attrs
    x = np.random.default_rng(3).normal(size=(1, 2, 5, 5)).astype(np.float32)
    (got,), (expected,) = _forward(old, x), _forward(new, x)
    assert_close(got, expected, rtol=0, atol=0)
    (ones,) = _forward(old, np.ones((1, 2, 5, 5), np.float32))
    assert ones.shape == (1, 2, 3, 3) and np.array_equal(ones, np.ones((1, 2, 3, 3), np.float32))
    g = np.ones((1, 2, 3, 3))
    (dx,) = resolve(old).vjp(Call(node=old, inputs=(x.astype(np.float64),), outputs=(), varying=(True,), xp=np),
                             (g,))
    # each input's gradient: Σ over the windows holding it of 1 / (that window's unpadded size); windows start at
    # −1, 1, 3 along each axis
    assert_close(dx[0, 0, 0, 0], 1 / 4, rtol=1e-15, atol=0)                 # the corner window: 2x2 real entries
    assert_close(dx[0, 0, 1, 1], 1 / 4 + 2 / 6 + 1 / 9, rtol=1e-15, atol=0)  # corner, two 2x3 edges, one full
    assert_close(dx[0, 0, 2, 2], 1 / 9, rtol=1e-15, atol=0)                 # one full 3x3 window


def test_max_pool_over_integers_never_picks_the_padding():
    """int8 MaxPool (opset 12 on): the padding is the type's minimum, so all-negative border windows keep their own
    maximum, as the float kernel (checked against onnxruntime) does."""
    node = _node("MaxPool", {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}, opset=12, shape=("N", 2, 4, 4))
    x = -np.arange(1, 33, dtype=np.int8).reshape(1, 2, 4, 4)
    (got,) = _forward(node, x)
    (expected,) = _forward(node, x.astype(np.float32))
    assert got.dtype == np.int8 and got.shape == (1, 2, 4, 4)
    assert np.array_equal(got.astype(np.float32), expected) and got.max() == -1 and got[0, 1, 3, 3] == -27
    (unsigned,) = _forward(node, (x + 40).astype(np.uint8))
    assert unsigned.dtype == np.uint8 and np.array_equal(unsigned.astype(np.float32), expected + 40)


def test_max_pool_with_an_indices_output_returns_one_value_per_output():
    node = _node("MaxPool", {"kernel_shape": [2, 2], "strides": [2, 2]}, outputs=("y", "indices"),
                 shape=("N", 1, 4, 4))
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    out = _forward(node, x)
    assert len(out) == 2 and out[1] is None
    assert np.array_equal(out[0], np.array([[[[5, 7], [13, 15]]]], np.float32))
