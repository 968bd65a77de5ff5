"""Export a torchvision ResNet-50 with random weights to ONNX, plus N random RGB test images.

Used by ``tests/cli/test_cli_resnet50.py`` (memory bound of ``onnxlrp explain`` over many inputs) and by hand::

    .venv/bin/python tools/make_resnet50_fixture.py /tmp/r50 --images 16
    /usr/bin/time -v .venv/bin/onnxlrp explain /tmp/r50/resnet50.onnx /tmp/r50/images --batch-size 4 -o /tmp/r50/out

Needs the ``test`` extra (torch, torchvision). Weights are seeded, so the file is the same on every run.
"""
from __future__ import annotations

import argparse
import os
import warnings
from pathlib import Path

import numpy as np


def export_resnet50(path: Path, size: int = 224, seed: int = 0) -> Path:
    """Write ``resnet50.onnx`` (opset 17, dynamic batch axis, input ``image`` (N, 3, size, size)) to ``path``."""
    import torch
    import torchvision

    torch.manual_seed(seed)
    model = torchvision.models.resnet50(weights=None).eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, 3, size, size),), str(tmp), dynamo=False, opset_version=17,
                          input_names=["image"], output_names=["logits"],
                          dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}})
    os.replace(tmp, path)
    return path


def write_images(folder: Path, count: int, size: int = 224, seed: int = 0) -> list[Path]:
    """``count`` random-blob RGB PNGs of ``size`` x ``size``."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(count):
        img = rng.integers(0, 60, (size, size, 3)).astype(np.float64)
        for _ in range(3):
            cy, cx, r = rng.integers(30, size - 30), rng.integers(30, size - 30), rng.integers(15, 50)
            img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] += rng.integers(60, 195, 3)
        p = folder / f"img{i:03d}.png"
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(p)
        paths.append(p)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args()
    model = export_resnet50(args.out / "resnet50.onnx", args.size)
    write_images(args.out / "images", args.images, args.size)
    print(f"wrote {model} ({model.stat().st_size / 1e6:.1f} MB) and {args.images} images in {args.out / 'images'}")


if __name__ == "__main__":
    main()
