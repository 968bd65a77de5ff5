"""Sanity checks by randomisation: model parameter randomisation (MPRT) and random-logit similarity.

MPRT (Adebayo et al. 2018; Quantus ``MPRT``) on ONNX is native: the *layers* are the nodes on the relevance path
(in the original graph, between the explained input and output) that hold a float weight of rank 2 or more, or
are normalisations; each layer's float initializers are re-drawn in a copy of the model and a new
:class:`~onnxlrp.Explainer` explains again. Weights of ``Conv``/``ConvTranspose``/``Gemm``/``MatMul`` and their
biases are drawn as PyTorch initialises such layers, ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``; other initializers
from a normal distribution with the original tensor's mean and standard deviation. Each layer draws from its own
generator, ``default_rng([seed, layer index])``, so cascading and independent runs re-draw the same tensors and a
rerun gives the same numbers. :func:`randomised_models` yields the models and the drawn tensors (a peer can load
the same tensors into its own framework).
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np
import onnx
from onnx import numpy_helper

from ..errors import MethodError, TargetError
from .common import Scores, as_inputs, pixel_map
from .model import explainer_for, session_options
from .similarity import spearman, ssim

ORDERS = ("top_down", "bottom_up", "independent")
DENSE_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
NORM_OPS = ("BatchNormalization", "LayerNormalization", "InstanceNormalization", "GroupNormalization")
FLOAT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16}


def _explainer(model, **kwargs):
    return explainer_for(model, **kwargs)


def layers(session) -> list[tuple[str, str, list[str]]]:
    """``(node name, op type, float initializer names)`` of every parametrised node on the relevance path of
    ``session``'s original graph, input side first. An initializer shared by several nodes belongs to the first."""
    graph = session.graph
    varying = graph.depends_on(session.input_name)
    needed, stack = set(), [session.output_name]
    while stack:
        name = stack.pop()
        if name in needed:
            continue
        needed.add(name)
        node = graph.producer.get(name)
        if node is not None:
            stack.extend(t for t in node.inputs + node.implicit if t)
    floats = {t.name for t in graph.model.graph.initializer if t.data_type in FLOAT_TYPES}
    dims = {t.name: len(t.dims) for t in graph.model.graph.initializer}
    claimed: set[str] = set()
    found = []
    for node in graph.nodes:
        if not any(t in varying for t in node.inputs if t) or not any(t in needed for t in node.outputs if t):
            continue
        names = [t for t in _constant_sources(graph, [t for t in node.inputs if t and t not in varying])
                 if t in floats and t not in claimed]
        if names and (node.op_type in NORM_OPS or any(dims[t] >= 2 for t in names)):
            claimed.update(names)
            found.append((node.name, node.op_type, names))
    return found


def _constant_sources(graph, tensors: list[str]) -> list[str]:
    """The initializers a node's constant inputs come from (through constant subgraphs: Transpose, Cast, ...)."""
    out, seen, stack = [], set(), list(tensors)
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        if name in graph.initializer_names:
            out.append(name)
        elif name in graph.producer:
            stack.extend(t for t in graph.producer[name].inputs if t)
    return sorted(out)


def _fan_in(op_type: str, attrs: Mapping, shape: tuple) -> int:
    if op_type == "Conv" or op_type == "ConvTranspose":
        return int(np.prod(shape[1:])) if len(shape) > 1 else 1
    if op_type == "Gemm":
        return int(shape[1] if attrs.get("transB", 0) else shape[0])
    return int(shape[-2]) if len(shape) >= 2 else int(shape[0])


def redraw(session, layer: tuple[str, str, list[str]], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """New values for one layer's initializers (see the module docstring)."""
    name, op_type, names = layer
    graph = session.graph
    tensors = {t.name: t for t in graph.model.graph.initializer if t.name in names}
    node = graph.node_by_name[name]
    drawn = {}
    weight = next((t for t in names if len(tensors[t].dims) >= 2), None)
    bound = None
    if op_type in DENSE_OPS and weight is not None:
        bound = 1.0 / np.sqrt(max(1, _fan_in(op_type, node.attrs, tuple(tensors[weight].dims))))
    for t in names:
        value = numpy_helper.to_array(tensors[t])
        if bound is not None:
            new = rng.uniform(-bound, bound, size=value.shape)
        else:
            mean, std = float(value.mean()), float(value.std())
            new = rng.normal(mean, std or abs(mean) or 1.0, size=value.shape)
        drawn[t] = new.astype(value.dtype)
    return drawn


def randomised_models(session, order: str = "top_down", seed: int = 42
                      ) -> Iterator[tuple[str, onnx.ModelProto, dict[str, np.ndarray]]]:
    """For each layer in ``order`` (``top_down``: cascading from the output; ``bottom_up``: cascading from the
    input; ``independent``: one layer at a time): its name, a copy of the model with the re-drawn initializers, and
    every tensor re-drawn in that copy."""
    if order not in ORDERS:
        raise MethodError(f"order must be one of {', '.join(map(repr, ORDERS))}; got {order!r}")
    found = layers(session)
    if not found:
        raise MethodError("the model has no parametrised layer on the relevance path to randomise")
    indexed = list(enumerate(found))
    if order == "top_down":
        indexed = indexed[::-1]
    current: dict[str, np.ndarray] = {}
    for index, layer in indexed:
        drawn = redraw(session, layer, np.random.default_rng([seed, index]))
        current = drawn if order == "independent" else {**current, **drawn}
        model = onnx.ModelProto()
        model.CopyFrom(session.graph.model)
        for tensor in model.graph.initializer:
            if tensor.name in current:
                tensor.CopyFrom(numpy_helper.from_array(current[tensor.name], tensor.name))
        yield layer[0], model, dict(current)


def _explain(explainer, x, targets, method, params):
    return explainer.explain(x, method=method, target=targets, **params).relevance


def _options(session) -> dict:
    return {**session_options(session), "check": False}


def mprt(model, x, target, *, method: str = "gradient", params: Mapping | None = None, order: str = "top_down",
         seed: int = 42, abs: bool = True, relevance=None, layout: str | None = None) -> Scores:
    """Model parameter randomisation test.

    ``curve`` ``(N, L+1)`` is the Spearman rank correlation of each sample's (absolute, ``abs``) map with its
    original map, before (1) and after each randomisation step; ``extra["ssim"]`` the same with SSIM on the pixel
    maps ``(H, W)``, ``extra["layers"]`` the layer names. ``values`` is the last step's correlation for a cascading
    order (the fully randomised model) and the mean over layers for ``independent``; a method that passes scores
    low (lower is better). ``relevance`` gives the original maps (else they are computed).
    """
    explainer = _explainer(model)
    session = explainer.session
    x = as_inputs(x)
    params = dict(params or {})
    if relevance is None or target is None:
        res = explainer.explain(x, method=method, target=target, **params)
        targets, original = res.target, (res.relevance if relevance is None else np.asarray(relevance))
    else:
        targets, original = target, np.asarray(relevance)

    def prepare(a):
        return np.abs(a) if abs else np.asarray(a)

    base = prepare(original)
    base_pixels = _pixels(base, x, layout)
    names, rank_curve, ssim_curve = ["original"], [spearman(base, base)], [ssim(base_pixels, base_pixels)]
    for name, proto, _ in randomised_models(session, order, seed):
        other = prepare(_explain(_explainer(proto, **_options(session)), x, targets, method, params))
        names.append(name)
        rank_curve.append(spearman(base, other))
        ssim_curve.append(ssim(base_pixels, _pixels(other, x, layout)))
    curve, ssim_values = np.stack(rank_curve, axis=1), np.stack(ssim_curve, axis=1)
    values = curve[:, 1:].mean(axis=1) if order == "independent" else curve[:, -1]
    return Scores("mprt", values, higher_is_better=False, curve=curve, steps=np.arange(curve.shape[1]),
                  extra={"layers": names, "ssim": ssim_values, "order": order, "method": method})


def _pixels(a: np.ndarray, x: np.ndarray, layout) -> np.ndarray:
    """Pixel maps for SSIM (images), else the flattened maps."""
    try:
        return pixel_map(a, x, layout)
    except Exception:  # noqa: BLE001 - not an image: compare the flattened maps
        return np.asarray(a).reshape(len(a), -1)


def random_logit(model, x, target, *, method: str = "gradient", params: Mapping | None = None, seed: int = 42,
                 relevance=None, similarity: str = "ssim", layout: str | None = None) -> Scores:
    """Random-logit similarity (Sixt et al. 2020; Quantus ``RandomLogit``): the similarity (``"ssim"`` on the pixel
    maps, each divided by its largest ``|R|``, or ``"spearman"``) between the map for the target and the map for a
    class drawn uniformly from the others (``default_rng(seed)``); low is good (the map depends on the class).
    ``extra["off_class"]`` holds the drawn classes."""
    explainer = _explainer(model)
    x = as_inputs(x)
    params = dict(params or {})
    res = explainer.explain(x, method=method, target=target, **params)
    original = res.relevance if relevance is None else np.asarray(relevance)
    classes = int(np.prod(res.output.shape[1:]))
    if classes < 2:
        raise TargetError("random-logit needs a model with at least two classes")
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, classes - 1, size=len(x))
    off = draws + (draws >= res.target)  # uniform over the other classes
    other = _explain(explainer, x, off, method, params)
    if similarity == "spearman":
        values = spearman(original, other)
    elif similarity == "ssim":
        values = ssim(_normalised(_pixels(original, x, layout)), _normalised(_pixels(other, x, layout)))
    else:
        raise MethodError(f"similarity must be 'ssim' or 'spearman'; got {similarity!r}")
    return Scores("random_logit", values, higher_is_better=False, extra={"off_class": off, "similarity": similarity})


def _normalised(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    peak = np.abs(a).reshape(len(a), -1).max(axis=1).reshape(-1, *([1] * (a.ndim - 1)))
    return np.divide(a, peak, out=np.zeros_like(a), where=peak > 0)
