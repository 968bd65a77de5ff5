"""Dense layers: Gemm, MatMul with a constant operand (or of two activations: bilinear), and the fused MatMul+Add
(``onnxlrp::Dense``).

All are ``z = x W + b`` for the linear rules: the parameter ``weight`` is the effective ``(K, M)`` matrix (Gemm's
``alpha`` and ``transB`` applied), ``bias`` the effective bias (Gemm's ``beta·C``).
"""
from __future__ import annotations

from onnxlrp.engine.kernel import LinearKernel, LinearOp, UnsupportedOpError, unbroadcast
from onnxlrp.engine.registry import register_kernel


def _swap(a):
    return a.swapaxes(-1, -2)


def _rows_times(x, w):
    """``x @ w`` for a 2-D ``w``: ``x``'s leading axes flattened into one GEMM (numpy loops over a batched 3-D
    ``x @ w``, several times slower for transformer activations ``(batch, tokens, features)``)."""
    if x.ndim <= 2 or w.ndim != 2:
        return x @ w
    return (x.reshape(-1, x.shape[-1]) @ w).reshape(x.shape[:-1] + (w.shape[-1],))


def emit_times_transposed(xp, g, w, x_shape):
    """``g @ wᵀ`` for a 2-D ``w`` as ONNX, with ``w`` shared as stored: leading axes of ``g`` flattened into one
    ``Gemm(transB=1)``, then reshaped to ``x_shape``."""
    if w.ndim != 2:
        return xp.matmul(g, w.swapaxes(-1, -2))
    rows = g if g.ndim == 2 else xp.reshape(g, (-1, g.shape[-1]))
    out = xp.node("Gemm", [rows, w], {"transB": 1}, shape=(rows.shape[0], w.shape[0]))
    return xp.reshape(out, x_shape)


@register_kernel("Gemm", since=1)
class GemmKernel(LinearKernel):
    """Gemm ``Y = alpha·A'B' + beta·C``; the data input is ``A`` (``transA`` handled as a structural transpose)."""

    category = "dense"

    def data_inputs(self, node, varying):
        if any(t in varying for t in node.inputs[1:]):
            return "a Gemm whose B or C operand depends on the explained input is not supported"
        return super().data_inputs(node, varying)

    def linear_op(self, call):
        a = call.attrs
        b, c = call.inputs[1], (call.inputs[2] if len(call.inputs) > 2 else None)
        alpha, beta = float(a["alpha"]), float(a["beta"])
        weight = b.T if a["transB"] else b  # a view: VGG's classifier weights are never copied
        weight = weight if alpha == 1.0 else alpha * weight
        bias = c if c is None or beta == 1.0 else beta * c
        trans_a = bool(a["transA"])
        if call.inputs[0] is not None and call.inputs[0].ndim != 2:  # onnxruntime also takes a vector A as (1, K)
            raise UnsupportedOpError(f"Gemm node {call.node.name!r} takes a 2-D input A; got shape "
                                     f"{tuple(call.inputs[0].shape)}")

        def forward(xs, p):
            x = xs[0].T if trans_a else xs[0]
            z = x @ p["weight"]
            return z if p["bias"] is None else z + p["bias"]

        def vjp(g, p):
            gx = g @ p["weight"].T
            return [gx.T if trans_a else gx]

        return LinearOp(ports=(0,), inputs=[call.inputs[0]], params={"weight": weight, "bias": bias},
                        forward=forward, vjp=vjp)

    def emit_linear_op(self, call):
        """Gemm as ONNX: the weight kept as stored (``transB`` as an attribute, so the model's matrix is shared);
        ``alpha``/``beta`` folded into the parameters so that rules modify the effective ones."""
        xp, a = call.xp, call.attrs
        x, b = call.inputs[0], call.inputs[1]
        c = call.inputs[2] if len(call.inputs) > 2 else None
        alpha, beta = float(a["alpha"]), float(a["beta"])
        trans_a, trans_b = int(a["transA"]), int(a["transB"])
        weight = b if alpha == 1.0 else alpha * b
        bias = c if c is None or beta == 1.0 else beta * c
        out = call.outputs[0] if call.outputs else None

        def forward(xs, p):
            inputs = [xs[0], p["weight"]] + ([p["bias"]] if p["bias"] is not None else [])
            return xp.node("Gemm", inputs, {"transA": trans_a, "transB": trans_b},
                           shape=None if out is None else tuple(out.shape))

        def vjp(g, p):
            if trans_a:  # ∂/∂A of (Aᵀ B') is B' gᵀ
                return [xp.node("Gemm", [p["weight"], g], {"transA": trans_b, "transB": 1}, shape=tuple(x.shape))]
            return [xp.node("Gemm", [g, p["weight"]], {"transB": 1 - trans_b}, shape=tuple(x.shape))]

        return LinearOp(ports=(0,), inputs=[x], params={"weight": weight, "bias": bias}, forward=forward, vjp=vjp)


@register_kernel("MatMul", since=1)
class MatMulKernel(LinearKernel):
    """MatMul with one constant operand (a dense layer, as Keras/tf2onnx export it), or of two varying tensors
    (bilinear, e.g. ``QKᵀ`` and ``A·V`` in attention: category ``bilinear``, ``product = "matmul"``; exact VJP
    ``g Bᵀ`` and ``Aᵀ g`` summed over broadcast batch axes; relevance from the transformer rules)."""

    category = "dense"
    category_cases = {"dense": "one operand is a constant (a dense layer)",
                      "bilinear": "both operands vary (attention scores QKᵀ, A·V)"}
    product = "matmul"

    def data_inputs(self, node, varying):
        return tuple(p for p in (0, 1) if node.inputs[p] in varying)

    def node_category(self, node, varying):
        return "bilinear" if all(node.inputs[p] in varying for p in (0, 1)) else "dense"

    @staticmethod
    def _bilinear(call):
        return bool(call.varying[0] and call.varying[1])

    def forward(self, call):
        if self._bilinear(call):
            return (call.inputs[0] @ call.inputs[1],)
        return super().forward(call)

    def vjp(self, call, grads):
        if not self._bilinear(call):
            return super().vjp(call, grads)
        xp, g = call.xp, grads[0]
        a, b = call.inputs[0], call.inputs[1]
        if a.ndim < 2 or b.ndim < 2:
            raise UnsupportedOpError(f"MatMul node {call.node.name!r} multiplies by a vector; only matrix operands "
                                     "of rank >= 2 are supported")
        return (unbroadcast(xp, g @ _swap(b), a.shape), unbroadcast(xp, _swap(a) @ g, b.shape))

    def linear_op(self, call):
        if self._bilinear(call):
            return None
        xp = call.xp
        port = 0 if call.varying[0] else 1
        x, w = call.inputs[port], call.inputs[1 - port]
        if w.ndim < 2 or x.ndim < 2:
            raise UnsupportedOpError(f"MatMul node {call.node.name!r} multiplies by a vector; only matrix operands "
                                     "of rank >= 2 are supported")

        def forward(xs, p):
            return _rows_times(xs[0], p["weight"]) if port == 0 else p["weight"] @ xs[0]

        def vjp(g, p):
            gx = _rows_times(g, _swap(p["weight"])) if port == 0 else _swap(p["weight"]) @ g
            return [unbroadcast(xp, gx, x.shape)]

        return LinearOp(ports=(port,), inputs=[x], params={"weight": w}, forward=forward, vjp=vjp)

    def emit_linear_op(self, call):
        """MatMul with a constant as ONNX: ``MatMul`` forward; the VJP ``g Wᵀ`` as a ``Gemm(transB=1)`` on the
        shared weight (rows flattened) or, for a batched weight, a ``MatMul`` with its transpose."""
        op = self.linear_op(call)
        if op is None:
            return None
        xp, port, x = call.xp, op.ports[0], op.inputs[0]

        def forward(xs, p):
            return xp.matmul(xs[0], p["weight"]) if port == 0 else xp.matmul(p["weight"], xs[0])

        def vjp(g, p):
            w = p["weight"]
            if port == 1:
                return [unbroadcast(xp, xp.matmul(w.swapaxes(-1, -2), g), x.shape)]
            if w.ndim == 2:
                return [emit_times_transposed(xp, g, w, x.shape)]
            return [unbroadcast(xp, xp.matmul(g, w.swapaxes(-1, -2)), x.shape)]

        op.forward, op.vjp = forward, vjp
        return op


@register_kernel("Dense", domain="onnxlrp", since=1)
class DenseKernel(LinearKernel):
    """``onnxlrp::Dense(x, W, b) = x @ W + b``: a MatMul followed by an Add of a constant, fused by the canonizer
    so that rules see the bias (zennit's ``nn.Linear``)."""

    category = "dense"

    def linear_op(self, call):
        xp = call.xp
        x = call.inputs[0]

        def forward(xs, p):
            z = _rows_times(xs[0], p["weight"])
            return z if p["bias"] is None else z + p["bias"]

        return LinearOp(ports=(0,), inputs=[x], params={"weight": call.inputs[1], "bias": call.inputs[2]},
                        forward=forward,
                        vjp=lambda g, p: [unbroadcast(xp, _rows_times(g, _swap(p["weight"])), x.shape)])

    def emit_forward(self, call):
        xp, x, w, b = call.xp, *call.inputs[:3]
        return (xp.matmul(x, w) + b,)

    def emit_linear_op(self, call):
        """``x @ W + b`` as ONNX ``MatMul`` and ``Add``; the VJP a ``Gemm(transB=1)`` on the shared ``W``."""
        xp, x = call.xp, call.inputs[0]

        def forward(xs, p):
            z = xp.matmul(xs[0], p["weight"])
            return z if p["bias"] is None else z + p["bias"]

        return LinearOp(ports=(0,), inputs=[x], params={"weight": call.inputs[1], "bias": call.inputs[2]},
                        forward=forward, vjp=lambda g, p: [emit_times_transposed(xp, g, p["weight"], x.shape)])


@register_kernel("RowDense", domain="onnxlrp", since=1)
class RowDenseKernel(LinearKernel):
    """``onnxlrp::RowDense(x, W, b)``: a dense layer with one weight matrix per sample,
    ``z[n] = x[n] @ W[n] + b[n]`` with ``x (N, D)``, ``W (N, D, K)``, ``b (N, K)``. Contrastive heads are spliced
    in with it (their rows depend on each sample's target class)."""

    category = "dense"

    def linear_op(self, call):
        x = call.inputs[0]
        bias = call.inputs[2] if len(call.inputs) > 2 else None

        def forward(xs, p):
            z = (xs[0][:, None, :] @ p["weight"])[:, 0, :]
            return z if p["bias"] is None else z + p["bias"]

        return LinearOp(ports=(0,), inputs=[x], params={"weight": call.inputs[1], "bias": bias}, forward=forward,
                        vjp=lambda g, p: [(g[:, None, :] @ _swap(p["weight"]))[:, 0, :]])
