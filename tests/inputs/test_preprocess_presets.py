"""``--preprocess caffe|tf|inception|torch``: Keras' ``imagenet_utils.preprocess_input`` modes, each expected array
written out here with numpy from Keras' documented formulas (not from onnxlrp's preset table):

* caffe: ``x[..., ::-1]`` (RGB -> BGR), then ``x[..., c] -= [103.939, 116.779, 123.68][c]``, no scaling;
* tf (and inception, which Keras' applications map to tf): ``x / 127.5 - 1``;
* torch: ``(x / 255 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]``.
"""
from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

from onnxlrp.cli import main
from onnxlrp.inputs import images

PIXELS = np.random.default_rng(3).integers(0, 256, size=(5, 7, 3), dtype=np.uint8)


def keras_reference(mode: str, rgb: np.ndarray) -> np.ndarray:
    x = rgb.astype(np.float64)
    if mode == "caffe":
        return x[..., ::-1] - np.array([103.939, 116.779, 123.68])
    if mode in ("tf", "inception"):
        return x / 127.5 - 1.0
    return (x / 255.0 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("mode", ["caffe", "tf", "inception", "torch"])
def test_presets_follow_keras(mode, layout):
    shape = (None, 3, 5, 7) if layout == "NCHW" else (None, 5, 7, 3)
    prep = images.resolve_preprocessing(shape, preset=mode)
    sample, picture = images.preprocess(Image.fromarray(PIXELS), prep)
    expected = keras_reference(mode, PIXELS)
    if layout == "NCHW":
        expected = expected.transpose(2, 0, 1)
    assert sample.dtype == np.float32 and sample.shape == expected.shape
    # float32 arithmetic on values up to 255: a few ulps of 255
    np.testing.assert_allclose(sample, expected, rtol=0, atol=3e-5)
    assert (picture == PIXELS).all()  # the picture for overlays stays RGB


def test_caffe_really_reverses_the_channels():
    """A pure-red image becomes (B, G, R) = (-103.939, -116.779, 255 - 123.68)."""
    red = np.zeros((2, 2, 3), np.uint8)
    red[..., 0] = 255
    prep = images.resolve_preprocessing((None, 3, 2, 2), preset="caffe")
    sample, _ = images.preprocess(Image.fromarray(red), prep)
    np.testing.assert_allclose(sample[:, 0, 0], [-103.939, -116.779, 255 - 123.68], rtol=0, atol=1e-4)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"preset": "caffe", "mean": (0.5,)}, "--preprocess caffe sets the scale, mean and std itself; drop --mean"),
    ({"preset": "torch", "scale": 1.0, "std": (2.0,)}, "drop --scale and --std"),
    ({"preset": "caffe", "grayscale": True}, "--preprocess caffe is for RGB images (3 channels) but --grayscale"),
    ({"preset": "yolo"}, "unknown --preprocess 'yolo'; presets are: caffe, tf, inception, torch"),
])
def test_contradictions_are_refused(kwargs, message):
    shape = (None, 1, 5, 7) if kwargs.get("grayscale") else (None, 3, 5, 7)
    with pytest.raises(ValueError, match=re.escape(message)):
        images.resolve_preprocessing(shape, **kwargs)


def test_a_one_channel_model_refuses_an_rgb_preset_but_takes_tf():
    with pytest.raises(ValueError, match=r"is for RGB images .* the model input \(N, 1, 5, 7\)"):
        images.resolve_preprocessing((None, 1, 5, 7), preset="torch")
    assert images.resolve_preprocessing((None, 1, 5, 7), preset="tf").scale == pytest.approx(1 / 127.5)


# ------------------------------------------------------------------------------------------------ command line
def _identity_model(path):
    """x (N, 3, 5, 7) -> ReduceSum over H, W -> (N, 3): the logits are the per-channel sums of the fed array."""
    import onnx
    from onnx import TensorProto, helper
    node = helper.make_node("ReduceSum", ["x", "axes"], ["y"], keepdims=0)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 5, 7])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
                              [onnx.numpy_helper.from_array(np.array([2, 3], np.int64), "axes")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


@pytest.mark.parametrize("mode", ["caffe", "torch"])
def test_the_cli_feeds_the_model_the_keras_array(tmp_path, mode):
    """``input_x_gradient`` of a sum is the fed array itself: it must equal Keras' formula on the PNG's pixels."""
    model = _identity_model(tmp_path / "sum.onnx")
    Image.fromarray(PIXELS).save(tmp_path / "img.png")
    out = tmp_path / "out"
    rc = main(["explain", str(model), str(tmp_path / "img.png"), "--preprocess", mode, "--method",
               "input_x_gradient", "--target", "0", "-o", str(out), "-q"])
    assert rc == 0
    fed = np.load(out / "img.input_x_gradient.npy")
    expected = keras_reference(mode, PIXELS).transpose(2, 0, 1)
    np.testing.assert_allclose(fed[0], expected[0], rtol=0, atol=3e-5)  # the target channel's gradient is 1
    assert not fed[1:].any()


def test_the_cli_refuses_preprocess_with_mean_in_one_line(tmp_path, capsys):
    model = _identity_model(tmp_path / "sum.onnx")
    Image.fromarray(PIXELS).save(tmp_path / "img.png")
    rc = main(["explain", str(model), str(tmp_path / "img.png"), "--preprocess", "tf", "--mean", "0.5",
               "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert err[0] == ("onnxlrp: error: --preprocess tf sets the scale, mean and std itself; drop --mean (or drop "
                      "--preprocess and give all three)")
