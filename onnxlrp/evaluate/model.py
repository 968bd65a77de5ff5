"""The model the measures run: the explained output of an ONNX model on large batches of (perturbed) inputs.

Every measure perturbs its inputs many times and reads one number per perturbed input, ``f_c(x)``: the explained
output (the logits the :class:`~onnxlrp.engine.session.Session` explains) at class ``c``, or its softmax
probability. :class:`ModelRunner` runs a plain onnxruntime session on the original model with the explained tensor
as its only graph output (graph optimisations on, no intermediates): on the digits CNN that is about 3x faster per
row than :meth:`Session.forward`, which returns every tensor the kernels read.

Rows are fed in batches as large as the session's memory budget allows (:meth:`ModelRunner.rows`): the planned
bytes of one row (the session's plan of an explanation pass, an upper bound for a plain forward pass) plus the
perturbed row itself.
"""
from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import onnx

from ..engine.session import Session
from ..errors import InputShapeError, MethodError, ModelCheckError, ModelRunError, TargetError

#: ``output=`` values: what ``f_c`` is
OUTPUTS = ("logit", "probability")
#: never more rows than this in one onnxruntime call (larger batches gain nothing and delay the first result)
MAX_ROWS = 512


def softmax(z: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, in float64."""
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


class ModelRunner:
    """The explained output of ``session``'s model, computed with onnxruntime in memory-bounded batches.

    Parameters
    ----------
    session : Session
        The opened model (its explained input and output, device and memory budget are used).
    max_rows : int, optional
        Cap on the rows of one onnxruntime call (default :data:`MAX_ROWS`; the memory budget may lower it).
    feeds : mapping, optional
        The model's other inputs, held fixed (tiled to each batch's size).
    """

    def __init__(self, session: Session, max_rows: int | None = None, feeds: dict | None = None):
        import onnxruntime as ort

        self.session = session
        self.input_name = session.input_name
        self.output_name = session.output_name
        self.input_dtype = np.dtype(session.input_dtype or np.float32)
        self.max_rows = int(max_rows or MAX_ROWS)
        self.feeds = session.validate_feeds(feeds)
        model = onnx.ModelProto()
        model.CopyFrom(session.graph.model)
        info = session.graph.tensor_info(self.output_name)
        elem = info.elem_type if info is not None and info.elem_type else onnx.TensorProto.FLOAT
        del model.graph.output[:]
        model.graph.output.append(onnx.helper.make_tensor_value_info(self.output_name, elem, None))
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 4
        threads = os.environ.get("ONNXLRP_THREADS", "")
        if threads.isdigit() and int(threads) > 0:
            options.intra_op_num_threads = int(threads)
        providers = ["CPUExecutionProvider"]
        if session.device == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        try:
            self.ort = ort.InferenceSession(model.SerializeToString(), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own pybind types
            raise ModelCheckError(f"onnxruntime cannot load the model for evaluation: {exc}") from exc
        self._static_batch = session.input_shape[0] if session.input_shape else None
        self._rows: dict[tuple, int] = {}
        self.calls = 0
        self.rows_run = 0

    # ------------------------------------------------------------------------------------------------- sizing
    def rows(self, sample_shape: tuple) -> int:
        """Rows of shape ``sample_shape`` (without the batch axis) that one call may take within the budget."""
        sample_shape = tuple(int(d) for d in sample_shape)
        if self._static_batch:
            return int(self._static_batch)
        if sample_shape not in self._rows:
            row_bytes = int(np.prod(sample_shape)) * 8
            planned = self.session.plan_bytes((1, *sample_shape))
            per_row = (planned or row_bytes * 16) + row_bytes
            self._rows[sample_shape] = int(max(1, min(self.max_rows, self.session.memory_budget // per_row)))
        return self._rows[sample_shape]

    # ------------------------------------------------------------------------------------------------- running
    def outputs(self, x: np.ndarray) -> np.ndarray:
        """The explained output for every row of ``x``, shape ``(N, classes)`` in float64 (chunked to fit)."""
        x = np.asarray(x)
        if x.ndim == 0 or len(x) == 0:
            raise InputShapeError("the evaluation needs a batch of at least one sample")
        step = self.rows(x.shape[1:])
        parts = [self._run(x[i:i + step]) for i in range(0, len(x), step)]
        return np.concatenate(parts, axis=0)

    def _run(self, x: np.ndarray) -> np.ndarray:
        n = len(x)
        if self._static_batch and n != self._static_batch:
            if n > self._static_batch:
                return np.concatenate([self._run(x[i:i + self._static_batch])
                                       for i in range(0, n, self._static_batch)])
            x = np.concatenate([x, np.repeat(x[-1:], self._static_batch - n, axis=0)])
        feeds = {self.input_name: np.ascontiguousarray(x, dtype=self.input_dtype)}
        for name, value in self.feeds.items():
            feeds[name] = np.repeat(value[:1], len(x), axis=0) if value.ndim and value.shape[0] == 1 else value
        try:
            (out,) = self.ort.run([self.output_name], feeds)
        except Exception as exc:
            raise ModelRunError(f"onnxruntime failed on a batch of perturbed inputs of shape {tuple(x.shape)}: "
                                f"{' '.join(str(exc).split())[:300]}") from exc
        self.calls += 1
        self.rows_run += len(x)
        out = np.asarray(out, dtype=np.float64)
        return out.reshape(len(out), -1)[:n]

    def scores(self, x: np.ndarray, targets, output: str = "logit") -> np.ndarray:
        """``f_c`` per row: the output (``"logit"``) or its softmax (``"probability"``) at each row's target."""
        check_output(output)
        out = self.outputs(x)
        targets = np.broadcast_to(np.asarray(targets, dtype=np.int64), (len(out),))
        if targets.size and (targets.min() < 0 or targets.max() >= out.shape[1]):
            raise TargetError(f"target {int(targets.max() if targets.max() >= out.shape[1] else targets.min())} is "
                              f"out of range for {self.output_name!r} with {out.shape[1]} classes")
        values = softmax(out) if output == "probability" else out
        return values[np.arange(len(out)), targets]

    def score_rows(self, make: Callable[[np.ndarray], np.ndarray], count: int, target: int, sample_shape: tuple,
                   output: str = "logit") -> np.ndarray:
        """``f_c`` of ``count`` rows built lazily: ``make(indices)`` returns the rows ``indices`` (all perturbation
        steps of one sample), built and run a budget-sized batch at a time; returns ``(count,)`` float64."""
        step = self.rows(sample_shape)
        result = np.empty(count, dtype=np.float64)
        for start in range(0, count, step):
            index = np.arange(start, min(count, start + step))
            result[index] = self.scores(make(index), target, output)
        return result

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The predicted class of every row."""
        return self.outputs(x).argmax(axis=1)


def check_output(output: str) -> None:
    if output not in OUTPUTS:
        raise MethodError(f"output must be one of {', '.join(map(repr, OUTPUTS))}; got {output!r}")


def as_runner(model, **kwargs) -> ModelRunner:
    """A :class:`ModelRunner` for ``model``: a runner (returned as is), a :class:`Session`, an
    :class:`~onnxlrp.explainer.Explainer` (its ``session``), or anything :class:`Session` opens (a path, bytes, a
    ModelProto; ``kwargs`` go to it)."""
    if isinstance(model, ModelRunner):
        return model
    session = getattr(model, "session", model)
    if not isinstance(session, Session):
        session = Session(model, **kwargs)
    return ModelRunner(session)


def as_targets(target, n: int, runner: ModelRunner | None = None, x: np.ndarray | None = None) -> np.ndarray:
    """One class index per sample: ``target`` (an int or one per sample), or the prediction when ``None``."""
    if target is None:
        if runner is None or x is None:
            raise TargetError("a target (one class per sample) is needed")
        return runner.predict(x)
    t = np.asarray(target)
    if t.dtype.kind not in "iu" or t.ndim > 1 or (t.ndim == 1 and len(t) != n):
        raise TargetError(f"target must be an int or one int per sample ({n}); got {target!r}")
    return np.broadcast_to(t.astype(np.int64), (n,)).copy()


def session_options(session: Session) -> dict:
    """The keyword arguments that open another Session like ``session`` (on the same or a modified model)."""
    return {"input_name": session.input_name, "output_name": session.output_name, "device": session.device,
            "dtype": str(session.dtype), "memory_budget": session.memory_budget}


def explainer_for(model, **kwargs):
    """An :class:`~onnxlrp.Explainer` for ``model``: an Explainer (as is), a Session or runner (the same model and
    options), or anything :class:`Session` opens."""
    from ..explainer import Explainer

    if isinstance(model, Explainer):
        return model
    session = model.session if isinstance(model, ModelRunner) else model
    if isinstance(session, Session):
        return Explainer(session.graph.model, check=False, **session_options(session))
    return Explainer(model, **kwargs)
