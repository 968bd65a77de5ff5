"""The LRP rule algebra: zennit's ``BasicHook`` decomposition made explicit, shared by every rule.

For each term *k* a rule modifies the input and the parameters, re-runs the op forward (``z_k = f(x_k; θ_k)``,
:func:`forward_or_zero`), divides the output relevance by a stabilised denominator (:func:`divide`,
:func:`stabilize`), pulls it back through the op's VJP (``c_k = J(θ_k)ᵀ s_k``, :func:`pullback`) and reduces the
terms (``R_in = Σ_k x_k ⊙ c_k``, :func:`add_terms`). Parameters are modified with :func:`modified_params`.
Notation: ``x⁺ = max(x, 0)``, ``x⁻ = min(x, 0)``; ``sgn0(z) = +1 if z ≥ 0 else −1``.
"""
from __future__ import annotations

from ..engine.kernel import Call, LinearOp
from ..errors import MethodError


def stabilize(xp, z, epsilon):
    """Denominator ``z + ε·sgn0(z)`` (zennit ``Stabilizer``); ``ε`` may be an array broadcast against ``z``."""
    if getattr(xp, "symbolic", False):  # the compiled backend: the same sign test as ONNX nodes
        return z + xp.where(z >= 0, epsilon, -epsilon)
    if getattr(z, "ndim", 0) == 0:
        return z + epsilon if z >= 0 else z - epsilon
    out = z + 0.0  # a fresh array; −0.0 becomes +0.0, so sgn0(−0.0) = +1 as in zennit
    xp.copysign(epsilon, out, out=out)
    out += z
    return out


def divide(xp, r, z, epsilon):
    """``r / (z + ε·sgn0(z))``; with ``ε = 0`` a zero denominator yields 0 (the relevance there is dropped)."""
    if isinstance(epsilon, (int, float)) and epsilon == 0:
        zero = z == 0
        return xp.where(zero, 0.0, r / xp.where(zero, 1.0, z)).astype(r.dtype, copy=False)
    return r / stabilize(xp, z, epsilon)


def broadcast_param(xp, value, x, name: str):
    """A rule's array parameter (``low``, ``high``, ``mu``) as ``x``'s dtype broadcast to ``x``'s shape, or a
    :class:`MethodError` naming it when it cannot be."""
    array = xp.asarray(value, dtype=x.dtype)
    try:
        return xp.broadcast_to(array, x.shape)
    except ValueError:
        raise MethodError(f"{name} of shape {tuple(array.shape)} cannot be broadcast to the shape {tuple(x.shape)} "
                          "of the input it applies to") from None


def clamp(xp, a, lo=None, hi=None):
    if a is None:
        return None
    if lo is not None:
        return xp.maximum(a, lo)
    return xp.minimum(a, hi)


def modified_params(op: LinearOp, fn, zero: tuple[str, ...] = (), drop_bias: bool = False) -> dict:
    """Modify every parameter with ``fn(name, value)``; names in ``zero`` (or the bias if ``drop_bias``) vanish."""
    out = {}
    for name, value in op.params.items():
        if value is None or name in zero or (drop_bias and name == "bias"):
            out[name] = None
        else:
            out[name] = fn(name, value)
    return out


def all_zero(xp, xs) -> bool:
    """Whether every array in ``xs`` is zero (a shortcut only; compiling, values are not known, only what the signs
    tell at compile time)."""
    if getattr(xp, "symbolic", False):  # known only where the signs say so (``min(x, 0)`` after a ReLU)
        return all(getattr(x, "zero", False) for x in xs)
    return all(not bool(xp.any(x)) for x in xs)


def layer_output(op: LinearOp, params: dict, call: Call, r):
    """``z = f(x; params)``: the node's forward value when the parameters are the op's own (no ``zero_params``) and
    the forward pass kept it (one GEMM saved per layer), else recomputed."""
    out = call.outputs[0] if call.outputs else None
    if out is not None and getattr(out, "shape", None) == r.shape and all(params[k] is v for k, v in op.params.items()):
        return out
    return op.forward(op.inputs, params)


def forward_or_zero(op: LinearOp, xs, params, xp):
    """``f(xs; params)``, skipping the work (returning 0) when inputs are all zero and there is no bias."""
    if params.get("bias") is None and all_zero(xp, xs):
        return 0.0
    return op.forward(xs, params)


def pullback(op: LinearOp, s, params, xs, xp):
    """``xs ⊙ Jᵀ s`` per data input, skipped (0) for all-zero inputs."""
    if all_zero(xp, xs):
        return [0.0] * len(xs)
    return [x * g for x, g in zip(xs, op.vjp(s, params))]


def add_terms(a, b):
    return [u + v for u, v in zip(a, b)]
