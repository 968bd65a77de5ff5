"""``onnxlrp.compile``: a method written into the model as ONNX, to run on any ONNX runtime without onnxlrp.

The compiled model takes the model's inputs plus ``target`` (int64, one class per sample; a negative entry explains
the predicted class) and returns the model's outputs plus ``relevance`` (shaped like the explained input). It uses
standard ``ai.onnx`` ops only, at the model's opset or 17 when that is older, keeps a free batch dimension free, and
shares the model's weights between the forward and the backward pass. See :mod:`onnxlrp.engine.compiled`.
"""
from __future__ import annotations

import os
from collections.abc import Mapping

import onnx

from .engine.compiled import MIN_OPSET, CompiledSession
from .engine.graph import load_model
from .errors import CompileError
from .methods import resolve_method

#: compiled graphs over this size are written with their weights in a separate file
EXTERNAL_DATA_BYTES = 1_900_000_000


def compile(model, method: str = "epsilon_plus_flat", *, input_name: str | None = None,
            output_name: str | None = None, explain_softmax: bool = False, rules: Mapping | None = None,
            relevance_init: str = "logit", check: bool = True, **params) -> onnx.ModelProto:
    """``model`` (a path, bytes or ``ModelProto``) with ``method`` (and its ``params``) compiled into it.

    Raises :class:`~onnxlrp.errors.CompileError` naming the node, rule or method step that has no ONNX form.
    """
    proto = upgraded(load_model(model))
    m, full = resolve_method(method, params)
    session = CompiledSession(proto, input_name, output_name, explain_softmax=explain_softmax, check=check)
    if session.input_dtype != session.dtype:
        raise CompileError(f"input {session.input_name!r} is {session.input_dtype}; compiled explanations run in "
                           "float32 (convert the model to float32 first)")
    run = m.compiled if m.compiled is not None else m.run
    x, target = session.begin()
    if "contrast" in full:  # a contrastive method takes its contrast class per sample as an input
        if full["contrast"] is not None:
            raise CompileError("the compiled model takes the contrast class as an input (`contrast`, one per "
                               "sample); compile without contrast=")
        full["contrast"] = session.add_input("contrast", "int64", (x.shape[0],))
    options = {"rules": rules, "relevance_init": relevance_init, "keep": ()}
    result = run(session, x, {}, target, full, options)
    compiled = session.finish(result.relevance)
    compiled.doc_string = (f"{proto.doc_string}\n" if proto.doc_string else "") + \
        f"onnxlrp: method {m.name} compiled in ({_describe(full)}); inputs + target -> outputs + relevance"
    try:
        onnx.checker.check_model(compiled, full_check=True) if compiled.ByteSize() < EXTERNAL_DATA_BYTES else None
    except Exception as exc:
        raise CompileError(f"the compiled graph fails the ONNX checker: {str(exc).strip().splitlines()[0]}") from exc
    return compiled


def save(compiled: onnx.ModelProto, path: str | os.PathLike) -> None:
    """Write a compiled model; one over 2 GB keeps its weights in ``<name>.data`` beside it."""
    path = os.fspath(path)
    large = compiled.ByteSize() >= EXTERNAL_DATA_BYTES if _serialisable(compiled) else True
    onnx.save_model(compiled, path, save_as_external_data=large, all_tensors_to_external_data=large,
                    location=os.path.basename(path) + ".data" if large else None)


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
