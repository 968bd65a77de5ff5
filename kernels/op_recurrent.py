"""Recurrent layers: LSTM, GRU and RNN (category ``recurrent``), opset 7 on (``layout`` from 14; 22 adds types only).

Every attribute is supported: ``direction`` (forward, reverse, bidirectional), ``hidden_size``, ``activations`` with
``activation_alpha``/``activation_beta`` (Sigmoid, Tanh, Relu, Affine, LeakyRelu, ThresholdedRelu, ScaledTanh,
HardSigmoid, Elu, Softsign, Softplus), ``clip``, ``input_forget`` (LSTM), ``linear_before_reset`` (GRU) and
``layout`` 0/1; inputs ``X, W, R, B, sequence_lens, initial_h, initial_c, P`` (peepholes); outputs ``Y, Y_h, Y_c``.
Relevance and gradients flow to ``X``, ``initial_h`` and ``initial_c`` (the weights must be constants).

The forward pass loops over time steps only (batched over samples and units). Each direction is unrolled in its
*processing order*: step ``s`` of sample ``n`` reads time position ``index[s, n]`` (``s`` forward; ``L_n − 1 − s``
reverse, ``L_n`` the sample's sequence length) and is *active* while ``s < L_n``; a padded step carries the state
unchanged and writes 0 to ``Y`` (as onnxruntime does). The VJP is backpropagation through time, exact.

Protocol for rules (category ``recurrent``; ``onnxlrp.lrp.recurrent`` is written against it): ``cell``
(``"lstm"``, ``"gru"`` or ``"rnn"``) and ``unroll(call) -> Unrolled``, which recomputes the layer and exposes one
:class:`Steps` record per direction (gates, states, pre-activations, the candidate path's weights) plus
``split(relevance)`` (the node's output relevance per direction and step) and ``join(results)`` (per-step input
relevance back to the node's inputs, summed over directions).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from onnxlrp.engine.kernel import Kernel, UnsupportedOpError
from onnxlrp.engine.registry import register_kernel

# ---------------------------------------------------------------------------------------------- activations


def _sigmoid(xp, z):
    e = xp.exp(-xp.abs(z))
    return xp.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


#: lower-case name -> (f(xp, z, a, b), f'(xp, z, y, a, b), default alpha, default beta); ``None``: not used
_FUNCTIONS = {
    "sigmoid": (lambda xp, z, a, b: _sigmoid(xp, z), lambda xp, z, y, a, b: y * (1 - y), None, None),
    "tanh": (lambda xp, z, a, b: xp.tanh(z), lambda xp, z, y, a, b: 1 - y * y, None, None),
    "relu": (lambda xp, z, a, b: xp.maximum(z, 0), lambda xp, z, y, a, b: (z > 0) * 1.0, None, None),
    "affine": (lambda xp, z, a, b: a * z + b, lambda xp, z, y, a, b: 0 * z + a, 1.0, 0.0),
    "leakyrelu": (lambda xp, z, a, b: xp.where(z >= 0, z, a * z), lambda xp, z, y, a, b: xp.where(z >= 0, 1.0, a),
                  0.01, None),
    "thresholdedrelu": (lambda xp, z, a, b: xp.where(z > a, z, 0.0), lambda xp, z, y, a, b: (z > a) * 1.0, 1.0, None),
    "scaledtanh": (lambda xp, z, a, b: a * xp.tanh(b * z), lambda xp, z, y, a, b: a * b * (1 - xp.tanh(b * z) ** 2),
                   1.0, 1.0),
    "hardsigmoid": (lambda xp, z, a, b: xp.clip(a * z + b, 0, 1),
                    lambda xp, z, y, a, b: ((a * z + b > 0) & (a * z + b < 1)) * a, 0.2, 0.5),
    "elu": (lambda xp, z, a, b: xp.where(z >= 0, z, a * (xp.exp(xp.minimum(z, 0)) - 1)),
            lambda xp, z, y, a, b: xp.where(z >= 0, 1.0, y + a), 1.0, None),
    "softsign": (lambda xp, z, a, b: z / (1 + xp.abs(z)), lambda xp, z, y, a, b: 1 / (1 + xp.abs(z)) ** 2, None,
                 None),
    "softplus": (lambda xp, z, a, b: xp.logaddexp(0, z), lambda xp, z, y, a, b: _sigmoid(xp, z), None, None),
}


@dataclass(frozen=True)
class Activation:
    """One of the RNN family's activation functions with its ``alpha``/``beta``, and its derivative."""

    name: str
    alpha: float = 0.0
    beta: float = 0.0

    def __call__(self, xp, z):
        return _FUNCTIONS[self.name][0](xp, z, self.alpha, self.beta).astype(z.dtype, copy=False)

    def derivative(self, xp, z, y):
        return xp.asarray(_FUNCTIONS[self.name][1](xp, z, y, self.alpha, self.beta), dtype=z.dtype)


def activations(call, defaults: tuple, directions: int) -> list[tuple[Activation, ...]]:
    """The activation functions of each direction. ``activation_alpha``/``activation_beta`` are consumed in the
    order of the functions (all directions) by the functions that take them; when they run out, the function's ONNX
    default applies."""
    names = list(call.attrs.get("activations") or [])  # optional: LSTM/GRU have no schema default (RNN has)
    k = len(defaults)
    if not names:
        names = list(defaults) * directions
    elif len(names) < k * directions:
        names = (names[:k] * directions)[:k * directions]
    alphas = list(call.attrs.get("activation_alpha") or [])  # optional, no schema default
    betas = list(call.attrs.get("activation_beta") or [])  # optional, no schema default
    out = []
    for name in names[:k * directions]:
        key = name.lower()
        if key not in _FUNCTIONS:
            raise UnsupportedOpError(f"{call.node.op_type} node {call.node.name!r}: activation {name!r} is not "
                                     f"supported (supported: {', '.join(sorted(_FUNCTIONS))})")
        _, _, alpha, beta = _FUNCTIONS[key]
        alpha = (alphas.pop(0) if alphas else alpha) if alpha is not None else 0.0
        beta = (betas.pop(0) if betas else beta) if beta is not None else 0.0
        out.append(Activation(key, float(alpha), float(beta)))
    return [tuple(out[d * k:(d + 1) * k]) for d in range(directions)]


# ---------------------------------------------------------------------------------------------- unrolled layer


@dataclass
class Steps:
    """One direction unrolled over its ``S`` processing steps: arrays ``(S, N, ·)``, step ``s`` of sample ``n``
    reading ``x[s, n]`` (time position ``index[s, n]``) and the state ``h_prev[s, n]``.

    The *candidate* is the layer's signal path: the LSTM cell input ``g``, the GRU ``h̃``, the RNN's new state;
    ``pre`` is its pre-activation before ``clip`` (``x w_xᵀ + h_prev w_hᵀ + b_x + b_h`` for LSTM and RNN; for GRU
    ``x w_xᵀ + (r ⊙ h_prev) w_hᵀ + b_x + b_h``, or with ``reset_after`` (``linear_before_reset``)
    ``x w_xᵀ + b_x + r ⊙ u`` where ``u = h_prev w_hᵀ + b_h``) and ``cand`` its activation. ``gates`` holds the
    activated gates: LSTM ``i, f, o`` (``c = f ⊙ c_prev + i ⊙ cand``, ``h = o ⊙ act(c)``), GRU ``z, r``
    (``h = (1 − z) ⊙ cand + z ⊙ h_prev``), none for RNN (``h = cand``). ``params`` is the kernel's own.
    """

    index: object
    active: object
    x: object
    h_prev: object
    h: object
    pre: object
    cand: object
    w_x: object
    w_h: object
    b_x: object
    b_h: object
    gates: dict
    c_prev: object = None
    c: object = None
    reset_after: bool = False
    u: object = None
    z: object = None  # every gate's pre-activation before clip, ONNX gate order (the VJP's)
    params: dict = field(default_factory=dict)


@dataclass
class Unrolled:
    """A recurrent node recomputed: ``steps`` (one :class:`Steps` per direction) and ``outputs`` ``(Y, Y_h, Y_c)``
    in the node's layout."""

    cell: str
    steps: list
    outputs: tuple
    layout: int
    varying: tuple
    x_shape: tuple

    def split(self, relevance):
        """Per direction ``(r_y, r_h, r_c)``: what arrives at each step's output ``h`` from ``Y`` (``(S, N, H)`` in
        processing order, 0 at padded steps), at the final hidden state (``Y_h``) and at the final cell state
        (``Y_c``); ``None`` where nothing flows. Linear: it maps relevance and gradients alike."""
        rel = (tuple(relevance) + (None,) * 3)[:3]
        ry, rh, rc = rel
        if ry is not None and self.layout:
            ry = ry.transpose(1, 2, 0, 3)  # (N, T, D, H) -> (T, D, N, H)
        rh, rc = ((r.swapaxes(0, 1) if r is not None and self.layout else r) for r in (rh, rc))
        out = []
        for d, st in enumerate(self.steps):
            cols = _cols(st)
            r_y = None if ry is None else ry[st.index, d, cols] * st.active[..., None]
            nonempty = st.active[0][:, None]  # final states of empty sequences are constant 0
            out.append((r_y, None if rh is None else rh[d] * nonempty, None if rc is None else rc[d] * nonempty))
        return out

    def join(self, results):
        """One entry per node input from per-direction ``(r_x, r_h0, r_c0)`` (``r_x`` per processing step,
        ``(S, N, I)``): relevance (or gradient) of ``X``, ``initial_h`` and ``initial_c``, summed over directions;
        ``None`` for inputs that do not vary."""
        xp = _xp_of(self)
        out = [None] * len(self.varying)
        if self.varying[0]:
            rx = None
            for st, (r_x, _, _) in zip(self.steps, results):
                part = xp.zeros(r_x.shape, dtype=r_x.dtype)
                part[st.index, _cols(st)] = r_x  # a permutation of the time axis per sample
                rx = part if rx is None else rx + part
            out[0] = rx.swapaxes(0, 1) if self.layout else rx
        for port, k in ((5, 1), (6, 2)):
            if port < len(self.varying) and self.varying[port]:
                r0 = xp.stack([res[k] for res in results])
                out[port] = r0.swapaxes(0, 1) if self.layout else r0
        return tuple(out)


def _cols(st):
    return st.params["cols"]


def _xp_of(unrolled):
    return unrolled.steps[0].params["xp"]


# ---------------------------------------------------------------------------------------------- kernels


class RecurrentKernel(Kernel):
    """Shared by LSTM, GRU and RNN: inputs and layouts, directions, sequence lengths, outputs; subclasses run one
    direction (:meth:`run`) and backpropagate through it (:meth:`backward`)."""

    category = "recurrent"
    cell = ""
    gates = 1
    default_activations: tuple = ()
    data_ports = (0, 5)
    outputs_count = 2

    def data_inputs(self, node, varying):
        names = {1: "W", 2: "R", 3: "B", 7: "P"}
        bad = [name for port, name in names.items() if port < len(node.inputs) and node.inputs[port] in varying]
        if bad:
            return (f"a {node.op_type} whose {'/'.join(bad)} depends on the explained input is not supported (its "
                    "weights must be constants)")
        return super().data_inputs(node, varying)

    def forward(self, call):
        return self.unroll(call).outputs

    def vjp(self, call, grads):
        unrolled = self.unroll(call)
        parts = unrolled.split(grads)
        return unrolled.join([self.backward(call.xp, st, *part) for st, part in zip(unrolled.steps, parts)])

    def unroll(self, call) -> Unrolled:
        """Recompute the node in its inputs' dtype: every direction's :class:`Steps` and the outputs."""
        xp, attrs, inputs = call.xp, call.attrs, call.inputs
        get = lambda port: inputs[port] if port < len(inputs) and inputs[port] is not None else None  # noqa: E731
        layout = int(attrs.get("layout", 0))  # the attribute exists from opset 14
        x = inputs[0]
        dtype = x.dtype
        xt = x.swapaxes(0, 1) if layout else x  # (T, N, I)
        T, N, _ = xt.shape
        w, r = xp.asarray(inputs[1], dtype=dtype), xp.asarray(inputs[2], dtype=dtype)
        D, GH, H = r.shape
        dirs = ("forward", "reverse") if attrs["direction"] == "bidirectional" else (attrs["direction"],)
        if D != len(dirs) or GH != self.gates * H:
            raise UnsupportedOpError(f"{call.node.op_type} node {call.node.name!r}: R of shape {tuple(r.shape)} does "
                                     f"not fit direction={attrs['direction']!r} and {self.gates} gates")
        b = get(3)
        b = xp.zeros((D, 2 * GH), dtype=dtype) if b is None else xp.asarray(b, dtype=dtype)
        lens = get(4)
        lens = xp.full((N,), T, dtype="int64") if lens is None else xp.asarray(lens).astype("int64").reshape(N)
        states = []
        for port in (5, 6)[:self.outputs_count - 1]:
            s0 = get(port)
            if s0 is None:
                states.append(xp.zeros((D, N, H), dtype=dtype))
            else:
                s0 = xp.asarray(s0, dtype=dtype)
                states.append(s0.swapaxes(0, 1) if layout else s0)
        peep = get(7)
        peep = None if peep is None else xp.asarray(peep, dtype=dtype)
        clip = attrs.get("clip")  # optional: no clipping when absent
        acts = activations(call, self.default_activations, D)
        step = xp.arange(T)[:, None]
        cols = xp.arange(N)[None, :]
        steps = []
        for d, name in enumerate(dirs):
            active = step < lens[None, :]
            index = xp.where(active, lens[None, :] - 1 - step, step) if name == "reverse" else step + 0 * cols
            params = {"xp": xp, "cols": cols, "W": w[d], "R": r[d], "Wb": b[d, :GH], "Rb": b[d, GH:], "acts": acts[d],
                      "clip": None if clip is None else float(clip), "P": None if peep is None else peep[d],
                      "attrs": attrs}
            steps.append(self.run(xp, xt[index, cols], active, [s[d] for s in states], params, index))
        y = xp.zeros((T, D, N, H), dtype=dtype)
        for d, st in enumerate(steps):
            y[st.index, d, cols] = st.h * st.active[..., None]
        # a sample of sequence length 0 outputs zero final states (onnxruntime), not its initial ones
        finals = [xp.stack([st.h[-1] * st.active[0][:, None] for st in steps])]
        if self.cell == "lstm":
            finals.append(xp.stack([st.c[-1] * st.active[0][:, None] for st in steps]))
        if layout:
            y = y.transpose(2, 0, 1, 3)
            finals = [f.swapaxes(0, 1) for f in finals]
        outputs = (y, *finals)[:max(1, len(call.node.outputs))]
        return Unrolled(self.cell, steps, outputs, layout, tuple(call.varying), tuple(x.shape))

    def run(self, xp, x, active, states, params, index) -> Steps:
        raise NotImplementedError

    def backward(self, xp, st: Steps, r_y, r_h, r_c):
        """BPTT through one direction: ``(dx (S, N, I), dh0, dc0)`` from the gradients of the step outputs, of the
        final hidden state and of the final cell state."""
        raise NotImplementedError


def _clip(xp, z, clip):
    return z if clip is None else xp.clip(z, -clip, clip)


def _clip_mask(xp, z, clip):
    return 1.0 if clip is None else (xp.abs(z) <= clip).astype(z.dtype)


def _act_grad(xp, act, z, y, clip):
    """``d act(clip(z)) / dz`` given ``y = act(clip(z))``."""
    return act.derivative(xp, _clip(xp, z, clip), y) * _clip_mask(xp, z, clip)


def _buffers(xp, shape, dtype, count):
    return [xp.empty(shape, dtype=dtype) for _ in range(count)]


def _zero_or(xp, value, like):
    return xp.zeros_like(like) if value is None else value + 0


@register_kernel("LSTM", since=7)
class LSTMKernel(RecurrentKernel):
    """LSTM (gates ``iofc``; peepholes, ``input_forget``, ``clip``, any activations); relevance to X, initial_h/c.

    ``i = f(z_i + P_i ⊙ c_prev)``, ``f = f(z_f + P_f ⊙ c_prev)`` (``1 − i`` with ``input_forget``),
    ``g = g(z_c)``, ``c = f ⊙ c_prev + i ⊙ g``, ``o = f(z_o + P_o ⊙ c)``, ``h = o ⊙ h(c)``, every ``z = x Wᵀ +
    h_prev Rᵀ + Wb + Rb`` clipped to ``[−clip, clip]`` before its activation; defaults ``f, g, h = Sigmoid, Tanh,
    Tanh``.
    """

    cell = "lstm"
    gates = 4
    default_activations = ("Sigmoid", "Tanh", "Tanh")
    data_ports = (0, 5, 6)
    outputs_count = 3

    def run(self, xp, x, active, states, params, index):
        (h, c), w, r, p, clip = states, params["W"], params["R"], params["P"], params["clip"]
        fa, ga, ha = params["acts"]
        forget_tied = bool(params["attrs"]["input_forget"])
        S, N, _ = x.shape
        H = r.shape[1]
        xw = (x.reshape(S * N, -1) @ w.T).reshape(S, N, 4 * H) + (params["Wb"] + params["Rb"])
        shape, dtype = (S, N, H), x.dtype
        gi, gf, go, gc, c_prev, c_all, h_prev, h_all = _buffers(xp, shape, dtype, 8)
        z_all = xp.empty((S, N, 4 * H), dtype=dtype)
        for s in range(S):
            z = xw[s] + h @ r.T
            if p is not None:
                z[:, :H] += p[:H] * c
                z[:, 2 * H:3 * H] += p[2 * H:] * c
            i = fa(xp, _clip(xp, z[:, :H], clip))
            f = 1 - i if forget_tied else fa(xp, _clip(xp, z[:, 2 * H:3 * H], clip))
            g = ga(xp, _clip(xp, z[:, 3 * H:], clip))
            c_new = f * c + i * g
            if p is not None:
                z[:, H:2 * H] += p[H:2 * H] * c_new
            o = fa(xp, _clip(xp, z[:, H:2 * H], clip))
            h_new = o * ha(xp, c_new)
            z_all[s], gi[s], gf[s], go[s], gc[s], c_prev[s], h_prev[s] = z, i, f, o, g, c, h
            m = active[s][:, None]
            h, c = xp.where(m, h_new, h), xp.where(m, c_new, c)
            h_all[s], c_all[s] = h, c
        pre = z_all[..., 3 * H:]
        return Steps(index, active, x, h_prev, h_all, pre, gc, w[3 * H:], r[3 * H:], params["Wb"][3 * H:],
                     params["Rb"][3 * H:], {"i": gi, "f": gf, "o": go}, c_prev=c_prev, c=c_all, z=z_all,
                     params=params)

    def backward(self, xp, st, r_y, r_h, r_c):
        p, clip, (fa, ga, ha) = st.params["P"], st.params["clip"], st.params["acts"]
        forget_tied = bool(st.params["attrs"]["input_forget"])
        S, N, H = st.h.shape
        dh, dc = _zero_or(xp, r_h, st.h[0]), _zero_or(xp, r_c, st.h[0])
        dz_all = xp.zeros(st.z.shape, dtype=st.z.dtype)
        i_, f_, o_, g_ = st.gates["i"], st.gates["f"], st.gates["o"], st.cand
        for s in reversed(range(S)):
            m = st.active[s][:, None]
            gh = dh if r_y is None else dh + r_y[s]
            z = st.z[s]
            hc = ha(xp, st.c[s])
            dzo = gh * hc * _act_grad(xp, fa, z[:, H:2 * H], o_[s], clip)
            dct = dc + gh * o_[s] * ha.derivative(xp, st.c[s], hc)
            if p is not None:
                dct = dct + dzo * p[H:2 * H]
            df = dct * st.c_prev[s]
            di = dct * g_[s]
            dzc = dct * i_[s] * _act_grad(xp, ga, z[:, 3 * H:], g_[s], clip)
            dc_prev = dct * f_[s]
            if forget_tied:
                di, dzf = di - df, 0 * df
            else:
                dzf = df * _act_grad(xp, fa, z[:, 2 * H:3 * H], f_[s], clip)
            dzi = di * _act_grad(xp, fa, z[:, :H], i_[s], clip)
            if p is not None:
                dc_prev = dc_prev + dzi * p[:H] + dzf * p[2 * H:]
            dz = xp.concatenate([dzi, dzo, dzf, dzc], axis=1) * m
            dz_all[s] = dz
            dh, dc = xp.where(m, dz @ st.params["R"], gh), xp.where(m, dc_prev, dc)
        return (dz_all.reshape(S * N, -1) @ st.params["W"]).reshape(S, N, -1), dh, dc


@register_kernel("GRU", since=7)
class GRUKernel(RecurrentKernel):
    """GRU (gates ``zrh``; ``linear_before_reset``, ``clip``, any activations); relevance to X and initial_h.

    ``z = f(z_z)``, ``r = f(z_r)``, ``h̃ = g(x W_hᵀ + (r ⊙ h_prev) R_hᵀ + Wb_h + Rb_h)`` (with
    ``linear_before_reset``: ``g(x W_hᵀ + Wb_h + r ⊙ (h_prev R_hᵀ + Rb_h))``), ``h = (1 − z) ⊙ h̃ + z ⊙ h_prev``;
    defaults ``f, g = Sigmoid, Tanh``.
    """

    cell = "gru"
    gates = 3
    default_activations = ("Sigmoid", "Tanh")

    def run(self, xp, x, active, states, params, index):
        (h,), w, r, clip = states, params["W"], params["R"], params["clip"]
        fa, ga = params["acts"]
        after = bool(params["attrs"]["linear_before_reset"])
        S, N, _ = x.shape
        H = r.shape[1]
        rb = params["Rb"]
        xw = (x.reshape(S * N, -1) @ w.T).reshape(S, N, 3 * H) + params["Wb"]
        shape, dtype = (S, N, H), x.dtype
        gz, gr, cand, h_prev, h_all, u_all = _buffers(xp, shape, dtype, 6)
        z_all = xp.empty((S, N, 3 * H), dtype=dtype)
        for s in range(S):
            zzr = xw[s, :, :2 * H] + h @ r[:2 * H].T + rb[:2 * H]
            z = fa(xp, _clip(xp, zzr[:, :H], clip))
            rg = fa(xp, _clip(xp, zzr[:, H:], clip))
            if after:
                u = h @ r[2 * H:].T + rb[2 * H:]
                zh = xw[s, :, 2 * H:] + rg * u
                u_all[s] = u
            else:
                zh = xw[s, :, 2 * H:] + (rg * h) @ r[2 * H:].T + rb[2 * H:]
            ht = ga(xp, _clip(xp, zh, clip))
            h_new = (1 - z) * ht + z * h
            z_all[s, :, :2 * H], z_all[s, :, 2 * H:], gz[s], gr[s], cand[s], h_prev[s] = zzr, zh, z, rg, ht, h
            h = xp.where(active[s][:, None], h_new, h)
            h_all[s] = h
        return Steps(index, active, x, h_prev, h_all, z_all[..., 2 * H:], cand, w[2 * H:], r[2 * H:],
                     params["Wb"][2 * H:], rb[2 * H:], {"z": gz, "r": gr}, reset_after=after,
                     u=u_all if after else None, z=z_all, params=params)

    def backward(self, xp, st, r_y, r_h, r_c):
        clip, (fa, ga), r = st.params["clip"], st.params["acts"], st.params["R"]
        S, N, H = st.h.shape
        dh = _zero_or(xp, r_h, st.h[0])
        dz_all = xp.zeros(st.z.shape, dtype=st.z.dtype)
        for s in reversed(range(S)):
            m = st.active[s][:, None]
            gh = dh if r_y is None else dh + r_y[s]
            z, rg, ht, hp = st.gates["z"][s], st.gates["r"][s], st.cand[s], st.h_prev[s]
            dzh = gh * (1 - z) * _act_grad(xp, ga, st.z[s, :, 2 * H:], ht, clip)
            dz = gh * (hp - ht)
            dh_prev = gh * z
            if st.reset_after:
                dr = dzh * st.u[s]
                dh_prev = dh_prev + (dzh * rg) @ r[2 * H:]
            else:
                drh = dzh @ r[2 * H:]
                dr = drh * hp
                dh_prev = dh_prev + drh * rg
            dzz = dz * _act_grad(xp, fa, st.z[s, :, :H], z, clip)
            dzr = dr * _act_grad(xp, fa, st.z[s, :, H:2 * H], rg, clip)
            dh_prev = dh_prev + xp.concatenate([dzz, dzr], axis=1) @ r[:2 * H]
            dz_all[s] = xp.concatenate([dzz, dzr, dzh], axis=1) * m
            dh = xp.where(m, dh_prev, gh)
        return (dz_all.reshape(S * N, -1) @ st.params["W"]).reshape(S, N, -1), dh, None


@register_kernel("RNN", since=7)
class RNNKernel(RecurrentKernel):
    """Simple RNN ``h = f(x Wᵀ + h_prev Rᵀ + Wb + Rb)`` (``clip``, any activation, default Tanh); relevance to X
    and initial_h."""

    cell = "rnn"
    gates = 1
    default_activations = ("Tanh",)

    def run(self, xp, x, active, states, params, index):
        (h,), w, r, clip, (fa,) = states, params["W"], params["R"], params["clip"], params["acts"]
        S, N, _ = x.shape
        H = r.shape[1]
        xw = (x.reshape(S * N, -1) @ w.T).reshape(S, N, H) + (params["Wb"] + params["Rb"])
        cand, h_prev, h_all, z_all = _buffers(xp, (S, N, H), x.dtype, 4)
        for s in range(S):
            z = xw[s] + h @ r.T
            h_new = fa(xp, _clip(xp, z, clip))
            z_all[s], cand[s], h_prev[s] = z, h_new, h
            h = xp.where(active[s][:, None], h_new, h)
            h_all[s] = h
        return Steps(index, active, x, h_prev, h_all, z_all, cand, w, r, params["Wb"], params["Rb"], {}, z=z_all,
                     params=params)

    def backward(self, xp, st, r_y, r_h, r_c):
        clip, (fa,) = st.params["clip"], st.params["acts"]
        S, N, H = st.h.shape
        dh = _zero_or(xp, r_h, st.h[0])
        dz_all = xp.zeros(st.z.shape, dtype=st.z.dtype)
        for s in reversed(range(S)):
            m = st.active[s][:, None]
            gh = dh if r_y is None else dh + r_y[s]
            dz = gh * _act_grad(xp, fa, st.z[s], st.cand[s], clip) * m
            dz_all[s] = dz
            dh = xp.where(m, dz @ st.params["R"], gh)
        return (dz_all.reshape(S * N, -1) @ st.params["W"]).reshape(S, N, -1), dh, None
