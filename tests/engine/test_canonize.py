"""The canonizer's BatchNorm fold and MatMul + Add fusion (``onnxlrp/engine/canonize.py``), read from the canonical
graph: the folded parameters against ``W' = W·s``, ``b' = (b − μ)·s + β`` with ``s = γ/√(σ² + ε)`` computed here in
float64, and the cases left alone: malformed statistics or parameters (graphs built without the checker, as
onnxruntime refuses them) and a ``Dense`` of another domain. Written for the survivors of mutation testing
(``tools/mutation_report.md``)."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from onnxlrp.engine.canonize import canonize
from onnxlrp.engine.graph import Graph
from onnxlrp.engine.session import Session
from tests.helpers.compare import assert_close
from tests.helpers.onnx_builders import make_model

R = np.random.default_rng(11)
K = 4
STATS = {"s": R.uniform(0.5, 2, K).astype(np.float32), "bb": R.normal(size=K).astype(np.float32),
         "m": R.normal(size=K).astype(np.float32), "v": R.uniform(0.05, 0.5, K).astype(np.float32)}
EPS = 1e-3


def _bn(inp, out="y", **attrs):
    return helper.make_node("BatchNormalization", [inp, "s", "bb", "m", "v"], [out], epsilon=EPS, **attrs)


def _scale():
    st = {k: v.astype(np.float64) for k, v in STATS.items()}
    return st, st["s"] / np.sqrt(st["v"] + EPS)


def _folded(session, name):
    node = next(n for n in session.canonical.nodes if n.name == name)
    constants = session.canonical.constants
    return node, constants[node.inputs[1]], constants[node.inputs[2]]


def _session(nodes, init, opset=17, **kw):
    model = make_model(nodes, [("x", ["N", 3])], [("y", ["N", K])], {**STATS, **init}, opset=opset)
    return Session(model, dtype="float64", **kw)


@pytest.mark.parametrize("bias, beta", [(R.normal(size=K), 3.0), (R.normal(size=(1, K)), 1.0),
                                        (np.float32(0.7), 3.0), (None, 1.0)],
                         ids=["bias (K,)", "bias (1, K)", "scalar bias", "no bias"])
@pytest.mark.parametrize("trans_b", [0, 1])
def test_a_batchnorm_after_a_gemm_is_folded_into_a_dense_layer(bias, beta, trans_b):
    w = R.normal(size=(K, 3) if trans_b else (3, K)).astype(np.float32)
    init = {"w": w} if bias is None else {"w": w, "c": np.asarray(bias, np.float32)}
    gemm = helper.make_node("Gemm", ["x", "w"] + ([] if bias is None else ["c"]), ["z"], name="g", transB=trans_b,
                            alpha=2.0, beta=beta)
    session = _session([gemm, _bn("z")], init)
    node, weight, b = _folded(session, "g")
    st, s = _scale()
    effective = 2.0 * (w.T if trans_b else w).astype(np.float64)
    # beta·C as the float32 model states it (rounded to float32, as onnxruntime computes it), then float64
    c = np.zeros(K) if bias is None else np.broadcast_to(np.float32(beta) * np.asarray(bias, np.float32).reshape(-1),
                                                         (K,)).astype(np.float64)
    assert (node.op_type, node.domain, node.outputs) == ("Dense", "onnxlrp", ("y",))
    assert_close(weight, effective * s[None, :], rtol=1e-15, atol=0)
    assert_close(b, (c - st["m"]) * s + st["bb"], rtol=1e-15, atol=1e-15)
    assert weight.dtype == b.dtype == np.float64
    assert any("folded BatchNormalization" in line for line in session.canonizer_log)


@pytest.mark.parametrize("opset", [13, 17])
def test_a_batchnorm_after_a_fused_dense_layer_is_folded_into_it(opset):
    """MatMul + Add (fused first into ``onnxlrp::Dense``; the bias first, as ``Add(b, ·)``) then BatchNorm, at an
    opset before BatchNorm's ``training_mode`` and after."""
    w, c = R.normal(size=(3, K)).astype(np.float32), R.normal(size=K).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m1"]), helper.make_node("Add", ["c", "m1"], ["z"], name="a"),
             _bn("z")]
    session = _session(nodes, {"w": w, "c": c}, opset=opset)
    node, weight, b = _folded(session, "a")
    st, s = _scale()
    assert (node.op_type, node.domain, node.inputs[0]) == ("Dense", "onnxlrp", "x")
    assert [n.op_type for n in session.canonical.nodes] == ["Dense"]
    assert_close(weight, w.astype(np.float64) * s[None, :], rtol=1e-15, atol=0)
    assert_close(b, (c.astype(np.float64) - st["m"]) * s + st["bb"], rtol=1e-15, atol=1e-15)
    assert any("fused MatMul" in line for line in session.canonizer_log)


@pytest.mark.parametrize("bias", [R.normal(size=(1, K)), np.float32(0.3)], ids=["(1, K)", "scalar"])
def test_a_matmul_and_add_of_a_row_or_scalar_bias_become_one_dense_layer(bias):
    w = R.normal(size=(3, K)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m1"]), helper.make_node("Add", ["m1", "c"], ["y"], name="a")]
    session = Session(make_model(nodes, [("x", ["N", 3])], [("y", ["N", K])],
                                 {"w": w, "c": np.asarray(bias, np.float32)}), dtype="float64")
    (node,) = session.canonical.nodes
    assert (node.op_type, node.domain, node.since) == ("Dense", "onnxlrp", 1)
    b = session.canonical.constants[node.inputs[2]]
    assert b.shape == (K,) and np.array_equal(b, np.broadcast_to(np.asarray(bias, np.float32).reshape(-1), (K,)))


@pytest.mark.parametrize("bias_shape", [(K, 1), (1, 1, K)], ids=["column", "3-D"])
def test_a_matmul_and_add_that_would_change_shape_are_not_fused(bias_shape):
    w = R.normal(size=(3, K)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m1"]), helper.make_node("Add", ["m1", "c"], ["y"])]
    out = [K, K] if bias_shape == (K, 1) else [1, "N", K]
    session = Session(make_model(nodes, [("x", ["N", 3])], [("y", out)],
                                 {"w": w, "c": R.normal(size=bias_shape).astype(np.float32)}), dtype="float64")
    assert [n.op_type for n in session.canonical.nodes] == ["MatMul", "Add"]


def test_folding_in_a_float32_model_is_computed_in_float64():
    """float32 statistics: ``s`` is computed in float64, so the folded weights equal the float64 formula."""
    w = R.normal(size=(K, 3)).astype(np.float32)
    model = make_model([helper.make_node("Gemm", ["x", "w"], ["z"], name="g", transB=1), _bn("z")],
                       [("x", ["N", 3])], [("y", ["N", K])], {**STATS, "w": w})
    _, weight, _ = _folded(Session(model), "g")
    _, s = _scale()
    assert_close(weight, w.T.astype(np.float64) * s[None, :], rtol=1e-15, atol=0)


def test_batchnorms_that_cannot_be_folded_are_left_and_the_rest_still_folded():
    """In graph order: a BatchNorm in training mode, one after a Gemm with transA, one after a Relu, one after a sum
    of two varying tensors and one whose input is also read elsewhere, all left; the last, after a Gemm, folded."""
    w = {f"w{i}": R.normal(size=(K, 3)).astype(np.float32) for i in range(6)}
    gemm = lambda i, out, **kw: helper.make_node("Gemm", ["x", f"w{i}"], [out], transB=1, **kw)  # noqa: E731
    nodes = [
        gemm(0, "z0"), _bn("z0", "n0", training_mode=1),
        helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0]),
        helper.make_node("Gemm", ["xt", "wt"], ["z1"], transA=1), _bn("z1", "n1"),
        gemm(1, "z2"), helper.make_node("Relu", ["z2"], ["r2"]), _bn("r2", "n2"),
        gemm(2, "z5"), gemm(3, "z6"), helper.make_node("Add", ["z5", "z6"], ["z3"]), _bn("z3", "n3"),
        gemm(4, "z7"), _bn("z7", "n5"), helper.make_node("Relu", ["z7"], ["r7"]),
        gemm(5, "z4", name="last"), _bn("z4", "n4"),
        helper.make_node("Sum", ["n0", "n1", "n2", "n3", "n5", "r7", "n4"], ["y"]),
    ]
    model = make_model(nodes, [("x", ["N", 3])], [("y", ["N", K])],
                       {**STATS, **w, "wt": R.normal(size=(3, K)).astype(np.float32)}, opset=15)
    out, constants, log = canonize(Graph(model, check=False), {"y"})
    assert [n.outputs[0] for n in out if n.op_type == "BatchNormalization"] == ["n0", "n1", "n2", "n3", "n5"]
    (node,) = [n for n in out if n.name == "last"]
    assert node.op_type == "Dense" and node.outputs == ("n4",)
    assert_close(constants[node.inputs[1]], w["w5"].T.astype(np.float64) * _scale()[1][None, :], rtol=1e-15, atol=0)
    assert len(log) == 1 and log[0].startswith("folded BatchNormalization") and log[0].endswith("into Gemm 'last'")


def test_a_batchnorm_reading_the_explained_output_is_not_folded():
    w = R.normal(size=(K, 3)).astype(np.float32)
    nodes = [helper.make_node("Gemm", ["x", "w"], ["z"], transB=1), _bn("z")]
    model = make_model(nodes, [("x", ["N", 3])], [("z", ["N", K]), ("y", ["N", K])], {**STATS, "w": w})
    session = Session(model, output_name="z", dtype="float64")
    assert [n.op_type for n in session.canonical.nodes] == ["Gemm", "BatchNormalization"]


def test_a_cast_constant_is_lowered_before_the_fusions_with_the_canonizer_s_constants():
    """``Cast`` of a float64 weight: the lowering writes the cast weight into the canonizer's own constants (the ones
    the fusions and the session read), with the protected set consulted, and the Gemm + BatchNorm after it fold."""
    w = R.normal(size=(3, K))
    nodes = [helper.make_node("Cast", ["w64"], ["w"], to=1), helper.make_node("Gemm", ["x", "w"], ["z"], name="g"),
             _bn("z", name="bn")]
    model = make_model(nodes, [("x", ["N", 3])], [("y", ["N", K])], {**STATS, "w64": w})
    out, constants, log = canonize(Graph(model, check=False), {"y"})
    assert [n.op_type for n in out] == ["Dense"]
    assert constants["w"].dtype == np.float32 and np.array_equal(constants["w"], w.astype(np.float32))
    assert_close(constants[out[0].inputs[1]], w.astype(np.float32).astype(np.float64) * _scale()[1][None, :],
                 rtol=1e-15, atol=0)
    assert log == ["folded 1 Cast(s) of constants", "folded BatchNormalization 'bn' into Gemm 'g'"]


def _malformed(stats=None, w=None, c=None, prev=None, opset=17):
    """Gemm (or ``prev``) → BatchNorm with the given statistics, weight or bias, then a well-formed Gemm → BatchNorm
    after it, canonized on a graph built without the checker (onnxruntime refuses these models)."""
    st = {**STATS, **(stats or {})}
    inits = {**{f"{k}0": v for k, v in st.items() if v is not None}, **STATS,
             "w0": R.normal(size=(3, K)).astype(np.float32) if w is None else w,
             "w1": R.normal(size=(K, K)).astype(np.float32)}
    if c is not None:
        inits["c0"] = c
    first = prev or helper.make_node("Gemm", ["x", "w0"] + (["c0"] if c is not None else []), ["z0"], name="g0")
    nodes = [first,
             helper.make_node("BatchNormalization", ["z0", "s0", "bb0", "m0", "v0"], ["n0"], epsilon=EPS, name="bn0"),
             helper.make_node("Gemm", ["n0", "w1"], ["z1"], name="g1"), _bn("z1", name="bn1")]
    model = make_model(nodes, [("x", ["N", 3])] + [(f"{k}0", [K]) for k, v in st.items() if v is None],
                       [("y", ["N", K])], inits, opset=opset,
                       extra_opsets=[(prev.domain, 1)] if prev is not None else ())
    out, _, log = canonize(Graph(model, check=False), {"y"})
    return out, log


MALFORMED = {
    "a statistic that is not a constant": dict(stats={"m": None}),
    "a statistic of another size": dict(stats={"m": STATS["m"][:3]}),
    "a boolean statistic": dict(stats={"v": STATS["v"] > 0.2}),
    "a 2-D statistic": dict(stats={"s": STATS["s"][None, :]}),
    "a boolean weight": dict(w=R.normal(size=(3, K)) > 0),
    "a bias of another size": dict(c=R.normal(size=3).astype(np.float32)),
    "a boolean bias": dict(c=R.normal(size=K) > 0),
    "a weight whose columns are not the channels": dict(w=R.normal(size=(3, K + 1)).astype(np.float32)),
}


@pytest.mark.parametrize("case", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_batchnorm_with_malformed_statistics_or_parameters_is_left_and_the_next_is_still_folded(case):
    out, log = _malformed(**case)
    assert [(n.name, n.op_type) for n in out] == [("g0", "Gemm"), ("bn0", "BatchNormalization"), ("g1", "Dense")]
    assert log == ["folded BatchNormalization 'bn1' into Gemm 'g1'"]


def test_a_batchnorm_after_a_dense_of_another_domain_is_left():
    """Only the canonizer's ``onnxlrp::Dense`` takes a BatchNorm: a ``Dense`` of another domain keeps it, even with a
    constant 2-D second input of the right width. (A model may not use the ``onnxlrp`` domain itself.)"""
    out, log = _malformed(prev=helper.make_node("Dense", ["x", "w0"], ["z0"], name="g0", domain="custom"))
    assert [(n.name, n.op_type, n.domain) for n in out] == [
        ("g0", "Dense", "custom"), ("bn0", "BatchNormalization", ""), ("g1", "Dense", "onnxlrp")]
    assert log == ["folded BatchNormalization 'bn1' into Gemm 'g1'"]
