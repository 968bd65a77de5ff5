"""Generate the committed Keras/tf2onnx fixtures in ``models/fixtures/`` (TensorFlow is too heavy for the test extra).

TensorFlow is installed only in a throw-away virtual environment:

    python3 -m venv /tmp/tfvenv
    /tmp/tfvenv/bin/pip install tensorflow-cpu==2.21.0 tf2onnx==1.17.0
    /tmp/tfvenv/bin/python tools/make_keras_fixtures.py          # writes models/fixtures/keras_cnn_*.onnx, *.npz

The model is a small Keras 3 CNN with random weights (seeded; BatchNorm statistics and every bias randomised so that
nothing folds away to a no-op) that exercises the tf2onnx idioms onnxlrp has to understand:

* an NHWC ``(N, 16, 16, 3)`` input and the ``Transpose`` tf2onnx inserts to reach the NCHW ``Conv``;
* ``BatchNormalization`` after a Conv, which tf2onnx fuses into the Conv's weights and bias;
* ``Flatten`` of an NHWC feature map (a ``Transpose`` back to NHWC before the ``Reshape``);
* ``Dense`` layers as ``MatMul`` + ``Add`` of a constant bias;
* ``BatchNormalization`` after a Dense layer, which tf2onnx writes as ``Mul``/``Add`` by constants;
* ``Softmax`` inside the graph (``Dense(..., activation="softmax")``), so the logits are an inner tensor.

It is exported twice, with ``opset=13`` and with the newest opset tf2onnx supports. Beside each model a reference
``.npz`` holds a random input batch ``x``, the target classes, and what TensorFlow computes for them in float64 (a
float64 copy of the model with the same weights): the logits (the Softmax input) and the gradient of each sample's
target logit with respect to ``x`` (``tf.GradientTape``). ``tests/peers/test_exporters.py`` compares onnxlrp's gradient
against it. The versions used are written into ``models/fixtures/README.md``.
"""
from __future__ import annotations

import collections
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "models", "fixtures")
SEED = 1234
SHAPE = (16, 16, 3)
CLASSES = 10


def build(keras, dtype: str):
    """The Keras CNN (functional API); ``dtype`` is the layers' compute dtype. Returns (probabilities model,
    logits model) sharing their layers."""
    L = keras.layers
    inp = keras.Input(SHAPE, name="image", dtype=dtype)
    x = L.Conv2D(8, 3, padding="same", name="conv1", dtype=dtype)(inp)
    x = L.BatchNormalization(name="bn1", dtype=dtype)(x)
    x = L.ReLU(name="relu1", dtype=dtype)(x)
    x = L.MaxPooling2D(2, name="pool1", dtype=dtype)(x)
    x = L.Conv2D(16, 3, padding="same", name="conv2", dtype=dtype)(x)
    x = L.BatchNormalization(name="bn2", dtype=dtype)(x)
    x = L.ReLU(name="relu2", dtype=dtype)(x)
    x = L.MaxPooling2D(2, name="pool2", dtype=dtype)(x)
    x = L.Flatten(name="flatten", dtype=dtype)(x)
    x = L.Dense(32, name="dense1", dtype=dtype)(x)
    x = L.BatchNormalization(name="bn3", dtype=dtype)(x)
    x = L.ReLU(name="relu3", dtype=dtype)(x)
    logits = L.Dense(CLASSES, name="logits", dtype=dtype)(x)
    probs = L.Softmax(name="softmax", dtype=dtype)(logits)
    return keras.Model(inp, probs, name="keras_cnn"), keras.Model(inp, logits, name="keras_cnn_logits")


def randomise(model, rng: np.random.Generator) -> None:
    """Random weights: Glorot-like kernels, biases N(0, 0.1), BatchNorm gamma ±U(0.5, 1.5), beta N(0, 0.2), moving
    mean N(0, 0.3), moving variance U(0.5, 2)."""
    for layer in model.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        if type(layer).__name__ == "BatchNormalization":
            gamma, beta, mean, var = weights
            n = gamma.shape[0]
            sign = np.where(rng.random(n) < 0.2, -1.0, 1.0)
            layer.set_weights([(sign * rng.uniform(0.5, 1.5, n)).astype(gamma.dtype),
                               rng.normal(0, 0.2, n).astype(beta.dtype), rng.normal(0, 0.3, n).astype(mean.dtype),
                               rng.uniform(0.5, 2.0, n).astype(var.dtype)])
        else:
            kernel, bias = weights
            fan_in = int(np.prod(kernel.shape[:-1]))
            layer.set_weights([(rng.standard_normal(kernel.shape) * np.sqrt(2.0 / fan_in)).astype(kernel.dtype),
                               rng.normal(0, 0.1, bias.shape).astype(bias.dtype)])


def main() -> int:
    import keras
    import onnx
    import tensorflow as tf
    import tf2onnx

    rng = np.random.default_rng(SEED)
    model32, _ = build(keras, "float32")
    randomise(model32, rng)
    model64, logits64 = build(keras, "float64")
    for src, dst in zip(model32.layers, model64.layers):
        dst.set_weights([w.astype(np.float64) for w in src.get_weights()])

    x = rng.standard_normal((2, *SHAPE)).astype(np.float32)
    xt = tf.constant(x.astype(np.float64))
    with tf.GradientTape() as tape:
        tape.watch(xt)
        z = logits64(xt, training=False)
        target = np.argmax(z.numpy(), axis=1)
        picked = tf.reduce_sum(z * tf.one_hot(target, CLASSES, dtype=tf.float64))
    grad = tape.gradient(picked, xt).numpy()
    probs32 = model32(x, training=False).numpy()

    newest = max(tf2onnx.constants.OPSET_TO_IR_VERSION)
    os.makedirs(OUT, exist_ok=True)
    spec = (tf.TensorSpec((None, *SHAPE), tf.float32, name="image"),)
    written = []
    for opset in (13, newest):
        proto, _ = tf2onnx.convert.from_keras(model32, input_signature=spec, opset=opset)
        onnx.checker.check_model(proto)
        stem = f"keras_cnn_opset{opset}"
        path = os.path.join(OUT, stem + ".onnx")
        onnx.save(proto, path)
        np.savez(os.path.join(OUT, stem + ".npz"), x=x, target=target, logits=z.numpy(), grad=grad, probs=probs32)
        ops = collections.Counter(n.op_type for n in proto.graph.node)
        written.append((stem, opset, os.path.getsize(path), dict(sorted(ops.items())),
                        [o.name for o in proto.graph.output]))
        print(f"wrote {path} ({os.path.getsize(path)} bytes): {dict(ops)}")

    versions = {"python": sys.version.split()[0], "tensorflow": tf.__version__, "keras": keras.__version__,
                "tf2onnx": tf2onnx.__version__, "onnx": onnx.__version__, "numpy": np.__version__}
    lines = ["# Test fixtures", "",
             "Generated by `tools/make_keras_fixtures.py` (see its docstring for the model and how to run it); do not "
             "edit by hand. Random weights (seed "
             f"{SEED}); no third-party weights or code.", "",
             "Versions used: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".", "",
             "| file | opset | bytes | outputs | ops |", "|---|---|---|---|---|"]
    for stem, opset, size, ops, outputs in written:
        ops_text = ", ".join(f"{k} x{v}" for k, v in ops.items())
        lines.append(f"| `{stem}.onnx` (+ `{stem}.npz`) | {opset} | {size} | {', '.join(outputs)} | {ops_text} |")
    lines += ["", "Each `.npz` holds `x` (NHWC float32 batch), `target`, and TensorFlow's float64 `logits` and `grad` "
              "(gradient of each sample's target logit with respect to `x`), and float32 `probs`.", ""]
    with open(os.path.join(OUT, "README.md"), "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines))
    with open(os.path.join(OUT, "keras_versions.json"), "w", encoding="utf-8") as handle:
        json.dump(versions, handle, indent=2)
        handle.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
