"""Models as each exporter writes them (issue 5, item 1), and the coverage report (item 4).

* torchvision ResNet-18, DenseNet-121, MobileNet-V3-small, EfficientNet-B0, ConvNeXt-Tiny and ViT-B/16 (random
  weights, 32x32 inputs; ViT-B/16 at full depth and width with ``image_size=32``: 2x2 patches of 16 plus the class
  token) from both PyTorch exporters: the TorchScript one (``dynamo=False``, opset 17, plus opsets 11 and 13 for
  ResNet-18) and the torch.export one (``dynamo=True``, its newest opset); see ``ZOO``. Gradient methods equal torch
  autograd on a float64 copy of the same weights (relative L2 within 10x of its measured floor, ``ZOO_TOL``).
  Conservation is asserted where the rules promise it, on bias-free copies: LRP-0 on the ReLU networks (where it
  also equals input x gradient), AttnLRP and CP-LRP on ConvNeXt-Tiny (no Softmax), CP-LRP on ViT-B/16 (AttnLRP's
  Softmax rule does not conserve).
* a Keras CNN through tf2onnx (committed fixtures, ``tools/make_keras_fixtures.py``): NHWC input and Transpose,
  BatchNorm as Mul/Add, MatMul+Add dense layers, Softmax in the graph; gradients equal TensorFlow's float64 ones.
* scikit-learn ``MLPClassifier`` through skl2onnx at opsets 11, 13 and the newest, with and without ZipMap.
* a real ONNX file shipped by a PyPI package (``onnx``'s own backend test data: SqueezeNet from the model zoo).
* ``onnxlrp inspect``'s coverage line and ``docs/supported-ops.md`` (generated, checked for being current).

Models that still need a kernel would be listed in ``NEEDS`` and run as ``xfail(strict=False)``.
"""
from __future__ import annotations

import importlib.util
import json
import os

import numpy as np
import onnx
import pytest

import onnxlrp
from onnxlrp.cli import main as cli_main
from tests.helpers import exporter_models as em
from tests.helpers.compare import assert_close, assert_rel, within

#: Tolerances are about 10x the measured relative L2 error (``pytest --tolerances`` prints each comparison's margin).
#: float64 onnxlrp on a float32 export against float64 torch: the exporter folded BatchNorm (or rounded constants) in
#: float32, so the floor is that fold's float32 error, per model: (forward, gradient and input x gradient).
ZOO_TOL = {
    ("convnext_tiny", "dynamo", "bias_free"): (2e-14, 2e-14), ("convnext_tiny", "legacy", "random"): (2e-13, 7e-14),
    ("densenet121", "dynamo", "bias_free"): (7e-7, 1e-6), ("densenet121", "legacy", "bias_free"): (7e-7, 1e-6),
    ("efficientnet_b0", "dynamo", "random"): (8e-7, 3e-6), ("efficientnet_b0", "legacy", "random"): (8e-7, 3e-6),
    ("mobilenet_v3_small", "dynamo", "random"): (4e-8, 3e-6), ("mobilenet_v3_small", "legacy", "random"): (4e-8, 3e-6),
    ("resnet18", "dynamo", "bias_free"): (2e-6, 2e-6), ("resnet18", "legacy", "random"): (2e-6, 2e-6),
    ("vit_b_16", "dynamo", "bias_free"): (9e-8, 2e-7), ("vit_b_16", "legacy", "random"): (2e-7, 3e-7),
}
#: ResNet-18 at the older opsets (BatchNorm folded by the exporter in float32): measured 1.4e-7 / 1.6e-7
OLD_OPSET_TOL = (2e-6, 2e-6)
#: the Keras CNN's reference was computed by TensorFlow in float32: measured 7.6e-8 / 7.8e-8
KERAS_TOL = 8e-7
#: LRP-0 against input x gradient, and the sum of a bias-free map against the logit, both float64 end to end:
#: measured <= 1.4e-15 and <= 5.9e-15
EXACT_TOL, CONSERVATION_TOL = 2e-14, 6e-14
#: the scikit-learn MLP exported by skl2onnx against its torch copy, both float64 (forward, gradient): measured 2.7e-17
#: and 1.9e-16
SKLEARN_TOL = (3e-16, 2e-15)


def xfail_needs(reason: str):
    return pytest.mark.xfail(strict=False, reason=f"needs {reason} kernel (issue 5 transformer work)")


#: (model, exporter) -> what is missing, as the engine reports it (op and an example node); those are
#: ``xfail(strict=False)``. Empty since the bilinear/LayerNorm/Erf kernels of issue 5 landed (commit 82fa18d): before
#: them MobileNet-V3 and EfficientNet-B0 stopped at ``Mul`` of two varying tensors (squeeze-excitation gates, SiLU)
#: and ConvNeXt-Tiny at ``LayerNormalization`` and the ``Erf`` of its decomposed GELU.
NEEDS: dict[tuple[str, str], str] = {}

#: (model, exporter, variant). ``random``: BatchNorm statistics/shifts, LayerNorm affine parameters and biases
#: randomised; ``bias_free``: every bias, BatchNorm shift and running mean, LayerNorm shift (and for the ViT the class
#: token and position embedding) zero, so that relevance has nowhere to go but the input: conservation is asserted
#: for the methods in ``CONSERVING``. Every model runs with both exporters, one export each.
#: Biases, LayerNorm shifts and the ViT's class token and position embedding absorb relevance, so conservation is not
#: asserted on the ``random`` variants; nor for AttnLRP on the ViT (its Softmax rule, Prop. 3.1, does not conserve),
#: nor for the LRP presets (epsilon/z+ stabilisers).
ZOO = [
    ("resnet18", "legacy", "random"),
    ("resnet18", "dynamo", "bias_free"),
    ("densenet121", "legacy", "bias_free"),
    ("densenet121", "dynamo", "bias_free"),
    ("mobilenet_v3_small", "legacy", "random"),
    ("mobilenet_v3_small", "dynamo", "random"),
    ("efficientnet_b0", "legacy", "random"),
    ("efficientnet_b0", "dynamo", "random"),
    ("convnext_tiny", "legacy", "random"),
    ("convnext_tiny", "dynamo", "bias_free"),
    ("vit_b_16", "legacy", "random"),
    ("vit_b_16", "dynamo", "bias_free"),
]
RELU_NETS = {"resnet18", "densenet121"}
#: model -> methods that conserve (ε = 0) on its bias-free variant
CONSERVING = {"resnet18": ("lrp0",), "densenet121": ("lrp0",), "convnext_tiny": ("attnlrp", "cp_lrp"),
              "vit_b_16": ("cp_lrp",)}
#: model -> the method of the float32 run (default ``epsilon_plus_flat``)
FLOAT32_METHOD = {"vit_b_16": "attnlrp"}


def zoo_params():
    out = []
    for name, exporter, variant in ZOO:
        marks = [xfail_needs(NEEDS[(name, exporter)])] if (name, exporter) in NEEDS else []
        out.append(pytest.param(name, exporter, variant, marks=marks, id=f"{name}-{exporter}-{variant}"))
    return out


# ------------------------------------------------------------------------------------------------- torchvision
def check_gradients(data: bytes, model, x: np.ndarray, tols: tuple[float, float]) -> onnxlrp.Explainer:
    """Explain ``x`` in float64; gradient and input x gradient must equal torch autograd's (one target per sample,
    the second sample explained for another class than its prediction), within ``tols`` (forward, gradients)."""
    ex = onnxlrp.Explainer(data, dtype="float64")
    logits_ref, _ = em.autograd(model, x, np.zeros(len(x), dtype=np.int64))
    target = logits_ref.argmax(axis=1)
    target[1] = (target[1] + 3) % em.CLASSES
    _, grad_ref = em.autograd(model, x, target)
    res = ex.explain(x, method="gradient", target=target)
    assert_rel(res.output, logits_ref, tols[0], "forward")
    np.testing.assert_array_equal(res.target, target)
    assert_rel(res.relevance, grad_ref, tols[1], "gradient")
    ixg = ex.explain(x, method="input_x_gradient", target=target).relevance
    assert_rel(ixg, x * grad_ref, tols[1], "input x gradient")
    return ex


@pytest.mark.parametrize("name,exporter,variant", zoo_params())
def test_zoo_model_explains_and_gradients_equal_autograd(name, exporter, variant):
    """Gradients equal autograd (float64). On the ReLU networks LRP-0 equals input x gradient (Ancona et al. 2018;
    BatchNorm is folded into the Conv before it or, bias-free, a pure scaling) and, bias-free, sums to the logit."""
    bias_free = variant == "bias_free"
    data = em.exported(name, exporter, bias_free=bias_free)
    model = em.torchvision_model(name, bias_free=bias_free)
    x = em.example_input().numpy().astype(np.float64)
    ex = check_gradients(data, model, x, ZOO_TOL[name, exporter, variant])
    if name in RELU_NETS:
        lrp0 = ex.explain(x, method="lrp0").relevance
        ixg = ex.explain(x, method="input_x_gradient").relevance
        assert_rel(lrp0, ixg, EXACT_TOL, "lrp0 = input x gradient")
    if bias_free:
        for method in CONSERVING[name]:
            params = {} if method == "lrp0" else {"epsilon": 0.0, "product_epsilon": 0.0}
            res = ex.explain(x, method=method, **params)
            logit = res.output[np.arange(len(x)), res.target]
            sums = res.relevance.reshape(len(x), -1).sum(axis=1)
            assert within(np.abs(sums - logit).max() / np.abs(logit).max(), CONSERVATION_TOL,
                          f"{method} conservation"), (
                method, sums, logit)
    del ex                                                  # ViT-B/16 in float64: ~0.7 GB of weights
    # the everyday path: float32, onnxruntime forward, an LRP preset (AttnLRP for the ViT)
    res = onnxlrp.Explainer(data).explain(x.astype(np.float32), method=FLOAT32_METHOD.get(name, "epsilon_plus_flat"))
    assert res.relevance.shape == x.shape and np.isfinite(res.relevance).all() and np.abs(res.relevance).sum() > 0


def test_the_two_exporters_write_different_graphs():
    legacy = onnx.load_from_string(em.exported("resnet18", "legacy"))
    dynamo = onnx.load_from_string(em.exported("resnet18", "dynamo", bias_free=True))
    opset = {m: {o.domain: o.version for o in p.opset_import}[""] for m, p in (("legacy", legacy), ("dynamo", dynamo))}
    assert opset["legacy"] == 17 and opset["dynamo"] >= 18
    ops = {m: {n.op_type for n in p.graph.node} for m, p in (("legacy", legacy), ("dynamo", dynamo))}
    assert {"GlobalAveragePool", "Flatten"} <= ops["legacy"] and "ReduceMean" not in ops["legacy"]
    assert {"ReduceMean", "Reshape"} <= ops["dynamo"] and "GlobalAveragePool" not in ops["dynamo"]


@pytest.mark.parametrize("opset", [11, 13])
def test_older_opsets_of_the_torchscript_exporter(opset):
    """ResNet-18 at opsets 11 and 13 (Clip/Squeeze/Split/ReduceSum changed signature across them): gradients equal
    autograd, and LRP-0 equals input x gradient on this ReLU network (BN folded by the exporter; biases allowed)."""
    data = em.exported("resnet18", "legacy", opset=opset)
    assert {o.domain: o.version for o in onnx.load_from_string(data).opset_import}[""] == opset
    x = em.example_input().numpy().astype(np.float64)
    ex = check_gradients(data, em.torchvision_model("resnet18"), x, OLD_OPSET_TOL)
    lrp0 = ex.explain(x, method="lrp0", target=[1, 2]).relevance
    ixg = ex.explain(x, method="input_x_gradient", target=[1, 2]).relevance
    assert_rel(lrp0, ixg, EXACT_TOL, "lrp0 = input x gradient")


# ------------------------------------------------------------------------------------------------- Keras/tf2onnx
@pytest.mark.parametrize("opset", em.keras_opsets())
def test_keras_cnn_via_tf2onnx(opset):
    path, ref_path = em.keras_fixture(opset)
    assert os.path.getsize(path) < 2 * 1024 * 1024
    ref = np.load(ref_path)
    proto = onnx.load(path)
    ops = [n.op_type for n in proto.graph.node]
    assert proto.producer_name == "tf2onnx"
    # the tf2onnx idioms are really there
    assert ops[0] == "Transpose" and "MatMul" in ops and ops[-1] == "Softmax" and ops.count("Mul") >= 1
    ex = onnxlrp.Explainer(path, dtype="float64")
    assert ex.input_shape[1:] == (16, 16, 3)                       # NHWC, as Keras wrote it
    assert ex.output_name != "softmax" and ex.output_name.endswith("BiasAdd:0")   # logits, not probabilities
    assert any("dense layer" in line for line in ex.canonizer_log)  # MatMul + Add fused
    x = ref["x"].astype(np.float64)
    res = ex.explain(x, method="gradient", target=ref["target"])
    assert_rel(res.output, ref["logits"], KERAS_TOL, "forward")
    assert_rel(res.relevance, ref["grad"], KERAS_TOL, "gradient")
    assert_rel(ex.explain(x, method="input_x_gradient", target=ref["target"]).relevance, x * ref["grad"], KERAS_TOL,
               "input x gradient")
    ex32 = onnxlrp.Explainer(path)
    for method in ("epsilon_plus_flat", "epsilon_gamma_box", "grad_cam"):
        out = ex32.explain(ref["x"], method=method)
        assert out.relevance.shape == ref["x"].shape and np.isfinite(out.relevance).all()
    np.testing.assert_array_equal(out.target, ref["probs"].argmax(axis=1))


# ------------------------------------------------------------------------------------------------- scikit-learn
def _zipmap_input(data: bytes) -> str:
    return next(n.input[0] for n in onnx.load_from_string(data).graph.node if n.op_type == "ZipMap")


@pytest.mark.parametrize("zipmap", [False, True], ids=["tensor", "zipmap"])
@pytest.mark.parametrize("opset", [11, 13, None], ids=["opset11", "opset13", "newest"])
def test_sklearn_mlp_via_skl2onnx(opset, zipmap):
    """The probabilities beside the label output are explained through their logits (the Softmax input); with
    ZipMap, the tensor before it is named as the output."""
    clf, X = em.sklearn_mlp()
    data = em.sklearn_onnx(clf, X, zipmap=zipmap, opset=opset)
    outputs = [o.name for o in onnx.load_from_string(data).graph.output]
    assert len(outputs) == 2 and outputs[0].endswith("label")
    output_name = _zipmap_input(data) if zipmap else "probabilities"
    ex = onnxlrp.Explainer(data, output_name=output_name, dtype="float64")
    assert ex.output_name != output_name                            # the Softmax was skipped: logits are explained
    x = X[:4].astype(np.float64)
    torch_model = em.mlp_torch(clf)
    target = np.array([0, 3, 5, 9])
    logits, grad = em.autograd(torch_model, x, target)
    res = ex.explain(x, method="gradient", target=target)
    assert_rel(res.output, logits, SKLEARN_TOL[0], "forward")
    assert_rel(res.relevance, grad, SKLEARN_TOL[1], "gradient")
    np.testing.assert_array_equal(res.output.argmax(axis=1), clf.predict(X[:4]))
    eps = onnxlrp.Explainer(data, output_name=output_name).explain(X[:4], method="epsilon_plus_flat")
    assert np.isfinite(eps.relevance).all() and eps.relevance.shape == X[:4].shape


def test_sklearn_mlp_lrp0_equals_input_x_gradient():
    """LRP-0 equals input x gradient on ReLU networks with biases, once MatMul + Add is one dense layer."""
    clf, X = em.sklearn_mlp()
    ex = onnxlrp.Explainer(em.sklearn_onnx(clf, X, zipmap=False, opset=None), output_name="probabilities",
                           dtype="float64")
    x = X[:4].astype(np.float64)
    lrp0 = ex.explain(x, method="lrp0").relevance
    assert_rel(lrp0, ex.explain(x, method="input_x_gradient").relevance, 2e-15)    # measured 1.2e-16


def test_sklearn_mlp_without_intercepts_conserves():
    import copy
    clf, X = em.sklearn_mlp()
    clf = copy.deepcopy(clf)
    clf.intercepts_ = [np.zeros_like(b) for b in clf.intercepts_]
    ex = onnxlrp.Explainer(em.sklearn_onnx(clf, X, zipmap=False, opset=None), output_name="probabilities",
                           dtype="float64")
    res = ex.explain(X[:8].astype(np.float64), method="lrp0")
    logit = res.output[np.arange(8), res.target]
    assert_close(res.relevance.sum(axis=1), logit, rtol=1e-14)                   # measured 1e-15 relative


# ------------------------------------------------------------------------------------------------- shipped file
def test_real_onnx_file_shipped_by_a_pypi_package():
    """SqueezeNet 1.0 from the ONNX model zoo as the ``onnx`` wheel ships it (``light_squeezenet.onnx``: Caffe2
    export, opset 9, initializers declared as graph inputs, weights filled by ConstantOfShape, Dropout and a final
    Softmax). LRP-0 equals input x gradient (a ReLU network); the float64 forward equals onnxruntime's; the gradient
    matches a central difference of the float64 forward along a random direction (a step of 1e-7 relative crosses
    no ReLU kink here)."""
    import onnxruntime as ort

    path = em.shipped_onnx("light_squeezenet")
    ex = onnxlrp.Explainer(path, dtype="float64")
    assert ex.input_name == "data_0" and ex.output_name != ex.model_output_name   # explains the Softmax input
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 3, 224, 224))
    grad = ex.explain(x, method="gradient", target=0)
    lrp0 = ex.explain(x, method="lrp0", target=0).relevance
    assert_rel(lrp0, x * grad.relevance, 2e-13)                                 # measured 1.2e-14
    probe = onnx.load(path)
    probe.graph.output.append(onnx.helper.make_tensor_value_info(ex.output_name, onnx.TensorProto.FLOAT, None))
    sess = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    ort_logits = sess.run([ex.output_name], {"data_0": x.astype(np.float32)})[0]
    assert_rel(grad.output.reshape(ort_logits.shape), ort_logits, 4e-7)         # float32 onnxruntime: 3.5e-8
    v = rng.standard_normal(x.shape)
    h = 1e-7
    up, down = (ex.explain(x + s * h * v, method="gradient", target=0).output.reshape(-1)[0] for s in (1, -1))
    fd = (up - down) / (2 * h)
    assert within(abs(fd - float((grad.relevance * v).sum())) / abs(fd), 7e-6, "finite difference")  # 6.4e-7
    res = onnxlrp.Explainer(path).explain(x.astype(np.float32), method="epsilon_plus_flat")
    assert np.isfinite(res.relevance).all() and res.relevance.shape == x.shape


# ------------------------------------------------------------------------------------------------- coverage report
def test_inspect_says_a_model_is_explainable_and_with_which_methods(tmp_path, capsys):
    path = tmp_path / "resnet18.onnx"
    path.write_bytes(em.exported("resnet18", "legacy"))
    assert cli_main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("coverage"))
    assert "explainable: yes" in line and "epsilon_plus_flat" in line and "gradient" in line
    assert cli_main(["inspect", str(path), "--json"]) == 0
    cov = json.loads(capsys.readouterr().out)["coverage"]
    assert cov["explainable"] is True and "grad_cam" in cov["methods"] and "lrp0" in cov["methods"]


def test_inspect_names_the_methods_that_do_not_apply(tmp_path, capsys):
    clf, X = em.sklearn_mlp()
    path = tmp_path / "mlp.onnx"
    path.write_bytes(em.sklearn_onnx(clf, X, zipmap=True, opset=None))
    # through ZipMap: not explainable, with a hint naming the tensor to explain instead
    assert cli_main(["inspect", str(path), "--output-name", "output_probability"]) == 5
    out = capsys.readouterr().out
    assert "explainable: no" in out and "ZipMap" in out
    hint = next(line for line in out.splitlines() if "hint:" in line)
    tensor = hint.rsplit(" ", 1)[1]
    assert cli_main(["inspect", str(path), "--output-name", tensor]) == 0
    out = capsys.readouterr().out
    assert "explainable: yes" in out
    assert any(line.strip().startswith("not with grad_cam:") and "convolution" in line for line in out.splitlines())


def test_inspect_of_a_real_file_with_an_op_without_kernel(capsys):
    """AlexNet from the onnx wheel has LRN (local response normalisation), which has no kernel."""
    if "LRN" in onnxlrp.registered():
        pytest.skip("LRN has a kernel now")
    assert cli_main(["inspect", em.shipped_onnx("light_bvlc_alexnet"), "--output-name", "prob_1"]) == 5
    out = capsys.readouterr().out
    assert "coverage  explainable: no" in out and "LRN" in out


def _support_table():
    spec = importlib.util.spec_from_file_location(
        "support_table", os.path.join(em.ROOT, "tools", "support_table.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_supported_ops_doc_is_current():
    """``docs/supported-ops.md`` is generated from the registries; regenerate it with
    ``python tools/support_table.py`` after registering a kernel or a method."""
    table = _support_table()
    with open(table.DOC, encoding="utf-8") as handle:
        committed = handle.read()
    assert committed == table.render(), "docs/supported-ops.md is out of date: run python tools/support_table.py"
    for op in onnxlrp.registered():
        assert f"| `{op.split('::')[-1]}` |" in committed
