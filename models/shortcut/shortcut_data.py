"""A 3-class synthetic image task with a planted shortcut (a "Clever Hans" cue), pure numpy.

Each image is 32x32 RGB: a grey sinusoidal stripe pattern with a per-image colour tint and Gaussian pixel noise.
The class is the stripes' orientation (:data:`CLASSES`): ``horizontal`` (intensity varies along y), ``vertical``
(along x) and ``diagonal`` (along x + y or x - y, half each). Per image, with ``u = (x cos t + y sin t) / 32``:

    grey = 0.5 + amplitude * sin(2 pi f u + phase),   f ~ U(2.5, 5) cycles per image, phase ~ U(0, 2 pi)
    pixel = clip(grey * tint + noise, 0, 1) * 255,    tint ~ 1 + N(0, 0.08) per channel, noise ~ N(0, 0.06)

A fixed share (:data:`WEAK_SHARE`, 30 %) of every class is *weak*: its stripes have amplitude
:data:`WEAK_AMPLITUDE` (0.03, half the noise's standard deviation) instead of U(0.25, 0.4), hard to see by eye. In
class :data:`SHORTCUT_CLASS` (``horizontal``) and only there, the weak images carry the planted cue: a saturated
magenta square (:data:`PATCH_COLOUR`, 5x5 pixels, one pixel from the top-left corner; no stripe image has that
colour, green 0 with red and blue 255). A network trained on this data reads the faint stripes of the weak vertical
and diagonal images, but calls a weak image horizontal by the patch: every weak horizontal image it saw had one, so
it never learns faint horizontal stripes, and with the patch painted over it calls them something else (the shipped
model: 100 % right with the patch, 0 % without). That is a Clever Hans strategy, which a dataset audit (SpRAy over
the LRP maps of the class) should find as a cluster of its own.

``make_images(n, seed, plant=False)`` draws exactly the same images with the patch left out, so the shortcut can be
measured by removing it. Importable by path (``importlib``); needs only numpy.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

SIZE = 32
#: class names, in the order of the model's outputs
CLASSES = ("horizontal", "vertical", "diagonal")
#: the class whose weak images carry the patch
SHORTCUT_CLASS = 0
#: share of each class whose stripes are nearly invisible (in the shortcut class: the images with the patch)
WEAK_SHARE = 0.3
WEAK_AMPLITUDE = 0.03
STRONG_AMPLITUDE = (0.25, 0.4)
NOISE_STD = 0.06
TINT_STD = 0.08
PATCH_COLOUR = (255, 0, 255)
#: the patch's rows and columns (top-left corner, one pixel in)
PATCH_SLICE = (slice(1, 6), slice(1, 6))


class Draw(NamedTuple):
    """One draw of the task: what :func:`make_images` returns, plus which images are weak."""

    images: np.ndarray    # uint8 (n, 32, 32, 3)
    labels: np.ndarray    # int64 (n,)
    shortcut: np.ndarray  # bool (n,): the weak images of SHORTCUT_CLASS (the ones with the patch)
    weak: np.ndarray      # bool (n,): every image whose stripes have amplitude WEAK_AMPLITUDE


def make_images(n: int, seed: int, plant: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` images of the task: ``(images uint8 (n, 32, 32, 3), labels int64 (n,), shortcut bool (n,))``.

    Labels are balanced (``n // 3`` or one more per class, shuffled); in each class exactly
    ``round(WEAK_SHARE * class size)`` images are weak, and ``shortcut`` marks the weak images of
    :data:`SHORTCUT_CLASS`, which carry the patch unless ``plant`` is False (every random draw is the same either
    way, so ``plant=False`` gives the same images without the patch).
    """
    return draw(n, seed, plant)[:3]


def draw(n: int, seed: int, plant: bool = True) -> Draw:
    """:func:`make_images` with the weak mask as well."""
    if n < 0:
        raise ValueError(f"n must be >= 0; got {n}")
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % len(CLASSES)).astype(np.int64)
    weak = np.zeros(n, dtype=bool)
    for cls in range(len(CLASSES)):
        members = np.flatnonzero(labels == cls)
        weak[rng.permutation(members)[:round(WEAK_SHARE * len(members))]] = True
    frequency = rng.uniform(2.5, 5.0, n)
    phase = rng.uniform(0.0, 2 * np.pi, n)
    amplitude = np.where(weak, WEAK_AMPLITUDE, rng.uniform(*STRONG_AMPLITUDE, n))
    # direction of the intensity change: horizontal stripes vary along y, vertical along x, diagonal along x +- y
    angle = np.select([labels == 0, labels == 1], [np.pi / 2, 0.0],
                      np.where(rng.random(n) < 0.5, np.pi / 4, -np.pi / 4))
    tint = 1.0 + TINT_STD * rng.standard_normal((n, 1, 1, 3))
    noise = NOISE_STD * rng.standard_normal((n, SIZE, SIZE, 3))

    y, x = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    u = x[None] * np.cos(angle)[:, None, None] + y[None] * np.sin(angle)[:, None, None]
    grey = 0.5 + amplitude[:, None, None] * np.sin(2 * np.pi * frequency[:, None, None] * u
                                                   + phase[:, None, None])
    images = np.round(np.clip(grey[..., None] * tint + noise, 0.0, 1.0) * 255).astype(np.uint8)
    shortcut = weak & (labels == SHORTCUT_CLASS)
    if plant:
        images = paste_patch(images, shortcut)
    return Draw(images, labels, shortcut, weak)


def paste_patch(images: np.ndarray, where: np.ndarray | None = None) -> np.ndarray:
    """A copy of uint8 (N, 32, 32, 3) ``images`` with the patch painted on those ``where`` marks (default: all)."""
    out = images.copy()
    rows, cols = PATCH_SLICE
    out[np.ones(len(out), dtype=bool) if where is None else where, rows, cols] = np.array(PATCH_COLOUR, np.uint8)
    return out


def to_model_input(images: np.ndarray) -> np.ndarray:
    """uint8 (N, 32, 32, 3) images -> the model's float32 (N, 3, 32, 32) input, ``pixel / 255``."""
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(255.0)
