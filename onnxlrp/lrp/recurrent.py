"""LRP for recurrent layers (LSTM, GRU, RNN; category ``recurrent``) after Arras et al. (2017, "Explaining recurrent
neural network predictions in sentiment analysis"; 2019, "Evaluating recurrent neural network explanations"),
reference code ``ArrasL/LRP_for_LSTM`` (``LSTM_bidi.lrp``, ``lrp_linear``).

Two principles, applied to every step while walking each direction's sequence backwards:

* **signal-take-all** through the multiplicative gates: in a product ``gate ⊙ signal`` the gate (a sigmoid) receives
  no relevance and the signal all of it — LSTM ``i ⊙ g`` (to the cell input ``g``), ``f ⊙ c_prev`` (to ``c_prev``),
  ``o ⊙ act(c)`` (to ``c``); GRU ``(1 − z) ⊙ h̃`` (to ``h̃``), ``z ⊙ h_prev`` (to ``h_prev``) and the reset product
  (``r ⊙ h_prev``, or ``r ⊙ (h_prev R_hᵀ + Rb_h)`` with ``linear_before_reset``: to the non-gate factor);
* the **ε-rule** on the linear parts — the candidate's input and recurrent weights and the state sums
  (``c = f ⊙ c_prev + i ⊙ g``, GRU ``h = (1 − z) ⊙ h̃ + z ⊙ h_prev``) — as ``lrp_linear`` computes it: for
  ``z_j = Σ_i w_ij x_i + b_j``, ``R_i = Σ_j (w_ij x_i + β (b_j + ε sgn(z_j)) / N) R_j / (z_j + ε sgn(z_j))`` with
  ``sgn(z) = +1 if z ≥ 0 else −1``, ``β`` the ``bias_factor`` and ``N`` the number of input units feeding the sum
  (``2H`` for a state sum, ``I + H`` for a candidate's pre-activation, ``H`` for GRU's ``h_prev R_hᵀ + Rb_h``).
  ``β = 0`` (Arras et al.'s recommended setting) lets bias and stabiliser absorb their share; ``β = 1`` spreads them
  evenly over the inputs, and the layer then conserves relevance exactly.

Activations (the candidate's ``g``, the LSTM's ``act(c)``) pass relevance through unchanged, ``clip`` included (the
ε-rule's denominators are the unclipped pre-activations). Padded steps (``sequence_lens``) carry relevance like they
carry the state. ``initial_h``/``initial_c`` receive what reaches the first step when they vary (else it is
absorbed). The preset ε is the ``epsilon`` (Arras et al. use ``0.001``).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..engine.kernel import Rule
from ..errors import RuleNotApplicableError
from .core import divide, stabilize


def _epsilon_layer(xp, r, z, epsilon, bias, units, bias_factor):
    """``lrp_linear`` of one sum: ``(s, share)`` with ``s = R / (z + ε sgn z)`` and ``share`` (per sample,
    ``(N, 1)``) the part of the bias and stabiliser each of the ``units`` inputs receives (``β Σ_j (b_j + ε sgn z_j)
    s_j / units``); an input ``x_i`` with weights ``w`` then receives ``x_i (s wᵀ)_i + share``."""
    s = divide(xp, r, z, epsilon)
    if not bias_factor:
        return s, 0.0
    absorbed = stabilize(xp, z, epsilon) - z if epsilon else 0.0 * z
    if bias is not None:
        absorbed = absorbed + bias
    return s, (bias_factor / units) * (absorbed * s).sum(axis=-1, keepdims=True)


@dataclass(frozen=True)
class RecurrentEpsilon(Rule):
    """LSTM/GRU/RNN LRP of Arras et al. (2017): signal-take-all through the gates, ``lrp_linear`` ε-rule (with
    ``bias_factor``) on the linear parts; walks each direction backwards over the kernel's recomputed gates."""

    epsilon: float = 1e-3
    bias_factor: float = 0.0

    applies_to = frozenset({"recurrent"})

    def propagate(self, kernel, call, relevance):
        unroll = getattr(kernel, "unroll", None)
        if unroll is None:
            raise RuleNotApplicableError(f"rule {self.describe()} needs a recurrent kernel; node {call.node.name!r} "
                                         f"({call.node.op_type}) is not one")
        unrolled = unroll(call)
        parts = unrolled.split(relevance)
        return unrolled.join([self.walk(call.xp, unrolled.cell, st, *part)
                              for st, part in zip(unrolled.steps, parts)])

    def walk(self, xp, cell, st, r_y, r_h, r_c):
        """One direction, last step first: ``(R_x (S, N, I), R_h0, R_c0)`` from the relevance of the step outputs,
        of the final hidden state and of the final cell state."""
        S, N, H = st.h.shape
        step = {"lstm": self._lstm, "gru": self._gru, "rnn": self._rnn}[cell]
        rh = xp.zeros((N, H), dtype=st.h.dtype) if r_h is None else r_h + 0
        rc = (xp.zeros((N, H), dtype=st.h.dtype) if r_c is None else r_c + 0) if cell == "lstm" else None
        rx = xp.zeros(st.x.shape, dtype=st.h.dtype)
        for s in reversed(range(S)):
            m = st.active[s][:, None]
            if r_y is not None:
                rh = rh + r_y[s]
            rx_s, rh_prev, rc_prev = step(xp, st, s, rh, rc)
            rx[s] = rx_s * m
            rh = xp.where(m, rh_prev, rh)
            if rc is not None:
                rc = xp.where(m, rc_prev, rc)
        return rx, rh, rc

    def _candidate(self, xp, st, s, r_pre, gated_h=None):
        """The ε-rule on the candidate's pre-activation ``x w_xᵀ + h w_hᵀ + b_x + b_h`` (``h`` the previous state
        or its gated form): ``(R_x, R_h)``."""
        units = st.x.shape[-1] + st.h.shape[-1]
        h = st.h_prev[s] if gated_h is None else gated_h
        sc, share = _epsilon_layer(xp, r_pre, st.pre[s], self.epsilon, st.b_x + st.b_h, units, self.bias_factor)
        return st.x[s] * (sc @ st.w_x) + share, h * (sc @ st.w_h) + share

    def _state_sum(self, xp, total, r, *terms):
        """The ε-rule on a sum of ``2`` state terms (identity weights, ``2H`` input units)."""
        s, share = _epsilon_layer(xp, r, total, self.epsilon, None, 2 * total.shape[-1], self.bias_factor)
        return [t * s + share for t in terms]

    def _lstm(self, xp, st, s, rh, rc):
        g = st.gates
        r_cell = rc + rh  # h = o ⊙ act(c): all to c
        r_cprev, r_cand = self._state_sum(xp, st.c[s], r_cell, g["f"][s] * st.c_prev[s], g["i"][s] * st.cand[s])
        r_x, r_hprev = self._candidate(xp, st, s, r_cand)  # g = act(pre): identity
        return r_x, r_hprev, r_cprev

    def _gru(self, xp, st, s, rh, rc):
        z, r = st.gates["z"][s], st.gates["r"][s]
        h_prev = st.h_prev[s]
        r_cand, r_direct = self._state_sum(xp, st.h[s], rh, (1 - z) * st.cand[s], z * h_prev)
        if not st.reset_after:  # pre = x w_xᵀ + (r ⊙ h_prev) w_hᵀ + b: r ⊙ h_prev all to h_prev
            r_x, r_gated = self._candidate(xp, st, s, r_cand, gated_h=r * h_prev)
            return r_x, r_direct + r_gated, None
        # pre = x w_xᵀ + b_x + r ⊙ u, u = h_prev w_hᵀ + b_h: inputs x (via w_x) and v = r ⊙ u (identity)
        u = st.u[s]
        units = st.x.shape[-1] + st.h.shape[-1]
        sc, share = _epsilon_layer(xp, r_cand, st.pre[s], self.epsilon, st.b_x, units, self.bias_factor)
        r_x = st.x[s] * (sc @ st.w_x) + share
        r_u = r * u * sc + share  # r ⊙ u all to u
        su, share_u = _epsilon_layer(xp, r_u, u, self.epsilon, st.b_h, st.h.shape[-1], self.bias_factor)
        return r_x, r_direct + h_prev * (su @ st.w_h) + share_u, None

    def _rnn(self, xp, st, s, rh, rc):
        r_x, r_hprev = self._candidate(xp, st, s, rh)  # h = act(pre): identity
        return r_x, r_hprev, None
