"""Recurrent kernels (LSTM, GRU, RNN) and their LRP rule (``onnxlrp.lrp.recurrent.RecurrentEpsilon``).

* forward equals onnxruntime on single-node models for every direction, sequence lengths, initial states, peepholes,
  ``input_forget``, ``linear_before_reset``, ``clip``, activations (with alpha/beta), layout 1 and opsets 7/14/22
  (onnxruntime refuses ``layout=1``: those compare with the layout-0 twin, transposed);
* the VJP (backpropagation through time) equals finite differences in float64, for X, initial_h and initial_c;
* torch ``nn.LSTM``/``nn.GRU`` classifiers exported with ``torch.onnx.export``: gradient equals torch autograd;
* LSTM LRP equals a numpy transcription of Arras et al.'s ``LSTM_bidi.lrp`` (ArrasL/LRP_for_LSTM) on the same weights,
  unidirectional and bidirectional, through the whole model (``epsilon`` preset) and at the node (bias_factor 0, 1);
* conservation: exact with ``bias_factor=1`` (bias and stabiliser redistributed), within ε effects otherwise.
"""
from __future__ import annotations

import io
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxlrp
from onnxlrp.engine.graph import Graph
from onnxlrp.engine.kernel import Call
from onnxlrp.engine.registry import resolve
from onnxlrp.lrp.recurrent import RecurrentEpsilon
from tests.helpers.compare import assert_close, within

GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
T, N, F, H = 5, 3, 4, 3  # steps, batch, features, hidden


def build(op, attrs=None, *, opset=17, seq=None, h0=False, c0=False, peep=False, bias=True, layout=0, seed=0,
          zero_bias=False):
    """A single-node model (X and the initial states as graph inputs, weights as initializers) and its feeds."""
    attrs = dict(attrs or {})
    g = np.random.default_rng(seed)
    D = 2 if attrs.get("direction") == "bidirectional" else 1
    G = GATES[op]
    consts = {"W": g.normal(size=(D, G * H, F)) * 0.6, "R": g.normal(size=(D, G * H, H)) * 0.6}
    names, data = ["X", "W", "R"], [("X", (N, T, F) if layout else (T, N, F))]
    if bias:
        consts["B"] = g.normal(size=(D, 2 * G * H)) * (0.0 if zero_bias else 0.4)
    names.append("B" if bias else "")
    if seq is not None:
        consts["seq"] = np.array(seq, dtype=np.int32)
    names.append("seq" if seq is not None else "")
    state = (N, D, H) if layout else (D, N, H)
    for flag, name in ((h0, "h0"), (c0 and op == "LSTM", "c0")):
        if flag:
            data.append((name, state))
        names.append(name if flag else "")
    if peep:
        consts["P"] = g.normal(size=(D, 3 * H)) * 0.5
        names = names[:7] + ["P"]
    while names[-1] == "":
        names.pop()
    outputs = ["Y", "Y_h", "Y_c"][:3 if op == "LSTM" else 2]
    if layout:
        attrs["layout"] = 1
    node = helper.make_node(op, names, outputs, hidden_size=H, **attrs)
    graph = helper.make_graph(
        [node], op, [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in data],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
        [numpy_helper.from_array(v.astype(np.float32) if v.dtype.kind == "f" else v, name=k)
         for k, v in consts.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    feeds = {n: g.normal(size=s).astype(np.float32) for n, s in data}
    return onnx.shape_inference.infer_shapes(model), feeds


def node_call(model, feeds, dtype=np.float64, inputs=None):
    """The model's only node and a :class:`Call` on it (graph inputs vary, initializers do not)."""
    node = Graph(model).nodes[0]
    consts = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    values = {**consts, **(inputs or feeds)}
    args = tuple(None if not t else (values[t].astype(dtype) if values[t].dtype.kind == "f" else values[t])
                 for t in node.inputs)
    return node, Call(node, args, (), tuple(bool(t) and t in feeds for t in node.inputs), np)


VARIANTS = [  # (id, op, attrs, build options)
    *[(f"{op.lower()}_{name}", op, attrs, kw) for op in GATES for name, attrs, kw in (
        ("forward", {}, {}),
        ("reverse_h0", {"direction": "reverse"}, {"h0": True, "c0": True}),
        ("bidirectional_states", {"direction": "bidirectional"}, {"h0": True, "c0": True}),
        ("bidirectional_seq_lens", {"direction": "bidirectional"}, {"seq": [5, 2, 4]}),
        ("reverse_seq_lens_h0", {"direction": "reverse"}, {"seq": [3, 5, 1], "h0": True}),
        ("bidirectional_empty_sequence", {"direction": "bidirectional"}, {"seq": [0, 2, 5], "h0": True, "c0": True}),
        ("layout1_bidirectional_seq", {"direction": "bidirectional"},
         {"layout": 1, "seq": [3, 5, 2], "h0": True, "c0": True, "opset": 14}),
        ("clip", {"clip": 0.7}, {}),
        ("no_bias_opset7", {}, {"bias": False, "opset": 7}),
        ("opset22", {}, {"opset": 22}),
    )],
    ("lstm_peepholes", "LSTM", {}, {"peep": True, "c0": True}),
    ("lstm_input_forget_peepholes", "LSTM", {"input_forget": 1, "direction": "bidirectional"},
     {"peep": True, "c0": True, "h0": True, "seq": [4, 5, 2]}),
    ("lstm_activations", "LSTM", {"activations": ["HardSigmoid", "Relu", "Tanh"], "activation_alpha": [0.3],
                                  "activation_beta": [0.4]}, {"c0": True}),
    ("lstm_activations_bidirectional", "LSTM",
     {"direction": "bidirectional", "activations": ["Sigmoid", "Tanh", "Relu", "Sigmoid", "Relu", "Tanh"]}, {}),
    ("lstm_affine_scaledtanh_softplus", "LSTM", {"activations": ["Affine", "ScaledTanh", "Softplus"],
                                                 "activation_alpha": [0.5, 1.5], "activation_beta": [0.2, 0.7]}, {}),
    ("lstm_elu_softsign", "LSTM", {"activations": ["Sigmoid", "Elu", "Softsign"]}, {}),
    ("gru_linear_before_reset", "GRU", {"linear_before_reset": 1}, {"h0": True}),
    ("gru_linear_before_reset_bidirectional_seq", "GRU", {"linear_before_reset": 1, "direction": "bidirectional"},
     {"seq": [5, 2, 4], "h0": True}),
    ("gru_activations", "GRU", {"activations": ["HardSigmoid", "LeakyRelu"], "activation_alpha": [0.3, 0.1]}, {}),
    ("rnn_relu", "RNN", {"activations": ["Relu"]}, {"h0": True}),
    ("rnn_sigmoid_bidirectional", "RNN", {"activations": ["Sigmoid", "Tanh"], "direction": "bidirectional"}, {}),
    ("rnn_leakyrelu_default_alpha", "RNN", {"activations": ["LeakyRelu"]}, {}),
    ("rnn_thresholdedrelu", "RNN", {"activations": ["ThresholdedRelu"], "activation_alpha": [0.2]}, {}),
]


def _ort_outputs(op, attrs, kw):
    model, feeds = build(op, attrs, **kw)
    if not kw.get("layout"):
        return model, feeds, ort.InferenceSession(model.SerializeToString()).run(None, feeds)
    twin, _ = build(op, attrs, **{**kw, "layout": 0})  # onnxruntime: "layout == 1 is not supported"
    ref = ort.InferenceSession(twin.SerializeToString()).run(None, {k: v.swapaxes(0, 1) for k, v in feeds.items()})
    return model, feeds, [ref[0].transpose(2, 0, 1, 3)] + [r.swapaxes(0, 1) for r in ref[1:]]


@pytest.mark.parametrize("op, attrs, kw", [v[1:] for v in VARIANTS], ids=[v[0] for v in VARIANTS])
def test_forward_matches_onnxruntime(op, attrs, kw):
    model, feeds, expected = _ort_outputs(op, attrs, kw)
    node, call = node_call(model, feeds, np.float32)
    got = resolve(node).forward(call)
    assert len(got) == len(expected)
    for out, ref in zip(got, expected):
        assert out.shape == ref.shape and out.dtype == np.float32
        assert_close(out, ref, rtol=3e-6, atol=3e-6)  # float32: measured up to 6e-7 (rnn_clip, ~9x)


@pytest.mark.parametrize("op, attrs, kw", [v[1:] for v in VARIANTS], ids=[v[0] for v in VARIANTS])
def test_vjp_matches_finite_differences(op, attrs, kw):
    """<g, f(x + h v) − f(x − h v)> / 2h == <vjp(g), v> for X, initial_h and initial_c (float64)."""
    model, feeds = build(op, attrs, **kw)
    node, call = node_call(model, feeds)
    kernel = resolve(node)
    g = np.random.default_rng(2)
    outs = kernel.forward(call)
    grads = tuple(g.normal(size=o.shape) for o in outs)
    vjp = kernel.vjp(call, grads)
    step = 1e-6
    ports = [p for p, v in enumerate(call.varying) if v]
    assert ports and all(vjp[p] is not None for p in ports)
    for port in ports:
        v = g.normal(size=call.inputs[port].shape)
        shifted = [kernel.forward(Call(node, tuple(a + sign * step * v if k == port else a
                                                   for k, a in enumerate(call.inputs)), (), call.varying, np))
                   for sign in (1, -1)]
        lhs = sum(float(np.sum(gr * (a - b))) for gr, a, b in zip(grads, *shifted)) / (2 * step)
        assert vjp[port].shape == call.inputs[port].shape
        assert lhs == pytest.approx(float(np.sum(vjp[port] * v)), rel=1e-6, abs=1e-7)


def test_padded_steps_receive_nothing_and_carry_the_state():
    """With sequence lengths, X beyond a sample's length gets zero gradient and relevance."""
    model, feeds = build("LSTM", {"direction": "bidirectional"}, seq=[5, 2, 4])
    node, call = node_call(model, feeds)
    kernel = resolve(node)
    outs = kernel.forward(call)
    g = np.random.default_rng(3)
    for r_x in (kernel.vjp(call, tuple(g.normal(size=o.shape) for o in outs))[0],
                RecurrentEpsilon(1e-3).propagate(kernel, call, tuple(g.normal(size=o.shape) for o in outs))[0]):
        assert np.all(r_x[2:, 1] == 0) and np.all(r_x[4:, 2] == 0) and np.any(r_x[:2, 1] != 0)


def test_weights_that_depend_on_the_input_are_refused():
    model, _ = build("GRU")
    node = Graph(model).nodes[0]
    assert "must be constants" in resolve(node).data_inputs(node, {"X", "W"})
    assert resolve(node).data_inputs(node, {"X"}) == (0,)


# ---------------------------------------------------------------------------------------------- torch exports

torch = pytest.importorskip("torch")


class _Classifier(torch.nn.Module):
    """Text-style classifier (embedding done outside): ``(N, T, D)`` -> LSTM/GRU -> last hidden state -> Linear."""

    def __init__(self, kind, bidirectional, d=6, h=5, classes=3):
        super().__init__()
        self.rnn = getattr(torch.nn, kind)(d, h, batch_first=True, bidirectional=bidirectional)
        self.fc = torch.nn.Linear(h * (2 if bidirectional else 1), classes)
        self.bidirectional = bidirectional

    def forward(self, x):
        _, state = self.rnn(x)
        h = state[0] if isinstance(state, tuple) else state
        return self.fc(torch.cat([h[-2], h[-1]], dim=1) if self.bidirectional else h[-1])


_EXPORTS: dict = {}


def classifier(kind, bidirectional):
    """``(torch module in float64, exported ONNX model, input batch)``, cached per configuration."""
    key = (kind, bidirectional)
    if key not in _EXPORTS:
        torch.manual_seed(len(_EXPORTS))
        module = _Classifier(kind, bidirectional).eval()
        x = torch.randn(3, 7, 6)
        buffer = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (x,), buffer, dynamo=False, opset_version=17, input_names=["x"],
                              output_names=["logits"], dynamic_axes={"x": {0: "N"}, "logits": {0: "N"}})
        _EXPORTS[key] = (module.double(), onnx.load_from_string(buffer.getvalue()), x.double().numpy())
    return _EXPORTS[key]


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bidi"])
def test_torch_classifier_gradient_equals_autograd(kind, bidirectional):
    module, model, x = classifier(kind, bidirectional)
    ex = onnxlrp.Explainer(model, dtype="float64")
    assert ex.categories[next(n for n, op in ex.path_nodes() if op == kind)] == "recurrent"
    xt = torch.tensor(x, requires_grad=True)
    logits = module(xt)
    logits[:, 1].sum().backward()
    res = ex.explain(x, method="gradient", target=1)
    assert_close(res.output, logits.detach().numpy(), rtol=1e-14, atol=1e-14)  # float64: measured 1e-16
    expected = xt.grad.numpy()
    assert within(np.abs(res.relevance - expected).max() / np.abs(expected).max(), 5e-15, "max error / max")


# ---------------------------------------------------------------------------------------------- Arras et al.


def lrp_linear(hin, w, b, hout, rout, bias_nb_units, eps, bias_factor=0.0):
    """``lrp_linear`` of ArrasL/LRP_for_LSTM (``code/LSTM/LRP_linear_layer.py``): ``hin (D,)``, ``w (D, M)``,
    ``b (M,)``, ``hout (M,)``, ``rout (M,)`` -> ``rin (D,)``."""
    sign_out = np.where(hout[None, :] >= 0, 1.0, -1.0)
    numer = w * hin[:, None] + bias_factor * (b[None, :] + eps * sign_out) / bias_nb_units
    denom = hout[None, :] + eps * sign_out
    return ((numer / denom) * rout[None, :]).sum(axis=1)


class ArrasLSTM:
    """A numpy transcription of ``LSTM_bidi`` (ArrasL/LRP_for_LSTM, ``code/LSTM/LSTM_bidi.py``): forward and
    ``lrp`` for one sample, weights in its gate order ``i, g, f, o``, the right (reverse) encoder optional, output
    ``s = Why_Left h_Left[T−1] (+ Why_Right h_Right[T−1]) + b`` (the reference has no output bias; it only enters
    ``s``, which is ``hout`` of the output layer there as well)."""

    def __init__(self, module: _Classifier):
        sd = {k: v.detach().numpy() for k, v in module.state_dict().items()}
        h = module.rnn.hidden_size
        order = np.concatenate([np.arange(0, h), np.arange(2 * h, 3 * h), np.arange(h, 2 * h), np.arange(3 * h, 4 * h)])
        self.enc = {}  # torch gates i, f, g, o -> i, g, f, o
        for side, suffix in (("Left", ""), ("Right", "_reverse")):
            if side == "Right" and not module.bidirectional:
                continue
            self.enc[side] = (sd[f"rnn.weight_ih_l0{suffix}"][order], sd[f"rnn.bias_ih_l0{suffix}"][order],
                              sd[f"rnn.weight_hh_l0{suffix}"][order], sd[f"rnn.bias_hh_l0{suffix}"][order])
        self.Why = {"Left": sd["fc.weight"][:, :h], "Right": sd["fc.weight"][:, h:]}
        self.by = sd["fc.bias"]

    def forward(self, x):
        T, d = len(x), self.enc["Left"][2].shape[1]
        idx, idx_i, idx_g = np.r_[0:d, 2 * d:4 * d], np.arange(0, d), np.arange(d, 2 * d)
        idx_f, idx_o = np.arange(2 * d, 3 * d), np.arange(3 * d, 4 * d)
        self.state = {}
        self.s = self.by.copy()
        for side, (wxh, bxh, whh, bhh) in self.enc.items():
            xs = x if side == "Left" else x[::-1].copy()
            h, c = np.zeros((T + 1, d)), np.zeros((T + 1, d))
            pre, gates = np.zeros((T, 4 * d)), np.zeros((T, 4 * d))
            for t in range(T):
                pre[t] = wxh @ xs[t] + whh @ h[t - 1] + bxh + bhh
                gates[t, idx] = 1.0 / (1.0 + np.exp(-pre[t, idx]))
                gates[t, idx_g] = np.tanh(pre[t, idx_g])
                c[t] = gates[t, idx_f] * c[t - 1] + gates[t, idx_i] * gates[t, idx_g]
                h[t] = gates[t, idx_o] * np.tanh(c[t])
            self.state[side] = (xs, h, c, pre, gates)
            self.s = self.s + self.Why[side] @ h[T - 1]
        return self.s.copy()

    def lrp(self, x, lrp_class, eps=0.001, bias_factor=0.0, rh_last=None):
        """``(Rx (T, e), R_initial {side: (Rh[T], Rc[T])}, Rh[T−1] per side)``; ``rh_last`` replaces the output
        layer's relevance of the final hidden states (``{side: Rh[T−1]}``)."""
        self.forward(x)
        T, d = len(x), self.enc["Left"][2].shape[1]
        idx_i, idx_g, idx_f = np.arange(0, d), np.arange(d, 2 * d), np.arange(2 * d, 3 * d)
        rout_mask = np.zeros(len(self.s))
        rout_mask[lrp_class] = 1.0
        rx_total, initial, heads = np.zeros(x.shape), {}, {}
        for side, (wxh, bxh, whh, bhh) in self.enc.items():
            xs, h, c, pre, gates = self.state[side]
            e = xs.shape[1]
            rx, rh, rc, rg = np.zeros(xs.shape), np.zeros((T + 1, d)), np.zeros((T + 1, d)), np.zeros((T, d))
            rh[T - 1] = (lrp_linear(h[T - 1], self.Why[side].T, np.zeros(len(self.s)), self.s, self.s * rout_mask,
                                    2 * d, eps, bias_factor) if rh_last is None else rh_last[side])
            heads[side] = rh[T - 1].copy()
            for t in reversed(range(T)):
                rc[t] += rh[t]
                rc[t - 1] = lrp_linear(gates[t, idx_f] * c[t - 1], np.identity(d), np.zeros(d), c[t], rc[t], 2 * d,
                                       eps, bias_factor)
                rg[t] = lrp_linear(gates[t, idx_i] * gates[t, idx_g], np.identity(d), np.zeros(d), c[t], rc[t],
                                   2 * d, eps, bias_factor)
                rx[t] = lrp_linear(xs[t], wxh[idx_g].T, bxh[idx_g] + bhh[idx_g], pre[t, idx_g], rg[t], d + e, eps,
                                   bias_factor)
                rh[t - 1] = lrp_linear(h[t - 1], whh[idx_g].T, bxh[idx_g] + bhh[idx_g], pre[t, idx_g], rg[t], d + e,
                                       eps, bias_factor)
            rx_total += rx if side == "Left" else rx[::-1]
            initial[side] = (rh[-1].copy(), rc[-1].copy())
        return rx_total, initial, heads


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bidi"])
def test_lstm_lrp_equals_arras_transcription(bidirectional):
    """The ``epsilon`` preset (ε = 0.001 on the head and the LSTM, bias_factor 0) through the exported classifier
    equals Arras et al.'s LRP of the same weights, every sample, float64."""
    module, model, x = classifier("LSTM", bidirectional)
    ex = onnxlrp.Explainer(model, dtype="float64")
    rules = dict((op, rule) for _, op, rule in ex.rules_for("epsilon", epsilon=1e-3))
    assert rules["LSTM"] == "RecurrentEpsilon(epsilon=0.001, bias_factor=0.0)"
    targets = np.array([0, 2, 1])
    res = ex.explain(x, method="epsilon", target=targets, epsilon=1e-3)
    reference = ArrasLSTM(module)
    expected = np.stack([reference.lrp(x[n], targets[n], eps=1e-3)[0] for n in range(len(x))])
    assert_close(res.output[np.arange(3), targets], [reference.forward(x[n])[targets[n]]
                                                                    for n in range(3)], rtol=1e-13)
    assert within(np.abs(res.relevance - expected).max() / np.abs(expected).max(), 3e-14, "max error / max")


@pytest.mark.parametrize("bias_factor", [0.0, 1.0])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bidi"])
def test_lstm_rule_equals_arras_transcription_at_the_node(bidirectional, bias_factor):
    """At the LSTM node, from the same relevance of the final hidden states: the rule's relevance of X and of the
    (varying, zero) initial states equals the transcription's, with either bias_factor."""
    module, model, x = classifier("LSTM", bidirectional)
    reference = ArrasLSTM(module)
    graph = Graph(model)
    node = next(n for n in graph.nodes if n.op_type == "LSTM")
    dirs, hidden = (2 if bidirectional else 1), module.rnn.hidden_size
    zeros = np.zeros((dirs, len(x), hidden))
    args = (x.transpose(1, 0, 2),) + tuple(graph.constants[t].astype(np.float64) for t in node.inputs[1:4]) \
        + (None, zeros, zeros)
    call = Call(node, args, (), (True, False, False, False, False, True, True), np)
    sides = ("Left", "Right")[:dirs]
    runs = [reference.lrp(x[n], n % 3, eps=1e-3, bias_factor=bias_factor) for n in range(len(x))]
    r_hT = np.stack([np.stack([run[2][side] for run in runs]) for side in sides])  # (D, N, H)
    rule = RecurrentEpsilon(epsilon=1e-3, bias_factor=bias_factor)
    r_x, *_, r_h0, r_c0 = rule.propagate(resolve(node), call, (None, r_hT, None))
    expected_x = np.stack([run[0] for run in runs])
    assert within(np.abs(r_x.transpose(1, 0, 2) - expected_x).max() / np.abs(expected_x).max(), 3e-14, "R(x)")
    for k, got in ((0, r_h0), (1, r_c0)):
        expected = np.stack([np.stack([run[1][side][k] for run in runs]) for side in sides])
        assert_close(got, expected, rtol=1e-13, atol=1e-15 * np.abs(expected_x).max())
    if bias_factor == 1.0:  # conserved: input, initial states and nothing else
        assert r_x.sum() + r_h0.sum() + r_c0.sum() == pytest.approx(r_hT.sum(), rel=1e-10)


# ---------------------------------------------------------------------------------------------- conservation

CONSERVATION = [v for v in VARIANTS if v[0].split("_", 1)[1] in (
    "forward", "bidirectional_seq_lens", "reverse_seq_lens_h0", "layout1_bidirectional_seq", "clip",
    "bidirectional_empty_sequence")
    or v[0] in ("lstm_input_forget_peepholes", "gru_linear_before_reset_bidirectional_seq", "rnn_relu")]


@pytest.mark.parametrize("op, attrs, kw", [v[1:] for v in CONSERVATION], ids=[v[0] for v in CONSERVATION])
def test_relevance_is_conserved(op, attrs, kw):
    """bias_factor 1: Σ R(X, initial states) = Σ R(Y, Y_h, Y_c) exactly; bias_factor 0 with zero biases and a
    tiny ε: equal within ε effects."""
    for bias_factor, eps, zero_bias, tol in ((1.0, 1e-3, False, 1e-10), (0.0, 1e-9, True, 1e-6)):
        model, feeds = build(op, attrs, **{**kw, "h0": True, "c0": True, "zero_bias": zero_bias})
        node, call = node_call(model, feeds)
        kernel = resolve(node)
        outs = kernel.forward(call)
        g = np.random.default_rng(4)
        r_out = tuple(g.normal(size=o.shape) * (o != 0) for o in outs)  # Y is 0 (constant) at padded steps
        r_in = RecurrentEpsilon(eps, bias_factor).propagate(kernel, call, r_out)
        total_in = sum(float(r.sum()) for r in r_in if r is not None)
        total_out = sum(float(r.sum()) for r in r_out)
        assert total_in == pytest.approx(total_out, rel=tol, abs=tol)


def test_presets_give_recurrent_nodes_the_recurrent_rule():
    _, model, x = classifier("LSTM", True)
    ex = onnxlrp.Explainer(model, dtype="float64")
    for method, params, rule in (("epsilon", {"epsilon": 0.01}, "RecurrentEpsilon(epsilon=0.01, bias_factor=0.0)"),
                                 ("lrp0", {}, "RecurrentEpsilon(epsilon=0.0, bias_factor=0.0)"),
                                 ("gamma", {}, "RecurrentEpsilon(epsilon=1e-06, bias_factor=0.0)")):
        assert dict((op, r) for _, op, r in ex.rules_for(method, **params))["LSTM"] == rule
    # the head after an LSTM is not a first layer (no flat rule on the classifier)
    assert dict((op, r) for _, op, r in ex.rules_for("epsilon_plus_flat"))["Gemm"].startswith("Epsilon(")
    res = ex.explain(x, method="epsilon", rules={"LSTM": ("recurrent_epsilon", {"epsilon": 1e-3, "bias_factor": 1})})
    plain = ex.explain(x, method="epsilon", epsilon=1e-3)
    assert np.isfinite(res.relevance).all() and not np.allclose(res.relevance, plain.relevance)
