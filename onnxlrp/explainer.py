"""The public entry point: ``Explainer`` (load once, explain many batches) and the one-call ``explain``."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import onnx

from . import registry
from .backend import get_xp, to_numpy
from .canonize import canonize
from .errors import InputDtypeError, InputShapeError, NameSelectionError, NonFiniteError, TargetError, \
    UnsupportedOpError, MethodError
from .graph import Graph, relevance_path, unsupported_message
from .methods import apply_method_overrides, resolve_method
from .runner import KernelRunner, OrtRunner
from .walker import GRADIENT

DTYPES = {"float32": np.float32, "float64": np.float64}


@dataclass
class Explanation:
    """Result of :meth:`Explainer.explain`.

    ``relevance`` has the explained input's shape; ``output`` is the explained output (logits) for the batch,
    ``target`` the explained class per sample. ``intermediate`` holds relevance of tensors asked for with ``keep``.
    """

    relevance: np.ndarray
    output: np.ndarray
    target: np.ndarray
    method: str
    params: dict
    input_name: str
    output_name: str
    intermediate: dict = field(default_factory=dict)


class Explainer:
    """Explain an ONNX model's predictions.

    Parameters
    ----------
    model : path, bytes or onnx.ModelProto
        The model (never modified).
    input_name, output_name : str, optional
        The explained input and output; required when the model has several. A final Softmax/LogSoftmax is
        skipped so the logits are explained, unless ``explain_softmax=True``.
    device : {"cpu", "cuda"}
        Where kernels run (numpy or CuPy) and onnxruntime's provider.
    dtype : {"float32", "float64"}
        Compute precision. ``float64`` is float64 end to end: the forward pass of the relevance path is recomputed
        by the kernels in float64 (onnxruntime lacks double kernels for several ops).
    """

    def __init__(self, model, input_name: str | None = None, output_name: str | None = None, device: str = "cpu",
                 dtype: str = "float32", explain_softmax: bool = False, check: bool = True):
        if dtype not in DTYPES:
            raise MethodError(f"dtype must be 'float32' or 'float64'; got {dtype!r}")
        self.label = repr(os.fspath(model)) if isinstance(model, (str, os.PathLike)) else "the model"
        self.graph = Graph(model, check=check)
        self.device, self.dtype = device, np.dtype(DTYPES[dtype])
        self.xp = get_xp(device)
        self.input_name = _choose("input", input_name, [i.name for i in self.graph.input_infos])
        self.model_output_name = _choose("output", output_name, [o.name for o in self.graph.output_infos],
                                         extra=set(self.graph.producer))
        self.output_name = self.model_output_name if explain_softmax else self._logits(self.model_output_name)
        nodes, extra, self.canonizer_log = canonize(self.graph, {self.output_name})
        self.cgraph = self.graph.with_nodes(nodes, extra)
        self.path = relevance_path(self.cgraph, self.input_name, self.output_name, registry.data_inputs)
        if self.path.unsupported:
            raise UnsupportedOpError(unsupported_message(self.label, self.path.unsupported))
        self.kernels = {n.name: registry.resolve(n) for n in self.path.nodes}
        self.categories = {n.name: self.kernels[n.name].node_category(n, self.path.varying) for n in self.path.nodes}
        self._constants: dict[str, Any] = {}
        self._runner = None

    # ------------------------------------------------------------------------------------------ description
    @property
    def input_info(self):
        return next(i for i in self.graph.input_infos if i.name == self.input_name)

    @property
    def input_shape(self) -> tuple:
        shape = self.input_info.shape or ()
        return tuple(d if isinstance(d, int) and d > 0 else None for d in shape)

    @property
    def input_dtype(self) -> np.dtype:
        return self.input_info.dtype

    @property
    def output_shape(self) -> tuple:
        info = self.graph.tensor_info(self.output_name)
        shape = info.shape if info is not None and info.shape is not None else ()
        return tuple(d if isinstance(d, int) and d > 0 else None for d in shape)

    def path_nodes(self) -> list[tuple[str, str]]:
        """``(node name, op type)`` of every node on the relevance path, in topological order."""
        return [(n.name, n.op_type) for n in self.path.nodes]

    def rules_for(self, method: str, rules: Mapping | None = None, **params) -> list[tuple[str, str, str]]:
        """``(node name, op type, rule)`` for every node on the path under ``method``."""
        m, full = resolve_method(method, params)
        assigned = self._rules(m.assign(self, full) if m.assign is not None else {}, {"rules": rules})
        return [(n.name, n.op_type, assigned.get(n.name, GRADIENT).describe()) for n in self.path.nodes]

    def model_info(self) -> dict:
        m = self.graph.model
        return {
            "producer": f"{m.producer_name} {m.producer_version}".strip(),
            "opset": dict(self.graph.opsets),
            "ir_version": m.ir_version,
            "inputs": [(i.name, i.shape, str(i.dtype)) for i in self.graph.input_infos],
            "outputs": [(o.name, o.shape, str(o.dtype)) for o in self.graph.output_infos],
            "op_histogram": self.graph.op_histogram(),
            "explained": {"input": self.input_name, "output": self.output_name},
            "canonizers": list(self.canonizer_log),
        }

    # ------------------------------------------------------------------------------------------ explain
    def explain(self, x, method: str = "epsilon_plus_flat", target=None, *, feeds: Mapping | None = None,
                relevance_init: str = "logit", rules: Mapping | None = None, keep=(), **params) -> Explanation:
        """Explain ``x`` (a batch shaped like the model input) for ``target`` (``None`` = predicted class, an int,
        or one int per sample). ``params`` are the method's parameters (``onnxlrp.methods()`` lists them);
        ``rules`` overrides rules per op type or node-name pattern; ``keep`` names tensors whose relevance is
        returned in ``intermediate`` (or ``"all"``)."""
        m, full = resolve_method(method, params)
        if relevance_init not in ("logit", "one_hot"):
            raise MethodError(f"relevance_init must be 'logit' or 'one_hot'; got {relevance_init!r}")
        x = self._validate(x)
        feeds = self._validate_feeds(feeds)
        options = {"rules": rules, "relevance_init": relevance_init, "keep": keep}
        relevance, output, targets, kept = m.run(self, x, feeds, target, full, options)
        relevance = to_numpy(relevance)
        if not np.isfinite(relevance).all():
            raise NonFiniteError(f"the relevance for {self.input_name!r} contains NaN or inf")
        return Explanation(relevance=relevance, output=to_numpy(output), target=np.asarray(targets),
                           method=method, params=full, input_name=self.input_name, output_name=self.output_name,
                           intermediate={k: to_numpy(v) for k, v in kept.items()})

    # ------------------------------------------------------------------------------------------ internals
    def _logits(self, name: str) -> str:
        node = self.graph.producer.get(name)
        while node is not None and node.op_type in ("Identity",) and node.domain == "":
            node = self.graph.producer.get(node.inputs[0])
        if node is not None and node.op_type in ("Softmax", "LogSoftmax") and node.domain == "":
            return node.inputs[0]
        return name

    def _validate(self, x) -> np.ndarray:
        if not hasattr(x, "shape") or not hasattr(x, "dtype"):
            x = np.asarray(x)
        info = self.input_info
        if x.dtype.kind not in "f":
            raise InputDtypeError(f"input {self.input_name!r} expects floating-point values "
                                  f"({info.dtype}); got an array of dtype {x.dtype}: convert and normalise it first")
        expected = info.shape
        if expected is not None:
            if x.ndim != len(expected):
                raise InputShapeError(f"input {self.input_name!r} expects {len(expected)} dimensions "
                                      f"{_fmt_shape(expected)}; got shape {tuple(x.shape)}")
            for axis, (want, got) in enumerate(zip(expected, x.shape)):
                if isinstance(want, int) and want > 0 and want != got:
                    raise InputShapeError(f"input {self.input_name!r} expects shape {_fmt_shape(expected)}; got "
                                          f"{tuple(x.shape)} (axis {axis} is {got}, not {want})")
        if not bool(np.isfinite(self._host(x)).all()):
            raise NonFiniteError(f"input {self.input_name!r} contains NaN or inf")
        return x

    def _validate_feeds(self, feeds) -> dict:
        feeds = dict(feeds or {})
        names = {i.name for i in self.graph.input_infos}
        unknown = sorted(set(feeds) - names)
        if unknown:
            raise NameSelectionError(f"feeds name {unknown[0]!r}, which is not a model input; inputs are: "
                                     f"{', '.join(sorted(names))}")
        missing = sorted(names - set(feeds) - {self.input_name})
        if missing:
            raise NameSelectionError(f"the model has other inputs that must be held fixed; pass feeds={{{missing[0]!r}"
                                     f": ...}} (missing: {', '.join(missing)})")
        return {k: np.asarray(v) for k, v in feeds.items()}

    def _array(self, x):
        return self.xp.asarray(x, dtype=self.dtype)

    def _host(self, x) -> np.ndarray:
        return to_numpy(x)

    def _chunks(self, total: int, internal_batch_size, per: int):
        static = self.input_shape[0] if self.input_shape else None
        size = internal_batch_size or (static if static else total)
        size = max(per, (int(size) // per) * per) if static is None else static
        return [range(i, min(total, i + size)) for i in range(0, total, size)]

    def _needed(self) -> list[str]:
        names = set()
        for n in self.path.nodes:
            names.update(t for t in n.inputs if t and t not in self.cgraph.constants)
        names.add(self.output_name)
        return sorted(names - {self.input_name})

    def _forward(self, x, feeds) -> tuple[dict, Any]:
        """Forward values (backend arrays) of every tensor the kernels read, and the explained output."""
        x_host = np.asarray(self._host(x), dtype=self.dtype if self.dtype == np.float64 else self.input_dtype)
        all_feeds = {self.input_name: x_host, **feeds}
        if self.dtype == np.float64:
            if self._runner is None:
                produced = {t for n in self.path.nodes for t in n.outputs}
                external = [t for t in self._needed() if t not in produced and t not in all_feeds]
                self._runner = KernelRunner(self.cgraph, self.path.nodes, self.path.varying, self.cgraph.constants,
                                             external, self.device)
            values = self._runner.run(all_feeds, self.input_name, self.dtype)
        else:
            if self._runner is None:
                self._runner = OrtRunner(self.graph, self._needed(), device=self.device)
            values = {**self._runner.run(all_feeds), **all_feeds}
        xp = self.xp
        values = {k: (xp.asarray(v, dtype=self.dtype) if v.dtype.kind == "f" else v) for k, v in values.items()}
        output = values[self.output_name]
        if not bool(xp.isfinite(output).all()):
            raise NonFiniteError(f"the model's output {self.output_name!r} contains NaN or inf for this input")
        return values, output

    def _constant(self, name: str):
        if name not in self._constants:
            value = self.cgraph.constants[name]
            self._constants[name] = (self.xp.asarray(value, dtype=self.dtype) if value.dtype.kind == "f"
                                     else value)
        return self._constants[name]

    def _targets(self, output, target) -> np.ndarray:
        out = to_numpy(output).reshape(output.shape[0], -1)
        if target is None:
            return out.argmax(axis=1)
        return class_indices(target, out.shape[0], out.shape[1], self.output_name, "target", TargetError)

    def _seed(self, output, targets, mode: str):
        xp = self.xp
        flat = output.reshape(output.shape[0], -1)
        seed = xp.zeros_like(flat)
        rows = xp.arange(flat.shape[0])
        cols = xp.asarray(targets)
        seed[rows, cols] = flat[rows, cols] if mode == "logit" else 1.0
        return seed.reshape(output.shape)

    def _rules(self, rules, options, head=None):
        return apply_method_overrides(self, rules, options or {}, head)

    def _propagate(self, values, rules, seeds, keep=(), head=None):
        """Walk the relevance path (or a spliced ``head``'s node list) back from ``seeds``.

        ``seeds`` is an array for the explained output or a mapping ``tensor -> array``. Returns the relevance at the
        explained input and the kept intermediates.
        """
        from .walker import propagate

        nodes = self.path.nodes if head is None else head.nodes
        kernels = self.kernels if head is None else {**self.kernels, **head.kernels}
        extra = {} if head is None else head.constants
        varying = self.path.varying if head is None else head.varying
        if not isinstance(seeds, Mapping):
            seeds = {self.output_name: seeds}
        missing = object()

        def value(name, default=missing):
            if name in values:
                return values[name]
            if name in extra:
                return extra[name]
            if default is not missing and name not in self.cgraph.constants:
                return default
            return self._constant(name)

        acc, kept = propagate(nodes, kernels, rules, value, varying, seeds, self.xp, keep)
        relevance = acc.get(self.input_name)
        if relevance is None:
            relevance = self.xp.zeros(values[self.input_name].shape, dtype=self.dtype)
        return relevance, kept


def class_indices(value, n: int, classes: int, output_name: str, what: str, error=TargetError) -> np.ndarray:
    """``value`` (one class index, or one per sample) as an int64 array of ``n`` indices in ``[0, classes)``;
    ``error(message)`` is raised otherwise (``what`` names the parameter: target, contrast)."""
    a = np.asarray(value)
    if a.dtype.kind not in "iu" or a.ndim > 1:
        raise error(f"{what} must be an int or one int per sample; got {value!r}")
    a = np.broadcast_to(a, (n,)) if a.ndim == 0 else a
    if a.shape != (n,):
        raise error(f"{what} has {a.size} entries but the batch has {n} samples")
    bad = a[(a < 0) | (a >= classes)]
    if bad.size:
        raise error(f"{what} {int(bad[0])} is out of range for output {output_name!r} with {classes} classes "
                    f"(valid: 0..{classes - 1})")
    return a.astype(np.int64)


def explain(model, x, method: str = "epsilon_plus_flat", target=None, **kwargs) -> Explanation:
    """One-call form: ``Explainer(model, ...).explain(x, method, target, ...)``.

    Keyword arguments accepted by :class:`Explainer` (``input_name``, ``output_name``, ``device``, ``dtype``,
    ``explain_softmax``) go to it; the rest to :meth:`Explainer.explain`.
    """
    ctor = {k: kwargs.pop(k) for k in ("input_name", "output_name", "device", "dtype", "explain_softmax", "check")
            if k in kwargs}
    return Explainer(model, **ctor).explain(x, method=method, target=target, **kwargs)


def _choose(kind: str, name: str | None, names: list[str], extra: set[str] = frozenset()) -> str:
    if name is not None:
        if name not in names and name not in extra:
            raise NameSelectionError(f"the model has no {kind} named {name!r}; its {kind}s are: "
                                     f"{', '.join(repr(n) for n in names)}")
        return name
    if len(names) == 1:
        return names[0]
    if not names:
        raise NameSelectionError(f"the model has no {kind}s")
    raise NameSelectionError(f"the model has {len(names)} {kind}s ({', '.join(repr(n) for n in names)}); choose one "
                             f"with {kind}_name=")


def _fmt_shape(shape) -> str:
    return "[" + ", ".join(str(d) if isinstance(d, int) and d > 0 else (str(d) if d else "N") for d in shape) + "]"
