"""The upsampling, padding, transposed-convolution and Max/Min kernels end to end: the rules the presets give them,
LRP-0 = gradient × input and conservation through all of them on a hand-built graph, and two small models of the
kind people ship, exported from PyTorch in the test (a UNet-style segmenter with reflect padding and ConvTranspose,
a YOLO-style detector with nearest ×2 upsampling and two scale heads concatenated), whose gradient and integrated
gradients equal torch autograd in float64 and whose LRP conserves the explained score."""
from __future__ import annotations

import copy
import io
import warnings

import numpy as np
import onnx
import pytest
from onnx import helper

import onnxlrp
from onnxlrp.methods.gradients import integration_points
from tests.helpers.compare import assert_close, within
from tests.helpers.onnx_builders import make_model


def _w(r, *shape, scale=0.5):
    return (r.normal(size=shape) * scale).astype(np.float32)


def upsampling_graph(bias: bool) -> onnx.ModelProto:
    """Every new kernel on one relevance path, on (N, 2, 6, 6): Pad (reflect) → Conv → Max(·, 0), then ConvTranspose
    (stride 2) → Relu → Resize (linear, ×1.5) in one branch and Conv → Max(0, ·) → Resize (nearest, to 18 × 18 by
    ``axes``) in the other, Max of the two → Pad (edge, wrap) → Min(·, 3) → Clip(·, −2) → GlobalAveragePool → Gemm.
    Every linear layer's output goes through a ReLU-like op, so the z⁺ rule conserves too."""
    r = np.random.default_rng(0)
    init = {"w1": _w(r, 4, 2, 3, 3), "wt": _w(r, 4, 3, 2, 2), "w2": _w(r, 3, 4, 1, 1), "wd": _w(r, 5, 3),
            "zero": np.float32(0), "three": np.float32(3), "lo": np.float32(-2.0),
            "p_reflect": np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64),
            "p_edge": np.array([0, 0, 1, 0, 0, 0, 0, 2], np.int64),
            "p_wrap": np.array([0, 0, 2, 1, 0, 0, 1, 0], np.int64),
            "s_lin": np.array([1, 1, 1.5, 1.5], np.float32), "z_near": np.array([18, 18], np.int64)}
    if bias:
        init.update(b1=_w(r, 4, scale=0.1), bt=_w(r, 3, scale=0.1), b2=_w(r, 3, scale=0.1), bd=_w(r, 5, scale=0.1))
    b = (lambda name: [name]) if bias else (lambda name: [])
    nodes = [
        helper.make_node("Pad", ["x", "p_reflect"], ["xp"], mode="reflect"),
        helper.make_node("Conv", ["xp", "w1"] + b("b1"), ["c1"]),                                 # (N, 4, 6, 6)
        helper.make_node("Max", ["c1", "zero"], ["a1"]),
        helper.make_node("ConvTranspose", ["a1", "wt"] + b("bt"), ["t"], strides=[2, 2]),          # (N, 3, 12, 12)
        helper.make_node("Relu", ["t"], ["at"]),
        helper.make_node("Resize", ["at", "", "s_lin"], ["u1"], mode="linear"),                    # (N, 3, 18, 18)
        helper.make_node("Conv", ["a1", "w2"] + b("b2"), ["c2"]),                                 # (N, 3, 6, 6)
        helper.make_node("Max", ["zero", "c2"], ["a2"]),
        helper.make_node("Resize", ["a2", "", "", "z_near"], ["u2"], axes=[2, 3],                  # (N, 3, 18, 18)
                         coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
        helper.make_node("Max", ["u1", "u2"], ["m"]),
        helper.make_node("Pad", ["m", "p_edge"], ["pe"], mode="edge"),
        helper.make_node("Pad", ["pe", "p_wrap"], ["pw"], mode="wrap"),
        helper.make_node("Min", ["pw", "three"], ["mn"]),
        helper.make_node("Clip", ["mn", "lo"], ["cl"]),
        helper.make_node("GlobalAveragePool", ["cl"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "wd"] + b("bd"), ["y"], transB=1),
    ]
    return make_model(nodes, [("x", ["N", 2, 6, 6])], [("y", ["N", 5])], init, opset=19)


def test_presets_give_each_new_kernel_its_rule():
    ex = onnxlrp.Explainer(upsampling_graph(bias=True), dtype="float64")
    by_op = {}
    for node in ex.path.nodes:
        by_op.setdefault(node.op_type, set()).add(ex.categories[node.name])
    assert by_op["ConvTranspose"] == {"conv"}
    assert by_op["Resize"] == {"avgpool", "structural"}      # linear: proportional split; nearest: a gather
    assert by_op["Max"] == {"activation", "structural"}      # Max(x, 0): pass-through; Max(a, b): routing
    assert by_op["Min"] == {"activation"} and by_op["Pad"] == {"structural"}
    rules = {name: rule for name, _, rule in ex.rules_for("epsilon_plus")}
    transposed = next(n.name for n in ex.path.nodes if n.op_type == "ConvTranspose")
    assert rules[transposed].startswith("ZPlus")
    linear = next(n.name for n in ex.path.nodes if ex.categories[n.name] == "avgpool" and n.op_type == "Resize")
    assert rules[linear].startswith("Norm")


@pytest.mark.parametrize("bias", [False, True], ids=["bias_free", "bias"])
def test_lrp0_equals_gradient_times_input_through_the_new_kernels(bias):
    """LRP-0 with ε = 0 on every linear op equals gradient × input on a piecewise-linear network (the ε-rule of
    ConvTranspose and of linear Resize, exact adjoints of the gathers, pass-through of Max(·, 0))."""
    ex = onnxlrp.Explainer(upsampling_graph(bias), dtype="float64")
    x = np.random.default_rng(1).normal(size=(3, 2, 6, 6)) * 0.1   # the Min/Clip bounds stay inactive
    lrp = ex.explain(x, method="lrp0", target=[0, 2, 4])
    gxi = ex.explain(x, method="input_x_gradient", target=[0, 2, 4])
    assert_close(lrp.relevance, gxi.relevance, rtol=1e-13, atol=1e-17)  # float64: measured 7e-19 absolute


@pytest.mark.parametrize("method", ["epsilon", "epsilon_plus", "epsilon_plus_flat", "epsilon_gamma_box"])
def test_lrp_conserves_through_the_new_kernels(method):
    """Bias-free, the presets conserve the logit through all of them (linear Resize splits in proportion, the
    gathers sum back, Max/Min/Clip pass relevance through)."""
    ex = onnxlrp.Explainer(upsampling_graph(bias=False), dtype="float64")
    x = np.random.default_rng(2).normal(size=(3, 2, 6, 6)) * 0.1
    res = ex.explain(x, method=method, epsilon=1e-12, stabilizer=1e-12)
    logits = res.output[np.arange(3), res.target]
    assert_close(res.relevance.reshape(3, -1).sum(axis=1), logits, rtol=1e-9)  # measured 7e-11 relative


# ------------------------------------------------------------------------------------------------ torch exports
torch = pytest.importorskip("torch", reason="torch is in the test extra")
nn = torch.nn


class UNet(nn.Module):
    """Reflect-padded convolutions, a max-pool down, a ConvTranspose up, a skip connection, a per-pixel head."""

    def __init__(self, classes=3):
        super().__init__()
        block = lambda cin, cout: nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(cin, cout, 3), nn.ReLU())  # noqa
        self.enc1, self.enc2 = block(2, 4), block(4, 8)
        self.down = nn.MaxPool2d(2)
        self.up = nn.ConvTranspose2d(8, 4, 2, stride=2)
        self.dec = block(8, 4)
        self.head = nn.Conv2d(4, classes, 1)

    def forward(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(self.down(e1))
        return self.head(self.dec(torch.cat([torch.relu(self.up(e2)), e1], dim=1)))


class TinyYolo(nn.Module):
    """Backbone to strides 2 and 4, the stride-4 map upsampled ×2 (nearest) into the stride-2 head, one head per
    scale, outputs reshaped to boxes and concatenated: ``(N, boxes, 5 + classes)``."""

    def __init__(self, classes=3, anchors=2):
        super().__init__()
        conv = lambda cin, cout, s: nn.Sequential(nn.Conv2d(cin, cout, 3, s, 1), nn.SiLU())  # noqa: E731
        self.stem, self.c2, self.c4 = conv(3, 6, 1), conv(6, 8, 2), conv(8, 8, 2)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.fuse = conv(16, 8, 1)
        self.n = 5 + classes
        self.head2 = nn.Conv2d(8, anchors * self.n, 1)
        self.head4 = nn.Conv2d(8, anchors * self.n, 1)

    def _boxes(self, p):
        n, _, h, w = p.shape
        return p.reshape(n, -1, self.n, h, w).permute(0, 1, 3, 4, 2).reshape(n, -1, self.n)

    def forward(self, x):
        p2 = self.c2(self.stem(x))
        p4 = self.c4(p2)
        f2 = self.fuse(torch.cat([self.up(p4), p2], dim=1))
        return torch.cat([self._boxes(self.head2(f2)), self._boxes(self.head4(p4))], dim=1)


def _export(model, shape, dynamo: bool = False) -> bytes:
    """The legacy (TorchScript) exporter at opset 17 with a symbolic batch, or torch.export's (its newest opset)."""
    x = torch.zeros(shape)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            program = torch.onnx.export(model, (x,), dynamo=True, input_names=["x"], output_names=["y"],
                                        verbose=False)
            return program.model_proto.SerializeToString()
        torch.onnx.export(model, (x,), buffer, dynamo=False, opset_version=17, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "N"}, "y": {0: "N"}})
    return buffer.getvalue()


def _torch_gradient(model, x, index):
    """``d y[n, *index] / d x`` per sample in float64."""
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    y = model(xt)
    picked = y[(torch.arange(len(x)),) + tuple(torch.as_tensor(i) for i in index)].sum()
    (grad,) = torch.autograd.grad(picked, xt)
    return y.detach().numpy(), grad.numpy()


def _rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _model(name):
    """``(model in float32, input shape, target, ops its path must hold)``."""
    torch.manual_seed(0)
    if name == "unet":
        target = onnxlrp.Position(1, 3, 5)            # class-1 score of pixel (3, 5)
        return UNet().eval(), (2, 2, 8, 8), target, {"ConvTranspose", "Pad", "MaxPool", "Concat"}
    target = onnxlrp.Position(9, 6)                   # class-1 score of box 9 (of the stride-2 head)
    return TinyYolo().eval(), (2, 3, 8, 8), target, {"Resize", "Concat", "Transpose", "Reshape"}


@pytest.fixture(scope="module", params=["unet", "yolo"])
def shipped(request):
    model, shape, target, ops = _model(request.param)
    onnx_bytes = _export(model, shape)
    x = np.random.default_rng(3).normal(size=shape)
    return request.param, model.double(), onnx_bytes, x, target, ops


def test_shipped_models_use_the_new_kernels(shipped):
    name, _, onnx_bytes, _, _, ops = shipped
    ex = onnxlrp.Explainer(onnx_bytes, dtype="float64")
    assert ops <= {op for _, op in ex.path_nodes()}
    if name == "unet":
        pads = [n for n in ex.path.nodes if n.op_type == "Pad"]
        assert pads and all(n.attrs["mode"] == "reflect" for n in pads)


def test_gradient_and_integrated_gradients_equal_torch_autograd(shipped):
    _, model, onnx_bytes, x, target, _ = shipped
    ex = onnxlrp.Explainer(onnx_bytes, dtype="float64")
    out, grad = _torch_gradient(model, x, target.index)
    res = ex.explain(x, method="gradient", target=target)
    assert_close(res.output, out, rtol=1e-14, atol=1e-15)
    assert within(_rel(res.relevance, grad), 5e-15, "gradient vs autograd")
    alphas, weights = integration_points(8, "gausslegendre")
    ig = sum(w * _torch_gradient(model, a * x, target.index)[1] for a, w in zip(alphas, weights)) * x
    res = ex.explain(x, method="integrated_gradients", target=target, steps=8)
    assert within(_rel(res.relevance, ig), 3e-15, "IG vs autograd quadrature")


def test_epsilon_plus_flat_conserves_the_explained_score(shipped):
    """Bias-free, with tiny stabilisers, the relevance of each sample sums to its explained score (its largest
    output, positive: z⁺ drops an output that only negative contributions reach): nothing leaks at the pads, the
    upsampling, the transposed convolution, the concatenations or the reshapes."""
    _, model, _, x, _, _ = shipped
    model = copy.deepcopy(model).float()
    with torch.no_grad():
        for module in model.modules():
            if getattr(module, "bias", None) is not None:
                module.bias.zero_()
    ex = onnxlrp.Explainer(_export(model, x.shape), dtype="float64")
    res = ex.explain(x, method="epsilon_plus_flat", epsilon=1e-12, stabilizer=1e-12)
    score = res.output.reshape(len(x), -1)[np.arange(len(x)), res.target]
    assert_close(res.relevance.reshape(len(x), -1).sum(axis=1), score, rtol=1e-9)  # measured 1.6e-12 absolute


@pytest.mark.slow
@pytest.mark.parametrize("name", ["unet", "yolo"])
def test_dynamo_exports_explain_alike(name):
    """torch.export's exporter (opset 20: Resize with its opset-18 attributes, Pad with axes) gives the same
    gradient as autograd and a conserving epsilon_plus_flat (several seconds per export: slow)."""
    model, shape, target, ops = _model(name)
    ex = onnxlrp.Explainer(_export(model, shape, dynamo=True), dtype="float64")
    assert ops - {"Reshape", "Transpose"} <= {op for _, op in ex.path_nodes()}
    x = np.random.default_rng(4).normal(size=shape)
    _, grad = _torch_gradient(model.double(), x, target.index)
    assert within(_rel(ex.explain(x, method="gradient", target=target).relevance, grad), 5e-15, "gradient")
