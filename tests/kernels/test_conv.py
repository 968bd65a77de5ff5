"""``kernels/op_conv.py`` against a float64 reference written here, torch-free.

The reference convolution pads ``x`` explicitly, takes every receptive field with numpy's ``sliding_window_view``
(windows of the dilated span ``d(k−1)+1``, every ``stride``-th window, every ``d``-th tap) and contracts it with the
weight per group: ``z[n, g·Mg+m, o] = Σ_{c,t} W[g·Mg+m, c, t] · xpad[n, g·Cg+c, o·s + t·d] + b``. Its VJP is the
transpose of the operator's dense matrix, built by applying the reference to every unit input. Each geometry takes a
different path of the kernel (flat shift, depthwise, im2col; stride-1 VJP as a flipped convolution or, when the
complementary padding ``d(k−1) − p`` is negative, by col2im), so every path is checked against the same formula.
Also: the batch chunks, the weight-varying refusal, the attributes a re-emitted Conv keeps, and the compiled
emitters run by onnxruntime against the numpy backend. Written for mutation testing (``tools/mutation_report.md``).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view
from onnx import helper

from onnxlrp.engine.graph import Graph
from onnxlrp.kernels import op_conv
from onnxlrp.lrp.rules import ZPlus
from tests.helpers.compare import assert_close, assert_rel
from tests.helpers.compiled import compiled_and_numpy
from tests.helpers.onnx_builders import make_model

#: float64 kernel against the float64 reference, as rtol and atol; measured at most 3.6e-15 (entries up to ~10)
TOL = 1e-14


def _same_pads(spatial, kernel, strides, dilations, auto_pad):
    """ONNX SAME_UPPER / SAME_LOWER: output ⌈S/s⌉, total padding split with the odd one at the end / the start."""
    begin, end = [], []
    for s, k, st, d in zip(spatial, kernel, strides, dilations):
        total = max(0, (math.ceil(s / st) - 1) * st + d * (k - 1) + 1 - s)
        low, high = total // 2, total - total // 2
        begin.append(low if auto_pad == "SAME_UPPER" else high)
        end.append(high if auto_pad == "SAME_UPPER" else low)
    return begin + end


def reference_conv(x, w, b, attrs):
    """Direct float64 ONNX Conv (see the module docstring)."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    nd, group = x.ndim - 2, attrs.get("group", 1)
    kernel = w.shape[2:]
    strides = attrs.get("strides", [1] * nd)
    dilations = attrs.get("dilations", [1] * nd)
    auto_pad = attrs.get("auto_pad", "NOTSET")
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        pads = _same_pads(x.shape[2:], kernel, strides, dilations, auto_pad)
    elif auto_pad == "VALID":
        pads = [0] * (2 * nd)
    else:
        pads = attrs.get("pads", [0] * (2 * nd))
    xpad = np.pad(x, [(0, 0), (0, 0)] + list(zip(pads[:nd], pads[nd:])))
    spans = [d * (k - 1) + 1 for k, d in zip(kernel, dilations)]
    windows = sliding_window_view(xpad, spans, axis=tuple(range(2, 2 + nd)))           # (N, C, *O_all, *span)
    windows = windows[(slice(None), slice(None)) + tuple(slice(None, None, s) for s in strides)
                      + tuple(slice(None, None, d) for d in dilations)]                 # (N, C, *O, *K)
    n, c = x.shape[:2]
    m, cg = w.shape[:2]
    out = windows.shape[2:2 + nd]
    windows = windows.reshape((n, group, cg, math.prod(out), math.prod(kernel)))
    weights = w.reshape(group, m // group, cg, math.prod(kernel))
    z = np.einsum("ngcpt,gmct->ngmp", windows, weights).reshape((n, m) + out)
    if b is not None:
        z = z + np.asarray(b, np.float64).reshape((1, m) + (1,) * nd)
    return z


def reference_vjp(g, w, x_shape, attrs):
    """``Aᵀ g`` with ``A`` the dense matrix of the (bias-free) reference convolution, column ``j`` = ``A e_j``."""
    per_sample = x_shape[1:]
    size = math.prod(per_sample)
    columns = reference_conv(np.eye(size).reshape((size,) + per_sample), w, None, attrs)  # (size, M, *O)
    matrix = columns.reshape(size, -1)                                                 # A transposed
    return (g.reshape(g.shape[0], -1) @ matrix.T).reshape(x_shape)


#: (x shape, weight shape, bias?, attrs); the comment names the forward path, then the VJP path
GEOMETRIES = {
    "flat_shift_2d": ((2, 3, 7, 6), (4, 3, 3, 3), True, {"pads": [1, 0, 2, 1]}),          # flat shift; flipped conv
    "flat_shift_dilated": ((2, 2, 9, 8), (3, 2, 3, 2), False, {"dilations": [2, 3], "pads": [2, 1, 1, 3]}),
    "flat_shift_1d": ((3, 3, 10), (4, 3, 5), True, {"pads": [2, 1]}),
    "flat_shift_3d": ((1, 2, 4, 5, 4), (3, 2, 2, 3, 2), True, {"pads": [1, 0, 1, 0, 1, 0]}),
    "flat_shift_unpadded": ((2, 2, 5, 6), (3, 2, 2, 3), False, {}),
    "pad_wider_than_kernel": ((2, 2, 4, 5), (3, 2, 2, 1), True, {"pads": [2, 1, 0, 1]}),  # flat shift; col2im
    "same_upper": ((1, 2, 7, 7), (2, 2, 4, 4), False, {"auto_pad": "SAME_UPPER"}),
    "same_lower": ((1, 2, 6, 7), (2, 2, 4, 3), False, {"auto_pad": "SAME_LOWER"}),
    "valid_strided": ((2, 2, 9, 8), (3, 2, 3, 3), True, {"auto_pad": "VALID", "strides": [2, 3]}),  # im2col
    "strided": ((2, 3, 7, 8), (4, 3, 3, 2), True, {"strides": [2, 1], "pads": [1, 0, 0, 1]}),
    "strided_dilated_1d": ((2, 3, 11), (5, 3, 3), True, {"pads": [2, 1], "strides": [2], "dilations": [2]}),
    "strided_3d": ((2, 2, 5, 6, 5), (3, 2, 2, 3, 2), False, {"strides": [2, 2, 1], "pads": [0, 1, 1, 1, 0, 0]}),
    "grouped": ((2, 4, 5, 6), (6, 2, 3, 3), True, {"group": 2, "pads": [1, 1, 0, 1]}),        # im2col per group
    "grouped_strided": ((2, 6, 7, 6), (6, 2, 3, 2), False, {"group": 3, "strides": [2, 2], "pads": [1, 0, 1, 1]}),
    "depthwise": ((2, 4, 6, 5), (4, 1, 3, 3), True, {"group": 4, "pads": [1, 2, 1, 0]}),     # depthwise; flipped
    "depthwise_dilated_3d": ((1, 3, 5, 4, 5), (3, 1, 2, 2, 3), False, {"group": 3, "dilations": [2, 1, 1],
                                                                      "pads": [1, 1, 1, 1, 0, 1]}),
    "depthwise_strided": ((2, 3, 7, 7), (3, 1, 3, 3), True, {"group": 3, "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    "depthwise_wide_pad": ((2, 3, 5, 4), (3, 1, 2, 2), False, {"group": 3, "pads": [2, 0, 1, 0]}),  # col2im VJP
    "channel_multiplier": ((2, 3, 6, 5), (6, 1, 3, 3), True, {"group": 3, "pads": [1, 1, 1, 1]}),  # M = 2C: im2col
    "one_channel_group_1": ((2, 1, 6, 5), (2, 1, 3, 2), False, {"pads": [1, 0, 1, 0]}),    # C = 1 is not depthwise
}


def _case(name, seed=0):
    x_shape, w_shape, with_bias, extra = GEOMETRIES[name]
    rng = np.random.default_rng(seed)
    x, w = rng.normal(size=x_shape), rng.normal(size=w_shape)
    b = rng.normal(size=w_shape[0]) if with_bias else None
    attrs = {"group": 1, "auto_pad": "NOTSET", **extra}
    return x, w, b, attrs


@pytest.mark.parametrize("name", list(GEOMETRIES))
def test_forward_equals_the_reference(name):
    x, w, b, attrs = _case(name)
    got = op_conv.conv_forward(np, x, w, b, attrs)
    expected = reference_conv(x, w, b, attrs)
    assert got.shape == expected.shape
    assert_close(got, expected, rtol=TOL, atol=TOL)


@pytest.mark.parametrize("name", list(GEOMETRIES))
def test_vjp_equals_the_transposed_reference(name):
    x, w, _, attrs = _case(name)
    g = np.random.default_rng(1).normal(size=reference_conv(x, w, None, attrs).shape)
    got = op_conv.conv_vjp(np, g, w, x.shape, attrs)
    assert got.shape == x.shape
    assert_close(got, reference_vjp(g, w, x.shape, attrs), rtol=TOL, atol=TOL)


class RecordingNumpy:
    """numpy as the kernels' ``xp``, recording the dtype of every buffer made by ``empty`` or ``zeros``."""

    def __init__(self):
        self.buffers = []

    def __getattr__(self, name):
        function = getattr(np, name)
        if name not in ("empty", "zeros"):
            return function

        def make(*args, **kwargs):
            out = function(*args, **kwargs)
            self.buffers.append(out.dtype)
            return out
        return make


@pytest.mark.parametrize("name", list(GEOMETRIES))
def test_float32_stays_float32(name):
    """A float32 call computes in float32: result and every work buffer (a float64 buffer would double the memory
    and round the result differently)."""
    x, w, b, attrs = _case(name)
    x, w = x.astype(np.float32), w.astype(np.float32)
    b = None if b is None else b.astype(np.float32)
    xp = RecordingNumpy()
    z = op_conv.conv_forward(xp, x, w, b, attrs)
    assert z.dtype == np.float32
    assert_close(z, reference_conv(x, w, b, attrs), rtol=1e-5, atol=1e-5)                # measured 1.05e-6
    g = np.random.default_rng(1).normal(size=z.shape).astype(np.float32)
    v = op_conv.conv_vjp(xp, g, w, x.shape, attrs)
    assert v.dtype == np.float32
    assert_close(v, reference_vjp(g, w, x.shape, attrs), rtol=1e-5, atol=1e-5)
    assert set(xp.buffers) <= {np.dtype(np.float32)}


@pytest.mark.parametrize("n, per_sample, budget, expected", [
    (5, 2, 6, [(0, 3), (3, 5)]),          # 3 samples per chunk, the last one short
    (6, 2, 6, [(0, 3), (3, 6)]),          # an exact split
    (4, 10, 6, [(0, 1), (1, 2), (2, 3), (3, 4)]),   # a sample over the budget is still a chunk of one
    (3, 0, 2, [(0, 2), (2, 3)]),          # an empty sample counts as one element
    (2, 1, 100, [(0, 2)]),
])
def test_batch_chunks_stay_within_the_budget(monkeypatch, n, per_sample, budget, expected):
    monkeypatch.setattr(op_conv, "COLUMN_BUDGET", budget)
    assert [(s.start, s.stop) for s in op_conv._chunks(n, per_sample)] == expected


@pytest.mark.parametrize("name", ["flat_shift_2d", "strided", "grouped", "depthwise_wide_pad"])
def test_three_chunks_equal_the_reference(monkeypatch, name):
    """Five samples in chunks: the budget holds two samples of the largest buffer, so that one has chunks of 2, 2
    and 1 samples."""
    x, w, b, attrs = _case(name)
    x = np.concatenate([x, x[:1] * 2, -x[:1] + 1])[:5]
    seen = []
    original = op_conv._chunks

    def spy(n, per_sample):
        seen.append(per_sample)
        return original(n, per_sample)

    monkeypatch.setattr(op_conv, "_chunks", spy)
    op_conv.conv_forward(np, x[:1], w, None, attrs)
    op_conv.conv_vjp(np, reference_conv(x[:1], w, None, attrs), w, x[:1].shape, attrs)
    monkeypatch.setattr(op_conv, "COLUMN_BUDGET", 2 * max(seen))
    z = op_conv.conv_forward(np, x, w, b, attrs)
    assert_close(z, reference_conv(x, w, b, attrs), rtol=TOL, atol=TOL)
    g = np.random.default_rng(1).normal(size=z.shape)
    assert_close(op_conv.conv_vjp(np, g, w, x.shape, attrs), reference_vjp(g, w, x.shape, attrs), rtol=TOL, atol=TOL)


def test_conv_attrs_keep_the_six_conv_attributes_that_are_set():
    attrs = {"auto_pad": "NOTSET", "dilations": [1, 2], "group": 2, "kernel_shape": [3, 3], "pads": None,
             "strides": [2, 1], "alpha": 3.0}
    assert op_conv.conv_attrs(attrs) == {"auto_pad": "NOTSET", "dilations": [1, 2], "group": 2,
                                         "kernel_shape": [3, 3], "strides": [2, 1]}


def test_a_conv_whose_weight_varies_is_refused():
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Relu", ["x"], ["w"]), helper.make_node("Conv", ["x", "w"], ["y"])]
    model = make_model(nodes, [("x", [1, 1, 3, 3])], [("y", [1, 1, 1, 1])])
    kernel = op_conv.ConvKernel()
    node = Graph(model).nodes[1]
    assert kernel.data_inputs(node, {"x", "w"}) == "a Conv whose weights depend on the explained input is not supported"
    plain = make_model([helper.make_node("Conv", ["x", "w", "b"], ["y"])], [("x", [1, 2, 3, 3])],
                       [("y", [1, 2, 1, 1])], {"w": rng.normal(size=(2, 2, 3, 3)), "b": rng.normal(size=2)})
    assert list(kernel.data_inputs(Graph(plain).nodes[0], {"x"})) == [0]


# --- the compiled emitters (forward re-emitted under z⁺, VJP by flipped Conv or ConvTranspose) -------------------

def conv_model(seed=0):
    """Every emitted VJP form: flipped Conv (group 1, depthwise), ConvTranspose (strided, grouped, a padding wider
    than the kernel, a depthwise one with a wide padding); biases present and absent."""
    rng = np.random.default_rng(seed)
    specs = [  # (weight shape, bias?, attrs)
        ((4, 3, 3, 3), True, {"pads": [1, 0, 2, 1]}),                       # flipped Conv
        ((4, 1, 3, 3), False, {"group": 4, "pads": [1, 1, 1, 1]}),          # flipped depthwise Conv
        ((4, 1, 2, 2), True, {"group": 4, "pads": [2, 0, 1, 0]}),           # depthwise ConvTranspose
        ((6, 2, 3, 3), False, {"group": 2, "pads": [1, 1, 1, 1]}),          # grouped ConvTranspose
        ((5, 6, 2, 1), True, {"pads": [2, 1, 0, 1]}),                       # ConvTranspose (wide pad)
        ((4, 5, 3, 3), True, {"strides": [2, 2], "dilations": [1, 2], "pads": [1, 1, 0, 1]}),  # strided
    ]
    nodes, inits, previous, probe = [], {}, "x", np.zeros((1, 3, 8, 7))
    for i, (shape, with_bias, attrs) in enumerate(specs):
        inits[f"w{i}"] = rng.normal(size=shape).astype(np.float32) / math.sqrt(math.prod(shape[1:]))
        inputs = [previous, f"w{i}"]
        if with_bias:
            inits[f"b{i}"] = rng.normal(size=shape[0]).astype(np.float32) * 0.1
            inputs.append(f"b{i}")
        nodes.append(helper.make_node("Conv", inputs, [f"c{i}"], **attrs))
        probe = reference_conv(probe, inits[f"w{i}"], None, attrs)
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"a{i}"]))
        previous = f"a{i}"
    inits["d"] = rng.normal(size=(3, probe.size)).astype(np.float32)
    nodes += [helper.make_node("Flatten", [previous], ["f"]),
              helper.make_node("Gemm", ["f", "d"], ["logits"], transB=1)]
    return make_model(nodes, [("x", ["N", 3, 8, 7])], [("logits", ["N", 3])], inits)


#: float32 maps, rel. L2 against the numpy backend; measured 6.8e-8 (gradient), 1.2e-7 (ε), 1.9e-7 (z⁺)
COMPILED_TOL = 2e-6


@pytest.mark.parametrize("method, rules", [("gradient", None), ("epsilon", None), ("epsilon", {"Conv": ZPlus()})],
                         ids=["gradient", "epsilon", "zplus_at_the_convs"])
def test_compiled_convs_equal_the_numpy_backend(method, rules):
    model = conv_model()
    x = np.random.default_rng(1).standard_normal((2, 3, 8, 7)).astype(np.float32)
    got, expected = compiled_and_numpy(model, method, x, np.array([0, 2], np.int64), rules)
    assert np.abs(expected).sum() > 0
    assert_rel(got, expected, COMPILED_TOL, f"convs {method}{' z+' if rules else ''}")
