"""PatternNet / PatternAttribution (Kindermans et al. 2018): the fitted patterns against a numpy transcription of
iNNvestigate's ``PatternComputer`` (``LinearPattern``, ``ReLUPositivePattern``, ``ReLUNegativePattern``) computed over
all data at once, the backward passes against a numpy transcription of its ``PatternNetReverseKernelLayer``, the
paper's known-answer property on a linear model with a distractor, streaming = all at once, and the error cases.

The reference below is written from the formulas (independent of onnxlrp.patterns): rows of every layer (a Conv's
receptive-field patches cut with explicit loops), ``y = W2Dᵀ x`` without bias, masks from the output with bias,
``cov = E_m[xy] − E_m[x]E[y]``, ``a = cov / (wᵀcov)`` with iNNvestigate's ``b + (b == 0)`` division.
"""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

import onnxlrp
from onnxlrp import errors
from onnxlrp.engine.session import Session
from onnxlrp.patterns import Patterns, PatternStatistics, fit_patterns, load_patterns, save_patterns
from tests.helpers.compare import assert_rel, within
from tests.helpers.onnx_builders import make_model

# float64 onnxlrp against the float64 numpy reference: measured relative L2 errors are at most 1.6e-15 (patterns,
# streamed or not) and 3e-16 (maps); each tolerance is about 10x that (`pytest --tolerances` prints them)
PATTERN_TOL = 2e-14
MAP_TOL = 3e-15

# ------------------------------------------------------------------------------------------------ the model

R = np.random.default_rng(7)
WEIGHTS = {
    "w1": R.normal(size=(4, 2, 3, 3)), "b1": R.normal(size=4) * 0.3,
    "w2": R.normal(size=(6, 2, 2, 2)), "b2": R.normal(size=6) * 0.3,      # group 2: 4 -> 6 channels
    "w3": R.normal(size=(5, 54)) * 0.3, "b3": R.normal(size=5) * 0.3,     # Gemm transB=1, alpha=0.5
    "w4": R.normal(size=(5, 3)),                                           # MatMul
}
WEIGHTS = {k: v.astype(np.float32) for k, v in WEIGHTS.items()}
W = {k: v.astype(np.float64) for k, v in WEIGHTS.items()}
CONV1 = dict(stride=1, pads=(1, 1, 1, 1), group=1)      # pads: top, left, bottom, right
CONV2 = dict(stride=1, pads=(1, 0, 0, 1), group=2)


def model():
    """Conv(pad 1)-Relu-MaxPool(2)-Conv(group 2, asymmetric pads)-Relu-Flatten-Gemm(transB, alpha .5)-Relu-MatMul
    on (N, 2, 7, 7)."""
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("Relu", ["c1"], ["a1"]),
        helper.make_node("MaxPool", ["a1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], pads=[1, 0, 0, 1], group=2, name="conv2"),
        helper.make_node("Relu", ["c2"], ["a2"]),
        helper.make_node("Flatten", ["a2"], ["f"]),
        helper.make_node("Gemm", ["f", "w3", "b3"], ["h"], transB=1, alpha=0.5, name="fc1"),
        helper.make_node("Relu", ["h"], ["a3"]),
        helper.make_node("MatMul", ["a3", "w4"], ["y"], name="fc2"),
    ]
    return make_model(nodes, [("x", ["N", 2, 7, 7])], [("y", ["N", 3])], WEIGHTS)


# ------------------------------------------------------------------------------------------------ numpy reference


def conv_rows(x, k, stride, pads, group):
    """``(rows (N·OH·OW, G, D), (OH, OW))``: every receptive-field patch, zero padding included."""
    top, left, bottom, right = pads
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    n, c, h, w = xp.shape
    oh, ow = (h - k) // stride + 1, (w - k) // stride + 1
    rows = np.empty((n, oh, ow, group, c // group * k * k))
    for i in range(oh):
        for j in range(ow):
            window = xp[:, :, i * stride:i * stride + k, j * stride:j * stride + k]
            rows[:, i, j] = window.reshape(n, group, -1)
    return rows.reshape(-1, group, rows.shape[-1]), (oh, ow)


def conv_w2d(weight, group):
    """``(G, D, Mg)``."""
    return weight.reshape(group, weight.shape[0] // group, -1).transpose(0, 2, 1)


def conv_forward(x, weight, bias, cfg):
    rows, (oh, ow) = conv_rows(x, weight.shape[-1], cfg["stride"], cfg["pads"], cfg["group"])
    y = np.einsum("rgd,gdm->rgm", rows, conv_w2d(weight, cfg["group"])).reshape(len(rows), -1)  # no bias
    as_map = lambda a: a.reshape(x.shape[0], oh, ow, -1).transpose(0, 3, 1, 2)  # noqa: E731
    return rows, y, as_map(y + bias), as_map


def conv_backward(r, weight, x_shape, cfg):
    """``Wᵀ r`` of a Conv: each output position's ``r`` times the weight, added into its padded window."""
    k, s, g = weight.shape[-1], cfg["stride"], cfg["group"]
    top, left, bottom, right = cfg["pads"]
    n, c, h, w = x_shape
    out = np.zeros((n, c, h + top + bottom, w + left + right))
    mg = weight.shape[0] // g
    for i in range(r.shape[2]):
        for j in range(r.shape[3]):
            for gi in range(g):
                contrib = np.einsum("nm,mckl->nckl", r[:, gi * mg:(gi + 1) * mg, i, j], weight[gi * mg:(gi + 1) * mg])
                out[:, gi * (c // g):(gi + 1) * (c // g), i * s:i * s + k, j * s:j * s + k] += contrib
    return out[:, :, top:top + h, left:left + w]


def reference_pattern(rows, y, z, w2d, kind):
    """iNNvestigate's ``compute_pattern`` over all rows at once: ``rows (R, G, D)``, ``y``/``z`` ``(R, G, Mg)``."""
    mask = {"linear": np.ones_like(z), "relu.positive": (z > 0) * 1.0, "relu.negative": (z <= 0) * 1.0}[kind]
    count = mask.sum(0)                                                   # (G, Mg)
    norm = count + (count == 0)
    mean_x = np.einsum("rgd,rgm->gdm", rows, mask) / norm[:, None]
    mean_xy = np.einsum("rgd,rgm->gdm", rows, y * mask) / norm[:, None]
    mean_y = y.mean(0)[:, None]
    cov = mean_xy - mean_x * mean_y
    w_cov = (w2d * cov).sum(1, keepdims=True)
    return cov / (w_cov + (w_cov == 0))


def reference(x, kinds=("linear", "relu.positive", "relu.negative")):
    """Forward pass, per-layer patterns (in each weight's shape) and what the backward needs."""
    n = len(x)
    rows1, y1, c1, map1 = conv_forward(x, W["w1"], W["b1"], CONV1)
    a1 = np.maximum(c1, 0)
    p1 = a1[:, :, :6, :6].reshape(n, 4, 3, 2, 3, 2).max(axis=(3, 5))
    rows2, y2, c2, map2 = conv_forward(p1, W["w2"], W["b2"], CONV2)
    a2 = np.maximum(c2, 0)
    f = a2.reshape(n, -1)
    w3 = 0.5 * W["w3"].T                                                   # Gemm's effective weight (54, 5)
    y3 = f @ w3
    h = y3 + W["b3"]
    a3 = np.maximum(h, 0)
    y4 = a3 @ W["w4"]
    layers = {
        "conv1": (rows1, y1, c1.transpose(0, 2, 3, 1).reshape(-1, 4), conv_w2d(W["w1"], 1), 1, W["w1"].shape),
        "conv2": (rows2, y2, c2.transpose(0, 2, 3, 1).reshape(-1, 6), conv_w2d(W["w2"], 2), 2, W["w2"].shape),
        "fc1": (f[:, None], y3, h, w3[None], 1, w3.shape),
        "fc2": (a3[:, None], y4, y4, W["w4"][None], 1, W["w4"].shape),
    }
    patterns = {kind: {} for kind in kinds}
    for name, (rows, y, z, w2d, g, shape) in layers.items():
        y, z = y.reshape(len(y), g, -1), z.reshape(len(z), g, -1)  # (R, M) -> (R, G, Mg)
        for kind in kinds:
            a2d = reference_pattern(rows, y, z, w2d, kind)
            patterns[kind][name] = a2d.transpose(0, 2, 1).reshape(shape) if name.startswith("conv") else a2d[0]
    acts = {"c1": c1, "a1": a1, "p1": p1, "c2": c2, "h": h, "y": y4, "x": x}
    return patterns, acts, w3


def reference_map(acts, w3, patterns, attribution):
    """iNNvestigate's PatternNet backward from the target logit (argmax): ``Aᵀ`` (or ``(W ⊙ A)ᵀ``) at every
    kernel layer, ReLU gates by the forward output, max-pooling through its switch."""
    use = (lambda w, a: w * a) if attribution else (lambda w, a: a)
    y = acts["y"]
    n = len(y)
    r = np.zeros_like(y)
    r[np.arange(n), y.argmax(1)] = y[np.arange(n), y.argmax(1)]
    r = r @ use(W["w4"], patterns["fc2"]).T
    r = r * (acts["h"] > 0)
    r = r @ use(w3, patterns["fc1"]).T
    r = r.reshape(acts["c2"].shape) * (acts["c2"] > 0)
    r = conv_backward(r, use(W["w2"], patterns["conv2"]), acts["p1"].shape, CONV2)
    windows = acts["a1"][:, :, :6, :6].reshape(n, 4, 3, 2, 3, 2)
    switch = windows == acts["p1"][:, :, :, None, :, None]
    r_pool = np.zeros_like(acts["a1"])
    r_pool[:, :, :6, :6] = (switch * r[:, :, :, None, :, None]).reshape(n, 4, 6, 6)
    r = r_pool * (acts["c1"] > 0)
    return conv_backward(r, use(W["w1"], patterns["conv1"]), acts["x"].shape, CONV1)


@pytest.fixture(scope="module")
def data():
    return np.random.default_rng(3).normal(size=(23, 2, 7, 7))


@pytest.fixture(scope="module")
def fitted(data):
    """onnxlrp's patterns, streamed in batches of 5, 5, 5, 5, 3."""
    session = Session(model(), dtype="float64")
    return fit_patterns(session, (data[i:i + 5] for i in range(0, len(data), 5)))


# ------------------------------------------------------------------------------------------------ tests


@pytest.mark.parametrize("kind", ["linear", "relu.positive", "relu.negative"])
def test_patterns_equal_the_pattern_computer_transcription(data, fitted, kind):
    expected, _, _ = reference(data, (kind,))
    assert sorted(fitted.arrays[kind]) == ["conv1", "conv2", "fc1", "fc2"]
    for name, pattern in expected[kind].items():
        assert fitted.arrays[kind][name].shape == pattern.shape
        assert_rel(fitted.arrays[kind][name], pattern, PATTERN_TOL, f"{kind} {name}")
    assert fitted.samples == 23 and fitted.rows == {"conv1": 23 * 49, "conv2": 23 * 9, "fc1": 23, "fc2": 23}


def test_each_pattern_is_normalised_against_its_weight(fitted):
    """``wᵀa = 1`` per output unit (unless the unit never fires): the paper's normalisation."""
    a, w = fitted.arrays["linear"]["fc2"], W["w4"]
    assert within(float(np.abs((w * a).sum(0) - 1).max()), 2e-15, "w^T a - 1")


def test_streaming_equals_all_at_once(data, fitted):
    session = Session(model(), dtype="float64")
    whole = fit_patterns(session, [data])
    stats = PatternStatistics(session)
    for size in (1, 9, 13):  # uneven batches, one of a single sample
        stats = PatternStatistics(session)
        for start in range(0, len(data), size):
            stats.update(data[start:start + size])
        streamed = stats.patterns()
        for kind in whole.arrays:
            for name in whole.arrays[kind]:
                assert_rel(streamed.arrays[kind][name], whole.arrays[kind][name], PATTERN_TOL, f"{kind} {name} b{size}")
                assert_rel(fitted.arrays[kind][name], whole.arrays[kind][name], PATTERN_TOL, f"{kind} {name} b5")


@pytest.mark.parametrize("method, attribution", [("pattern_net", False), ("pattern_attribution", True)])
@pytest.mark.parametrize("pattern_type", ["relu", "linear"])
def test_maps_equal_the_reverse_mapping_transcription(data, fitted, method, attribution, pattern_type):
    kind = "relu.positive" if pattern_type == "relu" else "linear"
    patterns, acts, w3 = reference(data[:5], (kind,))
    expected = reference_map(acts, w3, fitted.arrays[kind], attribution)
    ex = onnxlrp.Explainer(model(), dtype="float64")
    got = ex.explain(data[:5], method, patterns=fitted, pattern_type=pattern_type)
    assert got.relevance.shape == data[:5].shape and np.abs(expected).max() > 0
    assert_rel(got.relevance, expected, MAP_TOL, f"{method} {pattern_type}")


def test_the_known_answer_signal_direction_is_recovered():
    """The paper's toy example (section 2): ``x = a_s s + a_d d`` with signal ``s`` and distractor ``d``; the filter
    ``w`` that recovers ``y = wᵀx = s`` must cancel ``a_d``, so it (the gradient) points away from the signal
    direction ``a_s``, while PatternNet's map ``a y`` points along it."""
    r = np.random.default_rng(11)
    a_s, a_d = np.array([1.0, 0.5, 0.0, -0.5]), np.array([1.0, 1.0, 0.0, 0.0])
    # w ⊥ a_d with wᵀa_s = 1: the distractor-free readout of s
    w = a_s - (a_s @ a_d) / (a_d @ a_d) * a_d
    w = w / (w @ a_s)
    s, d = r.normal(size=(4000, 1)), r.normal(size=(4000, 1)) * 2.0
    x = s * a_s + d * a_d + r.normal(size=(4000, 4)) * 0.01
    linear = make_model([helper.make_node("MatMul", ["x", "w"], ["y"], name="readout")],
                        [("x", ["N", 4])], [("y", ["N", 1])], {"w": w[:, None].astype(np.float32)})
    session = Session(linear, dtype="float64")
    patterns = fit_patterns(session, (x[i:i + 1000] for i in range(0, 4000, 1000)))
    ex = onnxlrp.Explainer(linear, dtype="float64")
    probe = x[:8]
    cosine = lambda m: np.abs(m @ a_s) / (np.linalg.norm(m, axis=-1) * np.linalg.norm(a_s))  # noqa: E731
    for pattern_type in ("linear", "relu"):
        signal = ex.explain(probe, "pattern_net", target=0, patterns=patterns, pattern_type=pattern_type).relevance
        assert within(1 - float(cosine(signal).min()), 2e-3, f"1 - cos(PatternNet {pattern_type}, a_s)")
    gradient = ex.explain(probe, "gradient", target=0).relevance
    assert float(cosine(gradient).max()) < 0.6  # the gradient is w: cos(w, a_s) = 0.5 here
    assert np.allclose(gradient, w, atol=1e-12)


def test_save_and_load_round_trip(tmp_path, fitted):
    path = tmp_path / "p.npz"
    save_patterns(path, fitted)
    loaded = load_patterns(str(path))
    assert loaded.samples == fitted.samples and loaded.rows == fitted.rows
    for kind in fitted.arrays:
        for name, array in fitted.arrays[kind].items():
            assert np.array_equal(loaded.arrays[kind][name], array)


# ------------------------------------------------------------------------------------------------ errors


@pytest.fixture(scope="module")
def ex():
    return onnxlrp.Explainer(model(), dtype="float64")


def _one_line(info, code):
    text = str(info.value)
    assert "\n" not in text and info.value.exit_code == code
    return text


def test_without_patterns_the_method_says_what_it_needs(ex, data):
    with pytest.raises(errors.MethodError) as info:
        ex.explain(data[:1], "pattern_net")
    assert "patterns=FILE" in _one_line(info, 9)
    assert [r for _, op, r in ex.rules_for("pattern_attribution") if op in ("Conv", "Gemm", "MatMul")] == \
        ["PatternAttribution(pattern not given)"] * 4


def test_a_missing_or_foreign_file_is_one_line(ex, data, tmp_path):
    with pytest.raises(errors.InputFileError) as info:
        ex.explain(data[:1], "pattern_net", patterns=str(tmp_path / "none.npz"))
    assert "does not exist" in _one_line(info, 15)
    other = tmp_path / "other.npz"
    np.savez(other, a=np.ones(3))
    with pytest.raises(errors.InputFileError) as info:
        ex.explain(data[:1], "pattern_net", patterns=str(other))
    assert "not a pattern file" in _one_line(info, 15)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip at all")
    with pytest.raises(errors.InputFileError) as info:
        ex.explain(data[:1], "pattern_net", patterns=str(junk))
    assert "not a pattern file" in _one_line(info, 15)


def test_mismatched_layers_or_shapes_are_one_line(ex, data, fitted):
    renamed = {("dense" if k == "fc1" else k): v for k, v in fitted.arrays["linear"].items()}
    with pytest.raises(errors.MethodError) as info:
        ex.explain(data[:1], "pattern_net", patterns=renamed)
    text = _one_line(info, 9)
    assert "no pattern for layer 'fc1'" in text and "conv1, conv2, fc1, fc2" in text
    reshaped = {**fitted.arrays["linear"], "fc1": fitted.arrays["linear"]["fc1"].T}
    with pytest.raises(errors.MethodError) as info:
        ex.explain(data[:1], "pattern_attribution", patterns=reshaped)
    assert "layer 'fc1' has a weight of shape (54, 5), its pattern (5, 54)" in _one_line(info, 9)
    check = onnxlrp.methods.find_method("pattern_net").check(ex.session, {"patterns": reshaped})
    assert not check and "(5, 54)" in check.reason


def test_a_missing_type_or_a_bad_value_is_one_line(ex, data, fitted):
    only_linear = Patterns({"linear": fitted.arrays["linear"]})
    with pytest.raises(errors.MethodError) as info:
        ex.explain(data[:1], "pattern_net", patterns=only_linear)  # pattern_type relu by default
    assert "no 'relu.positive' patterns" in _one_line(info, 9)
    with pytest.raises(errors.MethodError) as info:
        ex.explain(data[:1], "pattern_net", patterns=fitted, pattern_type="quadratic")
    _one_line(info, 9)
    with pytest.raises(errors.MethodError) as info:
        ex.explain(data[:1], "pattern_net", patterns=3.5)
    assert "pattern file" in _one_line(info, 9)
    with pytest.raises(errors.MethodError) as info:
        ex.explain(data[:1], "pattern_net", patterns={"conv1": [[float("nan")]]})
    assert "NaN" in _one_line(info, 9)


def test_a_model_without_pattern_layers_is_refused():
    relu = make_model([helper.make_node("Relu", ["x"], ["y"])], [("x", ["N", 3])], [("y", ["N", 3])])
    with pytest.raises(errors.MethodError) as info:
        PatternStatistics(Session(relu))
    assert "no Conv or dense layer" in _one_line(info, 9)
