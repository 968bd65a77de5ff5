"""The public entry point: ``Explainer`` (load once, explain many batches) and the one-call ``explain``.

``Explainer`` is a thin facade: it opens a :class:`~onnxlrp.engine.session.Session`, validates what the user passes,
runs the method on the session and returns an :class:`Explanation` of host arrays.
"""
from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from .engine.graph import Graph
from .engine.lookup import IdsLookup, per_position
from .engine.session import Session, choose_name
from .errors import InputDtypeError, InputShapeError, MethodError, NonFiniteError, ZeroRelevanceWarning
from .methods import resolve_method

#: how an Explainer computes: the numpy kernels (reference, default) or the method compiled into an ONNX graph
BACKENDS = ("numpy", "onnx")


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

    The parameters (``model``, ``input_name``, ``output_name``, ``device``, ``dtype``, ``explain_softmax``, ``check``,
    ``memory_budget``) are those of :class:`~onnxlrp.engine.session.Session`, which this facade opens once: the
    engine is :attr:`session`, and :attr:`path`, :attr:`kernels`, :attr:`categories` and the names are its views.

    An integer input (token, user or item ids, category codes) is explained at the float tensor that reads it (an
    embedding lookup, a one-hot; :mod:`onnxlrp.engine.lookup`; ``lookup=`` names another): ``relevance`` then has
    the ids' shape (the lookup's relevance summed over its last axis) and ``intermediate["lookup_relevance"]`` holds
    the per-coordinate relevance.
    """

    def __init__(self, model, input_name: str | None = None, output_name: str | None = None, device: str = "cpu",
                 dtype: str = "float32", explain_softmax: bool = False, check: bool = True,
                 memory_budget: int | None = None, lookup: str | None = None, backend: str = "numpy"):
        if backend not in BACKENDS:
            raise MethodError(f"backend must be one of {', '.join(map(repr, BACKENDS))}; got {_short(backend)}")
        if backend == "onnx" and dtype != "float32":
            raise MethodError("backend='onnx' runs the compiled graph in float32; use dtype='float32' (or the numpy "
                              "backend for float64)")
        options = {"device": device, "dtype": dtype, "explain_softmax": explain_softmax, "check": check,
                   "memory_budget": memory_budget}
        graph = Graph(model, check=check)
        chosen = choose_name("input", input_name, [i.name for i in graph.input_infos])
        #: every input of the model as given (the explained one among them)
        self.input_names = [i.name for i in graph.input_infos]
        #: the explained input as the model declares it (ids for an integer input)
        self.input_info = info = next(i for i in graph.input_infos if i.name == chosen)
        #: for an integer input (ids), the float tensor that reads it, where relevance is computed
        self.lookup = None
        if lookup is not None or (info.dtype is not None and info.dtype.kind in "iu"):
            self.lookup = IdsLookup(graph.model, chosen, lookup)
            self.session = Session(self.lookup.cut, self.lookup.tensor, output_name, **options)
        else:
            self.session = Session(graph, chosen, output_name, **options)
        #: ``"numpy"`` (the reference: the kernels in numpy/CuPy) or ``"onnx"`` (each method compiled into the model
        #: and run by onnxruntime; :mod:`onnxlrp.compiler`)
        self.backend = backend
        self._compiled = None
        if backend == "onnx":
            from .compiler import CompiledBackend
            self._compiled = CompiledBackend(self.session, device)

    # ------------------------------------------------------------------------------------------ description
    input_name = property(lambda self: self.lookup.ids_input if self.lookup else self.session.input_name)
    output_name = property(lambda self: self.session.output_name)
    model_output_name = property(lambda self: self.session.model_output_name)
    input_shape = property(lambda self: tuple(d if isinstance(d, int) and d > 0 else None
                                              for d in (self.input_info.shape or ())))
    input_dtype = property(lambda self: self.input_info.dtype)
    output_shape = property(lambda self: self.session.output_shape)
    graph = property(lambda self: self.session.graph)
    cgraph = property(lambda self: self.session.canonical)
    path = property(lambda self: self.session.path)
    kernels = property(lambda self: self.session.kernels)
    categories = property(lambda self: self.session.categories)
    canonizer_log = property(lambda self: list(self.session.canonizer_log))
    device = property(lambda self: self.session.device)
    dtype = property(lambda self: self.session.dtype)
    xp = property(lambda self: self.session.xp)

    def path_nodes(self) -> list[tuple[str, str]]:
        """``(node name, op type)`` of every node on the relevance path, in topological order."""
        return [(n.name, n.op_type) for n in self.session.path.nodes]

    def rules_for(self, method: str, rules: Mapping | None = None, **params) -> list[tuple[str, str, str]]:
        """``(node name, op type, rule)`` for every node on the path under ``method``."""
        m, full = resolve_method(method, params)
        assigned = m.rules(self.session, full, rules)
        return [(n.name, n.op_type, assigned[n.name].describe() if n.name in assigned else "Gradient()")
                for n in self.session.path.nodes]

    def model_info(self) -> dict:
        graph = self.session.graph
        m = graph.model
        return {
            "producer": f"{m.producer_name} {m.producer_version}".strip(),
            "opset": dict(graph.opsets),
            "ir_version": m.ir_version,
            "inputs": [(i.name, i.shape, str(i.dtype)) for i in graph.input_infos],
            "outputs": [(o.name, o.shape, str(o.dtype)) for o in graph.output_infos],
            "op_histogram": graph.op_histogram(),
            "explained": {"input": self.session.input_name, "output": self.session.output_name},
            "canonizers": list(self.session.canonizer_log),
        }

    # ------------------------------------------------------------------------------------------ explain
    def explain(self, x, method: str = "epsilon_plus_flat", target=None, *, feeds: Mapping | None = None,
                relevance_init: str = "logit", rules: Mapping | None = None, keep=(), **params) -> Explanation:
        """Explain ``x`` (a batch shaped like the model input) for ``target`` (``None`` = predicted class, an int,
        or one int per sample). ``params`` are the method's parameters (``onnxlrp.methods()`` lists them);
        ``rules`` overrides rules per op type or node-name pattern; ``keep`` names tensors whose relevance is
        returned in ``intermediate`` (or ``"all"``)."""
        session = self.session
        m, full = resolve_method(method, params)
        if not (isinstance(relevance_init, str) and relevance_init in ("logit", "one_hot")):
            raise MethodError(f"relevance_init must be 'logit' or 'one_hot'; got {_short(relevance_init)}")
        if not ((isinstance(keep, str) and keep == "all") or (isinstance(keep, (list, tuple, set, frozenset))
                                                               and all(isinstance(k, str) for k in keep))):
            raise MethodError(f"keep must be 'all' or a list of tensor names; got {_short(keep)}")
        ids = None
        if self.lookup is not None:
            ids, x, feeds = self._embed(x, feeds)
        x = session.validate_input(x)
        feeds = session.validate_feeds(feeds)
        options = {"rules": rules, "relevance_init": relevance_init, "keep": keep}
        if self._compiled is not None:
            if keep:
                raise MethodError("keep= needs backend='numpy' (a compiled graph returns the input's relevance only)")
            relevance, output, targets = self._compiled.run(m.name, full, rules, relevance_init, x, feeds, target)
            kept = {}
        else:
            relevance, output, targets, kept = m.run(session, x, feeds, target, full, options)
        relevance = session.host(relevance)
        if ids is not None:
            kept = {**kept, "lookup_relevance": relevance}
            relevance = per_position(relevance, ids.shape)
        if not np.isfinite(relevance).all():
            raise NonFiniteError(f"the relevance for {session.input_name!r} contains NaN or inf")
        zero = [i for i in range(relevance.shape[0]) if not relevance[i].any()]
        if zero:
            warnings.warn(ZeroRelevanceWarning(
                f"{method}: the relevance of sample{'s' if len(zero) > 1 else ''} {', '.join(map(str, zero))} is "
                "zero everywhere (the explained output does not depend on the input there, or every rule dropped it)"),
                stacklevel=2)
        return Explanation(relevance=relevance, output=session.host(output), target=np.asarray(targets),
                           method=method, params=full, input_name=self.input_name,
                           output_name=session.output_name,
                           intermediate={k: session.host(v) for k, v in kept.items()})

    def _embed(self, ids, feeds):
        """``(ids, the lookup tensor for them, feeds for the cut model)`` for an integer explained input."""
        lookup = self.lookup
        ids = np.asarray(ids)
        if ids.dtype.kind not in "iu":
            raise InputDtypeError(f"input {lookup.ids_input!r} takes integer ids; got an array of dtype {ids.dtype}")
        if ids.ndim == 0 or ids.shape[0] == 0:
            raise InputShapeError(f"input {lookup.ids_input!r} needs a batch of at least one sample; got shape "
                                  f"{tuple(ids.shape)}")
        feeds = dict(feeds or {})
        embedded = lookup.embed(ids, feeds)
        cut_inputs = {i.name for i in self.session.graph.input_infos}
        fixed = {k: v for k, v in feeds.items() if k in cut_inputs}
        if lookup.cut_reads_ids:
            fixed[lookup.ids_input] = ids
        return ids, embedded, fixed


def _short(value) -> str:
    """A one-line repr of a value a user passed, at most 60 characters."""
    text = " ".join(repr(value).split())
    return text if len(text) <= 60 else text[:57] + "..."


def explain(model, x, method: str = "epsilon_plus_flat", target=None, **kwargs) -> Explanation:
    """One-call form: ``Explainer(model, ...).explain(x, method, target, ...)``.

    Keyword arguments accepted by :class:`Explainer` (``input_name``, ``output_name``, ``device``, ``dtype``,
    ``explain_softmax``) go to it; the rest to :meth:`Explainer.explain`.
    """
    ctor = {k: kwargs.pop(k) for k in ("input_name", "output_name", "device", "dtype", "explain_softmax", "check",
                                       "memory_budget", "lookup") if k in kwargs}
    return Explainer(model, **ctor).explain(x, method=method, target=target, **kwargs)


__all__ = ["Explainer", "Explanation", "explain"]
