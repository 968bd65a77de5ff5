"""The peers' method names (onnxlrp.methods.names): every iNNvestigate analyzer name and every signxai name resolves
to the documented onnxlrp method and parameters or is refused with the documented reason; the table in
docs/method-names.md is current; seed 000's analyzers (the CLRP notebook, iNNvestigate names) and seed 002's
(signxai's VGG16 and MNIST examples) run by name with the numbers of the directly named method and of torch."""
from __future__ import annotations

import ast
import io
from pathlib import Path

import numpy as np
import pytest
import torch

import onnxlrp
from onnxlrp import errors
from onnxlrp.methods import find_method, resolve_method
from onnxlrp.methods.names import all_names, honoured, names_markdown, peer_names, signxai_number
from onnxlrp.methods.names_table import SIGNXAI_NAMES
from tests.helpers import REPO
from tests.helpers.compare import assert_close, assert_rel

ROWS = all_names()
FIRST = {name: entries[0] for name, entries in peer_names().items()}  # the entry a name resolves to


class MnistNet(torch.nn.Module):
    """signxai's MNIST CNN in small: Conv-ReLU-MaxPool-Conv(conv2d_1)-ReLU-MaxPool-Dense-ReLU-Dense (5 classes)."""

    def __init__(self):
        super().__init__()
        self.conv2d = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.conv2d_1 = torch.nn.Conv2d(4, 6, 3, padding=1)
        self.dense = torch.nn.Linear(6 * 2 * 2, 8)
        self.dense_1 = torch.nn.Linear(8, 5)

    def forward(self, x):
        x = torch.max_pool2d(torch.relu(self.conv2d(x)), 2)
        x = torch.max_pool2d(torch.relu(self.conv2d_1(x)), 2)
        return self.dense_1(torch.relu(self.dense(x.flatten(1))))


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    net = MnistNet().eval()
    x = torch.randn(2, 1, 8, 8)
    x[:, :, 0, :] = 0.0  # zero pixels: sgn0(0) = +1
    f = io.BytesIO()
    torch.onnx.export(net, x, f, dynamo=False, opset_version=17, input_names=["x"], dynamic_axes={"x": {0: "n"}})
    ex = onnxlrp.Explainer(f.getvalue(), dtype="float64")
    return net.double(), x.double(), ex


def documented(row):
    """``(target method, its full parameters, the full parameters the name should have)`` from a table row: the
    name's parameters are the target's defaults, then the row's values (a placeholder's value stays the name's)."""
    target = find_method(row["method"])
    assert target is not None, row
    own = {k: v for k, v in row["params"].items() if k in target.params}
    _, target_full = resolve_method(row["method"], own)
    return target, target_full, {**target_full, **row["params"]}


def torch_input_x_gradient(net, x, target):
    x = x.clone().requires_grad_(True)
    out = net(x)
    out[torch.arange(len(x)), torch.as_tensor(target)].sum().backward()
    return (x.grad * x).detach().numpy()


def sgn0(x):
    return np.where(np.asarray(x) >= 0, 1.0, -1.0)


# ------------------------------------------------------------------------------------------ the table
@pytest.mark.parametrize("name", sorted(FIRST))
def test_every_name_resolves_to_its_documented_method_or_is_refused(name):
    entry = FIRST[name]
    row = next(r for r in ROWS if r["name"] == name and r["peer"] == entry.peer)
    if not honoured(entry):
        with pytest.raises(errors.MethodError, match="is not supported: ") as info:
            resolve_method(name, {})
        assert entry.refused in str(info.value)
        return
    method, full = resolve_method(name, {})
    target, _, expected = documented(row)
    assert full == expected
    assert method.kind == target.kind
    if row["method"] == name:
        assert method is target


def test_lrp_names_assign_the_rules_of_their_method(setup):
    """Every accepted LRP-kind name assigns exactly the rules of the method it documents (same node, same rule)."""
    _, _, ex = setup
    session = ex.session
    checked = 0
    for row in ROWS:
        if row["refused"] or row["name"] != row["method"] and FIRST[row["name"]].peer != row["peer"]:
            continue
        method, full = resolve_method(row["name"], {})
        if method.kind != "lrp" or row["method"] in ("clrp1", "clrp2", "sglrp"):
            continue
        target, target_full, _ = documented(row)
        assert method.rules(session, full) == target.rules(session, target_full), row["name"]
        checked += 1
    assert checked > 100


def test_names_markdown_is_current():
    assert (REPO / "docs" / "method-names.md").read_text(encoding="utf-8") == names_markdown()


def test_signxai_names_are_the_installed_packages_method_names():
    spec = pytest.importorskip("signxai").__file__
    root = Path(spec).parent
    found = set()
    for wrappers in ("tf_signxai/methods/wrappers.py", "torch_signxai/methods/wrappers.py"):
        tree = ast.parse((root / wrappers).read_text(encoding="utf-8"))
        found |= {n.name for n in tree.body if isinstance(n, ast.FunctionDef)
                  and not n.name.startswith(("_", "calculate_")) and not n.name.endswith("_DISABLED_BROKEN_WRAPPER")}
    assert set(SIGNXAI_NAMES) == found
    assert len(SIGNXAI_NAMES) == len(set(SIGNXAI_NAMES)) == 205


@pytest.mark.parametrize(("value", "text"), [(0.1, "0_1"), (1e-7, "0_0000001"), (2.0, "2"), (100, "100"),
                                             (-0.5, "neg_0_5"), (0.25, "0_25")])
def test_signxai_number_notation(value, text):
    assert signxai_number(value) == text


def test_a_refused_name_says_why():
    with pytest.raises(errors.MethodError, match="'vargrad_x_sign' .signxai. is not supported: VarGrad"):
        resolve_method("vargrad_x_sign", {})
    with pytest.raises(errors.MethodError, match="'deep_taylor' .iNNvestigate. is not supported: .*Deep Taylor"):
        resolve_method("deep_taylor", {})


# ------------------------------------------------------------------------------- seed 000: iNNvestigate names
@pytest.mark.parametrize(("name", "direct", "params"), [
    ("lrp.z", "lrp_z", {}),
    ("lrp.epsilon", "lrp_epsilon_0_1", {}),
    ("lrp.alpha_1_beta_0", "lrp_alpha_1_beta_0", {}),
    ("lrp.alpha_2_beta_1", "lrp_alpha_2_beta_1", {}),
    ("lrp.sequential_preset_a", "lrp_sequential_composite_a", {}),
    ("lrp.sequential_preset_a_flat", "flatlrp_sequential_composite_a", {}),
    ("lrp.z_IB", "lrp0", {"zero_params": ("bias",)}),
    ("lrp.z_plus", "zplus", {"zero_params": ("bias",)}),
    ("lrp.flat", "flat", {}),
    ("input_t_gradient", "input_x_gradient", {}),
])
def test_seed000_innvestigate_names_equal_the_direct_method(setup, name, direct, params):
    _, x, ex = setup
    by_name = ex.explain(x.numpy(), method=name, **({"epsilon": 0.1} if name == "lrp.epsilon" else {}))
    direct_result = ex.explain(x.numpy(), method=direct, **params)
    assert_close(by_name.relevance, direct_result.relevance, rtol=0, atol=0, label=f"{name} vs {direct}")


def test_seed000_lrp_z_equals_torch_gradient_x_input(setup):
    """LRP-0 with the bias equals gradient x input on a ReLU/max-pooling network (an independent reference)."""
    net, x, ex = setup
    res = ex.explain(x.numpy(), method="lrp.z")
    assert_rel(res.relevance, torch_input_x_gradient(net, x, res.target), 2e-15, label="lrp.z vs torch x*grad")


def test_seed000_clrp_next_to_the_innvestigate_analyzers(setup):
    """The notebook's CLRP next to its analyzers: CLRP's target map (bias-free z+, the box rule on the first Conv)
    equals lrp.z_plus (iNNvestigate's bias-free alpha1-beta0) once the first Conv also gets z+."""
    _, x, ex = setup
    zplus = onnxlrp.rules.ZPlus(stabilizer=1e-6, zero_params=("bias",))
    clrp = ex.explain(x.numpy(), method="clrp1", rules={"Conv": zplus})
    reference = ex.explain(x.numpy(), method="lrp.z_plus")
    assert_close(clrp.intermediate["target_relevance"], reference.relevance, rtol=0, atol=0,
                 label="clrp1 target map vs lrp.z_plus")
    assert clrp.relevance.min() >= 0 and clrp.relevance.any()


# ------------------------------------------------------------------------------------------ seed 002: signxai names
def test_seed002_gradient_x_input_equals_torch(setup):
    net, x, ex = setup
    res = ex.explain(x.numpy(), method="gradient_x_input")
    assert_rel(res.relevance, torch_input_x_gradient(net, x, res.target), 2e-15,
               label="gradient_x_input vs torch")


@pytest.mark.parametrize(("name", "base", "params", "factor"), [
    ("lrp_epsilon_0_1_x_sign", "lrp_epsilon_0_1", {}, sgn0),
    ("lrp_epsilon_0_1_x_input", "lrp_epsilon_0_1", {}, lambda x: x),
    ("lrp_epsilon_0_1_x_input_x_sign", "lrp_epsilon_0_1", {}, np.abs),
    ("gradient_x_input_x_sign", "gradient", {}, np.abs),
    ("guided_backprop_x_input", "guided_backprop", {}, lambda x: x),
    ("lrp_alpha_1_beta_0_x_sign", "lrp_alpha_1_beta_0", {}, sgn0),
    ("lrp_flat_x_sign", "flat", {}, sgn0),
    ("lrp_z_plus_x_input", "zplus", {"zero_params": ("bias",)}, lambda x: x),
    ("smoothgrad_x_input", "smoothgrad", {"samples": 50, "noise_level": 0.2}, lambda x: x),
    ("grad_cam_x_input", "grad_cam", {}, lambda x: x),
    ("integrated_gradients_x_sign", "integrated_gradients", {"steps": 50}, sgn0),
])
def test_seed002_signxai_factor_names_equal_base_times_factor(setup, name, base, params, factor):
    _, x, ex = setup
    seed = {"random_state": 0} if base == "smoothgrad" else {}
    by_name = ex.explain(x.numpy(), method=name, **seed).relevance
    expected = ex.explain(x.numpy(), method=base, **params, **seed).relevance * factor(x.numpy())
    assert_close(by_name, expected, rtol=0, atol=0, label=f"{name} vs {base} times its factor")


@pytest.mark.parametrize("name", ["gradient", "gradient_x_input", "gradient_x_sign", "gradient_x_sign_mu_neg_0_5",
                                  "guided_backprop_x_sign", "lrp_z", "lrpsign_z", "lrp_epsilon_0_1",
                                  "lrpsign_epsilon_0_1", "lrp_epsilon_0_1_std_x", "lrpsign_epsilon_0_1_std_x",
                                  "lrp_alpha_1_beta_0", "lrpsign_alpha_1_beta_0", "lrp_sequential_composite_a",
                                  "lrpsign_sequential_composite_b", "deconvnet_x_sign", "smoothgrad_x_sign",
                                  "grad_cam_MNISTCNN", "input_t_gradient"])
def test_seed002_example_names_run(setup, name):
    """signxai's VGG16/MNIST example names all run by name on the MNIST-style net."""
    _, x, ex = setup
    res = ex.explain(x.numpy(), method=name, **({"random_state": 0} if "smoothgrad" in name else {}))
    assert res.relevance.shape == tuple(x.shape) and np.isfinite(res.relevance).all() and res.relevance.any()


def test_seed002_grad_cam_mnistcnn_is_grad_cam_at_conv2d_1(setup):
    _, x, ex = setup
    by_name = ex.explain(x.numpy(), method="grad_cam_MNISTCNN").relevance
    direct = ex.explain(x.numpy(), method="grad_cam", layer="conv2d_1").relevance
    default = ex.explain(x.numpy(), method="grad_cam", layer="conv2d").relevance
    assert_close(by_name, direct, rtol=0, atol=0, label="grad_cam_MNISTCNN vs grad_cam(layer=conv2d_1)")
    assert not np.allclose(by_name, default)  # the layer name matters


def test_an_innvestigate_parameter_is_set_by_name(setup):
    """``lrp.epsilon`` takes iNNvestigate's epsilon (default 1e-7) and runs lrp_epsilon_<epsilon>."""
    _, x, ex = setup
    default = ex.explain(x.numpy(), method="lrp.epsilon").relevance
    tiny = ex.explain(x.numpy(), method="lrp_epsilon_0_0000001").relevance
    assert_close(default, tiny, rtol=0, atol=0, label="lrp.epsilon default vs lrp_epsilon_0_0000001")
    with pytest.raises(errors.MethodError, match="epsilon"):
        ex.explain(x.numpy(), method="lrp.epsilon", epsilon=-1.0)
