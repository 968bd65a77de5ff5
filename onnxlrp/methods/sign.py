"""SIGN (Gumpfer et al. 2023, "SIGNed explanations: Unveiling relevant features by reducing bias", Information
Fusion 100:101883) and the method names of signxai (``signxai`` / ``signxai2``) as a grammar.

Multiplying by the input value ``x_i`` in the last step of an explanation gives (near) zero relevance to features
that are (near) zero, however much they matter: a bias that depends on the input encoding. SIGN keeps only the
**sign** of the input in that last step.

Rules (``sgn0(v) = +1 if v ≥ 0 else −1``, so zero counts as positive):

* :class:`Sign`, the SIGN input-layer rule: ``R_i = sgn0(x_i)·(Wᵀ s)_i`` with ``s = R / z`` and ``z = Wx + b`` (bias
  included, **no ε**, whichever rule the other layers use: signxai's TensorFlow semantics). Hence
  ``R_SIGN ⊙ |x| = R_Z`` for the same ``s``, and zero inputs receive ``(Wᵀ s)_i``.
* :class:`SignMu`, SIGN-μ: ``S_μ(x_i) = +1 if x_i ≥ μ else −1`` in place of ``sgn0``; μ is meant to be the middle of
  the input range (0 for [−1, 1], 0.5 for [0, 1], −0.5 for [−1, 0]); ``SignMu(0) == Sign``.
* :class:`Z`, iNNvestigate's ``ZRule`` (LRP-0 with the bias, no ε) and :class:`AlphaBetaINN`, iNNvestigate's
  ``AlphaBetaRule`` with ``bias=True``: the positive copy of the layer carries ``b⁺`` and the negative one ``b⁻``, and
  each denominator adds one of each, so both contain the full bias ``b`` (``z^α = W⁺x⁺ + W⁻x⁻ + b``,
  ``z^β = W⁻x⁺ + W⁺x⁻ + b``); unlike zennit's ``AlphaBeta`` (``b⁺`` / ``b⁻``).
* the std-x ε rule is :class:`onnxlrp.rules.StdxEpsilon`: ``ε = stdfactor · std(layer input)``, the population std
  (ddof 0) **per sample**. signxai's ``np.std`` runs over the whole input tensor, batch axis included, so its ε (and
  map) for a sample depends on the other samples of the batch; with one sample per call the two agree.

Division by zero (``division`` parameter of the rules and methods): ``"safe"`` (default, the engine's convention)
drops the relevance of outputs with ``z = 0``; ``"innvestigate"`` copies iNNvestigate's ``SafeDivide``
``a / (b + 1e-7·[b = 0])``, which multiplies such relevance by 1e7.

Methods:

* ``gradient_x_sign`` (``G ⊙ sgn0(x)``), ``gradient_x_sign_mu`` (``G ⊙ S_μ(x)``, parameter ``mu``) and the grammar
  ``{gradient,guided_backprop,deconvnet,smoothgrad}_x_sign[_mu[_<m>]]``: the base method's map (gradient of the
  target logit, guided backprop, DeconvNet, SmoothGrad) times the sign of the explained input, taken post hoc
  (signxai ``wrappers.py``). ``smoothgrad_x_sign*`` defaults to signxai's 50 samples with noise std 0.2·(max − min)
  per sample (signxai2's PyTorch convention; TensorFlow signxai/iNNvestigate use an absolute std of 0.2).
* the LRP names ``<prefix>_<rule>[_mu_<m>]``: ``<rule>`` on every Conv/dense layer, the input layer replaced
  according to ``<prefix>`` (ALGORITHMS.md §2.4):

  ==========  ===========================  ====================================================================
  prefix      input-layer rule             rule (other Conv / dense layers)
  ==========  ===========================  ====================================================================
  ``lrp``     the layer rule               ``z``: :class:`Z`
  ``lrpsign`` :class:`Sign` / ``SignMu``   ``epsilon_<e>``: ``Epsilon(e)``
  ``lrpz``    :class:`Z`                   ``epsilon_<f>_std_x``: ``StdxEpsilon(f)``
  ``w2lrp``   w² (bias dropped)            ``alpha_<a>_beta_<b>``: :class:`AlphaBetaINN` (``a − b = 1``)
  ``flatlrp`` flat                         ``sequential_composite_a``: dense ``Epsilon(0.1)``, Conv α1β0 (INN)
  ``zblrp``   z-box (``low``, ``high``)    ``sequential_composite_b``: dense ``Epsilon(0.1)``, Conv α2β1 (INN)
  ==========  ===========================  ====================================================================

  Numbers: ``0_1`` = 0.1, ``0_25`` = 0.25, ``100`` = 100, ``neg_0_5`` = −0.5. ``_mu_<m>`` (``lrpsign`` only) makes
  the input rule SIGN-μ. ``zblrp_…_VGG16ILSVRC`` uses signxai's VGG16 (Caffe) bounds −123.68 / 151.061; plain
  ``zblrp_…`` defaults to each sample's input min / max. Residual Add and average pooling use :class:`Z`
  (iNNvestigate's z-rule), activations pass relevance, max-pooling and reshapes use the gradient; the seed is the
  target logit (iNNvestigate; ``relevance_init="one_hot"`` gives zennit's seed). Batch normalisation following a
  Conv/Gemm is folded into it (zennit's canonizer, ``onnxlrp.canonize``); signxai's TensorFlow code instead applies
  its own BatchNorm reverse rule, so maps differ on such nets.

The input layer: every Conv/dense node with no other Conv/dense node between it and the explained input
(:func:`onnxlrp.presets.first_layers`, graph reachability). signxai's ``is_input_layer`` looks through reshapes and
padding only; both agree on feed-forward nets whose first kernel layer reads the (possibly reshaped) input; with
constant preprocessing (``(x − μ)/σ``) in the graph the sign is that of the preprocessed input, which is what signxai
sees for a model fed preprocessed data. In a multi-stem network every stem's first layer gets the input rule.

``lrpsign_*`` names with an ε rule take ``sign_input_stabilizer``: ``"none"`` (default, TensorFlow signxai) or
``"same_as_layer"`` (signxai2's git PyTorch hooks: the input layer's denominator is stabilised with the layer ε,
``stdfactor·std(x)`` for std-x). signxai2 0.5.0 (PyPI) implements neither: its ``lrpsign_*_std_x`` and
``lrpz_*_std_x`` both run plain LRP-ε(1e-6) on every Conv/Linear with gradients elsewhere and a one-hot seed, whatever
the std factor (see ``tests/methods/test_sign.py``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from ..errors import MethodError
from ..lrp.assign import lrp_rules
from ..lrp.presets import LayerRules
from ..lrp.rules import Epsilon, Flat, StdxEpsilon, WSquare, ZBox
from ..lrp.sign import DIVISIONS, AlphaBetaINN, Sign, SignMu, Z, sign_mu
from . import gradients
from .base import Method, MethodFamily, lrp_method

# -------------------------------------------------------------------------------------------- gradient x SIGN

GRADIENT_BASES = ("gradient", "guided_backprop", "deconvnet", "smoothgrad")
#: signxai's defaults for the base methods (SmoothGrad: 50 samples, noise 0.2 of the input range)
_BASE_DEFAULTS = {"smoothgrad": {"noise_level": 0.2, "samples": 50}}
_BASE_TEXT = {"gradient": "gradient of the target logit", "guided_backprop": "guided backprop",
              "deconvnet": "DeconvNet", "smoothgrad": "SmoothGrad"}


def _number(text: str) -> float:
    """``0_1`` → 0.1, ``100`` → 100.0, ``neg_0_5`` → −0.5 (signxai's method-name numbers)."""
    negative = text.startswith("neg_")
    value = float(text[4:].replace("_", ".") if negative else text.replace("_", "."))
    return -value if negative else value


def _fmt(value: float) -> str:
    return f"{value:g}"


def gradient_sign_method(name: str, base: str, mu: float | None, mu_param: bool) -> Method:
    """``<base>_x_sign…``: the base method's map times ``S_μ(x)`` (``mu`` fixed by the name, or the parameter ``mu``
    when ``mu_param``)."""
    base_method = next(m for m in gradients.METHODS if m.name == base)
    params = {**base_method.params, **_BASE_DEFAULTS.get(base, {})}
    if mu_param:
        params["mu"] = 0.0
    fixed = 0.0 if mu is None else mu

    def run(session, x, feeds, target, full, options):
        base_params = {k: v for k, v in full.items() if k in base_method.params}
        result = base_method.run(session, x, feeds, target, base_params, options)
        threshold = full["mu"] if mu_param else fixed
        return result._replace(relevance=result.relevance * sign_mu(session.xp, session.array(x), threshold))

    if mu_param:
        factor = "S_mu(x) (+1 where x >= mu, else -1)"
    elif mu is None:
        factor = "the sign of the input (0 counts as +1)"
    else:
        factor = f"S_mu(x) with mu={_fmt(mu)} (+1 where x >= {_fmt(mu)}, else -1)"
    return Method(name, f"SIGN: {_BASE_TEXT[base]} times {factor}", params, "gradient", run, base_method.assign)


_GRADIENT_SIGN = re.compile(
    rf"^(?P<base>{'|'.join(GRADIENT_BASES)})_x_sign(?P<mu>_mu(?:_(?P<m>(?:neg_)?\d+(?:_\d+)?))?)?$")


@cache
def parse_gradient_sign(name: str) -> Method | None:
    match = _GRADIENT_SIGN.match(name)
    if match is None:
        return None
    mu_param = bool(match["mu"]) and match["m"] is None
    mu = _number(match["m"]) if match["m"] is not None else None
    return gradient_sign_method(name, match["base"], mu, mu_param)


_GRADIENT_SIGN_FAMILY = MethodFamily(
    pattern="{gradient,guided_backprop,deconvnet,smoothgrad}_x_sign[_mu[_<m>]]",
    description="SIGN (Gumpfer et al. 2023): the base method's map times the sign of the input, sgn0(x) or "
                "S_mu(x) = +1 where x >= mu else -1; '_mu' takes the parameter mu, '_mu_<m>' fixes it "
                "(0_5 = 0.5, neg_0_5 = -0.5); smoothgrad defaults to 50 samples, noise 0.2",
    examples=("gradient_x_sign_mu_0", "gradient_x_sign_mu_0_5", "gradient_x_sign_mu_neg_0_5",
              "guided_backprop_x_sign", "guided_backprop_x_sign_mu_0_5", "deconvnet_x_sign",
              "deconvnet_x_sign_mu_neg_0_5", "smoothgrad_x_sign", "smoothgrad_x_sign_mu"),
    parse=parse_gradient_sign)

# -------------------------------------------------------------------------------------------- LRP names

_NUM = r"(?:neg_)?\d+(?:_\d+)?"
_LRP_NAME = re.compile(
    rf"^(?P<prefix>lrp|lrpsign|lrpz|w2lrp|flatlrp|zblrp)_"
    rf"(?P<rule>z|epsilon_(?P<eps>{_NUM})(?P<std>_std_x)?|alpha_(?P<alpha>{_NUM})_beta_(?P<beta>{_NUM})"
    rf"|sequential_composite_(?P<comp>[ab]))"
    rf"(?:_mu_(?P<mu>{_NUM}))?(?P<vgg>_VGG16ILSVRC)?$")

#: signxai's z-box bounds for its VGG16 (Caffe preprocessing: BGR minus the ImageNet mean)
VGG16ILSVRC_BOUNDS = (-123.68, 151.061)
_INPUT_TEXT = {"lrp": None, "lrpsign": "SIGN", "lrpz": "Z (no epsilon)", "w2lrp": "w-square", "flatlrp": "flat",
               "zblrp": "z-box"}


@dataclass(frozen=True)
class LrpName:
    """A parsed signxai LRP name."""

    prefix: str
    rule: str                      # z | epsilon | std_x | alpha_beta | composite
    value: float | None = None     # epsilon, stdfactor
    alpha: float | None = None
    beta: float | None = None
    composite: str | None = None   # a | b
    mu: float | None = None
    vgg: bool = False

    def layer_rules(self, division: str) -> tuple:
        """``(conv rule, dense rule)`` for the layers other than the input layer."""
        if self.rule == "z":
            return (Z(division),) * 2
        if self.rule == "epsilon":
            return (Epsilon(self.value),) * 2
        if self.rule == "std_x":
            return (StdxEpsilon(self.value),) * 2
        if self.rule == "alpha_beta":
            return (AlphaBetaINN(self.alpha, self.beta, division=division),) * 2
        conv = AlphaBetaINN(1.0, 0.0, division=division) if self.composite == "a" else \
            AlphaBetaINN(2.0, 1.0, division=division)
        return conv, Epsilon(0.1)

    def input_rule(self, params: dict):
        division = params["division"]
        if self.prefix == "lrp":
            return None
        if self.prefix == "lrpz":
            return Z(division)
        if self.prefix == "w2lrp":
            return WSquare(0.0, ("bias",))
        if self.prefix == "flatlrp":
            return Flat(0.0)
        if self.prefix == "zblrp":
            return ZBox(params["low"], params["high"], 0.0)
        same = params.get("sign_input_stabilizer", "none") == "same_as_layer"
        eps = self.value if same and self.rule == "epsilon" else 0.0
        std = self.value if same and self.rule == "std_x" else 0.0
        if self.mu is None:
            return Sign(eps, std, division)
        return SignMu(eps, std, division, mu=self.mu)

    def describe(self) -> str:
        if self.rule == "z":
            layers = "z-rule (LRP-0 with bias)"
        elif self.rule == "epsilon":
            layers = f"epsilon={_fmt(self.value)}"
        elif self.rule == "std_x":
            layers = f"epsilon = {_fmt(self.value)} x std(layer input) per sample"
        elif self.rule == "alpha_beta":
            layers = f"alpha{_fmt(self.alpha)}-beta{_fmt(self.beta)} (iNNvestigate, full bias)"
        else:
            layers = (f"sequential composite {self.composite.upper()}: epsilon=0.1 on dense, "
                      f"{'alpha1-beta0' if self.composite == 'a' else 'alpha2-beta1'} on Conv")
        first = _INPUT_TEXT[self.prefix] or "the same rule"
        if self.prefix == "lrpsign":
            first = "SIGN (no epsilon)" if self.mu is None else f"SIGN-mu with mu={_fmt(self.mu)} (no epsilon)"
        return f"signxai LRP: {layers}; input layer: {first}"


def parse_lrp_name(name: str) -> LrpName | None:
    """The parsed name, ``None`` if it is not of this grammar; a :class:`MethodError` for a name of the grammar with
    impossible values."""
    match = _LRP_NAME.match(name)
    if match is None:
        return None
    prefix = match["prefix"]
    if match["mu"] is not None and prefix != "lrpsign":
        raise MethodError(f"method {name!r}: '_mu_<m>' sets the SIGN-mu input rule and needs the 'lrpsign' prefix "
                          f"(e.g. 'lrpsign_{name.split('_', 1)[1]}')")
    if match["vgg"] and prefix != "zblrp":
        raise MethodError(f"method {name!r}: '_VGG16ILSVRC' selects the z-box bounds of the 'zblrp' prefix")
    mu = _number(match["mu"]) if match["mu"] is not None else None
    if match["eps"] is not None:
        value = _number(match["eps"])
        if value <= 0:
            raise MethodError(f"method {name!r}: the epsilon (or std factor) must be positive; use "
                              f"'{prefix}_z' for no epsilon")
        return LrpName(prefix, "std_x" if match["std"] else "epsilon", value=value, mu=mu, vgg=bool(match["vgg"]))
    if match["alpha"] is not None:
        alpha, beta = _number(match["alpha"]), _number(match["beta"])
        if beta < 0 or abs(alpha - beta - 1) > 1e-12:
            raise MethodError(f"method {name!r}: alpha-beta needs beta >= 0 and alpha - beta = 1 "
                              f"(e.g. alpha_1_beta_0, alpha_2_beta_1)")
        return LrpName(prefix, "alpha_beta", alpha=alpha, beta=beta, mu=mu, vgg=bool(match["vgg"]))
    if match["comp"] is not None:
        return LrpName(prefix, "composite", composite=match["comp"], mu=mu, vgg=bool(match["vgg"]))
    return LrpName(prefix, "z", mu=mu, vgg=bool(match["vgg"]))


def _params_for(spec: LrpName) -> dict:
    params: dict[str, object] = {"division": "safe"}
    if spec.prefix == "lrpsign" and spec.rule in ("epsilon", "std_x"):
        params["sign_input_stabilizer"] = "none"
    if spec.prefix == "zblrp":
        params["low"], params["high"] = VGG16ILSVRC_BOUNDS if spec.vgg else (None, None)
    return params


def lrp_assigner(spec: LrpName):
    """``assign(session, params)`` for a parsed LRP name."""
    def assign(session, params):
        division = params["division"]
        stabilizer = params.get("sign_input_stabilizer", "none")
        if division not in DIVISIONS:
            raise MethodError(f"division must be one of {', '.join(DIVISIONS)}; got {division!r}")
        if stabilizer not in ("none", "same_as_layer"):
            raise MethodError(f"sign_input_stabilizer must be 'none' or 'same_as_layer'; got {stabilizer!r}")
        conv, dense = spec.layer_rules(division)
        layer = LayerRules(conv=conv, dense=dense, first=spec.input_rule(params), stabilizer=0.0)
        rules = lrp_rules(session.path.nodes, session.categories, session.path.varying, layer)
        z = Z(division)
        for node in session.path.nodes:
            if session.categories[node.name] in ("sum", "avgpool"):
                rules[node.name] = z
        return rules

    return assign


@cache
def parse_lrp(name: str) -> Method | None:
    spec = parse_lrp_name(name)
    if spec is None:
        return None
    return lrp_method(name, spec.describe(), _params_for(spec), lrp_assigner(spec))


_LRP_NAME_FAMILY = MethodFamily(
    pattern="{lrp,lrpsign,lrpz,w2lrp,flatlrp,zblrp}_{z,epsilon_<e>,epsilon_<f>_std_x,alpha_<a>_beta_<b>,"
            "sequential_composite_{a,b}}[_mu_<m>]",
    description="signxai LRP names: the rule on every Conv/dense layer, the input layer by prefix (lrp: same rule, "
                "lrpsign: SIGN without epsilon, '_mu_<m>' SIGN-mu; lrpz: Z; w2lrp: w-square; flatlrp: flat; zblrp: "
                "z-box, '_VGG16ILSVRC' for signxai's bounds); epsilon_<f>_std_x: epsilon = f x std(layer input) per "
                "sample; alpha-beta and composites A/B (dense epsilon 0.1, Conv alpha1-beta0 / alpha2-beta1) with "
                "iNNvestigate's bias handling; numbers: 0_1 = 0.1, 100, neg_0_5 = -0.5",
    examples=("lrp_z", "lrpsign_z", "lrp_epsilon_0_1", "lrpsign_epsilon_0_1", "lrpz_epsilon_0_1",
              "lrpsign_epsilon_100_mu_0_5", "lrp_epsilon_0_1_std_x", "lrpsign_epsilon_0_1_std_x",
              "lrpz_epsilon_0_1_std_x", "lrpsign_epsilon_0_25_std_x_mu_neg_0_5", "lrp_alpha_1_beta_0",
              "lrpsign_alpha_1_beta_0", "lrpz_alpha_1_beta_0", "w2lrp_epsilon_0_1", "flatlrp_z",
              "zblrp_z_VGG16ILSVRC", "lrp_sequential_composite_a", "lrpsign_sequential_composite_b"),
    parse=parse_lrp)

METHODS = [parse_gradient_sign("gradient_x_sign"), parse_gradient_sign("gradient_x_sign_mu")]
FAMILIES = [_GRADIENT_SIGN_FAMILY, _LRP_NAME_FAMILY]
