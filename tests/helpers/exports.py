"""Deployment exports of a float32 model made with onnxruntime's own converters: float16 and int8 QDQ.

- :func:`float16_export`: ``onnxruntime.transformers.float16.convert_float_to_float16`` (the converter of
  onnxconverter-common), with ``keep_io_types`` True (float32 inputs and outputs, Casts at the borders) or False
  (float16 inputs and outputs); its output is saved as the converter leaves it (the input Casts appended after the
  nodes that read them);
- :func:`qdq_export`: ``onnxruntime.quantization.quantize_static`` in QDQ format (int8 weights per tensor, uint8
  activations, calibrated by min-max on the samples given);
- :func:`optimised_export`: the graph onnxruntime's extended optimisations leave (``optimized_model_filepath``):
  Conv + Relu fused into ``com.microsoft`` ``FusedConv``, Gemm + Relu into ``FusedGemm``.
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import onnx


def float16_export(source: Path, target: Path, keep_io_types: bool) -> Path:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = convert_float_to_float16(onnx.load(str(source)), keep_io_types=keep_io_types)
    onnx.save(model, str(target))
    return target


def qdq_export(source: Path, target: Path, calibration: np.ndarray, input_name: str) -> Path:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.feeds = iter([{input_name: calibration[i:i + 1].astype(np.float32)} for i in range(len(calibration))])

        def get_next(self):
            return next(self.feeds, None)

    level = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)  # the quantiser's advice to pre-process the model first
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_static(str(source), str(target), Reader(), quant_format=QuantFormat.QDQ)
    finally:
        logging.getLogger().setLevel(level)
    return target


def optimised_export(source: Path, target: Path) -> Path:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(target)
    ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
    return target
