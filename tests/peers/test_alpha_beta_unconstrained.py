"""``alpha_beta`` with α − β ≠ 1 against zennit 0.5.1's ``AlphaBeta`` rule on the same weights.

zennit 0.5.1's ``AlphaBeta.__init__`` refuses α − β ≠ 1, but the rule itself (its ``BasicHook`` reducer
``α(x⁺g⁺ + x⁻g⁻) − β(x⁺g⁺⁻ + x⁻g⁻⁺)``) is defined for any pair: :func:`zennit_rule` builds zennit's own rule with a
permitted pair and then sets the reducer's ``alpha`` and ``beta`` (its closure variables) to the pair under test, so
zennit's code computes the map unchanged. :func:`test_zennit_rule_helper_is_faithful` checks the trick against an
unpatched ``AlphaBeta(1, 0)``. onnxlrp's ``alpha_beta`` method puts the same rule on every Conv and dense layer.

The β-only map (α=0, β=1) and an amplifying one (α=3, β=1) are compared, both in float64 on a small seeded
VGG-style model with non-trivial biases (``tests/helpers/peer_models.py``); the conservation caveat of the method's
description (each layer scales ΣR by α − β) is checked with the biases zeroed.
"""
from __future__ import annotations

import numpy as np
import pytest

from tests.helpers.compare import assert_close, assert_rel

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")
pytest.importorskip("zennit")

from zennit.attribution import Gradient  # noqa: E402
from zennit.composites import LayerMapComposite, layer_map_base  # noqa: E402
from zennit.rules import AlphaBeta  # noqa: E402
from zennit.types import Convolution  # noqa: E402

import onnxlrp  # noqa: E402
from tests.helpers import peer_models  # noqa: E402

pytestmark = pytest.mark.peers

TARGETS = np.array([3, 7])
CLASSES = 10
#: float64 on both sides: the two differ only by summation order (measured 1e-16 .. 1e-15)
TOL = 1e-14


@pytest.fixture(scope="module")
def case():
    model = peer_models.build("vgg", seed=5)
    x32 = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(11))
    onnx_bytes = peer_models.export_onnx(model, x32[:1])
    return model.double(), x32.double(), onnx_bytes


def zennit_rule(alpha: float, beta: float) -> AlphaBeta:
    """zennit's ``AlphaBeta`` rule computing ``alpha``/``beta`` (see the module docstring)."""
    rule = AlphaBeta(alpha=2.0, beta=1.0)
    reducer = rule.reducer
    assert reducer.__code__.co_freevars == ("alpha", "beta"), reducer.__code__.co_freevars  # zennit 0.5.1's layout
    reducer.__closure__[0].cell_contents = alpha
    reducer.__closure__[1].cell_contents = beta
    return rule


def zennit_alpha_beta(model, x, alpha: float, beta: float, rule=zennit_rule) -> np.ndarray:
    composite = LayerMapComposite(layer_map_base() + [(Convolution, rule(alpha, beta)),
                                                      (torch.nn.Linear, rule(alpha, beta))])
    seed = torch.nn.functional.one_hot(torch.from_numpy(TARGETS), CLASSES).double()
    with Gradient(model, composite) as attributor:
        _, relevance = attributor(x.clone(), seed)
    return relevance.detach().numpy()


def test_zennit_rule_helper_is_faithful(case):
    """The patched rule with (1, 0) equals zennit's own ``AlphaBeta(1, 0)``, and with (2, 1) its default: the
    closure variables are the rule's parameters."""
    model, x, _ = case
    for alpha, beta in [(1.0, 0.0), (2.0, 1.0)]:
        own = zennit_alpha_beta(model, x, alpha, beta, rule=lambda a, b: AlphaBeta(alpha=a, beta=b))
        assert_rel(zennit_alpha_beta(model, x, alpha, beta), own, 0.0, f"helper alpha={alpha:g}")


@pytest.mark.parametrize(("alpha", "beta"), [(0.0, 1.0), (3.0, 1.0), (2.0, 1.0)])
def test_alpha_beta_matches_zennit(case, alpha, beta):
    model, x, onnx_bytes = case
    expected = zennit_alpha_beta(model, x, alpha, beta)
    result = onnxlrp.Explainer(onnx_bytes, dtype="float64").explain(
        x.numpy(), method="alpha_beta", target=TARGETS, alpha=alpha, beta=beta, relevance_init="one_hot")
    assert np.isfinite(expected).all() and np.abs(expected).max() > 0
    assert_rel(result.relevance, expected, TOL, f"alpha={alpha:g} beta={beta:g}")


def test_beta_only_map_is_not_the_alpha_map(case):
    """The β-only map differs from z+ (α=1, β=0) and from α2β1: the parameters reach the rule."""
    model, x, onnx_bytes = case
    ex = onnxlrp.Explainer(onnx_bytes, dtype="float64")
    maps = {ab: ex.explain(x.numpy(), method="alpha_beta", target=TARGETS, alpha=ab[0], beta=ab[1],
                           relevance_init="one_hot").relevance for ab in [(0.0, 1.0), (1.0, 0.0), (2.0, 1.0)]}
    assert not np.allclose(maps[(0.0, 1.0)], maps[(1.0, 0.0)])
    assert not np.allclose(maps[(0.0, 1.0)], maps[(2.0, 1.0)])


@pytest.mark.parametrize(("alpha", "beta"), [(0.0, 1.0), (3.0, 1.0), (2.0, 1.0)])
def test_each_layer_scales_the_sum_by_alpha_minus_beta(case, alpha, beta):
    """Without biases (and without the stabiliser) every one of the model's 6 Conv/dense layers multiplies ΣR by
    α − β: a one-hot seed of 1 gives ΣR = (α − β)⁶ at the input (1, 1 and 64 here)."""
    _, x, onnx_bytes = case
    result = onnxlrp.Explainer(onnx_bytes, dtype="float64").explain(
        x.numpy(), method="alpha_beta", target=TARGETS, alpha=alpha, beta=beta, relevance_init="one_hot",
        zero_params=["bias"], stabilizer=0.0)
    sums = result.relevance.reshape(len(TARGETS), -1).sum(axis=1)
    assert_close(sums, np.full(len(TARGETS), (alpha - beta) ** 6), rtol=5e-15, label="sum R")
