"""The compiled backend's emitters for ops that move values (the transformers' Gather, Slice, Concat, Split, Reshape)
on a tiny model built here, and the rank probe (:mod:`onnxlrp.engine.rank_probe`).

The model reads its input through a ``Reshape`` whose target shape is computed at run time (ONNX shape inference
leaves its rank unknown, as in torchvision's attention), then a ``Gather`` with repeated and negative 2-D indices,
a ``Slice`` with a negative step, a ``Slice`` whose end is read from ``Shape`` at run time, a ``Concat`` of parts
with sizes only known at run time and a ``Split`` into two dense heads. The compiled gradient, run by onnxruntime
alone on two batch sizes, equals the numpy backend's (rel. L2 ≤ 1e-7; measured 0: copies and one product each).
"""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from onnxlrp import Explainer
from onnxlrp.compiler import compile as compile_method
from onnxlrp.engine.rank_probe import fill_unknown_ranks
from tests.helpers.compare import assert_rel
from tests.helpers.onnx_builders import make_model

TOL = 1e-7


def _ints(name, values):
    return helper.make_node("Constant", [], [name], value=helper.make_tensor(name, TensorProto.INT64, [len(values)],
                                                                                 values))


def structural_model(seed=0) -> onnx.ModelProto:
    """``x (N, 4, 6) -> logits (N, 3)`` through the structural ops named in the module docstring."""
    rng = np.random.default_rng(seed)
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        _ints("one", [1]), helper.make_node("Add", ["one", "one"], ["two"]),  # an end only known at run time
        helper.make_node("Slice", ["shape", "zero", "two"], ["lead"]),
        helper.make_node("Concat", ["lead", "minus_one"], ["new_shape"], axis=0),
        helper.make_node("Reshape", ["x", "new_shape"], ["r"]),  # (N, 4, 6), rank unknown to shape inference
        helper.make_node("Gather", ["r", "idx"], ["g"], axis=2),  # (N, 4, 2, 2)
        helper.make_node("Slice", ["r", "five", "far", "two_axis", "minus_two"], ["backwards"]),  # (N, 4, 3)
        helper.make_node("Gather", ["shape", "one_scalar"], ["rows"], axis=0),
        helper.make_node("Unsqueeze", ["rows", "zero"], ["rows_1d"]),
        helper.make_node("Slice", ["r", "one", "rows_1d", "one"], ["tail"]),  # (N, 3, 6), end read at run time
        helper.make_node("Reshape", ["g", "flat"], ["g2"]),
        helper.make_node("Reshape", ["backwards", "flat"], ["b2"]),
        helper.make_node("Reshape", ["tail", "flat"], ["t2"]),
        helper.make_node("Concat", ["g2", "b2", "t2"], ["joined"], axis=1),  # (N, 46)
        helper.make_node("Split", ["joined", "sizes"], ["left", "right"], axis=1),
        helper.make_node("MatMul", ["left", "w_left"], ["z_left"]),
        helper.make_node("MatMul", ["right", "w_right"], ["z_right"]),
        helper.make_node("Add", ["z_left", "z_right"], ["logits"]),
    ]
    inits = {"zero": np.array([0], np.int64), "minus_one": np.array([-1], np.int64),
             "idx": np.array([[0, -1], [2, 2]], np.int64), "five": np.array([5], np.int64),
             "far": np.array([-100], np.int64), "two_axis": np.array([2], np.int64),
             "minus_two": np.array([-2], np.int64), "one_scalar": np.array(1, np.int64),
             "flat": np.array([0, -1], np.int64), "sizes": np.array([20, 26], np.int64),
             "w_left": rng.standard_normal((20, 3)).astype(np.float32),
             "w_right": rng.standard_normal((26, 3)).astype(np.float32)}
    return make_model(nodes, [("x", ["N", 4, 6])], [("logits", ["N", 3])], inits)


def test_rank_probe_fills_the_rank_shape_inference_leaves_unknown():
    inferred = onnx.shape_inference.infer_shapes(structural_model())
    shapes = {v.name: v.type.tensor_type for v in inferred.graph.value_info}
    assert "r" not in shapes or not shapes["r"].HasField("shape")  # the case the probe is for
    filled = {v.name: v.type.tensor_type for v in fill_unknown_ranks(inferred).graph.value_info}
    dims = filled["r"].shape.dim
    assert len(dims) == 3 and not any(d.HasField("dim_value") or d.dim_param for d in dims)


@pytest.mark.parametrize("batch", [1, 3])
def test_compiled_structural_ops_equal_the_numpy_backend(batch):
    model = structural_model()
    compiled = compile_method(model, "gradient")
    session = ort.InferenceSession(compiled.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(batch).standard_normal((batch, 4, 6)).astype(np.float32)
    target = np.arange(batch, dtype=np.int64) % 3
    got = session.run(["relevance"], {"x": x, "target": target})[0]
    expected = Explainer(model).explain(x, "gradient", target=target).relevance
    assert np.abs(expected).sum() > 0
    assert_rel(got, expected, TOL, f"structural gradient, batch {batch}")
