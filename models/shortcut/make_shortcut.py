"""Train the shipped shortcut model: a small CNN on :mod:`shortcut_data`'s stripes, which learns the planted patch.

The task (``shortcut_data.py``, next to this script): 3 stripe orientations; 30 % of each class nearly invisible;
in class ``horizontal`` those weak images carry a magenta corner patch and nothing else does. The CNN reads the
weak horizontal images by the patch (a Clever Hans strategy); ``metrics.json`` proves it by the accuracy on those
images with the patch painted over (``make_images(..., plant=False)``: the same images without it).

Writes, next to this script:

- ``shortcut_cnn.onnx``  the model (opset 17, dynamic batch axis; input ``image`` float32 (N, 3, 32, 32) =
  ``pixel / 255``, output ``logits`` (N, 3))
- ``labels.txt``         the class names, one per line
- ``metrics.json``       accuracy on held-out images: all, the shortcut images, and those with the patch removed
- ``data/<label>/NNNN.png``  300 held-out images in class subfolders (the audit demo's dataset; ``NNNN`` is the
  index in ``make_images(300, DATA_SEED)``)

Needs the ``test`` extra (torch); the outputs are committed, so users never run this.
Run: ``.venv/bin/python models/shortcut/make_shortcut.py`` (about 35 s of CPU on 2 cores).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from PIL import Image
from torch import nn

HERE = Path(__file__).resolve().parent
SEED = 0
TRAIN_SEED, TEST_SEED, DATA_SEED = 0, 1, 2
N_TRAIN, N_TEST, N_DATA = 3000, 3000, 300


def load_data_module():
    """``shortcut_data.py`` next to this script, imported by path (``models/`` is not a package)."""
    spec = importlib.util.spec_from_file_location("shortcut_data", HERE / "shortcut_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class ShortcutCNN(nn.Module):
    """Three conv blocks and a two-layer dense head; only Conv, Relu, MaxPool, Flatten and Gemm in ONNX."""

    def __init__(self, n_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),   # 16 x 16
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 8 x 8
            nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 4 x 4
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(32 * 4 * 4, 32), nn.ReLU(),
                                        nn.Linear(32, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.classifier(self.features(x))


def predict(model: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).argmax(1).numpy()


def share(mask: np.ndarray) -> float:
    """The share of True in ``mask``, rounded to 4 digits (NaN when empty)."""
    return round(float(mask.mean()), 4) if mask.size else float("nan")


def export(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    """ONNX export (opset 17, dynamic batch), checked with ``onnx.checker``, written atomically."""
    tmp = path.with_suffix(".onnx.tmp")
    warnings.filterwarnings("ignore", message="You are using the legacy TorchScript-based ONNX export")
    torch.onnx.export(model, (example,), str(tmp), dynamo=False, opset_version=17,
                      input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}})
    proto = onnx.load(str(tmp))
    proto.doc_string = ("onnxlrp example: CNN trained on stripes with a planted corner-patch shortcut "
                        "(models/shortcut); input = pixel / 255, RGB, NCHW")
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(tmp))
    os.replace(tmp, path)


def write_samples(data, out: Path) -> dict:
    """``N_DATA`` held-out images as ``data/<label>/NNNN.png`` (the old folder replaced)."""
    folder = out / "data"
    if folder.exists():
        shutil.rmtree(folder)
    images, labels, shortcut = data.make_images(N_DATA, DATA_SEED)
    for name in data.CLASSES:
        (folder / name).mkdir(parents=True)
    for i, (image, label) in enumerate(zip(images, labels)):
        Image.fromarray(image, mode="RGB").save(folder / data.CLASSES[label] / f"{i:04d}.png")
    return {"count": N_DATA, "seed": DATA_SEED, "shortcut_images": int(shortcut.sum()),
            "per_class": {name: int((labels == c).sum()) for c, name in enumerate(data.CLASSES)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args()

    data = load_data_module()
    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    gen = torch.Generator().manual_seed(SEED)

    images, labels, _ = data.make_images(N_TRAIN, TRAIN_SEED)
    x_train, y_train = torch.from_numpy(data.to_model_input(images)), torch.from_numpy(labels)
    model = ShortcutCNN(len(data.CLASSES))
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs)
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(len(x_train), generator=gen)
        total = 0.0
        for start in range(0, len(perm), 64):
            b = perm[start:start + 64]
            loss = nn.functional.cross_entropy(model(x_train[b]), y_train[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(b)
        sched.step()
        print(f"epoch {epoch + 1:3d}  train loss {total / len(x_train):.4f}")
    model.eval()

    # held-out measurements: the same images with the patch, without it, and with it pasted on every image
    test = data.draw(N_TEST, TEST_SEED)
    clean = data.draw(N_TEST, TEST_SEED, plant=False).images
    y, cut, weak = test.labels, test.shortcut, test.weak
    pred = predict(model, data.to_model_input(test.images))
    pred_clean = predict(model, data.to_model_input(clean))
    pred_pasted = predict(model, data.to_model_input(data.paste_patch(clean)))
    other = y != data.SHORTCUT_CLASS
    metrics = {
        "test_accuracy": share(pred == y),
        "train_accuracy": share(predict(model, x_train.numpy()) == labels),
        "strong_accuracy": share(pred[~weak] == y[~weak]),
        "weak_accuracy_other_classes": share(pred[weak & other] == y[weak & other]),
        "shortcut_accuracy": share(pred[cut] == y[cut]),
        "shortcut_accuracy_patch_removed": share(pred_clean[cut] == y[cut]),
        "other_classes_predicted_shortcut_class_with_patch_pasted": share(
            pred_pasted[other] == data.SHORTCUT_CLASS),
        "n_test": N_TEST, "n_test_shortcut": int(cut.sum()), "test_seed": TEST_SEED,
        "n_train": N_TRAIN, "train_seed": TRAIN_SEED, "epochs": args.epochs, "seed": SEED,
        "classes": list(data.CLASSES), "shortcut_class": data.CLASSES[data.SHORTCUT_CLASS],
        "input": "float32 (N, 3, 32, 32) = uint8 RGB pixel / 255", "torch": torch.__version__,
    }

    args.out.mkdir(parents=True, exist_ok=True)
    onnx_path = args.out / "shortcut_cnn.onnx"
    export(model, x_train[:1], onnx_path)
    # the exported graph must agree with torch
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    x_check = data.to_model_input(test.images[:64])
    with torch.no_grad():
        ref = model(torch.from_numpy(x_check)).numpy()
    np.testing.assert_allclose(sess.run(None, {"image": x_check})[0], ref, rtol=1e-4, atol=1e-4)

    (args.out / "labels.txt").write_text("".join(f"{name}\n" for name in data.CLASSES))
    metrics["onnx_bytes"] = onnx_path.stat().st_size
    metrics["data"] = write_samples(data, args.out)
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(json.dumps({k: v for k, v in metrics.items() if "accuracy" in k or "pasted" in k}, indent=1))
    print(f"wrote {onnx_path} ({metrics['onnx_bytes']} bytes), labels.txt, metrics.json, {N_DATA} PNGs in data/")


if __name__ == "__main__":
    main()
