"""The compiled backend against the numpy backend: the same model, method, inputs and targets through both."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort

from onnxlrp import Explainer
from onnxlrp.compiler import compile as compile_method


def compiled_and_numpy(model, method: str, x: np.ndarray, target: np.ndarray, rules=None,
                       input_name: str = "x") -> tuple[np.ndarray, np.ndarray]:
    """``(relevance of the compiled graph run by onnxruntime, relevance of the numpy backend)`` for ``model``
    (an ``onnx.ModelProto``) under ``method`` and ``rules``."""
    compiled = compile_method(model, method, rules=rules)
    session = ort.InferenceSession(compiled.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(["relevance"], {input_name: x, "target": np.asarray(target, np.int64)})[0]
    expected = Explainer(model).explain(x, method, target=target, rules=rules).relevance
    return got, expected
