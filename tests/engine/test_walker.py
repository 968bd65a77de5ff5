"""The backward walk (``onnxlrp/engine/walker.py``): what ``keep`` returns, what each node's rule is handed, fan-out
sums, skipped nodes, scalar relevance broadcast to its input, faulty rule results refused with their messages.
Written for the survivors of mutation testing (``tools/mutation_report.md``)."""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pytest
from onnx import helper

import onnxlrp
from onnxlrp.engine.graph import Node
from onnxlrp.engine.kernel import Kernel, Rule
from onnxlrp.engine.walker import propagate
from onnxlrp.errors import NonFiniteError, RelevanceShapeError
from tests.helpers.compare import assert_close
from tests.helpers.onnx_builders import make_model


def _mlp():
    """Relu -> Gemm -> Relu -> Gemm on (N, 3); tensors a, h, r, y."""
    r = np.random.default_rng(0)
    init = {"w1": r.normal(size=(4, 3)).astype(np.float32), "w2": r.normal(size=(2, 4)).astype(np.float32)}
    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Gemm", ["a", "w1"], ["h"], transB=1),
             helper.make_node("Relu", ["h"], ["r"]), helper.make_node("Gemm", ["r", "w2"], ["y"], transB=1)]
    return make_model(nodes, [("x", ["N", 3])], [("y", ["N", 2])], init)


def test_keep_returns_exactly_the_named_tensors_or_all():
    ex = onnxlrp.Explainer(_mlp(), dtype="float64")
    x = np.array([[1.0, 2.0, -0.5], [0.5, -1.0, 3.0]])
    none = ex.explain(x, method="lrp0", target=0)
    assert set(none.intermediate) == set()
    one = ex.explain(x, method="lrp0", target=0, keep=["h"])
    assert set(one.intermediate) == {"h"}
    every = ex.explain(x, method="lrp0", target=0, keep="all")
    assert set(every.intermediate) == {"y", "r", "h", "a"}
    assert_close(every.intermediate["h"], one.intermediate["h"], rtol=0, atol=0)
    # LRP-0 without biases conserves layer by layer: what reaches each kept tensor sums to the logit
    for name in ("y", "r", "h", "a"):
        assert_close(every.intermediate[name].sum(axis=1), none.output[:, 0], rtol=1e-14, atol=1e-15)
    assert_close(every.relevance, none.relevance, rtol=0, atol=0)


@pytest.mark.filterwarnings("ignore::onnxlrp.errors.ZeroRelevanceWarning")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_relevance_of_an_all_zero_input_is_broadcast_to_its_shape_and_dtype(dtype):
    """Every input negative: the first Relu outputs zeros, the Gemm after it skips the work and returns the scalar
    0 for its input (``core.pullback``); the walker broadcasts it to a zero array of the input's shape and dtype."""
    ex = onnxlrp.Explainer(_mlp(), dtype=dtype)
    x = -np.abs(np.random.default_rng(1).normal(size=(2, 3))).astype(dtype) - 0.1
    res = ex.explain(x, method="epsilon", target=1, keep=["a"])
    assert res.intermediate["a"].shape == (2, 3) and res.intermediate["a"].dtype == np.dtype(dtype)
    assert res.relevance.shape == (2, 3) and res.relevance.dtype == np.dtype(dtype)
    assert not res.relevance.any()


# ------------------------------------------------------------------------------------------------------------------
# The walker driven directly, with kernels and rules written here through the public protocol (a Kernel with forward
# and vjp, a Rule whose propagate returns one entry per node input): what each node is handed, how contributions are
# summed, which faulty results are broadcast or refused, and the exact messages.


class _Scale(Kernel):
    """``y = c · x`` on input 0; input 1 (when given) is read but not differentiated."""

    def __init__(self, c=2.0):
        self.c = c

    def forward(self, call):
        return (self.c * call.inputs[0],)

    def vjp(self, call, grads):
        return (self.c * grads[0],) + (None,) * (len(call.inputs) - 1)


class _Halves(Kernel):
    """``(x[:, :2], x[:, 2:])``: two outputs."""

    def forward(self, call):
        return call.inputs[0][:, :2], call.inputs[0][:, 2:]

    def vjp(self, call, grads):
        return (np.concatenate(grads, axis=1),)


@dataclass(frozen=True)
class _Returns(Rule):
    """Records every call it is handed and returns ``result`` (one entry per node input) for each."""

    result: tuple
    seen: list = field(default_factory=list, compare=False, repr=False)

    def propagate(self, kernel, call, relevance):
        self.seen.append((call, relevance))
        return self.result


def _node(name, op, inputs, outputs, index):
    return Node(name=name, op_type=op, domain="test", since=1, inputs=tuple(inputs), outputs=tuple(outputs), attrs={},
                index=index)


def _values(**arrays):
    """``value(name)`` / ``value(name, None)`` over ``arrays``, as the session hands the walker."""
    def value(name, *default):
        return arrays[name] if not default else arrays.get(name, default[0])
    return value


X = np.array([[1.0, -2.0, 3.0, 0.5]])


def test_each_node_is_handed_its_inputs_kept_outputs_and_which_inputs_vary():
    """``a = Scale(x, w)``; ``y = Scale(a)``: every rule call sees the forward values, ``None`` for an absent
    optional input, and ``varying`` true only for tensors that depend on the input."""
    w = np.array([7.0])
    nodes = [_node("A", "Scale", ["x", "w", ""], ["a"], 0), _node("B", "Scale", ["a"], ["y"], 1)]
    first, second = _Returns((np.ones((1, 4)), np.ones(1), None)), _Returns((np.full((1, 4), 3.0),))
    value = _values(x=X, w=w, a=2 * X, y=4 * X)
    seed = np.array([[0.0, 1.0, 0.0, 0.0]])
    remaining, kept = propagate(nodes, {"A": _Scale(), "B": _Scale()}, {"A": first, "B": second}, value,
                                {"x", "a", "y"}, {"y": seed}, np)
    (call_b, r_b), = second.seen
    assert call_b.node is nodes[1] and call_b.varying == (True,) and call_b.xp is np
    assert call_b.inputs[0] is value("a") and call_b.outputs[0] is value("y") and r_b[0] is seed
    (call_a, r_a), = first.seen
    assert call_a.varying == (True, False, False)
    assert call_a.inputs[0] is value("x") and call_a.inputs[1] is w and call_a.inputs[2] is None
    assert call_a.outputs == (value("a"),)
    assert np.array_equal(r_a[0], np.full((1, 4), 3.0))
    # the constant w's relevance is dropped; the input's is what remains
    assert set(remaining) == {"x"} and np.array_equal(remaining["x"], np.ones((1, 4))) and kept == {}


def test_an_output_the_forward_pass_did_not_keep_is_handed_as_none():
    nodes = [_node("A", "Scale", ["x"], ["a"], 0)]
    rule = _Returns((X,))
    propagate(nodes, {"A": _Scale()}, {"A": rule}, _values(x=X), {"x", "a"}, {"a": X}, np)
    assert rule.seen[0][0].outputs == (None,)
    rule = _Returns((X,))
    propagate(nodes, {"A": _Scale()}, {"A": rule}, _values(x=X, a=2 * X), {"x"}, {"a": X}, np)
    assert rule.seen[0][0].outputs == (None,)  # kept, but not varying: not handed


def test_fan_out_is_summed_and_a_node_without_relevance_is_skipped_not_the_rest():
    """``x`` feeds A, B and C; only A and C are seeded. B (between them in reverse order) is skipped, and the
    relevance reaching ``x`` is the sum of A's and C's contributions (their rule: the default, Gradient)."""
    nodes = [_node("A", "Scale", ["x"], ["a"], 0), _node("B", "Scale", ["x"], ["b"], 1),
             _node("C", "Scale", ["x"], ["c"], 2)]
    kernels = {"A": _Scale(2.0), "B": _Scale(5.0), "C": _Scale(-3.0)}
    seeds = {"a": np.array([[1.0, 0.0, 0.0, 0.0]]), "c": np.array([[0.0, 1.0, 0.0, 1.0]])}
    value = _values(x=X, a=2 * X, b=5 * X, c=-3 * X)
    skipped = _Returns((np.ones((1, 4)),))
    remaining, kept = propagate(nodes, kernels, {"B": skipped}, value, {"x", "a", "b", "c"}, seeds, np,
                                keep=("a", "b", "x"))
    assert skipped.seen == [] and set(remaining) == {"x"}
    assert np.array_equal(remaining["x"], np.array([[2.0, -3.0, 0.0, -3.0]]))  # Gradient: 2·[1,0,0,0] − 3·[0,1,0,1]
    assert set(kept) == {"a"} and kept["a"] is seeds["a"]  # b received nothing; x is no node's output


def test_an_output_without_relevance_beside_one_with_is_handed_as_zeros():
    """A two-output node seeded on one output only: the rule sees zeros shaped like the other output."""
    nodes = [_node("H", "Halves", ["x"], ["p", "q"], 0)]
    seed = np.array([[0.0, 4.0]])
    value = _values(x=X, p=X[:, :2], q=X[:, 2:])
    for seeded, r_out in (({"p": seed}, (seed, np.zeros((1, 2)))), ({"q": seed}, (np.zeros((1, 2)), seed))):
        remaining, kept = propagate(nodes, {"H": _Halves()}, {}, value, {"x", "p", "q"}, seeded, np, keep="all")
        assert np.array_equal(remaining["x"], np.concatenate(r_out, axis=1)) and set(kept) == set(seeded)
    rule = _Returns((X,))
    propagate(nodes, {"H": _Halves()}, {"H": rule}, value, {"x", "p", "q"}, {"q": seed}, np)
    (r_p, r_q), = [r for _, r in rule.seen]
    assert r_q is seed and r_p.shape == (1, 2) and not r_p.any()


def test_a_rule_may_leave_a_varying_input_without_relevance():
    """``s = Scale(x, v)`` with both varying: the rule returns ``None`` for ``x`` and relevance for ``v``."""
    nodes = [_node("S", "Scale", ["x", "v"], ["s"], 0)]
    rule = _Returns((None, np.full((1, 4), 0.25)))
    remaining, _ = propagate(nodes, {"S": _Scale()}, {"S": rule}, _values(x=X, v=X), {"x", "v", "s"}, {"s": X}, np)
    assert set(remaining) == {"v"} and np.array_equal(remaining["v"], np.full((1, 4), 0.25))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["python float", "0-d array"])
def test_a_scalar_relevance_is_broadcast_to_its_input_in_its_dtype(kind, dtype):
    """A Python float or a 0-d array of the compute dtype (what ``core.pullback`` returns for an all-zero input)."""
    x = X.astype(dtype)
    scalar = 0.5 if kind == "python float" else np.asarray(0.5, dtype)
    nodes = [_node("A", "Scale", ["x"], ["a"], 0)]
    remaining, _ = propagate(nodes, {"A": _Scale()}, {"A": _Returns((scalar,))}, _values(x=x), {"x", "a"},
                             {"a": x}, np)
    assert remaining["x"].shape == (1, 4) and remaining["x"].dtype == dtype
    assert np.array_equal(remaining["x"], np.full((1, 4), 0.5, dtype))


@pytest.mark.parametrize("bad, shape", [(np.ones((4,)), "(4,)"), (np.ones((1, 3)), "(1, 3)"),
                                        (np.ones((2, 4)), "(2, 4)"), (np.ones((1, 1)), "(1, 1)")])
def test_relevance_of_the_wrong_shape_is_refused_by_name(bad, shape):
    nodes = [_node("A", "Scale", ["x"], ["a"], 0)]
    with pytest.raises(RelevanceShapeError) as e:
        propagate(nodes, {"A": _Scale()}, {"A": _Returns((bad,))}, _values(x=X), {"x", "a"}, {"a": X}, np)
    assert str(e.value) == (f"node 'A' (Scale) returned relevance of shape {shape} for input 0 ('x'), which has "
                            "shape (1, 4)")


@dataclass(frozen=True)
class _Fill(Rule):
    """Relevance ``value`` at every entry of input 0 (a faulty rule when ``value`` is not finite)."""

    value: float

    def propagate(self, kernel, call, relevance):
        return (np.full(call.inputs[0].shape, self.value),)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_relevance_is_refused_naming_the_node_input_and_rule(bad):
    nodes = [_node("A", "Scale", ["x"], ["a"], 0)]
    with pytest.raises(NonFiniteError) as e:
        propagate(nodes, {"A": _Scale()}, {"A": _Fill(bad)}, _values(x=X), {"x", "a"}, {"a": X}, np)
    assert str(e.value) == (f"relevance became NaN or inf at node 'A' (Scale), input 'x' (rule _Fill(value={bad!r})); "
                            "a denominator is zero or overflowed: use a positive epsilon/stabilizer or "
                            "dtype='float64'")
    with pytest.raises(NonFiniteError, match=r"^relevance became NaN or inf at node 'A' \(Scale\), input 'x' "
                                             r"\(rule Gradient\(\)\)"):
        propagate(nodes, {"A": _Scale(np.inf)}, {}, _values(x=X), {"x", "a"}, {"a": X}, np)


@dataclass(frozen=True)
class _MaskedDivision(Rule):
    """``R / x`` where ``x ≠ 0``, else 0, computed as a rule would: divide everywhere, then mask."""

    def propagate(self, kernel, call, relevance):
        x = call.inputs[0]
        return (np.where(x != 0, relevance[0] / x, 0.0),)


def test_a_rules_masked_division_by_zero_raises_no_floating_point_warning():
    x = np.array([[1.0, 0.0, -2.0, 0.0]])
    nodes = [_node("A", "Scale", ["x"], ["a"], 0)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        remaining, _ = propagate(nodes, {"A": _Scale()}, {"A": _MaskedDivision()}, _values(x=x), {"x", "a"},
                                 {"a": np.ones((1, 4))}, np)
    assert np.array_equal(remaining["x"], np.array([[1.0, 0.0, -0.5, 0.0]]))
