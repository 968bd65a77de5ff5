"""LRP presets: zennit's composites (same names and defaults) as frozen dataclasses whose fields are their parameters.

A preset decides the rules for convolutions, dense layers and the first layer (:class:`LayerRules`); everything else
comes from the base map every preset shares (:func:`onnxlrp.lrp.assign.lrp_rules`): activations, BatchNorm (when
not folded) and constant shifts/scalings pass relevance through (``Pass``), residual sums and average pooling split
it proportionally (``Norm``), max-pooling and reshapes use the gradient. For the transformer parts zennit has no
rule, so the presets take AttnLRP's (:mod:`onnxlrp.lrp.transformer`): products of two activations (attention,
gates) split relevance evenly, Softmax/LogSoftmax use the softmax rule of Prop. 3.1 and LayerNorm/RMSNorm treat
their normalisation as constant. (Passing relevance through an attention Softmax and then splitting the product
``QKᵀ`` divides by near-zero attention scores: relevance diverges, up to 1e8 on MiniLM.)

Add a preset by writing a dataclass with a ``layer_rules`` method and listing it in :data:`PRESETS`; it then appears
in ``onnxlrp methods`` and the CLI takes its fields with ``--set``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import ClassVar

from ..engine.kernel import Rule
from ..errors import MethodError
from .rules import AlphaBeta, Epsilon, Flat, Gamma, StdxEpsilon, WSquare, ZBox, ZPlus

LINEAR_CATEGORIES = ("conv", "dense")


@dataclass(frozen=True)
class LayerRules:
    """What an LRP preset decides: rules for conv and dense nodes, and the first-layer rule with its categories."""

    conv: Rule
    dense: Rule
    first: Rule | None = None
    first_categories: tuple[str, ...] = LINEAR_CATEGORIES
    stabilizer: float = 1e-6


@dataclass(frozen=True)
class Preset:
    """Base class: subclasses set ``name`` and ``description`` and implement :meth:`layer_rules`."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""

    def layer_rules(self) -> LayerRules:
        raise NotImplementedError

    @classmethod
    def defaults(cls) -> dict[str, object]:
        """``parameter -> default`` (the dataclass fields)."""
        return asdict(cls())

    @classmethod
    def build(cls, params: dict) -> LayerRules:
        """The layer rules for ``params`` (a subset of the fields; the rest keep their defaults)."""
        try:
            return cls(**params).layer_rules()
        except (TypeError, ValueError) as exc:
            raise MethodError(f"bad parameters for method {cls.name!r}: {exc}") from exc

    def _zero(self) -> tuple:
        return tuple(getattr(self, "zero_params", ()) or ())


@dataclass(frozen=True)
class Lrp0(Preset):
    name: ClassVar[str] = "lrp0"
    description: ClassVar[str] = "LRP-0 on every layer (equals gradient x input on ReLU networks)"
    zero_params: tuple = ()

    def layer_rules(self):
        return LayerRules(Epsilon(0.0, self._zero()), Epsilon(0.0, self._zero()), stabilizer=0.0)


@dataclass(frozen=True)
class _EpsilonCommon(Preset):
    """The parameters most presets share."""

    epsilon: float = 1e-6
    stabilizer: float = 1e-6
    zero_params: tuple = ()

    def _epsilon(self) -> Epsilon:
        return Epsilon(self.epsilon, self._zero())

    def _zplus(self) -> ZPlus:
        return ZPlus(stabilizer=self.stabilizer, zero_params=self._zero())

    def _alpha2_beta1(self) -> AlphaBeta:
        return AlphaBeta(2.0, 1.0, self.stabilizer, self._zero())


@dataclass(frozen=True)
class EpsilonPreset(_EpsilonCommon):
    name: ClassVar[str] = "epsilon"
    description: ClassVar[str] = "LRP-epsilon on every Conv and dense layer"

    def layer_rules(self):
        return LayerRules(self._epsilon(), self._epsilon(), stabilizer=self.stabilizer)


@dataclass(frozen=True)
class EpsilonPlus(_EpsilonCommon):
    name: ClassVar[str] = "epsilon_plus"
    description: ClassVar[str] = "zennit EpsilonPlus: z+ on Conv, epsilon on dense layers"

    def layer_rules(self):
        return LayerRules(self._zplus(), self._epsilon(), stabilizer=self.stabilizer)


@dataclass(frozen=True)
class EpsilonPlusFlat(_EpsilonCommon):
    name: ClassVar[str] = "epsilon_plus_flat"
    description: ClassVar[str] = "zennit EpsilonPlusFlat: flat on the first layer, z+ on Conv, epsilon on dense"

    def layer_rules(self):
        return LayerRules(self._zplus(), self._epsilon(), first=Flat(self.stabilizer, self._zero()),
                          stabilizer=self.stabilizer)


@dataclass(frozen=True)
class EpsilonGammaBox(_EpsilonCommon):
    name: ClassVar[str] = "epsilon_gamma_box"
    description: ClassVar[str] = ("zennit EpsilonGammaBox: zB box rule on the first Conv, gamma on Conv, epsilon on "
                                  "dense (low/high default to each sample's input min/max)")
    gamma: float = 0.25
    low: object = None
    high: object = None

    def layer_rules(self):
        return LayerRules(Gamma(self.gamma, self.stabilizer, self._zero()), self._epsilon(),
                          first=ZBox(self.low, self.high, self.stabilizer, self._zero()), first_categories=("conv",),
                          stabilizer=self.stabilizer)


@dataclass(frozen=True)
class EpsilonAlpha2Beta1(_EpsilonCommon):
    name: ClassVar[str] = "epsilon_alpha2_beta1"
    description: ClassVar[str] = "zennit EpsilonAlpha2Beta1: alpha2-beta1 on Conv, epsilon on dense"

    def layer_rules(self):
        return LayerRules(self._alpha2_beta1(), self._epsilon(), stabilizer=self.stabilizer)


@dataclass(frozen=True)
class EpsilonAlpha2Beta1Flat(_EpsilonCommon):
    name: ClassVar[str] = "epsilon_alpha2_beta1_flat"
    description: ClassVar[str] = ("zennit EpsilonAlpha2Beta1Flat: flat first layer, alpha2-beta1 on Conv, epsilon "
                                  "dense")

    def layer_rules(self):
        return LayerRules(self._alpha2_beta1(), self._epsilon(), first=Flat(self.stabilizer, self._zero()),
                          stabilizer=self.stabilizer)


@dataclass(frozen=True)
class AlphaBetaPreset(Preset):
    name: ClassVar[str] = "alpha_beta"
    description: ClassVar[str] = "LRP-alpha-beta on every Conv and dense layer"
    alpha: float = 1.0
    beta: float = 0.0
    stabilizer: float = 1e-6
    zero_params: tuple = ()

    def layer_rules(self):
        rule = AlphaBeta(self.alpha, self.beta, self.stabilizer, self._zero())
        return LayerRules(rule, rule, stabilizer=self.stabilizer)


@dataclass(frozen=True)
class ZPlusPreset(Preset):
    name: ClassVar[str] = "zplus"
    description: ClassVar[str] = "z+ (alpha1-beta0) on every Conv and dense layer"
    stabilizer: float = 1e-6
    zero_params: tuple = ()

    def layer_rules(self):
        rule = ZPlus(stabilizer=self.stabilizer, zero_params=self._zero())
        return LayerRules(rule, rule, stabilizer=self.stabilizer)


@dataclass(frozen=True)
class GammaPreset(Preset):
    name: ClassVar[str] = "gamma"
    description: ClassVar[str] = "LRP-gamma on every Conv and dense layer"
    gamma: float = 0.25
    stabilizer: float = 1e-6
    zero_params: tuple = ()

    def layer_rules(self):
        rule = Gamma(self.gamma, self.stabilizer, self._zero())
        return LayerRules(rule, rule, stabilizer=self.stabilizer)


@dataclass(frozen=True)
class StdxEpsilonPreset(Preset):
    name: ClassVar[str] = "stdx_epsilon"
    description: ClassVar[str] = "epsilon rule with epsilon = stdfactor x std(layer input) per sample, on every layer"
    stdfactor: float = 0.25
    stabilizer: float = 1e-6
    zero_params: tuple = ()

    def layer_rules(self):
        rule = StdxEpsilon(self.stdfactor, self._zero())
        return LayerRules(rule, rule, stabilizer=self.stabilizer)


@dataclass(frozen=True)
class FlatPreset(Preset):
    name: ClassVar[str] = "flat"
    description: ClassVar[str] = "flat rule on every Conv and dense layer"
    stabilizer: float = 1e-6
    zero_params: tuple = ()

    def layer_rules(self):
        rule = Flat(self.stabilizer, self._zero())
        return LayerRules(rule, rule, stabilizer=self.stabilizer)


@dataclass(frozen=True)
class WSquarePreset(_EpsilonCommon):
    name: ClassVar[str] = "wsquare"
    description: ClassVar[str] = "w-square on the first layer, epsilon elsewhere"

    def layer_rules(self):
        return LayerRules(self._epsilon(), self._epsilon(), first=WSquare(self.stabilizer, self._zero()),
                          stabilizer=self.stabilizer)


#: every preset by name, in the order ``onnxlrp methods`` lists them
PRESETS: dict[str, type[Preset]] = {p.name: p for p in (
    Lrp0, EpsilonPreset, EpsilonPlus, EpsilonPlusFlat, EpsilonGammaBox, EpsilonAlpha2Beta1, EpsilonAlpha2Beta1Flat,
    AlphaBetaPreset, ZPlusPreset, GammaPreset, StdxEpsilonPreset, FlatPreset, WSquarePreset)}

