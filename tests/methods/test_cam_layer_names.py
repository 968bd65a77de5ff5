"""Grad-CAM layer names written with ``_`` for ``.`` (``features_29``, as the Grad-CAM++ code names PyTorch modules):
accepted when exactly one dotted name matches, refused as ambiguous otherwise, exact names first."""
from __future__ import annotations

import numpy as np
import pytest

import onnxlrp
from onnxlrp.errors import MethodError
from onnxlrp.methods import cam
from tests.helpers.onnx_builders import relu_cnn


def _scoped(names: dict[str, str]):
    """relu_cnn with its nodes named like a legacy PyTorch export (``/features/features.0/Conv``)."""
    model = relu_cnn()
    for node in model.graph.node:
        node.name = names.get(node.output[0], f"/{node.op_type}")
    return model


SCOPES = {"c1": "/features/features.0/Conv", "a1": "/features/features.1/Relu", "p1": "/features/features.2/MaxPool",
          "c2": "/features/features.3/Conv", "a2": "/features/features.4/Relu", "y": "/classifier/Gemm"}


def test_underscore_names_resolve_to_the_dotted_module():
    session = onnxlrp.Explainer(_scoped(SCOPES)).session
    assert cam.resolve_layer(session, "features_4") == cam.resolve_layer(session, "features.4") == "a2"
    assert cam.resolve_layer(session, "features_1") == "a1"


def test_grad_cam_with_an_underscore_layer_equals_the_dotted_one():
    ex = onnxlrp.Explainer(_scoped(SCOPES))
    x = np.random.default_rng(0).normal(size=(2, 2, 8, 8)).astype(np.float32)
    dotted = ex.explain(x, method="grad_cam", layer="features.1").relevance
    underscored = ex.explain(x, method="grad_cam", layer="features_1").relevance
    np.testing.assert_array_equal(underscored, dotted)
    assert np.abs(dotted).max() > 0


def test_an_exact_name_wins_over_the_underscore_reading():
    """A scope really called ``features_4`` is taken as is, though ``features.4`` exists too."""
    names = {**SCOPES, "a1": "/features_4/Relu"}
    session = onnxlrp.Explainer(_scoped(names)).session
    assert cam.resolve_layer(session, "features_4") == "a1"


def test_two_dotted_readings_are_refused_with_both_listed():
    names = {**SCOPES, "a1": "/a.b_c/Relu", "a2": "/a_b.c/Relu"}
    session = onnxlrp.Explainer(_scoped(names)).session
    with pytest.raises(MethodError) as exc:
        cam.resolve_layer(session, "a_b_c")
    assert str(exc.value) == ("layer 'a_b_c' is ambiguous: with '_' read as '.' it matches 'a.b_c', 'a_b.c'; give "
                              "one of these names")


def test_an_unknown_underscore_name_is_still_refused():
    session = onnxlrp.Explainer(_scoped(SCOPES)).session
    with pytest.raises(MethodError, match="layer 'features_9' is not a tensor, node or module scope"):
        cam.resolve_layer(session, "features_9")
