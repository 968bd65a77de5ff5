"""``onnxlrp.compile``: a method written into the model as ONNX, to run on any ONNX runtime without onnxlrp.

The compiled model takes the model's inputs plus ``target`` (int64, one class per sample; a negative entry explains
the predicted class) and returns the model's outputs plus ``relevance`` (shaped like the explained input). It uses
standard ``ai.onnx`` ops only, at the model's opset or 17 when that is older, keeps a free batch dimension free, and
shares the model's weights between the forward and the backward pass. See :mod:`onnxlrp.engine.compiled`.
"""
from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np
import onnx

from .engine import seeds
from .engine.compiled import MIN_OPSET, CompiledSession
from .engine.graph import load_model
from .errors import BackendUnavailableError, CompileError, MethodError
from .methods import resolve_method
from .methods.clrp import contrast_units
from .methods.gradients import smoothgrad_noise

#: methods that cannot run without a contrast class: compiled, they always take the `contrast` input
CONTRAST_REQUIRED = ("contrastive_grad_cam",)
#: parameters the compiled graph does not depend on (fed at run time, or about batching in Python)
RUNTIME_PARAMS = ("contrast", "noise_level", "random_state", "internal_batch_size")

#: compiled graphs over this size are written with their weights in a separate file
EXTERNAL_DATA_BYTES = 1_900_000_000


def compile(model, method: str = "epsilon_plus_flat", *, input_name: str | None = None,
            output_name: str | None = None, explain_softmax: bool = False, rules: Mapping | None = None,
            relevance_init: str = "logit", check: bool = True, explained_outputs: bool = False,
            **params) -> onnx.ModelProto:
    """``model`` (a path, bytes or ``ModelProto``) with ``method`` (and its ``params``) compiled into it.

    ``explained_outputs=True`` also returns ``explained_output`` (the explained logits) and ``explained_target``
    (the class explained per sample, the prediction where ``target`` was negative). Raises
    :class:`~onnxlrp.errors.CompileError` naming the node, rule or method step that has no ONNX form.
    """
    proto = upgraded(load_model(model))
    contrast = params.pop("contrast", None)
    m, full = resolve_method(method, params)
    if relevance_init not in ("logit", "one_hot"):
        raise CompileError(f"relevance_init must be 'logit' or 'one_hot'; got {relevance_init!r}")
    session = CompiledSession(proto, input_name, output_name, explain_softmax=explain_softmax, check=check)
    if session.input_dtype is not None and session.input_dtype.kind in "iu":
        raise CompileError(f"input {session.input_name!r} holds integer ids ({session.input_dtype}); compile explains "
                           "a float input: Explainer(model, backend='onnx') compiles the model cut at its embedding "
                           "and looks the ids up itself")
    if session.input_dtype != session.dtype:
        raise CompileError(f"input {session.input_name!r} is {session.input_dtype}; compiled explanations run in "
                           "float32 (convert the model to float32 first)")
    run = m.compiled if m.compiled is not None else m.run
    x, target = session.begin()
    if "contrast" in full:  # the contrast class, one per sample, is an input of the compiled model
        if contrast is not None and not (isinstance(contrast, str) and contrast == "input"):
            raise CompileError("the compiled model takes the contrast class as an input: compile with "
                               "contrast='input' (--set contrast=input) and feed `contrast`, one class per sample")
        if contrast is not None or m.name in CONTRAST_REQUIRED:
            full["contrast"] = session.add_input("contrast", "int64", (x.shape[0],))
    elif contrast is not None:
        raise CompileError(f"method {m.name!r} takes no contrast")
    options = {"rules": rules, "relevance_init": relevance_init, "keep": ()}
    result = run(session, x, {}, target, full, options)
    extra = {"explained_output": result.output, "explained_target": result.targets} if explained_outputs else None
    compiled = session.finish(result.relevance, extra)
    compiled.doc_string = (f"{proto.doc_string}\n" if proto.doc_string else "") + \
        f"onnxlrp: method {m.name} compiled in ({_describe(full)}); inputs + target -> outputs + relevance"
    try:
        if compiled.ByteSize() < EXTERNAL_DATA_BYTES:  # the checker reads a model in one protobuf: 2 GB at most
            onnx.checker.check_model(compiled, full_check=True)
    except Exception as exc:
        raise CompileError(f"the compiled graph fails the ONNX checker: {str(exc).strip().splitlines()[0]}") from exc
    return compiled


def save(compiled: onnx.ModelProto, path: str | os.PathLike, data_name: str | None = None) -> None:
    """Write a compiled model; one over 2 GB keeps its weights in ``data_name`` (default ``<name>.data``) beside
    it."""
    path = os.fspath(path)
    large = not _serialisable(compiled) or compiled.ByteSize() >= EXTERNAL_DATA_BYTES
    if large:
        onnx.save_model(compiled, path, save_as_external_data=True, all_tensors_to_one_file=True,
                        location=data_name or os.path.basename(path) + ".data")
    else:
        onnx.save_model(compiled, path)


def upgraded(proto: onnx.ModelProto) -> onnx.ModelProto:
    """``proto`` at ``ai.onnx`` opset ≥ :data:`MIN_OPSET` (converted with ONNX's version converter if older)."""
    version = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    if version is None or version >= MIN_OPSET:
        return proto
    try:
        return onnx.version_converter.convert_version(proto, MIN_OPSET)
    except Exception as exc:
        raise CompileError(f"the model's opset {version} cannot be converted to opset {MIN_OPSET}, which compiled "
                           f"models need: {str(exc).strip().splitlines()[0]}") from exc


def _serialisable(proto: onnx.ModelProto) -> bool:
    try:
        proto.ByteSize()
        return True
    except Exception:
        return False


def _describe(params: Mapping) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in sorted(params.items())) or "default parameters"


class CompiledBackend:
    """``Explainer(..., backend="onnx")``: each method and parameter set compiled once into the model and run by
    onnxruntime (CUDA provider on ``device="cuda"``), sessions cached per method and parameters."""

    def __init__(self, session, device: str = "cpu"):
        self.session = session
        self.device = device
        self._cache: dict = {}

    def providers(self) -> list[str]:
        import onnxruntime as ort

        if self.device == "cpu":
            return ["CPUExecutionProvider"]
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise BackendUnavailableError("backend='onnx' on device='cuda' needs onnxruntime's CUDA provider; install "
                                          "onnxruntime-gpu (`pip install onnxlrp[gpu]`)")
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]

    def compiled(self, method: str, params: Mapping, rules, relevance_init: str):
        """``(model, onnxruntime session)`` for a method and its parameters (compiled on first use)."""
        import onnxruntime as ort

        contrast = params.get("contrast") is not None
        key = (method, _frozen({k: v for k, v in params.items() if k not in RUNTIME_PARAMS}), contrast,
               _frozen(rules), relevance_init)
        if key not in self._cache:
            s = self.session
            given = {k: v for k, v in params.items() if k != "contrast"}
            if contrast:
                given["contrast"] = "input"
            model = compile(s.graph.model, method, input_name=s.input_name, output_name=s.output_name,
                            explain_softmax=s.output_name == s.model_output_name, rules=rules,
                            relevance_init=relevance_init, check=False, explained_outputs=True, **given)
            options = ort.SessionOptions()
            options.log_severity_level = 3
            self._cache[key] = (model, ort.InferenceSession(self._loadable(model), options,
                                                            providers=self.providers()))
        return self._cache[key]

    def _loadable(self, model: onnx.ModelProto):
        """Bytes onnxruntime loads, or for a model over 2 GB a file with external data in a folder kept as long
        as this backend."""
        if _serialisable(model) and model.ByteSize() < EXTERNAL_DATA_BYTES:
            return model.SerializeToString()
        import tempfile
        if not hasattr(self, "_folder"):
            self._folder = tempfile.TemporaryDirectory(prefix="onnxlrp-compiled-")
        path = os.path.join(self._folder.name, f"compiled{len(self._cache)}.onnx")
        save(model, path)
        return path

    def run(self, method, params: Mapping, rules, relevance_init, x, feeds: Mapping, target):
        """``(relevance, explained output, targets)`` as host arrays."""
        s = self.session
        _, ort_session = self.compiled(method, params, rules, relevance_init)
        n = x.shape[0]
        units = contrast_units(s.output_shape) if s.output_shape else None
        if target is None:
            targets = np.full(n, -1, dtype=np.int64)
        elif units is not None:
            targets = s.targets(np.zeros((n, units), dtype=np.float32), target)
        else:
            targets = np.asarray(target, dtype=np.int64).reshape(-1) * np.ones(n, dtype=np.int64)
        inputs = {s.input_name: np.asarray(x, dtype=s.input_dtype), **feeds, "target": targets}
        wanted = {i.name for i in ort_session.get_inputs()}
        if "contrast" in wanted:
            if params.get("contrast") is None:
                raise MethodError(f"{method} needs the contrast class: contrast=Q (one class index, or one per sample)")
            classes = units if units is not None else 2**62
            inputs["contrast"] = seeds.class_indices(params["contrast"], n, classes, s.output_name, "contrast")
        if "noise" in wanted:
            inputs["noise"] = smoothgrad_noise(np.asarray(x), float(params["noise_level"]), int(params["samples"]),
                                               params["random_state"]).astype(s.input_dtype)
        relevance, output, explained = ort_session.run(["relevance", "explained_output", "explained_target"],
                                                       {k: v for k, v in inputs.items() if k in wanted})
        if target is not None and units is None:  # the class count is known only now
            s.targets(output, target)
        return relevance, output, explained


def _frozen(value):
    """A hashable stand-in for parameters (arrays by dtype, shape and bytes)."""
    if isinstance(value, Mapping):
        return tuple(sorted((k, _frozen(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, np.ndarray):
        return ("array", value.dtype.str, value.shape, value.tobytes())
    try:
        hash(value)
        return value
    except TypeError:
        return repr(value)
