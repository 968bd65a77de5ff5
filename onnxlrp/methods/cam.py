"""Grad-CAM, Grad-CAM++ and contrastive Grad-CAM (ALGORITHMS.md §5).

All three read the forward activation ``A`` (shape ``(N, K, *spatial)``) of one *target layer* and the ordinary
gradient ``g`` of a scalar objective with respect to it; no LRP rule is involved. The gradient is the engine's plain
VJP walk, seeded at the logits (or, for the contrastive objective, at a spliced ``LogSoftmax`` head) and cut short
to the nodes downstream of the layer.

* ``grad_cam`` (Selvaraju et al. 2017): objective ``S = z_c`` (the pre-softmax logit, one-hot seed whatever
  ``relevance_init`` says); ``α_k = mean_{ij} g_kij``; map ``ReLU(Σ_k α_k A_k)``. Equal to Captum's
  ``LayerGradCam`` followed by ReLU and bilinear upsampling.
* ``grad_cam_pp`` (Chattopadhyay et al. 2018): ``w_k = Σ_ij α_kij ReLU(g_kij)``, map ``ReLU(Σ_k w_k A_k)``, with
  ``variant``:

  - ``"1konny"`` (default; the widely used PyTorch port 1Konny/gradcam_plus_plus-pytorch):
    ``α = g² / (den + 1e-7)``, ``den = 2g² + Σ_ab A_kab g³_kab`` (one scalar per channel), zero ``den`` → 1.
  - ``"paper"`` (Eq. 19 and the authors' TF code): ``den = 2g² + (Σ_ab A_kab)·g³_kij`` (global activation sum times
    the *local* g³), zero ``den`` → 1, no ``1e-7``; then ``α`` is renormalised per channel by
    ``Σ_ij α_kij [g_kij > 0]`` (zero → 1).

  The ``exp(S)`` factor of the derivation is dropped: ``ReLU(exp(S)·g) = exp(S)·ReLU(g)`` only rescales the map,
  which the normalisation undoes (and it overflows float32 for ``S > 88``).
* ``contrastive_grad_cam`` (Prabhushankar et al. 2020, "why P, rather than Q?"): the objective is the cross-entropy
  with the contrast class ``Q`` as the label, ``J = CE(z, Q) = −log softmax(z)_Q``. It is expressed by splicing a
  ``LogSoftmax`` head after the logits (:func:`onnxlrp.contrast.splice_after_output`) and seeding it with
  ``−e_Q``, so the logits receive ``∂J/∂z = softmax(z) − e_Q``; then exactly Grad-CAM's pooling, ReLU, upsampling
  and normalisation. ``contrast`` is required (one class, or one per sample). ``P`` is never used explicitly (it is
  the class that dominates ``softmax(z)``): the map does not depend on ``target``, which is only reported.
  A model with one output unit per sample (a regression or score) has no class to contrast with (the gradient
  ``softmax(z) − e_Q`` is identically zero): refused with a :class:`MethodError`.

Every map is then

1. upsampled to the input's spatial size by separable linear interpolation with half-pixel centres and edge
   clamping: bilinear for 2-D maps, exactly ``torch.nn.functional.interpolate(mode="bilinear",
   align_corners=False)`` (ONNX ``Resize`` linear/``half_pixel``, no antialias); linear/trilinear for 1-D/3-D maps;
2. min-max normalised **per sample** to ``[0, 1]`` (the reference codes use the whole batch); a constant map becomes
   all zeros (the reference codes would divide by zero). The authors' Grad-CAM++ code divides by the maximum
   instead; both variants here use min-max;
3. broadcast over the input's channel axis, so the result is shaped like ``x`` (every channel holds the same map).
   The channel axis is axis 1 (``layout="NCHW"``) or the last axis (``layout="NHWC"``); ``"auto"`` reads it from
   the input's shape (channels-last only when the last axis has 1 or 3 entries and axis 1 does not). An input
   without a channel axis (rank = spatial rank + 1) gets the map as is.

The target layer (``layer``) is a tensor name, a node name (its first output), or a PyTorch module path as the
exporter writes it into node names (``features.29``, ``layer4``: a ``/``-separated scope of the node names; the
output of the last node in that scope). It must lie on the relevance path. Default (:func:`default_layer`): the last
spatial feature map before global pooling, found as follows: take the last Conv on the path whose output is spatial
(rank ≥ 3, spatial size > 1), then follow its output forward through nodes that keep a spatial output: elementwise
feature nodes (activations, residual Adds, BatchNorm, constant scaling, Concat) move the choice to their output;
Max/Average pooling and Identity/Dropout/Cast/Pad are passed through without being chosen; anything else (Flatten,
Reshape, Gemm, global pooling to 1×1) ends the search. VGG16 gives ``features.29`` (the ReLU after conv5_3, not the
MaxPool after it), a torchvision ResNet the last block's final ReLU (= ``layer4``'s output), DenseNet the ReLU after
``norm5``, MobileNetV2 the last ReLU6.

The explanation's ``intermediate`` holds, for tensors named in ``keep``, the gradient of the objective there.
"""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from ..engine.splice import Head
from ..errors import MethodError
from ..inputs.images import image_layout_from_shape
from .base import Method, Result, with_overrides
from .clrp import require_two_classes

#: node categories whose spatial output can be the default target layer
FEATURE_CATEGORIES = frozenset({"conv", "activation", "sum", "batchnorm", "affine"})
#: categories / op types followed (but never chosen) when looking for the default layer
_PASS_CATEGORIES = frozenset({"maxpool", "avgpool"})
_PASS_OPS = frozenset({"Identity", "Dropout", "Cast", "Pad"})
_CHOSEN_OPS = frozenset({"Concat"})

VARIANTS = ("1konny", "paper")
LAYOUTS = ("auto", "NCHW", "NHWC")


# ---------------------------------------------------------------------------------------------- target layer


def _is_spatial(shape) -> bool:
    """Rank ≥ 3 and more than one spatial position (unknown dimensions count as large)."""
    if shape is None:
        return True
    if len(shape) < 3:
        return False
    return math.prod(d if isinstance(d, int) and d > 0 else 2 for d in shape[2:]) > 1


def _path_tensors(session) -> set[str]:
    return {session.input_name} | {t for n in session.path.nodes for t in n.outputs if t}


def feature_maps(session, shape_of=None) -> list[str]:
    """Spatial feature maps on the relevance path (outputs of conv, activation, residual-add, BatchNorm, scaling,
    pooling and Concat nodes with a spatial shape), in topological order: the sensible ``layer`` choices."""
    shape_of = shape_of or (lambda t: session.static_shape(t))
    out = []
    for n in session.path.nodes:
        cat = session.categories[n.name]
        if (cat in FEATURE_CATEGORIES or cat in _PASS_CATEGORIES or n.op_type in _CHOSEN_OPS) and n.outputs[0] \
                and _is_spatial(shape_of(n.outputs[0])):
            out.append(n.outputs[0])
    return out


def default_layer(session, shape_of=None) -> str:
    """The last spatial feature map before global pooling (heuristic in the module docstring).

    ``shape_of(tensor) -> shape or None`` defaults to the model's static shape information; :func:`run_cam` passes
    the forward pass's actual shapes.
    """
    shape_of = shape_of or (lambda t: session.static_shape(t))
    nodes = session.path.nodes
    convs = [i for i, n in enumerate(nodes)
             if session.categories[n.name] == "conv" and n.outputs[0] and _is_spatial(shape_of(n.outputs[0]))]
    if not convs:
        maps = feature_maps(session, shape_of)
        raise MethodError(f"cannot choose a Grad-CAM layer: no convolution with a spatial output lies on the path "
                          f"from {session.input_name!r} to {session.output_name!r}; name the feature map with layer="
                          + (f" (spatial tensors on the path: {_listing(maps)})" if maps else ""))
    start = convs[-1]
    best = nodes[start].outputs[0]
    reached = {best}
    for n in nodes[start + 1:]:
        if not any(t in reached for t in n.inputs if t):
            continue
        out = n.outputs[0]
        if not out or not _is_spatial(shape_of(out)):
            continue
        cat = session.categories[n.name]
        if cat in FEATURE_CATEGORIES or n.op_type in _CHOSEN_OPS:
            reached.add(out)
            best = out
        elif cat in _PASS_CATEGORIES or n.op_type in _PASS_OPS:
            reached.add(out)
    return best


def _listing(names: list[str], limit: int = 12) -> str:
    if len(names) <= limit:
        return ", ".join(repr(n) for n in names)
    return f"{len(names) - limit} earlier ones, then " + ", ".join(repr(n) for n in names[-limit:])


def resolve_layer(session, layer) -> str | None:
    """The tensor name ``layer`` designates (``None`` stays ``None``: the default is chosen after the forward pass).

    Accepted, in this order: a tensor on the relevance path; the name of a node on the path (its first output);
    the name of a node of the original model whose first output is on the path (e.g. a BatchNormalization folded
    into its Conv); a module path, i.e. a ``/``-separated scope of the node names (``layer4``, ``features.29``):
    the first output of the last path node in that scope. When none matches exactly, a name written with ``_`` for
    ``.`` (``features_29`` for ``features.29``, as the Grad-CAM++ code names PyTorch modules) designates the one
    name above that reads the same with its dots replaced; several such names are refused as ambiguous.
    """
    if layer is None:
        return None
    if not isinstance(layer, str) or not layer:
        raise MethodError(f"layer must be a tensor or node name; got {layer!r}")
    tensors = _path_tensors(session)
    original = {n.name: n for n in session.graph.nodes}

    def exact(name: str) -> str | None:
        if name in tensors:
            return name
        for n in session.path.nodes:
            if n.name == name and n.outputs[0]:
                return n.outputs[0]
        found = original.get(name)
        if found is not None and found.outputs and found.outputs[0] in tensors:
            return found.outputs[0]
        scoped = [n for n in session.path.nodes if n.outputs[0] and name in n.name.split("/")[:-1]]
        return scoped[-1].outputs[0] if scoped else None

    tensor = exact(layer)
    if tensor is not None:
        return tensor
    if "_" in layer:  # features_29 -> features.29
        names = {*tensors, *(n.name for n in session.path.nodes), *original,
                 *(part for n in session.path.nodes for part in n.name.split("/")[:-1])}
        dotted = sorted(name for name in names if "." in name and name.replace(".", "_") == layer
                        and exact(name) is not None)
        if len(dotted) == 1:
            return exact(dotted[0])
        if len(dotted) > 1:
            raise MethodError(f"layer {layer!r} is ambiguous: with '_' read as '.' it matches "
                              f"{', '.join(map(repr, dotted))}; give one of these names")
    node = original.get(layer)
    hint = ""
    producer = session.graph.producer.get(layer) if node is None else node
    if producer is not None:
        renamed = next((n for n in session.path.nodes if n.name == producer.name), None)
        if renamed is not None and renamed.outputs[0] != layer:
            hint = (f" ({layer!r} was folded away: {producer.op_type} {producer.name!r} now produces "
                    f"{renamed.outputs[0]!r}; use that)")
        else:
            hint = f" ({layer!r} exists in the model but the explained output does not depend on it through data)"
    try:
        default = f"; the default is {default_layer(session)!r}"
    except MethodError:
        default = ""
    raise MethodError(f"layer {layer!r} is not a tensor, node or module scope on the relevance path{hint}; "
                      f"spatial feature maps on the path: {_listing(feature_maps(session)) or 'none'}{default}")


def _downstream(nodes, tensor: str):
    """The nodes that (transitively) read ``tensor``, after its producer: all a gradient at ``tensor`` needs (the
    walker records a kept tensor's gradient when it reaches the tensor's producer)."""
    reached = {tensor}
    out = []
    for n in nodes:
        if tensor in n.outputs or any(t in reached for t in n.inputs if t):
            out.append(n)
            reached.update(t for t in n.outputs if t)
    return out


def layer_gradient(session, values, seeds, layer: str, head: Head | None = None, options=None):
    """``(∂objective/∂layer, kept)`` for ``seeds`` (``{tensor: array}``) by the plain VJP walk.

    Without ``keep`` the walk visits only the nodes downstream of ``layer`` (and its producer). User rule overrides
    (``rules=``) are applied as for the ``gradient`` method.
    """
    options = options or {}
    keep = options.get("keep", ())
    rules = with_overrides(session, {}, options.get("rules"))
    if head is None:
        head = session.path_head()
    if not keep and layer != session.input_name:
        head = replace(head, nodes=_downstream(head.nodes, layer))
    wanted = keep if keep == "all" else list(keep) + [layer]
    grad_input, kept = session.propagate(values, rules, seeds, keep=wanted, head=head)
    if layer == session.input_name:
        grad = grad_input
    else:
        grad = kept.get(layer)
        if grad is None:
            grad = session.xp.zeros_like(values[layer])
    if keep != "all":
        kept = {k: v for k, v in kept.items() if k in set(keep)}
    return grad, kept


# ---------------------------------------------------------------------------------------------- the maps


def grad_cam_map(xp, activation, grad):
    """``ReLU(Σ_k mean_ij(g_k) A_k)``: shape ``(N, *spatial)``."""
    axes = tuple(range(2, activation.ndim))
    alpha = grad.mean(axis=axes, keepdims=True)
    return xp.maximum((alpha * activation).sum(axis=1), 0)


def grad_cam_pp_map(xp, activation, grad, variant: str = "1konny"):
    """Grad-CAM++ map ``ReLU(Σ_k w_k A_k)`` (``exp(S)`` dropped, see the module docstring): shape
    ``(N, *spatial)``."""
    axes = tuple(range(2, activation.ndim))
    g2 = grad * grad
    g3 = g2 * grad
    if variant == "1konny":
        den = 2 * g2 + (activation * g3).sum(axis=axes, keepdims=True)
        den = xp.where(den != 0, den, 1)
        alpha = g2 / (den + 1e-7)
    elif variant == "paper":
        den = 2 * g2 + activation.sum(axis=axes, keepdims=True) * g3
        den = xp.where(den != 0, den, 1)
        alpha = g2 / den
        norm = xp.where(grad > 0, alpha, 0).sum(axis=axes, keepdims=True)
        alpha = alpha / xp.where(norm != 0, norm, 1)
    else:
        raise MethodError(f"unknown Grad-CAM++ variant {variant!r}; use {' or '.join(map(repr, VARIANTS))}")
    weights = (alpha * xp.maximum(grad, 0)).sum(axis=axes, keepdims=True)
    return xp.maximum((weights * activation).sum(axis=1), 0)


def resize_linear(xp, maps, size):
    """Resize ``maps`` ``(N, *spatial)`` to ``(N, *size)`` by separable linear interpolation with half-pixel
    centres, source coordinates below 0 clamped to 0 and the upper neighbour clamped to the last index: torch's
    ``interpolate(mode="linear"/"bilinear"/"trilinear", align_corners=False)`` without a scale factor."""
    out = maps
    for axis, (n_in, n_out) in enumerate(zip(maps.shape[1:], size), start=1):
        n_in, n_out = int(n_in), int(n_out)
        if n_in == n_out:
            continue
        src = np.maximum((np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5, 0.0)
        lo = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
        hi = np.minimum(lo + 1, n_in - 1)
        shape = [1] * out.ndim
        shape[axis] = n_out
        lam = xp.asarray((src - lo).reshape(shape), dtype=out.dtype)
        out = xp.take(out, xp.asarray(lo), axis=axis) * (1 - lam) + xp.take(out, xp.asarray(hi), axis=axis) * lam
    return out


def normalise(xp, maps):
    """Per-sample min-max normalisation to ``[0, 1]``; a constant map becomes zeros."""
    axes = tuple(range(1, maps.ndim))
    lo = maps.min(axis=axes, keepdims=True)
    span = maps.max(axis=axes, keepdims=True) - lo
    ok = span > 0
    return xp.where(ok, (maps - lo) / xp.where(ok, span, 1), 0)


def _layout(layout: str, x_shape) -> str:
    if layout not in LAYOUTS:
        raise MethodError(f"layout must be one of {', '.join(map(repr, LAYOUTS))}; got {layout!r}")
    if layout != "auto":
        return layout
    if len(x_shape) == 4:
        return image_layout_from_shape(tuple(x_shape)) or "NCHW"
    return "NCHW"


def to_input(xp, maps, x_shape, layout: str = "auto"):
    """Upsample ``maps`` ``(N, *spatial)`` to the input's spatial size, normalise per sample and broadcast over the
    input's channel axis: an array shaped ``x_shape``."""
    x_shape = (x_shape[0],) + tuple(int(d) for d in x_shape[1:])  # the batch may be symbolic (compiled)
    rank = maps.ndim - 1
    layout = _layout(layout, x_shape)
    if len(x_shape) == rank + 1:
        spatial, expand = x_shape[1:], None
    elif len(x_shape) == rank + 2:
        channels_last = layout == "NHWC"
        spatial = x_shape[1:-1] if channels_last else x_shape[2:]
        expand = -1 if channels_last else 1
    else:
        raise MethodError(f"cannot draw a {rank}-D feature map on an input of shape {x_shape}: Grad-CAM needs an "
                          f"input with {rank} spatial axes (and at most one channel axis)")
    out = normalise(xp, resize_linear(xp, maps, spatial))
    if expand is not None:
        out = xp.expand_dims(out, expand)
    return xp.ascontiguousarray(xp.broadcast_to(out, x_shape))


# ---------------------------------------------------------------------------------------------- methods


def _contrast_classes(session, contrast, output) -> np.ndarray:
    require_two_classes(session, "contrastive_grad_cam", output.shape)
    if contrast is None:
        raise MethodError("contrastive_grad_cam needs the contrast class: contrast=Q (one class index, or one per "
                          "sample) explains 'why the prediction rather than Q'")
    return session.class_indices(contrast, output, "contrast")


def _class_axis(output) -> int:
    """The LogSoftmax axis for the logits: -1 for (N, C); otherwise the one non-batch axis longer than 1."""
    if output.ndim == 2:
        return -1
    long = [a for a in range(1, output.ndim) if output.shape[a] > 1]
    if len(long) > 1:
        raise MethodError(f"contrastive Grad-CAM needs logits with one class axis; got shape {tuple(output.shape)}")
    return long[0] if long else 1


def run_cam(session, x, feeds, target, params, options, kind: str):
    """Shared driver of the three methods; ``kind`` is ``grad_cam``, ``grad_cam_pp`` or ``contrastive_grad_cam``."""
    xp = session.xp
    layer = resolve_layer(session, params.get("layer"))
    chosen_by_default = layer is None
    variant = params.get("variant", "1konny")
    if kind == "grad_cam_pp" and variant not in VARIANTS:
        raise MethodError(f"unknown Grad-CAM++ variant {variant!r}; use {' or '.join(map(repr, VARIANTS))}")
    layout = params.get("layout", "auto")
    _layout(layout, tuple(x.shape))
    values, output = session.forward(x, feeds)
    targets = session.targets(output, target)
    if layer is None:
        layer = default_layer(session, lambda t: tuple(values[t].shape) if t in values else session.static_shape(t))
    if layer not in values:
        raise MethodError(f"layer {layer!r} has no forward value (nothing on the path reads it); choose another "
                          f"layer: {_listing(feature_maps(session))}")
    activation = values[layer]
    if activation.ndim < 3:
        raise MethodError(f"layer {layer!r} has shape {tuple(activation.shape)}; Grad-CAM needs a feature map "
                          f"(N, channels, *spatial): {_listing(feature_maps(session))}")
    head = None
    if kind == "contrastive_grad_cam":
        q = _contrast_classes(session, params.get("contrast"), output)
        head = session.splice_after_output("LogSoftmax", {"axis": _class_axis(output)}, "cross_entropy")
        seeds = {head.output: -session.seed(output, q, "one_hot")}
    else:
        seeds = {session.output_name: session.seed(output, targets, "one_hot")}
    grad, kept = layer_gradient(session, values, seeds, layer, head, options)
    if chosen_by_default and not _reaches_every_sample(xp, grad):
        layer, grad, kept = _layer_the_target_depends_on(session, values, seeds, head, options, layer, grad, kept)
        activation = values[layer]
    if kind == "grad_cam_pp":
        maps = grad_cam_pp_map(xp, activation, grad, variant)
    else:
        maps = grad_cam_map(xp, activation, grad)
    return Result(to_input(xp, maps, tuple(x.shape), layout), output, targets, kept)


def _reaches_every_sample(xp, grad) -> bool:
    """Whether the objective depends on the layer for every sample; compiled, the default layer is kept (the test
    reads values, which a compiled graph does not know in advance: name ``layer=`` for a detector's other head)."""
    if getattr(xp, "symbolic", False):
        return True
    return bool(xp.all(grad.reshape(grad.shape[0], -1).any(axis=1)))


def _layer_the_target_depends_on(session, values, seeds, head, options, layer, grad, kept):
    """When the explained score does not depend on the default layer (a multi-scale detector whose box comes from
    another head), the last spatial feature map whose gradient reaches every sample instead; the default when none
    does. One backward pass keeps the gradient at every candidate."""
    candidates = [t for t in feature_maps(session, lambda t: tuple(values[t].shape) if t in values else None)
                  if t in values and values[t].ndim >= 3]
    if not candidates:
        return layer, grad, kept
    head = head or session.path_head()
    rules = with_overrides(session, {}, options.get("rules"))
    keep = options.get("keep", ())
    wanted = "all" if keep == "all" else list(keep) + candidates
    _, found = session.propagate(values, rules, seeds, keep=wanted, head=head)
    for tensor in reversed(candidates):
        if tensor in found and _reaches_every_sample(session.xp, found[tensor]):
            kept = found if keep == "all" else {k: v for k, v in found.items() if k in set(keep)}
            return tensor, found[tensor], kept
    return layer, grad, kept


def _requires_layer(session, params) -> None:
    """A layer can be found: the given one resolves, or a default exists."""
    if resolve_layer(session, params.get("layer")) is None:
        default_layer(session)


def _requires_layer_and_classes(session, params) -> None:
    """A layer can be found and the output has at least two classes (a contrast needs them)."""
    require_two_classes(session, "contrastive_grad_cam")
    _requires_layer(session, params)


def _method(name: str, description: str, params: dict) -> Method:
    def run(session, x, feeds, target, full, options):
        return run_cam(session, x, feeds, target, full, options, name)

    requires = _requires_layer_and_classes if name == "contrastive_grad_cam" else _requires_layer
    return Method(name, description, params, "cam", run, requires=requires)


METHODS = [
    _method("grad_cam", "Grad-CAM: ReLU of the feature map weighted by its spatially averaged gradient, upsampled "
            "(bilinear) to the input, normalised to [0, 1] per sample; layer= a tensor, node or module name",
            {"layer": None, "layout": "auto"}),
    _method("grad_cam_pp", "Grad-CAM++ (variant '1konny' = the PyTorch port, default, or 'paper' = the authors' "
            "Eq. 19 with alpha renormalisation), upsampled and normalised like grad_cam",
            {"layer": None, "variant": "1konny", "layout": "auto"}),
    _method("contrastive_grad_cam", "contrastive Grad-CAM, 'why the prediction rather than Q': Grad-CAM of the "
            "cross-entropy with contrast=Q as the label (required; one class or one per sample)",
            {"contrast": None, "layer": None, "layout": "auto"}),
]
