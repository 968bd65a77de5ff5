"""AttnLRP (Achtibat et al., ICML 2024; LXT) and CP-LRP (Ali et al., ICML 2022) for transformer graphs.

Rules per node category (``ALGORITHMS.md`` §6.1, §6.4; the canonizer fuses decomposed LayerNorm / GELU / SiLU /
softmax first, so rules see the true op):

==============================  ===============================================  ==================================
category (ops)                  ``attnlrp``                                      ``cp_lrp``
==============================  ===============================================  ==================================
conv, dense, sum, avgpool,      ε-rule (bias and constant shifts absorb,         same
affine, batchnorm               scalings are the identity)
layernorm                       ε-rule with σ held constant (LXT                 same
                                ``layer_norm_grad_fn``: identity on ``1/σ``)
activation (GELU, SiLU, Exp…)   identity                                         same
softmax (Softmax, LogSoftmax)   Prop. 3.1: ``R_x = x ⊙ (R − s Σ R)``             stop (no relevance)
bilinear MatMul (``QKᵀ, A·V``)  uniform ε-rule: ``R_k = x_k ⊙ J_kᵀ(R/(2·O))``    gate operand (from Softmax /
                                                                                 Sigmoid) constant: the other
                                                                                 operand gets the ε-rule
bilinear Mul (gates)            uniform: ``R/2`` to each factor                  gate factor constant
bilinear Div ``a/b``            divisor constant (normalisation: identity)       same
structural, maxpool             exact adjoint (gradient)                         same
==============================  ===============================================  ==================================

With ``epsilon → 0`` AttnLRP equals LXT's efficient Gradient×Input implementation (and its explicit one), seeded
with the target logit. Stabilisers here are sign-aware (``z + ε·sgn0(z)``); LXT adds an unsigned ε — the two agree
as ε → 0 (the parity tests use a tiny ε).

The LRP presets (``epsilon``, ``epsilon_plus``…) use :class:`UniformProduct` on ``bilinear`` nodes,
:class:`SoftmaxDT` on ``softmax`` nodes and :class:`LayerNormEpsilon` on ``layernorm`` nodes too
(``presets.lrp_rules``); the rules below are registered in
``onnxlrp.rules.RULES`` (``uniform_product``, ``softmax_dt``, ``stop``, ``layernorm_epsilon``) for per-node overrides.
"""
from __future__ import annotations

from dataclasses import dataclass

from .errors import RuleNotApplicableError
from .methods import lrp_method, register_method
from .registry import scatter_ports, unbroadcast
from .rules import RULES, Epsilon, Gradient, Pass, Rule, divide

EPSILON_CATEGORIES = ("conv", "dense", "sum", "avgpool", "affine", "batchnorm")
#: producers whose output is a gate (bounded in [0, 1]): CP-LRP keeps it constant in a product
STRONG_GATES = ("Softmax", "Sigmoid", "HardSigmoid")


@dataclass(frozen=True)
class UniformProduct(Rule):
    """Relevance of a product of two activations (category ``bilinear``).

    ``receivers`` are the input ports that get relevance (``None``: every varying factor; the others are held
    constant). With ``n`` receivers: an elementwise product gives each receiver ``R/n`` (LXT ``mul2``, Eq. 7); a
    matrix product gives ``R_k = x_k ⊙ J_kᵀ(R / (n·O + ε·sgn0))`` (``n = 2``: LXT ``matmul`` uniform-ε rule,
    Prop. 3.3; ``n = 1``: the ε-rule with the other operand as weights, CP-LRP). A quotient ``a/b`` always holds the
    divisor constant (a normalisation: the numerator receives ``R``).
    """

    epsilon: float = 1e-8
    receivers: tuple | None = None

    applies_to = frozenset({"bilinear"})

    def propagate(self, kernel, call, relevance):
        xp, r = call.xp, relevance[0]
        varying = [p for p in (0, 1) if call.varying[p]]
        product = getattr(kernel, "product", None)
        if product == "quotient":
            ports = [p for p in varying if p == 0]
        else:
            ports = [p for p in varying if self.receivers is None or p in self.receivers] or varying
        n = len(ports)
        if product in ("elementwise", "quotient"):
            return scatter_ports(len(call.inputs), ports, [unbroadcast(xp, r / n, call.inputs[p].shape) for p in ports])
        if product != "matmul":
            raise RuleNotApplicableError(f"rule {self.describe()} needs a product kernel; node {call.node.name!r} "
                                         f"({call.node.op_type}) is not one")
        (out,) = kernel.forward(call)
        grads = kernel.vjp(call, (divide(xp, r, n * out, self.epsilon),))
        return scatter_ports(len(call.inputs), ports, [call.inputs[p] * grads[p] for p in ports])


@dataclass(frozen=True)
class SoftmaxDT(Rule):
    """AttnLRP softmax rule (Prop. 3.1, DTD with bias): ``R_x = x ⊙ Jᵀ(R / y)`` with ``J`` the Jacobian at ``x``;
    ``x = −inf`` entries (masks) count as 0. Not conservative.

    * Softmax (``y = s``): ``R_x = x ⊙ (R − s ⊙ Σ_axis R)`` (no division), ``ΣR_x = Σ x⊙R − (x·s) ΣR``.
    * LogSoftmax (``y = log s``): the same first-order rule, ``R_x = x ⊙ (v − s ⊙ Σ_axis v)`` with
      ``v = R / (y + ε·sgn0(y))``. Seeded with the target's log-probability ``R = y_c e_c`` this is gradient × input
      of ``log p_c``: ``R_x = x ⊙ (e_c − s)``.
    """

    epsilon: float = 1e-12

    applies_to = frozenset({"softmax"})

    def propagate(self, kernel, call, relevance):
        xp, x = call.xp, call.inputs[0]
        v, axis = kernel._axis_view(call, x)
        s = kernel._softmax(xp, v, axis)
        r = relevance[0].reshape(v.shape)
        if getattr(kernel, "log", False):
            r = divide(xp, r, xp.log(s), self.epsilon)
        v0 = xp.where(xp.isinf(v), 0.0, v).astype(v.dtype, copy=False)
        out = v0 * (r - s * r.sum(axis=axis, keepdims=True))
        return scatter_ports(len(call.inputs), (0,), [out.reshape(x.shape)])


@dataclass(frozen=True)
class Stop(Rule):
    """No relevance flows to the node's inputs (LXT ``StopRelevanceRule``; CP-LRP on Softmax)."""

    def propagate(self, kernel, call, relevance):
        return (None,) * len(call.inputs)


@dataclass(frozen=True)
class LayerNormEpsilon(Epsilon):
    """AttnLRP LayerNorm rule: the ε-rule on the layer with σ held constant (``R_x = x ⊙ Jᵀ(R/(y + ε))``,
    ``J = diag(w/σ)(I − 11ᵀ/N)``), i.e. the identity on the normalisation; the bias absorbs its share."""

    epsilon: float = 1e-6
    zero_params: tuple = ()

    applies_to = frozenset({"layernorm"})


RULES.update({"uniform_product": UniformProduct, "softmax_dt": SoftmaxDT, "stop": Stop,
              "layernorm_epsilon": LayerNormEpsilon})


# ---------------------------------------------------------------------------------------------- assignment

def _source(ex, tensor, producer):
    """The producer of ``tensor``, looking through structural nodes (reshapes, transposes, casts, ...)."""
    node = producer.get(tensor)
    while node is not None and ex.categories.get(node.name) == "structural":
        ports = ex.kernels[node.name].data_inputs(node, ex.path.varying)
        if isinstance(ports, str) or len(ports) != 1:
            break
        node = producer.get(node.inputs[ports[0]])
    return node


def gate_ports(ex, node) -> tuple[int, ...]:
    """Operands of a bilinear node that are gates: produced by Softmax/Sigmoid/HardSigmoid (else by any other
    activation) through structural ops; ``()`` when none or both qualify (the product is then split uniformly)."""
    producer = {t: n for n in ex.path.nodes for t in n.outputs if t}
    ports = [p for p in (0, 1) if node.inputs[p] in ex.path.varying]
    if len(ports) != 2:
        return ()
    sources = {p: _source(ex, node.inputs[p], producer) for p in ports}
    for test in (lambda n: n.op_type in STRONG_GATES,
                 lambda n: ex.categories.get(n.name) in ("activation", "softmax")):
        gates = tuple(p for p in ports if sources[p] is not None and test(sources[p]))
        if len(gates) == 1:
            return gates
    return ()


def transformer_rules(ex, params, conservative: bool) -> dict:
    eps, peps = float(params["epsilon"]), float(params["product_epsilon"])
    rules = {}
    for node in ex.path.nodes:
        category = ex.categories[node.name]
        if category in EPSILON_CATEGORIES:
            rule = Epsilon(eps)
        elif category == "layernorm":
            rule = LayerNormEpsilon(eps)
        elif category == "activation":
            rule = Pass()
        elif category == "softmax":
            rule = Stop() if conservative else SoftmaxDT()
        elif category == "bilinear":
            gates = gate_ports(ex, node) if conservative else ()
            receivers = tuple(p for p in (0, 1) if p not in gates) if gates else None
            rule = UniformProduct(peps, receivers)
        else:
            rule = Gradient()
        rules[node.name] = rule
    return rules


PARAMS = {"epsilon": 1e-6, "product_epsilon": 1e-8}

register_method(lrp_method(
    "attnlrp", "AttnLRP (LXT): epsilon on linear layers and LayerNorm (sigma constant), identity on activations, "
    "uniform split of products and attention matmuls, the softmax rule of Prop. 3.1", PARAMS,
    lambda ex, params: transformer_rules(ex, params, conservative=False)))
register_method(lrp_method(
    "cp_lrp", "CP-LRP (Ali et al. 2022, as in LXT): like AttnLRP, but attention weights and gates are constants "
    "(no relevance through Softmax, Q, K or gate branches)", PARAMS,
    lambda ex, params: transformer_rules(ex, params, conservative=True)))
