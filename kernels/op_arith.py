"""Add, Sub, Sum, Mul, Div.

Between two or more tensors that depend on the input (a residual connection) Add/Sub/Sum are parameter-free linear
ops (category ``sum``; zennit's ``Norm`` splits relevance in proportion to each summand, ``R_k = x_k R / Σx``, Sub
counting ``−y`` as the summand). With a constant operand they are an affine map ``z = w·x + b`` (category ``affine``:
a bias shift or a scaling, passed through by the LRP presets).

Mul of two varying tensors (gating, squeeze-excitation, ``silu(g)·u``) and Div by a varying tensor (a normalisation
``a / b``) are bilinear (category ``bilinear``, ``product`` = ``"elementwise"`` / ``"quotient"``): forward and the
exact VJP (``g·b`` to ``a``, ``g·a`` to ``b``; ``g/b`` and ``−g·a/b²`` for Div, summed over broadcast axes). Their
relevance comes from the transformer rules (``onnxlrp.lrp.transformer``: uniform split, or the gate/divisor kept
constant). Div of a constant by a varying tensor (a reciprocal) is an elementwise nonlinearity (category
``activation``).
"""
from __future__ import annotations

from onnxlrp.engine.kernel import LinearKernel, LinearOp, scatter_ports, unbroadcast
from onnxlrp.engine.registry import register_kernel


class _Arith(LinearKernel):
    """``z = Σ_k sign_k · x_k`` over varying inputs, plus constant operands folded into an affine map."""

    category = "affine"
    category_cases = {"sum": "two or more operands vary (a residual connection)",
                      "affine": "one operand varies and the others are constants (a bias shift)"}
    #: sign of each operand in the sum (Sub: +, −); ``None`` for variadic Sum (+ everywhere)
    signs: tuple | None = (1.0, 1.0)

    def data_inputs(self, node, varying):
        return tuple(p for p in range(len(node.inputs)) if node.inputs[p] in varying)

    def node_category(self, node, varying):
        return "sum" if len(self.data_inputs(node, varying)) > 1 else "affine"

    def _sign(self, port):
        return 1.0 if self.signs is None else self.signs[port]

    def linear_op(self, call):
        xp = call.xp
        ports = tuple(p for p, v in enumerate(call.varying) if v)
        xs = [call.inputs[p] for p in ports]
        signs = [self._sign(p) for p in ports]
        constants = [self._sign(p) * call.inputs[p] for p, v in enumerate(call.varying) if not v]
        bias = None
        for c in constants:
            bias = c if bias is None else bias + c
        weight = None if all(s == 1.0 for s in signs) or len(ports) > 1 else xp.asarray(signs[0], dtype=xs[0].dtype)
        shapes = [x.shape for x in xs]

        def forward(inputs, p):
            if len(inputs) == 1:
                z = inputs[0] if p.get("weight") is None else p["weight"] * inputs[0]
            else:
                z = None
                for s, x in zip(signs, inputs):
                    term = x if s == 1.0 else -x
                    z = term if z is None else z + term
            return z if p.get("bias") is None else z + p["bias"]

        def vjp(g, p):
            if len(shapes) == 1:
                gx = g if p.get("weight") is None else g * p["weight"]
                return [unbroadcast(xp, gx, shapes[0])]
            return [unbroadcast(xp, g if s == 1.0 else -g, shape) for s, shape in zip(signs, shapes)]

        return LinearOp(ports=ports, inputs=xs, params={"weight": weight, "bias": bias}, forward=forward, vjp=vjp)


@register_kernel("Add", since=1)
class AddKernel(_Arith):
    """Add: residual sum of two activations, or a bias shift by a constant."""


@register_kernel("Sub", since=1)
class SubKernel(_Arith):
    """Sub ``a − b``: residual difference (summands ``a`` and ``−b``), or a shift by a constant."""

    signs = (1.0, -1.0)


@register_kernel("Sum", since=1)
class SumKernel(_Arith):
    """Variadic Sum of any number of tensors."""

    signs = None


class _Scale(LinearKernel):
    """``z = x · w`` with ``w`` constant (Mul, or Div by a constant with ``w = 1/c``); bilinear when both operands
    vary (see the module docstring)."""

    category = "affine"
    category_cases = {"affine": "one factor is a constant (a scaling)",
                      "bilinear": "both factors vary (a gate, squeeze-excitation)"}
    divide = False

    def data_inputs(self, node, varying):
        return tuple(p for p in (0, 1) if node.inputs[p] in varying)

    def _mode(self, varying_flags) -> str:
        """``'scale'`` (one varying factor), ``'bilinear'`` (both vary) or ``'reciprocal'`` (``c / x``)."""
        a, b = varying_flags
        if a and b:
            return "bilinear"
        if self.divide and b:
            return "reciprocal"
        return "scale"

    def node_category(self, node, varying):
        mode = self._mode(tuple(node.inputs[p] in varying for p in (0, 1)))
        return {"scale": "affine", "bilinear": "bilinear", "reciprocal": "activation"}[mode]

    @property
    def product(self) -> str:
        """How the bilinear form combines its factors (read by the transformer rules)."""
        return "quotient" if self.divide else "elementwise"

    def linear_op(self, call):
        if self._mode(call.varying[:2]) != "scale":
            return None
        xp = call.xp
        port = 0 if call.varying[0] else 1
        x, c = call.inputs[port], call.inputs[1 - port]
        weight = (1.0 / c if self.divide else c)
        weight = xp.asarray(weight, dtype=x.dtype)

        return LinearOp(ports=(port,), inputs=[x], params={"weight": weight},
                        forward=lambda xs, p: xs[0] * p["weight"],
                        vjp=lambda g, p: [unbroadcast(xp, g * p["weight"], x.shape)])

    def forward(self, call):
        if self._mode(call.varying[:2]) == "scale":
            return super().forward(call)
        a, b = call.inputs[0], call.inputs[1]
        return (a / b if self.divide else a * b,)

    def vjp(self, call, grads):
        mode = self._mode(call.varying[:2])
        if mode == "scale":
            return super().vjp(call, grads)
        xp, g = call.xp, grads[0]
        a, b = call.inputs[0], call.inputs[1]
        if self.divide:
            ga = unbroadcast(xp, g / b, a.shape) if mode == "bilinear" else None
            gb = unbroadcast(xp, -g * a / (b * b), b.shape)
        else:
            ga, gb = unbroadcast(xp, g * b, a.shape), unbroadcast(xp, g * a, b.shape)
        return scatter_ports(len(call.inputs), (0, 1), [ga, gb])


@register_kernel("Mul", since=1)
class MulKernel(_Scale):
    """Mul by a constant (a scaling), or of two varying tensors (bilinear)."""


@register_kernel("Div", since=1)
class DivKernel(_Scale):
    """Div by a constant (scaling by ``1/c``), of a varying tensor by a varying one (bilinear ``a/b``), or of a
    constant by a varying tensor (reciprocal, an elementwise nonlinearity)."""

    category_cases = {"affine": "the divisor is a constant (a scaling by 1/c)",
                      "bilinear": "numerator and divisor both vary (a normalisation a/b)",
                      "activation": "a constant is divided by a varying tensor (a reciprocal)"}
    divide = True
