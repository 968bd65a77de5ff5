"""Hostile inputs to the Python API on valid models: arrays of the wrong shape, dtype or rank, NaN/inf, empty
batches, huge values, non-arrays; targets of every wrong kind; method parameters of wrong types and ranges (every
name in ``PARAMS`` and some that exist nowhere); ``rules=`` overrides of wrong kinds; ``keep``, ``feeds``,
``relevance_init``; and the ``Explainer`` constructor's own arguments. Each call ends with a finite explanation or
one of onnxlrp's own errors (tests/fuzz/support.py)."""
from __future__ import annotations

import decimal
import fractions
import functools

import numpy as np
import onnx
import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import onnxlrp
from onnxlrp.lrp.assign import RULES
from onnxlrp.methods.params import PARAMS
from tests.fuzz import support
from tests.fuzz.models import BASES

pytestmark = [pytest.mark.fuzz, pytest.mark.filterwarnings("ignore::onnxlrp.errors.OnnxLrpWarning")]

METHODS = ["epsilon_plus_flat", "gradient", "integrated_gradients", "grad_cam", "rap", "clrp1", "epsilon_gamma_box",
           "smoothgrad", "contrastive_grad_cam", "sglrp", "clrp2", "gradient_x_sign_mu", "alpha_beta", "stdx_epsilon",
           "lrpsign_epsilon_0_1", "zblrp_epsilon_0_1_std_x", "input_x_gradient", "grad_cam_pp"]
#: parameters that multiply the work: valid values stay small so that one example stays cheap
COUNTS = ("steps", "samples", "internal_batch_size")


@functools.cache
def explainer(base: str, dtype: str) -> onnxlrp.Explainer:
    build, _ = BASES[base]
    elem = onnx.TensorProto.FLOAT if dtype == "float32" else onnx.TensorProto.DOUBLE
    return onnxlrp.Explainer(build(elem), dtype=dtype, memory_budget=256 << 20)


# ------------------------------------------------------------------------------------------------- strategies
SPECIAL_FLOATS = st.sampled_from([0.0, -0.0, 1e38, -1e38, 3e38, 1e-45, 1e-300, 1e308, float("nan"), float("inf"),
                                  float("-inf")])
ANY_NUMBER = st.one_of(st.integers(-5, 12), st.sampled_from([2**31, 2**63, -(2**63), 10**30]), SPECIAL_FLOATS,
                       st.floats(-10, 10), st.booleans(), st.complex_numbers(max_magnitude=3),
                       st.sampled_from([fractions.Fraction(1, 3), decimal.Decimal("0.5"), decimal.Decimal("NaN"),
                                        np.float32(2.5), np.int8(3), np.uint64(2**63), np.float64("nan"),
                                        np.bool_(True), np.array(2), np.array(1.5, dtype=np.float16)]))
WEIRD_DTYPES = [np.float16, np.float32, np.float64, np.longdouble, np.int64, np.int8, np.uint8, np.bool_,
                np.complex64, np.dtype(">f4"), np.dtype(">f8"), np.dtype("<U3"), np.dtype("O"), np.dtype("M8[s]")]


@st.composite
def any_array(draw, max_dims=5):
    dtype = np.dtype(draw(st.sampled_from(WEIRD_DTYPES)))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=max_dims, min_side=0, max_side=4))
    if dtype.kind == "O":
        array = np.empty(shape, dtype=object)
        for index in np.ndindex(shape):
            array[index] = draw(st.sampled_from([None, "a", 1.5, (1, 2)]))
        return array
    return draw(hnp.arrays(dtype, shape))


def fitting(shape, batch, values, dtype, layout):
    """An input with the model's sample shape and a batch axis, filled with ``values``, laid out oddly."""
    rng = np.random.default_rng(batch)
    x = rng.normal(size=(batch, *shape))
    fills = {"huge": 1e38, "-huge": -1e38, "zeros": 0.0, "tiny": 1e-45, "max": np.finfo(np.float64).max}
    if values in fills:
        x = np.full_like(x, fills[values])
    elif values in ("nan", "inf", "-inf") and x.size:
        x.flat[batch % x.size] = float(values)
    elif values == "mixed":
        x = x * 1e30
    with np.errstate(all="ignore"):
        x = x.astype(dtype)
    if layout == "fortran":
        x = np.asfortranarray(x)
    elif layout == "strided":
        x = np.repeat(x, 2, axis=0)[::2]
    elif layout == "broadcast":
        x = np.broadcast_to(x[:1], x.shape)
    elif layout == "readonly":
        x.setflags(write=False)
    elif layout == "list":
        x = x.tolist()
    return x


@st.composite
def inputs(draw, shape):
    kind = draw(st.sampled_from(["fitting", "fitting", "fitting", "array", "wrong rank", "not an array"]))
    if kind == "fitting":
        return fitting(shape, draw(st.integers(0, 3)),
                       draw(st.sampled_from(["normal", "huge", "-huge", "zeros", "tiny", "max", "nan", "inf", "-inf",
                                             "mixed"])),
                       draw(st.sampled_from(WEIRD_DTYPES[:6] + [np.int64, np.bool_, np.complex64, np.dtype(">f4")])),
                       draw(st.sampled_from(["c", "fortran", "strided", "broadcast", "readonly", "list"])))
    if kind == "wrong rank":
        extra = draw(st.lists(st.integers(0, 3), max_size=2))
        cut = draw(st.integers(0, len(shape)))
        return np.ones((1, *shape[:cut], *extra), np.float32)
    if kind == "array":
        return draw(any_array())
    return draw(st.sampled_from([None, 3.5, "abc", b"\x00", [[1.0, 2.0], [3.0]], {"x": 1}, [], (), object(),
                                 np.float32(1.0), range(3), Ellipsis]))


TARGETS = st.one_of(
    st.none(), ANY_NUMBER,
    st.sampled_from(["0", "pred", "", "cat", [], [0], [0, 1], [0, 1, 2, 3], [[0]], [0.5], [None], (1,), {0: 1},
                     {0}, slice(1), np.array([0, 1], dtype=np.uint64), np.array([[1]]), np.array([1.0]),
                     np.array([], dtype=np.int64), np.array(["a"]), np.array([-1, 0]), np.array([2**40, 0])]),
    hnp.arrays(st.sampled_from([np.int64, np.int8, np.int32, np.float32]), hnp.array_shapes(max_dims=2, max_side=3),
               elements=st.integers(-2, 8)))

NAMES = st.sampled_from(["x", "y", "z", "h", "a", "c", "conv", "fc", "fc1", "relu1", "bias", "weight", "", "*",
                         "[", "Conv", "Gemm", "Relu", "no such thing", "x" * 300, "onnxlrp::fc2_bias/weight"])
VALUES = st.one_of(ANY_NUMBER, NAMES, st.none(), st.lists(ANY_NUMBER, max_size=3), any_array(max_dims=4),
                   st.sampled_from([{}, {"a": 1}, (), ("bias",), ("bias", 3), ["weight", "bias"], object(),
                                    "gausslegendre", "riemann_trapezoid", "NCHW", "NHWC", "paper", "raw_diff",
                                    "splice_sum", "uniform_target", "innvestigate", "same_as_layer", "lrp0",
                                    "epsilon", "zplus"]))


def count_values():
    return st.sampled_from([-1, 0, 1, 2, 3, 2.0, 2.5, "3", True, None, 10**9, float("nan"), 100_001, [2]])


def near_valid(name, shape):
    """Values of the parameter's declared kind, valid or at its edges (so that runs go past the parameter check)."""
    param = PARAMS[name]
    if name in COUNTS:
        return st.sampled_from([1, 2, 3, 2.0] + ([None] if param.optional else []))
    kind = param.kind
    if kind == "number":
        return st.one_of(st.floats(0, 3), st.sampled_from([0.0, 1e-300, 1e-6, 1e38, 3e38, 1e308]))
    if kind == "integer":
        return st.sampled_from([0, 1, 2**32 - 1, None] if param.optional else [0, 1, 2])
    if kind == "choice":
        return st.sampled_from(param.choices)
    if kind == "bool":
        return st.booleans()
    if kind == "names":
        return st.sampled_from([(), ("bias",), ("weight",), "bias", ("bias", "weight")])
    if kind == "classes":
        return st.one_of(st.integers(-1, 6), st.just([0, 1]), st.just(np.array([1, 0])))
    if kind == "text":
        return NAMES
    shapes = [(), (1,), shape[-1:], shape, (1, *shape), (2, *shape), (3,), (2, 1)]
    return st.one_of(st.floats(-3, 3), st.sampled_from([0.0, -1e38, 1e38, None]),
                     st.sampled_from(shapes).flatmap(lambda s: hnp.arrays(np.float64, s, elements=st.floats(-3, 3))))


@st.composite
def params(draw, method, shape):
    own = sorted(onnxlrp.methods()[method]["params"]) if method in onnxlrp.methods() else []
    names = draw(st.lists(st.sampled_from(own * 4 + sorted(PARAMS) + ["bogus", "", "rules", "keep"]), max_size=3,
                          unique=True))
    out = {}
    for name in names:
        hostile = name not in PARAMS or draw(st.integers(0, 3)) == 0
        out[name] = draw(count_values() if name in COUNTS and hostile else VALUES if hostile
                         else near_valid(name, shape))
    return out


RULE_NAMES = st.sampled_from(sorted(RULES) + ["bogus", ""])
RULE_SPECS = st.one_of(
    RULE_NAMES, ANY_NUMBER, st.none(),
    st.tuples(RULE_NAMES, st.dictionaries(st.sampled_from(["epsilon", "gamma", "stabilizer", "alpha", "beta",
                                                           "zero_params", "low", "high", "mu", "stdfactor",
                                                           "division", "bias", "receivers", "bogus"]),
                                          VALUES, max_size=2)),
    st.tuples(RULE_NAMES, ANY_NUMBER), st.lists(RULE_NAMES, max_size=3))
RULES_OVERRIDES = st.one_of(
    st.none(), st.just({}), NAMES, ANY_NUMBER, st.lists(st.tuples(NAMES, RULE_NAMES), max_size=2),
    st.dictionaries(st.one_of(NAMES, st.sampled_from([3, None, ("Conv",)])), RULE_SPECS, min_size=1, max_size=3))


# ------------------------------------------------------------------------------------------------------ tests
def _run(base, dtype, x, method, target, kwargs):
    ex = explainer(base, dtype)
    res = ex.explain(x, method, target, **kwargs)
    support.check_explanation(res, np.asarray(x) if not isinstance(x, np.ndarray) else x)
    return res


@settings(max_examples=support.examples(3))
@given(data=st.data())
def test_hostile_arrays_and_targets(data):
    base = data.draw(st.sampled_from(sorted(BASES)), label="base")
    dtype = data.draw(st.sampled_from(["float32", "float64"]), label="dtype")
    x = data.draw(inputs(BASES[base][1]), label="x")
    target = data.draw(TARGETS, label="target")
    method = data.draw(st.sampled_from(["gradient", "epsilon_plus_flat", "integrated_gradients", "clrp1", "rap",
                                        "contrastive_grad_cam"]), label="method")
    kwargs = {"steps": 2} if method == "integrated_gradients" else {"contrast": 0} if method.startswith("contr") \
        else {}
    kind, value = support.outcome(lambda: _run(base, dtype, x, method, target, kwargs))
    note(f"{kind}: {value if kind == 'error' else 'explained'}")


@settings(max_examples=support.examples(3))
@given(data=st.data())
def test_hostile_parameters_rules_and_options(data):
    base = data.draw(st.sampled_from(sorted(BASES)), label="base")
    dtype = data.draw(st.sampled_from(["float32", "float64"]), label="dtype")
    method = data.draw(st.sampled_from(METHODS * 4 + ["", "EPSILON", "lrp_epsilon", "rap ", "lrpsign_epsilon_nan",
                                                      "lrp_z_mu_-1e400", "lrpz_epsilon_0_1_std_x_mu_inf"]),
                       label="method")
    shape = BASES[base][1]
    kwargs = data.draw(params(method, shape), label="params")
    for key in ("steps", "samples"):  # keep valid runs cheap whatever else was drawn
        if key not in kwargs and method in ("integrated_gradients", "smoothgrad"):
            kwargs[key] = 2
    options = data.draw(st.fixed_dictionaries({}, optional={
        "rules": RULES_OVERRIDES,
        "keep": st.one_of(st.just("all"), NAMES, st.lists(NAMES, max_size=2), ANY_NUMBER, st.just(np.ones((2, 2)))),
        "relevance_init": st.one_of(st.sampled_from(["logit", "one_hot", "softmax"]), ANY_NUMBER,
                                    st.just(np.ones(3))),
        "feeds": st.one_of(st.none(), st.just({}), st.just({"x": np.ones(1)}), st.just({"ghost": 1}), NAMES)}),
        label="options")
    x = np.random.default_rng(0).normal(size=(2, *shape)).astype(dtype)
    target = data.draw(st.one_of(st.none(), st.integers(-1, 6)), label="target")
    kind, value = support.outcome(lambda: _run(base, dtype, x, method, target, {**kwargs, **options}))
    note(f"{kind}: {value if kind == 'error' else 'explained'}")


@settings(max_examples=support.examples(1))
@given(data=st.data())
def test_hostile_explainer_arguments(data):
    base = data.draw(st.sampled_from(sorted(BASES)), label="base")
    build, shape = BASES[base]
    model = data.draw(st.sampled_from(["model", "bytes", "truncated", "path", "empty", "other"]), label="model")
    proto = build()
    source = {"model": proto, "bytes": proto.SerializeToString(), "truncated": proto.SerializeToString()[:50],
              "empty": b"", "path": "/nonexistent/model.onnx"}.get(model)
    if source is None:
        source = data.draw(st.one_of(ANY_NUMBER, st.sampled_from([None, [], {}, "", "\x00", bytearray(b"\x08\x07")])),
                           label="source")
    kwargs = data.draw(st.fixed_dictionaries({}, optional={
        "input_name": st.one_of(NAMES, ANY_NUMBER, st.just(["x"])),
        "output_name": st.one_of(NAMES, ANY_NUMBER, st.just(["y"])),
        "device": st.one_of(st.sampled_from(["cpu", "CPU", "tpu", "", "cuda:0"]), ANY_NUMBER, st.just(["cpu"])),
        "dtype": st.one_of(st.sampled_from(["float32", "float64", "float16", "double", np.float64]), ANY_NUMBER,
                           st.just(["float32"])),
        "memory_budget": st.one_of(ANY_NUMBER, st.sampled_from(["1GB", "", None, 1 << 40])),
        "check": st.one_of(st.booleans(), ANY_NUMBER),
        "explain_softmax": st.one_of(st.booleans(), ANY_NUMBER)}), label="kwargs")
    x = np.random.default_rng(0).normal(size=(1, *shape)).astype(np.float32)

    def run():
        ex = onnxlrp.Explainer(source, **kwargs)
        res = ex.explain(x.astype(ex.dtype), "gradient")
        support.check_explanation(res, x)
        return res

    kind, value = support.outcome(run)
    note(f"{kind}: {value if kind == 'error' else 'explained'}")


@pytest.mark.parametrize("option", [{"keep": np.ones((2, 2))}, {"relevance_init": np.ones(3)}])
def test_array_valued_explain_options(option):
    x = np.ones((2, 6), np.float32)
    kind, value = support.outcome(lambda: explainer("mlp", "float32").explain(x, "epsilon", **option))
    assert kind == "error"
