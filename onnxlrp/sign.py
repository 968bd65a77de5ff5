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
the std factor (see ``tests/test_sign.py``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from .errors import MethodError
from .methods import METHODS, Method, MethodFamily, lrp_method, register_family, register_method
from .presets import LayerRules, lrp_rules
from .rules import RULES, Epsilon, Flat, LinearRule, StdxEpsilon, WSquare, ZBox, _add, _clamp, _forward, _params, \
    _pullback, stabilize

DIVISIONS = ("safe", "innvestigate")

# -------------------------------------------------------------------------------------------- helpers


def safe_divide(xp, r, z, division: str = "safe"):
    """``r / z`` without a stabiliser: ``"safe"`` gives 0 where ``z = 0``; ``"innvestigate"`` computes
    ``r / (z + 1e-7·[z = 0])`` (iNNvestigate ``SafeDivide``)."""
    zero = z == 0
    if division == "innvestigate":
        return r / (z + zero.astype(z.dtype) * 1e-7)
    if division != "safe":
        raise ValueError(f"division must be one of {', '.join(DIVISIONS)}; got {division!r}")
    return xp.where(zero, 0.0, r / xp.where(zero, 1.0, z)).astype(r.dtype, copy=False)


def sign_mu(xp, x, mu=0.0):
    """``S_μ(x) = +1 if x ≥ μ else −1`` (``mu=0``: ``sgn0``, zero counts as positive); ``mu`` may be an array
    broadcast against ``x`` (e.g. one threshold per feature)."""
    threshold = xp.asarray(mu, dtype=x.dtype)
    return xp.where(x >= threshold, 1.0, -1.0).astype(x.dtype, copy=False)


def _check_division(division: str) -> None:
    if division not in DIVISIONS:
        raise ValueError(f"division must be one of {', '.join(DIVISIONS)}; got {division!r}")


# -------------------------------------------------------------------------------------------- rules


@dataclass(frozen=True)
class Z(LinearRule):
    """LRP-z with the bias, no ε (iNNvestigate ``ZRule``): ``R_i = x_i (Wᵀ s)_i``, ``s = R / z``, ``z = Wx + b``;
    outputs with ``z = 0`` per ``division`` (``"safe"``: dropped; ``"innvestigate"``: ``R/1e-7``)."""

    division: str = "safe"
    zero_params: tuple = ()

    def __post_init__(self):
        _check_division(self.division)

    def apply(self, op, r, call):
        xp = call.xp
        params = _params(op, lambda n, p: p, self.zero_params)
        z = op.forward(op.inputs, params)
        return _pullback(op, safe_divide(xp, r, z, self.division), params, op.inputs, xp)


@dataclass(frozen=True)
class Sign(LinearRule):
    """SIGN input-layer rule (Gumpfer et al. 2023): ``R_i = sgn0(x_i)·(Wᵀ s)_i``, ``s = R / z``, ``z = Wx + b``.

    No ε by default (signxai TensorFlow). ``epsilon`` / ``stdfactor`` stabilise the denominator with
    ``ε = epsilon + stdfactor·std(x)`` (per sample) as signxai2's PyTorch hooks do; ``division`` handles ``z = 0``
    when there is no ε.
    """

    epsilon: float = 0.0
    stdfactor: float = 0.0
    division: str = "safe"
    zero_params: tuple = ()

    applies_to = frozenset({"conv", "dense"})

    def __post_init__(self):
        _check_division(self.division)
        if self.epsilon < 0 or self.stdfactor < 0:
            raise ValueError(f"epsilon and stdfactor must be non-negative; got {self.epsilon}, {self.stdfactor}")

    def signs(self, xp, x):
        return sign_mu(xp, x, 0.0)

    def apply(self, op, r, call):
        xp = call.xp
        params = _params(op, lambda n, p: p, self.zero_params)
        z = op.forward(op.inputs, params)
        if self.epsilon == 0 and self.stdfactor == 0:
            s = safe_divide(xp, r, z, self.division)
        else:
            x = op.inputs[0]
            eps = self.epsilon
            if self.stdfactor:
                std = x.std(axis=tuple(range(1, x.ndim)), keepdims=True)
                eps = eps + (self.stdfactor * std).reshape((x.shape[0],) + (1,) * (r.ndim - 1))
            s = r / stabilize(xp, z, eps)
        return [self.signs(xp, x) * g for x, g in zip(op.inputs, op.vjp(s, params))]


@dataclass(frozen=True)
class SignMu(Sign):
    """SIGN-μ input-layer rule: :class:`Sign` with ``S_μ(x) = +1 if x ≥ μ else −1`` in place of ``sgn0``; ``mu`` is
    a number or a sequence broadcast against the layer input (one threshold per feature)."""

    mu: Any = 0.0

    def signs(self, xp, x):
        return sign_mu(xp, x, self.mu)


@dataclass(frozen=True)
class AlphaBetaINN(LinearRule):
    """LRP-αβ with iNNvestigate's semantics (``AlphaBetaRule``): ``R = α R^α − β R^β`` with
    ``R^α = x⁺⊙W⁺ᵀs^α + x⁻⊙W⁻ᵀs^α``, ``s^α = R / (W⁺x⁺ + W⁻x⁻ + b)`` and
    ``R^β = x⁺⊙W⁻ᵀs^β + x⁻⊙W⁺ᵀs^β``, ``s^β = R / (W⁻x⁺ + W⁺x⁻ + b)``: with ``bias=True`` both denominators carry the
    full bias (``bias=False``: none). Requires ``β ≥ 0`` and ``α − β = 1``; no ε (``division`` for ``z = 0``)."""

    alpha: float = 1.0
    beta: float = 0.0
    bias: bool = True
    division: str = "safe"

    def __post_init__(self):
        _check_division(self.division)
        if self.beta < 0 or abs((self.alpha - self.beta) - 1.0) > 1e-12:
            raise ValueError(f"alpha-beta needs beta >= 0 and alpha - beta = 1; got alpha={self.alpha}, "
                             f"beta={self.beta}")

    def apply(self, op, r, call):
        xp = call.xp
        xpos = [_clamp(xp, x, lo=0) for x in op.inputs]
        xneg = [_clamp(xp, x, hi=0) for x in op.inputs]
        wpos = _params(op, lambda n, p: _clamp(xp, p, lo=0), drop_bias=not self.bias)
        wneg = _params(op, lambda n, p: _clamp(xp, p, hi=0), drop_bias=not self.bias)

        def part(w_for_pos, w_for_neg):
            z = _forward(op, xpos, w_for_pos, xp) + _forward(op, xneg, w_for_neg, xp)
            if not hasattr(z, "shape"):  # both halves skipped: all-zero inputs, no bias
                z = xp.zeros_like(r) + z
            s = safe_divide(xp, r, z, self.division)
            return _add(_pullback(op, s, w_for_pos, xpos, xp), _pullback(op, s, w_for_neg, xneg, xp))

        activator = part(wpos, wneg)
        if self.beta == 0:
            return [self.alpha * a for a in activator] if self.alpha != 1 else activator
        inhibitor = part(wneg, wpos)
        return [self.alpha * a - self.beta * b for a, b in zip(activator, inhibitor)]


for _key, _rule in (("sign", Sign), ("sign_mu", SignMu), ("z", Z), ("alpha_beta_inn", AlphaBetaINN)):
    RULES.setdefault(_key, _rule)

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
    base_method = METHODS[base]
    params = {**base_method.params, **_BASE_DEFAULTS.get(base, {})}
    if mu_param:
        params["mu"] = 0.0
    fixed = 0.0 if mu is None else mu

    def run(ex, x, feeds, target, full, options):
        base_params = {k: v for k, v in full.items() if k in base_method.params}
        relevance, output, targets, kept = base_method.run(ex, x, feeds, target, base_params, options)
        threshold = full["mu"] if mu_param else fixed
        return relevance * sign_mu(ex.xp, ex._array(x), threshold), output, targets, kept

    if mu_param:
        factor = "S_mu(x) (+1 where x >= mu, else -1)"
    elif mu is None:
        factor = "the sign of the input (0 counts as +1)"
    else:
        factor = f"S_mu(x) with mu={_fmt(mu)} (+1 where x >= {_fmt(mu)}, else -1)"
    return Method(name, f"SIGN: {_BASE_TEXT[base]} times {factor}", params, "gradient", run, base_method.assign)


_GRADIENT_SIGN = re.compile(
    rf"^(?P<base>{'|'.join(GRADIENT_BASES)})_x_sign(?P<mu>_mu(?:_(?P<m>(?:neg_)?\d+(?:_\d+)?))?)?$")


@lru_cache(maxsize=None)
def parse_gradient_sign(name: str) -> Method | None:
    match = _GRADIENT_SIGN.match(name)
    if match is None:
        return None
    mu_param = bool(match["mu"]) and match["m"] is None
    mu = _number(match["m"]) if match["m"] is not None else None
    return gradient_sign_method(name, match["base"], mu, mu_param)


register_method(parse_gradient_sign("gradient_x_sign"))
register_method(parse_gradient_sign("gradient_x_sign_mu"))
register_family(MethodFamily(
    pattern="{gradient,guided_backprop,deconvnet,smoothgrad}_x_sign[_mu[_<m>]]",
    description="SIGN (Gumpfer et al. 2023): the base method's map times the sign of the input, sgn0(x) or "
                "S_mu(x) = +1 where x >= mu else -1; '_mu' takes the parameter mu, '_mu_<m>' fixes it "
                "(0_5 = 0.5, neg_0_5 = -0.5); smoothgrad defaults to 50 samples, noise 0.2",
    examples=("gradient_x_sign_mu_0", "gradient_x_sign_mu_0_5", "gradient_x_sign_mu_neg_0_5",
              "guided_backprop_x_sign", "guided_backprop_x_sign_mu_0_5", "deconvnet_x_sign",
              "deconvnet_x_sign_mu_neg_0_5", "smoothgrad_x_sign", "smoothgrad_x_sign_mu"),
    parse=parse_gradient_sign))

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
    """``assign(ex, params)`` for a parsed LRP name."""
    def assign(ex, params):
        division = params["division"]
        stabilizer = params.get("sign_input_stabilizer", "none")
        if division not in DIVISIONS:
            raise MethodError(f"division must be one of {', '.join(DIVISIONS)}; got {division!r}")
        if stabilizer not in ("none", "same_as_layer"):
            raise MethodError(f"sign_input_stabilizer must be 'none' or 'same_as_layer'; got {stabilizer!r}")
        conv, dense = spec.layer_rules(division)
        layer = LayerRules(conv=conv, dense=dense, first=spec.input_rule(params), stabilizer=0.0)
        rules = lrp_rules(ex.path.nodes, ex.categories, ex.path.varying, layer)
        z = Z(division)
        for node in ex.path.nodes:
            if ex.categories[node.name] in ("sum", "avgpool"):
                rules[node.name] = z
        return rules

    return assign


@lru_cache(maxsize=None)
def parse_lrp(name: str) -> Method | None:
    spec = parse_lrp_name(name)
    if spec is None:
        return None
    return lrp_method(name, spec.describe(), _params_for(spec), lrp_assigner(spec))


register_family(MethodFamily(
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
    parse=parse_lrp))
