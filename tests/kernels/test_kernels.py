"""Kernel conformance: every registered kernel has a case; its forward equals onnxruntime on a single-node model
(float32) and its VJP is the adjoint of its forward (finite differences in float64)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper

import onnxlrp
from onnxlrp.engine.graph import Graph
from onnxlrp.engine.kernel import Call
from onnxlrp.engine.registry import registered, resolve
from tests.helpers.compare import assert_close


@dataclass
class Case:
    """A single-node model: ``data`` inputs vary (graph inputs), ``consts`` are initializers."""

    id: str
    op: str
    data: list                      # (name, shape)
    consts: dict = field(default_factory=dict)
    attrs: dict = field(default_factory=dict)
    inputs: list | None = None      # node input order (default: data names then const names)
    outputs: tuple = ("y",)
    opset: int = 17
    positive: bool = False          # draw data away from kinks (|x| > 0.05)
    low: float | None = None        # draw data as ``low + |x|`` (domains such as Log, Sqrt)


r = np.random.default_rng(0)
W = lambda *s: r.normal(size=s).astype(np.float32)  # noqa: E731
I64 = lambda *v: np.array(v, dtype=np.int64)  # noqa: E731
F32 = lambda *v: np.array(v, dtype=np.float32)  # noqa: E731

CASES = [
    Case("conv2d", "Conv", [("x", (2, 3, 7, 6))], {"w": W(4, 3, 3, 3), "b": W(4)}, {"pads": [1, 1, 1, 1]}),
    Case("conv2d_stride_dil", "Conv", [("x", (2, 2, 9, 8))], {"w": W(3, 2, 3, 2)},
         {"strides": [2, 1], "dilations": [2, 1], "pads": [1, 0, 2, 1]}),
    Case("conv2d_depthwise", "Conv", [("x", (2, 4, 6, 6))], {"w": W(4, 1, 3, 3), "b": W(4)},
         {"group": 4, "pads": [1, 1, 1, 1]}),
    Case("conv2d_groups", "Conv", [("x", (1, 4, 5, 5))], {"w": W(6, 2, 3, 3)}, {"group": 2}),
    Case("conv2d_same_upper", "Conv", [("x", (1, 2, 7, 7))], {"w": W(2, 2, 4, 4)},
         {"auto_pad": "SAME_UPPER", "strides": [2, 2]}),
    Case("conv2d_same_lower", "Conv", [("x", (1, 2, 6, 6))], {"w": W(2, 2, 4, 4)}, {"auto_pad": "SAME_LOWER"}),
    Case("conv2d_dilated_flat_shift", "Conv", [("x", (2, 3, 9, 8))], {"w": W(4, 3, 3, 2)},
         {"dilations": [2, 3], "pads": [2, 1, 1, 3]}),
    Case("conv2d_depthwise_strided", "Conv", [("x", (2, 3, 7, 7))], {"w": W(3, 1, 3, 3)},
         {"group": 3, "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    Case("conv2d_pad_wider_than_kernel", "Conv", [("x", (1, 2, 4, 4))], {"w": W(3, 2, 1, 1)}, {"pads": [1, 2, 0, 1]}),
    Case("conv3d", "Conv", [("x", (1, 2, 4, 5, 4))], {"w": W(3, 2, 2, 3, 2), "b": W(3)}, {"pads": [1, 0, 1, 0, 1, 0]}),
    Case("conv1d_stride1", "Conv", [("x", (2, 3, 10))], {"w": W(4, 3, 5)}, {"pads": [2, 2]}),
    Case("conv1d", "Conv", [("x", (2, 3, 11))], {"w": W(5, 3, 3), "b": W(5)}, {"pads": [2, 1], "strides": [2]}),
    Case("gemm_transB", "Gemm", [("x", (3, 5))], {"w": W(4, 5), "b": W(4)}, {"transB": 1}),
    Case("gemm_alpha_beta", "Gemm", [("x", (3, 5))], {"w": W(5, 4), "b": W(1, 4)}, {"alpha": 0.5, "beta": 2.0}),
    Case("gemm_transA", "Gemm", [("x", (5, 3))], {"w": W(5, 4)}, {"transA": 1}),
    Case("matmul_right", "MatMul", [("x", (2, 3, 5))], {"w": W(5, 4)}),
    Case("matmul_left", "MatMul", [("x", (2, 5, 3))], {"w": W(4, 5)}, inputs=["w", "x"]),
    Case("gemm_alpha2_bias", "Gemm", [("x", (3, 5))], {"w": W(5, 4), "b": W(4)}, {"alpha": 2.0, "beta": 0.5}),
    Case("matmul_batched_weight", "MatMul", [("x", (2, 3, 5))], {"w": W(2, 5, 4)}),
    Case("add_residual", "Add", [("a", (2, 3, 4)), ("b", (2, 3, 4))]),
    Case("add_broadcast", "Add", [("a", (2, 3, 4)), ("b", (1, 3, 1))]),
    Case("add_bias", "Add", [("x", (2, 3, 4))], {"c": W(4)}),
    Case("sub_residual", "Sub", [("a", (2, 3)), ("b", (2, 3))]),
    Case("sub_const_left", "Sub", [("x", (2, 3))], {"c": W(3)}, inputs=["c", "x"]),
    Case("sum3", "Sum", [("a", (2, 3)), ("b", (2, 3)), ("c", (2, 3))]),
    Case("mul_const", "Mul", [("x", (2, 3, 4))], {"c": W(3, 1)}),
    Case("div_const", "Div", [("x", (2, 3))], {"c": np.abs(W(3)) + 0.5}),
    Case("relu", "Relu", [("x", (2, 3, 4))], positive=True),
    Case("leakyrelu", "LeakyRelu", [("x", (2, 5))], attrs={"alpha": 0.1}, positive=True),
    Case("prelu", "PRelu", [("x", (2, 3, 4))], {"slope": W(3, 1)}, positive=True),
    Case("clip_relu6", "Clip", [("x", (2, 12))], {"lo": np.float32(0), "hi": np.float32(6)}, positive=True),
    Case("clip_attr_opset6", "Clip", [("x", (2, 12))], attrs={"min": -1.0, "max": 1.0}, opset=6, positive=True),
    Case("sigmoid", "Sigmoid", [("x", (2, 5))]),
    Case("tanh", "Tanh", [("x", (2, 5))]),
    Case("hardsigmoid", "HardSigmoid", [("x", (2, 8))], attrs={"alpha": 0.25, "beta": 0.4}, positive=True),
    Case("hardswish", "HardSwish", [("x", (3, 8))], positive=True),
    Case("elu", "Elu", [("x", (2, 6))], attrs={"alpha": 0.7}, positive=True),
    Case("softplus", "Softplus", [("x", (2, 6))]),
    Case("softmax", "Softmax", [("x", (2, 3, 5))], attrs={"axis": 1}),
    Case("softmax_opset11", "Softmax", [("x", (2, 3, 5))], attrs={"axis": 1}, opset=11),
    Case("logsoftmax", "LogSoftmax", [("x", (2, 5))]),
    Case("maxpool", "MaxPool", [("x", (2, 3, 6, 6))], attrs={"kernel_shape": [2, 2], "strides": [2, 2]}),
    Case("maxpool_overlap", "MaxPool", [("x", (2, 2, 7, 7))],
         attrs={"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    Case("maxpool_ceil_dil", "MaxPool", [("x", (1, 2, 8, 7))],
         attrs={"kernel_shape": [2, 2], "strides": [2, 2], "dilations": [1, 2], "ceil_mode": 1}),
    Case("maxpool1d", "MaxPool", [("x", (2, 3, 9))], attrs={"kernel_shape": [3], "strides": [2]}),
    Case("globalmaxpool", "GlobalMaxPool", [("x", (2, 3, 4, 5))]),
    Case("avgpool", "AveragePool", [("x", (2, 3, 6, 6))], attrs={"kernel_shape": [2, 2], "strides": [2, 2]}),
    Case("avgpool_pads_excl", "AveragePool", [("x", (1, 2, 5, 5))],
         attrs={"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    Case("avgpool_pads_incl_ceil", "AveragePool", [("x", (1, 2, 6, 5))],
         attrs={"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "count_include_pad": 1,
                "ceil_mode": 1}),
    Case("globalavgpool", "GlobalAveragePool", [("x", (2, 3, 4, 5))]),
    Case("reducemean_attr", "ReduceMean", [("x", (2, 3, 4, 5))], attrs={"axes": [2, 3], "keepdims": 1}, opset=13),
    Case("reducemean_input", "ReduceMean", [("x", (2, 3, 4, 5))], {"axes": I64(-1, -2)}, {"keepdims": 0}, opset=18),
    Case("reducesum", "ReduceSum", [("x", (2, 3, 4))], {"axes": I64(1)}, {"keepdims": 1}),
    # pooling at the edges of its attributes: an opset before ceil_mode (always floor), padding next to
    # all-negative windows, count_include_pad over three channels (AveragePool-1: tests/kernels/test_pooling.py)
    Case("maxpool8_floor", "MaxPool", [("x", (1, 2, 5, 5))], attrs={"kernel_shape": [2, 2], "strides": [2, 2]},
         opset=8),
    Case("maxpool_pads_negative", "MaxPool", [("x", (1, 2, 4, 4))],
         attrs={"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}, low=-6.0),
    Case("avgpool_pads_incl_c3", "AveragePool", [("x", (2, 3, 5, 5))],
         attrs={"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "count_include_pad": 1}),
    # reductions without axes: every axis (ReduceSum-13, ReduceMean-13 before noop_with_empty_axes) or none
    Case("reducesum_all", "ReduceSum", [("x", (2, 3, 4))], attrs={"keepdims": 0}, opset=13),
    Case("reducesum_noop", "ReduceSum", [("x", (2, 3, 4))], attrs={"noop_with_empty_axes": 1}, opset=13),
    Case("reducemean13_all", "ReduceMean", [("x", (2, 3, 4))], attrs={"keepdims": 1}, opset=13),
    Case("batchnorm", "BatchNormalization", [("x", (2, 3, 4, 4))],
         {"s": W(3), "bb": W(3), "m": W(3), "v": np.abs(W(3)) + 0.5}, {"epsilon": 1e-3}),
    Case("flatten", "Flatten", [("x", (2, 3, 4, 5))], attrs={"axis": 2}),
    Case("reshape", "Reshape", [("x", (2, 3, 4))], {"shape": I64(0, -1, 2)}),
    Case("transpose", "Transpose", [("x", (2, 3, 4))], attrs={"perm": [2, 0, 1]}),
    Case("squeeze", "Squeeze", [("x", (2, 1, 4, 1))], {"axes": I64(1, -1)}),
    Case("unsqueeze", "Unsqueeze", [("x", (2, 4))], {"axes": I64(0, -1)}),
    Case("concat", "Concat", [("a", (2, 3, 4)), ("b", (2, 2, 4))], attrs={"axis": 1}),
    Case("concat_const", "Concat", [("a", (2, 3))], {"c": W(2, 2)}, {"axis": -1}),
    Case("split_sizes", "Split", [("x", (2, 7))], {"split": I64(3, 4)}, {"axis": 1}, outputs=("y", "z")),
    Case("split_num_outputs", "Split", [("x", (6, 2))], attrs={"num_outputs": 3}, outputs=("y", "z", "u"),
         opset=18),
    Case("slice_steps", "Slice", [("x", (4, 7, 3))],
         {"st": I64(1, 6), "en": I64(4, 0), "ax": I64(0, 1), "sp": I64(1, -2)}),
    Case("pad_constant", "Pad", [("x", (2, 3, 4))], {"pads": I64(0, 1, -1, 0, 2, 1)}),
    Case("identity", "Identity", [("x", (2, 3))]),
    Case("dropout", "Dropout", [("x", (2, 3))]),
    Case("cast", "Cast", [("x", (2, 3))], attrs={"to": onnx.TensorProto.FLOAT}),
    # transformers and decomposed operators
    Case("mul_bilinear", "Mul", [("a", (2, 3, 4)), ("b", (2, 3, 4))]),
    Case("mul_gate_broadcast", "Mul", [("a", (2, 3, 4, 4)), ("b", (2, 3, 1, 1))]),
    Case("mul_square", "Mul", [("x", (2, 3))], inputs=["x", "x"]),
    Case("div_bilinear", "Div", [("a", (2, 3, 4)), ("b", (2, 3, 1))], low=0.5),
    Case("div_reciprocal", "Div", [("x", (2, 5))], {"c": W(5)}, inputs=["c", "x"], low=0.5),
    Case("matmul_bilinear", "MatMul", [("a", (2, 2, 3, 4)), ("b", (2, 2, 4, 5))]),
    Case("matmul_bilinear_2d", "MatMul", [("a", (3, 4)), ("b", (4, 5))]),
    Case("matmul_bilinear_broadcast", "MatMul", [("a", (2, 2, 3, 4)), ("b", (1, 4, 5))]),
    Case("layernorm", "LayerNormalization", [("x", (2, 3, 6))], {"w": W(6), "bb": W(6)}, {"epsilon": 1e-3}),
    Case("layernorm_axis1_no_bias", "LayerNormalization", [("x", (2, 3, 4))], {"w": W(3, 4)},
         {"axis": 1, "epsilon": 1e-5}),
    Case("rmsnorm", "RMSNormalization", [("x", (2, 3, 6))], {"w": W(6)}, {"epsilon": 1e-3}, opset=23),
    Case("rmsnorm_axis1", "RMSNormalization", [("x", (2, 3, 4))], {"w": W(3, 4)}, {"axis": 1}, opset=23),
    Case("erf", "Erf", [("x", (2, 5))]),
    Case("gelu", "Gelu", [("x", (2, 7))], opset=20),
    Case("gelu_tanh", "Gelu", [("x", (2, 7))], attrs={"approximate": "tanh"}, opset=20),
    Case("exp", "Exp", [("x", (2, 5))]),
    Case("log", "Log", [("x", (2, 5))], low=0.2),
    Case("sqrt", "Sqrt", [("x", (2, 5))], low=0.2),
    Case("reciprocal", "Reciprocal", [("x", (2, 5))], low=0.5),
    Case("neg", "Neg", [("x", (2, 5))]),
    Case("pow2", "Pow", [("x", (2, 5))], {"p": np.float32(2.0)}),
    Case("pow_half", "Pow", [("x", (2, 5))], {"p": np.float32(0.5)}, low=0.2),
    Case("where_const_branch", "Where", [("x", (2, 3, 4))],
         {"m": r.random((1, 3, 4)) > 0.5, "c": np.float32(-1e4)}, inputs=["m", "x", "c"]),
    Case("where_two_branches", "Where", [("a", (2, 3, 4)), ("b", (2, 1, 4))], {"m": r.random((3, 4)) > 0.5},
         inputs=["m", "a", "b"]),
    Case("gather_token", "Gather", [("x", (2, 5, 3))], {"i": np.array(0, dtype=np.int64)}, {"axis": 1}),
    Case("gather_repeated", "Gather", [("x", (6, 3))], {"i": np.array([[1, -1], [1, 0]], dtype=np.int64)}),
    Case("expand", "Expand", [("x", (2, 1, 4))], {"shape": I64(3, 1, 5, 1)}),
    # recurrent layers (every variant, their LRP rule and torch parity: test_recurrent.py)
    Case("lstm_bidirectional", "LSTM", [("x", (4, 2, 3)), ("h0", (2, 2, 2)), ("c0", (2, 2, 2))],
         {"w": W(2, 8, 3), "r": W(2, 8, 2), "b": W(2, 16)}, {"hidden_size": 2, "direction": "bidirectional"},
         inputs=["x", "w", "r", "b", "", "h0", "c0"], outputs=("y", "y_h", "y_c")),
    Case("gru_reverse", "GRU", [("x", (4, 2, 3)), ("h0", (1, 2, 2))], {"w": W(1, 6, 3), "r": W(1, 6, 2), "b": W(1, 12)},
         {"hidden_size": 2, "direction": "reverse", "linear_before_reset": 1}, inputs=["x", "w", "r", "b", "", "h0"],
         outputs=("y", "y_h")),
    Case("rnn", "RNN", [("x", (4, 2, 3))], {"w": W(1, 2, 3), "r": W(1, 2, 2), "b": W(1, 4)}, {"hidden_size": 2},
         outputs=("y", "y_h")),
    # upsampling and padding in every mode (Resize, Upsample, Pad), ConvTranspose, Max/Min
    Case("resize_nearest_x2_torch", "Resize", [("x", (2, 3, 4, 5))], {"s": F32(1, 1, 2, 2)},
         {"coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}, inputs=["x", "", "s"], opset=13),
    Case("resize_nearest_half_pixel", "Resize", [("x", (2, 3, 4, 5))], {"s": F32(1, 1, 3, 0.5)},
         inputs=["x", "", "s"], opset=13),
    Case("resize_nearest_prefer_ceil_sizes", "Resize", [("x", (2, 3, 4, 6))], {"r": F32(), "s": F32(),
         "z": I64(2, 3, 7, 4)}, {"nearest_mode": "round_prefer_ceil"}, inputs=["x", "r", "s", "z"], opset=11),
    Case("resize_nearest_ceil_align", "Resize", [("x", (1, 2, 5, 4))], {"s": F32(1, 1, 1.6, 2.5)},
         {"coordinate_transformation_mode": "align_corners", "nearest_mode": "ceil"}, inputs=["x", "", "s"],
         opset=19),
    Case("resize_linear_half_pixel", "Resize", [("x", (2, 3, 4, 5))], {"s": F32(1, 1, 2, 1.5)},
         {"mode": "linear"}, inputs=["x", "", "s"], opset=13),
    Case("resize_linear_pytorch_sizes", "Resize", [("x", (2, 2, 5, 4))], {"z": I64(2, 2, 3, 9)},
         {"mode": "linear", "coordinate_transformation_mode": "pytorch_half_pixel"}, inputs=["x", "", "", "z"],
         opset=13),
    Case("resize_linear_align_corners", "Resize", [("x", (1, 2, 4, 6))], {"s": F32(1, 1, 2.5, 0.5)},
         {"mode": "linear", "coordinate_transformation_mode": "align_corners"}, inputs=["x", "", "s"], opset=19),
    Case("resize_linear_asymmetric", "Resize", [("x", (1, 2, 6, 5))], {"s": F32(1, 1, 0.5, 1.8)},
         {"mode": "linear", "coordinate_transformation_mode": "asymmetric"}, inputs=["x", "", "s"], opset=13),
    Case("resize_linear_half_pixel_symmetric", "Resize", [("x", (1, 2, 5, 7))], {"s": F32(1, 1, 1.7, 0.6)},
         {"mode": "linear", "coordinate_transformation_mode": "half_pixel_symmetric"}, inputs=["x", "", "s"],
         opset=19),
    Case("resize_trilinear", "Resize", [("x", (1, 2, 3, 4, 3))], {"s": F32(1, 1, 2, 1.5, 2)}, {"mode": "linear"},
         inputs=["x", "", "s"], opset=13),
    Case("resize_cubic_exclude_outside", "Resize", [("x", (1, 2, 5, 6))], {"s": F32(1, 1, 1.5, 0.75)},
         {"mode": "cubic", "cubic_coeff_a": -0.5, "exclude_outside": 1}, inputs=["x", "", "s"], opset=13),
    Case("resize_tf_crop_and_resize", "Resize", [("x", (2, 2, 5, 6))],
         {"r": F32(0, 0, -0.2, 0.1, 1, 1, 0.9, 1.3), "z": I64(2, 2, 4, 5)},
         {"mode": "linear", "coordinate_transformation_mode": "tf_crop_and_resize", "extrapolation_value": -1.5},
         inputs=["x", "r", "", "z"], opset=13),
    Case("resize_tf_crop_nearest", "Resize", [("x", (1, 2, 6, 6))],
         {"r": F32(0.1, -0.3, 0.8, 1.2), "z": I64(5, 4)},
         {"coordinate_transformation_mode": "tf_crop_and_resize", "axes": [2, 3], "extrapolation_value": 2.0},
         inputs=["x", "r", "", "z"], opset=18),
    Case("resize_axes_not_larger", "Resize", [("x", (2, 2, 4, 6))], {"z": I64(7, 9)},
         {"mode": "linear", "axes": [2, 3], "keep_aspect_ratio_policy": "not_larger"}, inputs=["x", "", "", "z"],
         opset=18),
    Case("resize_axes_not_smaller_nearest", "Resize", [("x", (2, 2, 4, 6))], {"z": I64(7, 9)},
         {"axes": [2, 3], "keep_aspect_ratio_policy": "not_smaller"}, inputs=["x", "", "", "z"], opset=19),
    Case("resize_antialias_linear", "Resize", [("x", (1, 2, 9, 8))], {"s": F32(1, 1, 0.4, 0.5)},
         {"mode": "linear", "antialias": 1}, inputs=["x", "", "s"], opset=18),
    Case("resize_antialias_cubic", "Resize", [("x", (1, 2, 9, 8))], {"s": F32(1, 1, 0.6, 1.5)},
         {"mode": "cubic", "antialias": 1}, inputs=["x", "", "s"], opset=18),
    Case("resize10_nearest", "Resize", [("x", (1, 2, 5, 6))], {"s": F32(1, 1, 2.5, 0.7)}, opset=10),
    Case("resize10_linear", "Resize", [("x", (1, 2, 5, 6))], {"s": F32(1, 1, 1.5, 0.7)}, {"mode": "linear"},
         opset=10),
    Case("upsample7_nearest", "Upsample", [("x", (2, 3, 3, 4))], attrs={"scales": [1.0, 1.0, 2.0, 3.0]}, opset=7),
    Case("upsample9_linear", "Upsample", [("x", (2, 3, 3, 4))], {"s": F32(1, 1, 2, 2.5)}, {"mode": "linear"},
         opset=9),
    Case("pad_reflect", "Pad", [("x", (2, 3, 4, 5))], {"pads": I64(0, 0, 1, 2, 0, 0, 3, 1)}, {"mode": "reflect"},
         opset=13),
    Case("pad_edge_negative", "Pad", [("x", (2, 3, 4, 5))], {"pads": I64(0, 0, -1, 3, 0, 0, 2, -2)},
         {"mode": "edge"}, opset=11),
    Case("pad_wrap", "Pad", [("x", (2, 3, 4, 5))], {"pads": I64(0, 1, 2, 6, 0, 0, 3, 4)}, {"mode": "wrap"},
         opset=19),
    Case("pad_reflect_axes", "Pad", [("x", (2, 3, 4, 5))], {"pads": I64(2, 1, 1, 3), "v": F32(), "ax": I64(-1, 2)},
         {"mode": "reflect"}, inputs=["x", "pads", "", "ax"], opset=18),
    Case("pad_edge_attr_opset2", "Pad", [("x", (2, 3, 4))], attrs={"mode": "edge", "pads": [0, 1, 2, 0, 2, 1]},
         opset=2),
    Case("pad_constant_value", "Pad", [("x", (2, 3, 4))], {"pads": I64(0, 1, 2, 0, 0, 1), "v": np.float32(1.5)},
         opset=13),
    Case("convtranspose2d", "ConvTranspose", [("x", (2, 3, 5, 4))], {"w": W(3, 4, 3, 3), "b": W(4)},
         {"strides": [2, 2], "pads": [1, 1, 1, 1], "output_padding": [1, 1]}, opset=11),
    Case("convtranspose2d_stride1", "ConvTranspose", [("x", (2, 3, 5, 4))], {"w": W(3, 4, 3, 2)},
         {"pads": [1, 0, 0, 1]}, opset=11),
    Case("convtranspose2d_groups_dilation", "ConvTranspose", [("x", (2, 4, 5, 4))], {"w": W(4, 2, 3, 3), "b": W(4)},
         {"group": 2, "strides": [2, 1], "dilations": [1, 2], "pads": [0, 1, 1, 0]}, opset=11),
    Case("convtranspose2d_depthwise", "ConvTranspose", [("x", (2, 4, 5, 4))], {"w": W(4, 1, 3, 3)},
         {"group": 4, "pads": [1, 1, 1, 1]}, opset=11),
    Case("convtranspose2d_output_shape", "ConvTranspose", [("x", (2, 3, 5, 4))], {"w": W(3, 2, 3, 3)},
         {"strides": [2, 2], "output_shape": [10, 9]}, opset=11),
    Case("convtranspose2d_same_lower", "ConvTranspose", [("x", (1, 3, 5, 4))], {"w": W(3, 2, 4, 4), "b": W(2)},
         {"strides": [2, 2], "auto_pad": "SAME_LOWER"}, opset=11),
    Case("convtranspose1d_opset1", "ConvTranspose", [("x", (2, 3, 7))], {"w": W(3, 2, 3)},
         {"strides": [3], "pads": [1, 2], "output_padding": [2]}, opset=1),
    Case("convtranspose3d", "ConvTranspose", [("x", (1, 2, 3, 4, 3))], {"w": W(2, 2, 2, 3, 2), "b": W(2)},
         {"strides": [2, 1, 2]}, opset=17),
    Case("max_relu_like", "Max", [("x", (2, 3, 4))], {"c": np.float32(0)}, positive=True),
    Case("max_const_left_broadcast", "Max", [("x", (2, 3, 4))], {"c": W(3, 1)}, inputs=["c", "x"]),
    Case("min_clip_like", "Min", [("x", (2, 5))], {"c": np.float32(0.5)}, opset=8),
    Case("max_two_varying", "Max", [("a", (2, 3, 4)), ("b", (2, 3, 4))]),
    Case("min_varying_broadcast_const", "Min", [("a", (2, 3, 4)), ("b", (3, 1))], {"c": np.float32(0.8)}),
    Case("max_tie_same_tensor", "Max", [("x", (2, 3))], inputs=["x", "x"]),
    Case("clip_min_input_only", "Clip", [("x", (2, 6))], {"lo": np.float32(-0.5)}, positive=True, opset=13),
    Case("clip_max_input_only", "Clip", [("x", (2, 6))], {"hi": np.float32(0.5)}, inputs=["x", "", "hi"],
         positive=True, opset=13),
]


def build(case: Case) -> onnx.ModelProto:
    names = case.inputs or [n for n, _ in case.data] + list(case.consts)
    node = helper.make_node(case.op, names, list(case.outputs), **case.attrs)
    graph = helper.make_graph(
        [node], case.id,
        [helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, s) for n, s in case.data],
        [helper.make_tensor_value_info(o, onnx.TensorProto.FLOAT, None) for o in case.outputs],
        [numpy_helper.from_array(np.asarray(v), name=k) for k, v in case.consts.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", case.opset)])
    model.ir_version = 8
    return onnx.shape_inference.infer_shapes(model)  # fills the outputs' shapes the checker requires


def draw(case: Case, seed=1):
    g = np.random.default_rng(seed)
    out = {}
    for name, shape in case.data:
        x = g.normal(size=shape)
        if case.positive:
            x = np.where(np.abs(x) < 0.05, 0.05 + np.abs(x), x)
            x = np.where(np.abs(x - 6) < 0.05, x + 0.1, x)
            x = np.where(np.abs(np.abs(x) - 3) < 0.05, x + 0.1, x)
        if case.low is not None:
            x = case.low + np.abs(x)
        out[name] = x.astype(np.float32)
    return out


def make_call(case, dtype):
    model = build(case)
    graph = Graph(model)
    node = graph.nodes[0]
    feeds = draw(case)
    values = {**{k: np.asarray(v) for k, v in case.consts.items()}, **feeds}
    inputs = tuple((values[t].astype(dtype) if values[t].dtype.kind == "f" else values[t]) if t else None
                   for t in node.inputs)
    call = Call(node=node, inputs=inputs, outputs=(), varying=tuple(t in feeds for t in node.inputs), xp=np)
    return model, node, feeds, call


#: float32 kernel against float32 onnxruntime, per case: ``rtol = atol =`` about 10x the measured error (in units of
#: ``1 + |expected|``), at least ``FORWARD_TOL_DEFAULT`` (about one float32 ulp; most cases are bit-equal)
FORWARD_TOL_DEFAULT = 1e-7
FORWARD_TOL = {
    "resize_cubic_exclude_outside": 9e-6, "resize_antialias_cubic": 9e-6, "conv2d": 8e-6,
    "conv2d_dilated_flat_shift": 5e-6, "conv2d_same_upper": 5e-6, "conv2d_stride_dil": 5e-6,
    "resize_linear_pytorch_sizes": 5e-6, "resize_tf_crop_and_resize": 4e-6, "conv1d_stride1": 4e-6,
    "conv2d_same_lower": 4e-6, "resize_axes_not_larger": 4e-6, "conv3d": 4e-6, "resize_linear_half_pixel": 3e-6,
    "convtranspose2d_stride1": 3e-6, "gru_reverse": 3e-6, "resize10_linear": 3e-6, "upsample9_linear": 2e-6,
    "conv2d_depthwise": 2e-6, "resize_linear_half_pixel_symmetric": 2e-6, "convtranspose2d_depthwise": 2e-6,
    "resize_linear_asymmetric": 2e-6, "batchnorm": 2e-6, "resize_trilinear": 2e-6, "conv2d_depthwise_strided": 1e-6,
    "resize_linear_align_corners": 1e-6, "rnn": 9e-7, "conv2d_pad_wider_than_kernel": 8e-7,
    "resize_antialias_linear": 7e-7, "lstm_bidirectional": 7e-7, "softplus": 7e-7, "layernorm": 7e-7,
    "logsoftmax": 6e-7, "exp": 6e-7, "layernorm_axis1_no_bias": 5e-7, "softmax": 5e-7, "tanh": 5e-7,
    "div_const": 5e-7, "gelu_tanh": 4e-7, "avgpool": 4e-7, "log": 4e-7, "hardswish": 4e-7, "erf": 4e-7,
    "avgpool_pads_excl": 3e-7, "softmax_opset11": 3e-7, "globalavgpool": 3e-7, "avgpool_pads_incl_ceil": 3e-7,
    "sigmoid": 3e-7, "reducemean_attr": 2e-7, "reducemean_input": 2e-7,
}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_forward_matches_onnxruntime(case):
    model, node, feeds, call = make_call(case, np.float32)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = session.run(None, feeds)
    got = resolve(node).forward(call)
    tol = FORWARD_TOL.get(case.id, FORWARD_TOL_DEFAULT)
    assert len(got) == len(node.outputs) == len(expected)
    for out, ref in zip(got, expected):
        assert out.shape == ref.shape and out.dtype == ref.dtype
        assert_close(out, ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_vjp_keeps_float32(case):
    """A float32 call's VJP is float32 for every varying input (no silent float64 temporaries)."""
    _, node, _, call = make_call(case, np.float32)
    kernel = resolve(node)
    grads = tuple(None if o is None else np.ones_like(o) for o in kernel.forward(call))
    vjp = kernel.vjp(call, grads)
    for port, varying in enumerate(call.varying):
        if varying and vjp[port] is not None:
            assert vjp[port].dtype == np.float32, f"input {port}"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_vjp_is_adjoint_of_forward(case):
    """<g, f(x + h v) − f(x − h v)> / 2h == <vjp(g), v> for every varying input, in float64."""
    _, node, feeds, call = make_call(case, np.float64)
    kernel = resolve(node)
    g = np.random.default_rng(2)
    outs = kernel.forward(call)
    grads = tuple(g.normal(size=o.shape) if o is not None else None for o in outs)
    vjp = kernel.vjp(call, grads)
    h = 1e-6
    for port, varying in enumerate(call.varying):
        if not varying:
            continue
        v = g.normal(size=call.inputs[port].shape)
        plus = list(call.inputs)
        minus = list(call.inputs)
        plus[port] = call.inputs[port] + h * v
        minus[port] = call.inputs[port] - h * v
        f_plus = kernel.forward(Call(node, tuple(plus), (), call.varying, np))
        f_minus = kernel.forward(Call(node, tuple(minus), (), call.varying, np))
        lhs = sum(float(np.sum(gr * (a - b))) / (2 * h) for gr, a, b in zip(grads, f_plus, f_minus) if gr is not None)
        rhs = float(np.sum(vjp[port] * v))
        assert vjp[port].shape == call.inputs[port].shape
        assert_close(lhs, rhs, rtol=2e-8, atol=2e-8)


def test_dense_kernel_matches_matmul_add():
    """onnxlrp::Dense (fused MatMul + Add) equals onnxruntime on the unfused pair."""
    from tests.helpers.onnx_builders import make_model
    w, b = W(5, 3), W(3)
    model = make_model([helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Add", ["m", "b"], ["y"])],
                       [("x", ["N", 4, 5])], [("y", ["N", 4, 3])], {"w": w, "b": b})
    ex = onnxlrp.Explainer(model, dtype="float64")
    assert [op for _, op in ex.path_nodes()] == ["Dense"]
    x = np.random.default_rng(3).normal(size=(2, 4, 5)).astype(np.float32)
    ref = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    res = ex.explain(x, method="gradient", target=0)
    assert_close(res.output, ref, rtol=8e-7, atol=8e-7)


def test_row_dense_is_a_per_sample_dense_layer():
    """onnxlrp::RowDense (spliced contrastive heads): z[n] = x[n] @ W[n] + b[n]; VJP is the forward's adjoint."""
    from onnxlrp.engine.graph import Node
    g = np.random.default_rng(4)
    x, w, b = g.normal(size=(3, 5)), g.normal(size=(3, 5, 2)), g.normal(size=(3, 2))
    node = Node("head", "RowDense", "onnxlrp", 1, ("x", "w", "b"), ("z",), {}, 0)
    kernel = resolve(node)
    call = Call(node, (x, w, b), (), (True, False, False), np)
    (z,) = kernel.forward(call)
    assert_close(z, np.stack([x[n] @ w[n] + b[n] for n in range(3)]))
    gz, v = g.normal(size=z.shape), g.normal(size=x.shape)
    dx = kernel.vjp(call, (gz,))[0]
    (z_v,) = kernel.forward(Call(node, (v, w, None), (), (True, False, False), np))
    assert_close(float(np.sum(dx * v)), float(np.sum(gz * z_v)), rtol=2e-15, atol=2e-21)


# onnxlrp-domain kernels the canonizer fuses from a decomposed subgraph: forward vs onnxruntime on that subgraph
# (the fused node keeps the subgraph's output tensor), VJP vs finite differences of the kernel's own forward
FUSED_SUBGRAPHS = {
    "onnxlrp::LayerNorm": ("layernorm", (2, 3, 8)),
    "onnxlrp::ErfGelu": ("erf_gelu", (2, 3, 8)),
    "onnxlrp::SiLU": ("quick_gelu", (2, 8)),
    "onnxlrp::RMSNorm": ("rmsnorm", (2, 3, 8)),
    "onnxlrp::TanhGelu": ("tanh_gelu", (2, 3, 8)),
}


@pytest.mark.parametrize("op", sorted(FUSED_SUBGRAPHS))
def test_fused_kernel_matches_its_subgraph(op):
    from tests.peers.test_transformers import decomposed_model
    kind, shape = FUSED_SUBGRAPHS[op]
    model = decomposed_model(kind, shape)
    ex = onnxlrp.Explainer(model, dtype="float64")
    node = next(n for n in ex.path.nodes if f"{n.domain}::{n.op_type}" == op)
    x = np.random.default_rng(5).normal(size=shape)
    from onnxlrp.engine.runner import OrtRunner
    ref = OrtRunner(ex.graph, [node.outputs[0]]).run({"x": x.astype(np.float32)})[node.outputs[0]]
    kernel = resolve(node)
    consts = {t: np.asarray(ex.cgraph.constants[t], dtype=np.float64) for t in node.inputs[1:] if t}
    call = Call(node, (x,) + tuple(consts.get(t) for t in node.inputs[1:]), (),
                (True,) + (False,) * (len(node.inputs) - 1), np)
    (y,) = kernel.forward(call)[:1]
    assert_close(y, ref, rtol=2e-6, atol=2e-6)
    g, v, h = np.random.default_rng(6).normal(size=y.shape), np.random.default_rng(7).normal(size=x.shape), 1e-6
    dx = kernel.vjp(call, (g,))[0]
    plus = kernel.forward(Call(node, (x + h * v,) + call.inputs[1:], (), call.varying, np))[0]
    minus = kernel.forward(Call(node, (x - h * v,) + call.inputs[1:], (), call.varying, np))[0]
    assert_close(float(np.sum(g * (plus - minus))) / (2 * h), float(np.sum(dx * v)), rtol=8e-10, atol=8e-10)


def test_every_registered_kernel_has_a_case():
    from tests.kernels.test_fused_ops import COVERED as QUANT_FUSED_ML  # op_quant, op_fused, op_ml
    covered = {c.op for c in CASES} | {"onnxlrp::Dense", "onnxlrp::RowDense"} | set(FUSED_SUBGRAPHS) | QUANT_FUSED_ML
    assert sorted(set(registered()) - covered) == []


def test_every_kernel_module_is_imported():
    folder = os.path.dirname(onnxlrp.kernels.__file__)
    modules = {f[:-3] for f in os.listdir(folder) if f.endswith(".py") and not f.startswith("_")}
    assert modules == set(onnxlrp.kernels.MODULES)
