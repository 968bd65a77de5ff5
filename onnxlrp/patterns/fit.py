"""Fitting signal patterns from sufficient statistics accumulated batch by batch (bounded memory).

For a layer ``y = wᵀx`` (no bias; rows ``x_r`` as in :mod:`.layers`) and a row mask ``m_r`` per output unit
(Kindermans et al. 2018, section 4; iNNvestigate's ``PatternComputer``)::

    E_m[x]  = Σ_r m_r x_r / Σ_r m_r        E_m[xy] = Σ_r m_r x_r y_r / Σ_r m_r        E[y] = Σ_r y_r / R
    cov     = E_m[xy] − E_m[x] · E[y]
    a       = cov / (wᵀ cov)        (a divisor of 0 is replaced by 1, as iNNvestigate's safe division)

with ``m_r = 1`` for the ``linear`` pattern, ``m_r = [z_r > 0]`` for ``relu.positive`` and ``m_r = [z_r ≤ 0]`` for
``relu.negative``, ``z`` the layer's output with bias (what the ReLU after it sees; a ReLU directly after the layer
gives the same mask as iNNvestigate's activation search). ``E[y]`` is over every row in all three (the paper's
``E+[x]E[y]``). A masked mean over no row is 0.

Per layer, per output unit and per type only the sums ``Σ m``, ``Σ m x``, ``Σ m x y`` (and once ``Σ y``, ``R``) are
kept, in float64: memory is a few times the layer's weight, whatever the size of the data set. Conv patches are
extracted chunk by chunk (:data:`~onnxlrp.patterns.layers.PATCH_BUDGET`).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from ..errors import MethodError
from .layers import PatternLayer, from_2d, group_of, neuron_rows, pattern_layers, weight_2d
from .store import FIT_TYPES, Patterns


class _LayerSums:
    """The running sums of one layer: per type ``count (G, Mg)``, ``sx (G, D, Mg)``, ``sxy (G, D, Mg)``; shared
    ``sy (G, Mg)`` and the row count."""

    def __init__(self, types: Sequence[str]):
        self.types = tuple(types)
        self.rows = 0
        self.sy = None
        self.sums: dict[str, list] = {}

    def add(self, xp, cols, y, z) -> None:
        """Add one chunk: ``cols (G, D, R)``, ``y``/``z`` ``(G, R, Mg)``."""
        self.rows += y.shape[1]
        self.sy = _plus(self.sy, y.sum(axis=1))
        for kind in self.types:
            if kind == "linear":
                count = xp.full((y.shape[0], y.shape[2]), float(y.shape[1]))
                sx = xp.broadcast_to(cols.sum(axis=2)[:, :, None], cols.shape[:2] + (y.shape[2],))
                sxy = cols @ y
            else:
                mask = (z > 0) if kind == "relu.positive" else (z <= 0)
                mask = mask.astype(np.float64)
                count, sx, sxy = mask.sum(axis=1), cols @ mask, cols @ (y * mask)
            old = self.sums.get(kind)
            self.sums[kind] = [count + 0.0, sx + 0.0, sxy + 0.0] if old is None else \
                [old[0] + count, old[1] + sx, old[2] + sxy]

    def pattern(self, kind: str, w2d: np.ndarray) -> np.ndarray:
        """``a = cov / (wᵀ cov)`` as ``(G, D, Mg)`` (see the module docstring)."""
        count, sx, sxy = (np.asarray(s, dtype=np.float64) for s in self.sums[kind])
        safe = (count + (count == 0))[:, None, :]
        mean_y = (np.asarray(self.sy, dtype=np.float64) / max(self.rows, 1))[:, None, :]
        cov = sxy / safe - (sx / safe) * mean_y
        w_cov = (w2d * cov).sum(axis=1, keepdims=True)
        return cov / (w_cov + (w_cov == 0))


def _plus(a, b):
    return b + 0.0 if a is None else a + b


class PatternStatistics:
    """Sufficient statistics of every pattern layer of ``session``'s model, updated batch by batch.

    ``update(x, feeds)`` runs the forward pass on a batch (``session.forward``) and adds its rows; ``patterns()``
    returns the fitted :class:`~onnxlrp.patterns.store.Patterns` (any time, from what was seen so far).
    """

    def __init__(self, session, types: Sequence[str] = FIT_TYPES):
        types = tuple(types)
        unknown = [t for t in types if t not in FIT_TYPES]
        if unknown or not types:
            raise MethodError(f"unknown pattern type {unknown[0] if unknown else ''!r}; types are "
                              f"{', '.join(FIT_TYPES)}")
        self.session = session
        self.types = types
        self.layers: list[PatternLayer] = pattern_layers(session)
        self.sums = {layer.name: _LayerSums(types) for layer in self.layers}
        self.weights: dict[str, np.ndarray] = {}
        self.samples = 0

    def update(self, x, feeds: Mapping | None = None) -> None:
        """Add the rows of every pattern layer for the batch ``x`` (shaped like the model input)."""
        session = self.session
        x = session.validate_input(x)
        values, _ = session.forward(x, session.validate_feeds(feeds))
        for layer in self.layers:
            op = session.linear_op(layer.node, values)
            if layer.name not in self.weights:
                self.weights[layer.name] = np.asarray(session.host(op.params["weight"]), dtype=np.float64)
            for cols, y, z in neuron_rows(session.xp, layer, op, values):
                self.sums[layer.name].add(session.xp, cols, y, z)
        self.samples += int(x.shape[0])

    def patterns(self) -> Patterns:
        """The patterns of every type and layer from the statistics so far (float64, each its weight's shape)."""
        if self.samples == 0:
            raise MethodError("no data: patterns are fitted from at least one sample")
        arrays: dict[str, dict[str, np.ndarray]] = {kind: {} for kind in self.types}
        for layer in self.layers:
            weight = self.weights[layer.name]
            w2d = weight_2d(layer, weight, group_of(layer))
            for kind in self.types:
                arrays[kind][layer.name] = np.ascontiguousarray(
                    from_2d(layer, self.sums[layer.name].pattern(kind, w2d), weight.shape))
        return Patterns(arrays, self.samples, {layer.name: self.sums[layer.name].rows for layer in self.layers},
                        {layer.name: layer.node.op_type for layer in self.layers})


def fit_patterns(session, batches: Iterable, types: Sequence[str] = FIT_TYPES) -> Patterns:
    """Patterns of ``session``'s model fitted on ``batches`` (arrays shaped like the model input, or ``(x, feeds)``
    pairs), streamed: only the sums of :class:`PatternStatistics` are kept."""
    stats = PatternStatistics(session, types)
    for batch in batches:
        x, feeds = batch if isinstance(batch, tuple) else (batch, None)
        stats.update(x, feeds)
    return stats.patterns()
