"""Malformed models: small valid graphs (tests/fuzz/models.py) mutated one to three times (tests/fuzz/mutations.py),
opened with ``onnxlrp.Explainer(model_bytes, check=...)`` in float32 or float64 and explained with a sample of
methods. Each example ends with a finite explanation or one of onnxlrp's own errors (tests/fuzz/support.py)."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st

import onnxlrp
from tests.fuzz import support
from tests.fuzz.models import BASES
from tests.fuzz.mutations import MUTATIONS

pytestmark = [pytest.mark.fuzz, pytest.mark.filterwarnings("ignore::onnxlrp.errors.OnnxLrpWarning")]

#: method -> parameters that keep one example cheap (IG and SmoothGrad with few passes)
METHODS = {
    "epsilon_plus_flat": {}, "gradient": {}, "integrated_gradients": {"steps": 3}, "grad_cam": {}, "rap": {},
    "clrp1": {}, "epsilon_gamma_box": {}, "input_x_gradient": {}, "smoothgrad": {"samples": 2, "random_state": 0},
    "sglrp": {}, "grad_cam_pp": {}, "guided_backprop": {}, "lrpsign_epsilon_0_1": {}, "lrp0": {},
}
#: one pass may plan at most this much (a mutated pad or kernel size can make a tensor of terabytes)
MEMORY_BUDGET = 256 << 20


def _explain(model_bytes: bytes, check: bool, dtype: str, method: str, batch: int, shape: tuple, seed: int):
    ex = onnxlrp.Explainer(model_bytes, check=check, dtype=dtype, memory_budget=MEMORY_BUDGET)
    ex.model_info()
    ex.rules_for(method)
    x = np.random.default_rng(seed).normal(size=(batch, *shape)).astype(dtype)
    res = ex.explain(x, method, **METHODS[method])
    support.check_explanation(res, x)
    return res


@settings(max_examples=support.examples(2.5))
@given(data=st.data())
def test_mutated_models_end_in_a_result_or_our_error(data):
    base = data.draw(st.sampled_from(sorted(BASES)), label="base")
    build, shape = BASES[base]
    elem = data.draw(st.sampled_from([onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE]), label="model elem type")
    model = build(elem)
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        name = data.draw(st.sampled_from(sorted(MUTATIONS)), label="mutation")
        note(f"{name}: {MUTATIONS[name](model, data)}")
    try:
        model_bytes = model.SerializeToString()
    except Exception as exc:  # noqa: BLE001 - protobuf refuses some mutations itself: nothing to test then
        note(f"protobuf cannot serialise the mutated model: {exc}")
        return
    check = data.draw(st.booleans(), label="check")
    dtype = data.draw(st.sampled_from(["float32", "float64"]), label="dtype")
    method = data.draw(st.sampled_from(sorted(METHODS)), label="method")
    batch = data.draw(st.integers(1, 2), label="batch")
    kind, value = support.outcome(lambda: _explain(model_bytes, check, dtype, method, batch, shape,
                                                   data.draw(st.integers(0, 9), label="seed")))
    note(f"{kind}: {value if kind == 'error' else 'explained'}")


@pytest.mark.parametrize("base", sorted(BASES))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_bases_are_valid(base, dtype):
    """Unmutated, every base explains with the gradient in both precisions (so mutations start from a valid model)."""
    build, shape = BASES[base]
    elem = onnx.TensorProto.FLOAT if dtype == "float32" else onnx.TensorProto.DOUBLE
    res = _explain(build(elem).SerializeToString(), True, dtype, "gradient", 2, shape, 0)
    assert res.relevance.shape == (2, *shape)
