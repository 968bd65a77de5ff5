"""Image files in, model samples out: decoding, and preprocessing fixed in this order (every step documented in
``onnxlrp explain --help``)::

    pixels (uint8, H x W x C after decoding, greyscale or RGB conversion and a bilinear resize)
      -> x = pixels * scale                    # default scale = 1/255
      -> channels reversed (RGB -> BGR)        # only with channel_order "BGR" (the caffe preset)
      -> x = (x - mean[c]) / std[c]            # default mean 0, std 1; one value, or one per channel
      -> layout NCHW or NHWC                   # default read from the model's input shape

:data:`PRESETS` are Keras' ``imagenet_utils.preprocess_input`` modes (``--preprocess``):

* ``caffe``: RGB -> BGR, then subtract the ImageNet mean ``[103.939, 116.779, 123.68]`` (B, G, R), no scaling;
* ``tf`` and ``inception``: ``x = pixels / 127.5 - 1``, in [-1, 1];
* ``torch``: ``x = (pixels / 255 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]`` (R, G, B).

Only numpy and Pillow are used, so the command line runs with the runtime dependencies alone.

Every image is opened through :func:`open_image`, which refuses one whose header claims more pixels than
:func:`onnxlrp.limits.image_pixel_limit` (``ONNXLRP_MAX_IMAGE_PIXELS``) before anything is decoded: a small file
cannot make onnxlrp allocate gigabytes (a "decompression bomb").
"""
from __future__ import annotations

import contextlib
import re
import struct
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, UnidentifiedImageError

from .. import limits
from ..errors import ImageDecodeError

#: File name suffixes read as images (anything Pillow decodes would do; these are the ones we claim).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


#: ``--preprocess`` presets (Keras' modes): scale, mean, std and channel order, as the module docstring gives them
PRESETS: dict[str, dict] = {
    "caffe": {"scale": 1.0, "mean": (103.939, 116.779, 123.68), "std": (1.0,), "channel_order": "BGR"},
    "tf": {"scale": 1.0 / 127.5, "mean": (1.0,), "std": (1.0,), "channel_order": "RGB"},
    "inception": {"scale": 1.0 / 127.5, "mean": (1.0,), "std": (1.0,), "channel_order": "RGB"},
    "torch": {"scale": 1.0 / 255.0, "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225),
              "channel_order": "RGB"},
}


@dataclass(frozen=True)
class Preprocessing:
    """How an image file becomes one model input sample (see the module docstring for the order of steps)."""

    height: int | None
    width: int | None
    channels: int            # 1 = greyscale, 3 = RGB
    layout: str              # "NCHW" or "NHWC"
    scale: float
    mean: tuple[float, ...]
    std: tuple[float, ...]
    channel_order: str = "RGB"   # "BGR": channels reversed after scaling (mean and std then in B, G, R order)
    preset: str | None = None    # the --preprocess preset these values come from

    def to_dict(self) -> dict:
        """JSON-ready form for ``summary.json``."""
        out = asdict(self)
        out["mean"] = list(self.mean)
        out["std"] = list(self.std)
        return out


def image_layout_from_shape(shape: Sequence[int | None]) -> str | None:
    """Guess NCHW or NHWC from a rank-4 model input shape; ``None`` when the shape is not image-like."""
    if len(shape) != 4:
        return None
    if shape[1] in (1, 3) and shape[3] not in (1, 3):
        return "NCHW"
    if shape[3] in (1, 3) and shape[1] not in (1, 3):
        return "NHWC"
    if shape[1] in (1, 3):
        return "NCHW"
    return "NCHW" if shape[1] is None and shape[3] is None else None


def resolve_preprocessing(input_shape: Sequence[int | None], *, size: Sequence[int] | None = None,
                          layout: str | None = None, grayscale: bool | None = None, scale: float | None = None,
                          mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                          preset: str | None = None) -> Preprocessing:
    """Fill unset preprocessing options from the model's input shape where it is static.

    ``layout`` defaults to what :func:`image_layout_from_shape` reads; ``size`` to the static H and W (``None``
    where dynamic: each image then keeps its own size); channels to the static C (``--grayscale`` forces 1);
    ``scale`` to 1/255, ``mean`` to 0 and ``std`` to 1. A ``preset`` (:data:`PRESETS`) sets scale, mean, std and
    the channel order at once.

    Raises
    ------
    ValueError
        When the model input is not an image (rank 4), or mean/std have a length other than 1 or the channel
        count, or std has a zero, or a preset is unknown, combined with ``scale``/``mean``/``std``, or needs 3
        channels where there is 1; the command line turns this into a usage error.
    """
    channel_order = "RGB"
    if preset is not None:
        if preset not in PRESETS:
            raise ValueError(f"unknown --preprocess {preset!r}; presets are: {', '.join(PRESETS)}")
        given = [name for name, value in (("--scale", scale), ("--mean", mean), ("--std", std)) if value is not None]
        if given:
            raise ValueError(f"--preprocess {preset} sets the scale, mean and std itself; drop {' and '.join(given)} "
                             f"(or drop --preprocess and give all three)")
        scale, mean, std = PRESETS[preset]["scale"], PRESETS[preset]["mean"], PRESETS[preset]["std"]
        channel_order = PRESETS[preset]["channel_order"]
    shape = tuple(input_shape)
    guessed = image_layout_from_shape(shape)
    if len(shape) != 4:
        raise ValueError(f"the model input has shape {format_shape(shape)}, not an image batch (N, C, H, W) or "
                         f"(N, H, W, C); pass inputs as .npy arrays")
    layout = (layout or guessed or "NCHW").upper()
    if layout not in ("NCHW", "NHWC"):
        raise ValueError(f"layout must be NCHW or NHWC, not {layout!r}")
    c_dim, h_dim, w_dim = (shape[1], shape[2], shape[3]) if layout == "NCHW" else (shape[3], shape[1], shape[2])
    if grayscale:
        channels = 1
    elif c_dim is not None:
        channels = int(c_dim)
    else:
        channels = 3
    if channels not in (1, 3):
        raise ValueError(f"the model input {format_shape(shape)} ({layout}) has {channels} channels; images give 1 "
                         f"(greyscale) or 3 (RGB); pass inputs as .npy arrays")
    if c_dim is not None and channels != c_dim:
        raise ValueError(f"--grayscale gives 1 channel but the model input {format_shape(shape)} ({layout}) takes "
                         f"{c_dim}")
    if preset is not None and channels != 3 and (channel_order == "BGR" or len(PRESETS[preset]["mean"]) == 3):
        why = "--grayscale" if grayscale else f"the model input {format_shape(shape)} ({layout})"
        raise ValueError(f"--preprocess {preset} is for RGB images (3 channels) but {why} gives 1 channel")
    if size is not None:
        height, width = int(size[0]), int(size[1])
        if height <= 0 or width <= 0:
            raise ValueError(f"--size must be positive, got {height} {width}")
        for name, want, dim in (("height", height, h_dim), ("width", width, w_dim)):
            if dim is not None and dim != want:
                raise ValueError(f"--size {height} {width} does not match the model input {format_shape(shape)} "
                                 f"({layout}), whose {name} is {dim}")
    else:
        height = None if h_dim is None else int(h_dim)
        width = None if w_dim is None else int(w_dim)
    mean_t = tuple(float(v) for v in (mean if mean is not None else (0.0,)))
    std_t = tuple(float(v) for v in (std if std is not None else (1.0,)))
    for name, values in (("--mean", mean_t), ("--std", std_t)):
        if len(values) not in (1, channels):
            raise ValueError(f"{name} takes 1 or {channels} values for a {channels}-channel input, got {len(values)}")
    if any(v == 0 for v in std_t):
        raise ValueError("--std values must be non-zero")
    return Preprocessing(height=height, width=width, channels=channels, layout=layout,
                         scale=float(1.0 / 255.0 if scale is None else scale), mean=mean_t, std=std_t,
                         channel_order=channel_order, preset=preset)


def _too_many_pixels(path, claim: str, limit: int) -> ImageDecodeError:
    variable = limits.IMAGE_PIXELS[0]
    return ImageDecodeError(f"cannot decode image {str(path)!r}: {claim}, over the limit of {limit:,} pixels "
                            f"(a decompression bomb?); set {variable} to raise it")


@contextlib.contextmanager
def open_image(path: str | Path | IO[bytes], name: str | None = None) -> Iterator[Image.Image]:
    """``Image.open(path)`` with its header checked: the image is identified and its size known, nothing decoded.
    ``path`` may be a binary file object (an image held in memory); messages call it ``name``.

    Pillow's own decompression-bomb guard runs with onnxlrp's pixel limit while the file is opened (and while the
    caller decodes inside the ``with`` block), so ``ONNXLRP_MAX_IMAGE_PIXELS`` can both lower and raise it.

    Raises
    ------
    ImageDecodeError
        When Pillow cannot identify the file, or its header claims more pixels than the limit.
    """
    limit = limits.image_pixel_limit()
    shown = path if name is None else name
    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = limit  # Pillow raises above twice this; between the two the size check below refuses
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            try:
                img = Image.open(path)
            except Image.DecompressionBombError as exc:
                claimed = re.search(r"\((\d+) pixels\)", str(exc))
                claim = f"its header claims {int(claimed.group(1)):,} pixels" if claimed else \
                    "its header claims too many pixels"
                raise _too_many_pixels(shown, claim, limit) from exc
            except (UnidentifiedImageError, OSError, SyntaxError, ValueError, TypeError, EOFError,
                    MemoryError) as exc:
                raise _decode_error(shown, exc) from exc
            with img:
                width, height = img.size
                if width * height > limit:
                    raise _too_many_pixels(shown, f"it is {width}x{height} = {width * height:,} pixels", limit)
                try:
                    yield img
                except Image.DecompressionBombError as exc:
                    raise _too_many_pixels(shown, "a frame claims too many pixels", limit) from exc
    finally:
        Image.MAX_IMAGE_PIXELS = previous


def _decode_error(path, exc: BaseException) -> ImageDecodeError:
    reason = str(exc).strip().split("\n")[0] or type(exc).__name__
    if isinstance(exc, UnidentifiedImageError):
        reason = "not a format Pillow can decode"
    elif isinstance(exc, MemoryError):
        reason = "out of memory while decoding it"
    return ImageDecodeError(f"cannot decode image {str(path)!r}: {reason}")


def check_image(path: str | Path) -> tuple[int, int]:
    """``(width, height)`` of an image from its header, after Pillow's ``verify()`` (no pixels decoded).

    Raises
    ------
    ImageDecodeError
        As :func:`open_image`, or when the file's structure is broken.
    """
    with open_image(path) as img:
        size = img.size
        try:
            img.verify()
        except (OSError, SyntaxError, ValueError, TypeError, EOFError, IndexError, struct.error) as exc:
            raise _decode_error(path, exc) from exc
    return size


def load_image(path: str | Path | IO[bytes], name: str | None = None) -> Image.Image:
    """Decode an image file (or binary file object, called ``name`` in messages) fully (a truncated file fails here,
    not later).

    Raises
    ------
    ImageDecodeError
        When Pillow cannot identify or fully decode the file, or it has more pixels than the limit.
    """
    with open_image(path, name) as img:
        try:
            img.load()
            return img.copy()
        except (OSError, SyntaxError, ValueError, TypeError, EOFError, IndexError, MemoryError,
                struct.error) as exc:
            raise _decode_error(path if name is None else name, exc) from exc


def to_display(img: Image.Image, channels: int) -> Image.Image:
    """Convert to greyscale ``L`` or ``RGB``; transparency is composited onto black."""
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        img = Image.alpha_composite(background, rgba)
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if arr.max() > 255 else 255.0
        img = Image.fromarray(np.round(arr / top * 255.0).astype(np.uint8), mode="L")
    return img.convert("L" if channels == 1 else "RGB")


def preprocess(img: Image.Image, prep: Preprocessing) -> tuple[np.ndarray, np.ndarray]:
    """Turn a decoded image into one model sample and the uint8 picture the model saw.

    Returns
    -------
    sample : numpy.ndarray
        float32, (C, H, W) for NCHW or (H, W, C) for NHWC.
    picture : numpy.ndarray
        uint8 (H, W, 3), the resized image, for overlays and the report.
    """
    img = to_display(img, prep.channels)
    if prep.height is not None and prep.width is not None and img.size != (prep.width, prep.height):
        img = img.resize((prep.width, prep.height), Image.BILINEAR)
    pixels = np.asarray(img, dtype=np.uint8)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    x = pixels.astype(np.float32) * np.float32(prep.scale)
    if prep.channel_order == "BGR":
        x = x[:, :, ::-1]
    x = (x - np.asarray(prep.mean, dtype=np.float32)) / np.asarray(prep.std, dtype=np.float32)
    if prep.layout == "NCHW":
        x = np.ascontiguousarray(x.transpose(2, 0, 1))
    picture = np.repeat(pixels, 3, axis=2) if pixels.shape[2] == 1 else pixels
    return x.astype(np.float32, copy=False), np.ascontiguousarray(picture)


def format_shape(shape: Sequence[int | str | None]) -> str:
    """``(N, 1, 32, 32)``-style text; unknown dims show as N (first axis) or ``?``, named ones by name."""
    parts = []
    for i, d in enumerate(shape):
        if d is None or d == "":
            parts.append("N" if i == 0 else "?")
        else:
            parts.append(str(d))
    return "(" + ", ".join(parts) + (",)" if len(parts) == 1 else ")")
