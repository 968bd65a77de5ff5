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
(:func:`onnxlrp.lrp.assign.lrp_rules`); the rules are in :mod:`onnxlrp.lrp.transformer`, listed in
``onnxlrp.lrp.assign.RULES`` (``uniform_product``, ``softmax_dt``, ``stop``, ``layernorm_epsilon``) for overrides.
"""
from __future__ import annotations

from ..lrp.recurrent import RecurrentEpsilon
from ..lrp.rules import Epsilon, Gradient, Pass
from ..lrp.transformer import LayerNormEpsilon, SoftmaxDT, Stop, UniformProduct
from .base import lrp_method

EPSILON_CATEGORIES = ("conv", "dense", "sum", "avgpool", "affine", "batchnorm")
#: producers whose output is a gate (bounded in [0, 1]): CP-LRP keeps it constant in a product
STRONG_GATES = ("Softmax", "Sigmoid", "HardSigmoid")


# ---------------------------------------------------------------------------------------------- assignment

def _source(session, tensor, producer):
    """The producer of ``tensor``, looking through structural nodes (reshapes, transposes, casts, ...)."""
    node = producer.get(tensor)
    while node is not None and session.categories.get(node.name) == "structural":
        ports = session.kernels[node.name].data_inputs(node, session.path.varying)
        if isinstance(ports, str) or len(ports) != 1:
            break
        node = producer.get(node.inputs[ports[0]])
    return node


def gate_ports(session, node) -> tuple[int, ...]:
    """Operands of a bilinear node that are gates: produced by Softmax/Sigmoid/HardSigmoid (else by any other
    activation) through structural ops; ``()`` when none or both qualify (the product is then split uniformly)."""
    producer = {t: n for n in session.path.nodes for t in n.outputs if t}
    ports = [p for p in (0, 1) if node.inputs[p] in session.path.varying]
    if len(ports) != 2:
        return ()
    sources = {p: _source(session, node.inputs[p], producer) for p in ports}
    for test in (lambda n: n.op_type in STRONG_GATES,
                 lambda n: session.categories.get(n.name) in ("activation", "softmax")):
        gates = tuple(p for p in ports if sources[p] is not None and test(sources[p]))
        if len(gates) == 1:
            return gates
    return ()


def transformer_rules(session, params, conservative: bool) -> dict:
    eps, peps = float(params["epsilon"]), float(params["product_epsilon"])
    rules = {}
    for node in session.path.nodes:
        category = session.categories[node.name]
        if category in EPSILON_CATEGORIES:
            rule = Epsilon(eps)
        elif category == "layernorm":
            rule = LayerNormEpsilon(eps)
        elif category == "activation":
            rule = Pass()
        elif category == "softmax":
            rule = Stop() if conservative else SoftmaxDT()
        elif category == "bilinear":
            gates = gate_ports(session, node) if conservative else ()
            receivers = tuple(p for p in (0, 1) if p not in gates) if gates else None
            rule = UniformProduct(peps, receivers)
        elif category == "recurrent":  # Arras et al.: signal-take-all through the gates, epsilon on the linear parts
            rule = RecurrentEpsilon(eps)
        else:
            rule = Gradient()
        rules[node.name] = rule
    return rules


PARAMS = {"epsilon": 1e-6, "product_epsilon": 1e-8}

METHODS = [
    lrp_method("attnlrp", "AttnLRP (LXT): epsilon on linear layers and LayerNorm (sigma constant), identity on "
               "activations, uniform split of products and attention matmuls, the softmax rule of Prop. 3.1", PARAMS,
               lambda session, params: transformer_rules(session, params, conservative=False)),
    lrp_method("cp_lrp", "CP-LRP (Ali et al. 2022, as in LXT): like AttnLRP, but attention weights and gates are "
               "constants (no relevance through Softmax, Q, K or gate branches)", PARAMS,
               lambda session, params: transformer_rules(session, params, conservative=True)),
]
