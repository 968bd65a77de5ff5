"""Train the shipped example model: a small CNN on scikit-learn's handwritten digits, exported to ONNX.

The 8x8 digits (values 0..16) are upsampled to 32x32 greyscale images with PIL, stored as 8-bit pixels, and the
network sees ``pixel / 255``: exactly what ``onnxlrp explain`` feeds by default (``--scale 1/255``, mean 0, std 1),
so the sample PNGs written here explain correctly with no preprocessing flags.

Writes, next to this script:

- ``digits/digits_cnn.onnx``  the model (opset 17, dynamic batch axis; input ``image`` (N, 1, 32, 32) float32,
  output ``logits`` (N, 10))
- ``digits/labels.txt``       one class name per line
- ``digits/samples/*.png``    the first test image of each class
- ``digits/metrics.json``     test accuracy and how it was obtained

Needs the ``test`` extra (torch, scikit-learn); the outputs are committed, so users never run this.
Run: ``.venv/bin/python models/make_digits.py``
"""
from __future__ import annotations

import argparse
import json
import os
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

SIZE = 32
SEED = 0
HERE = Path(__file__).resolve().parent


class DigitsCNN(nn.Module):
    """Three conv blocks and a two-layer dense head; only Conv, Relu, MaxPool, Flatten and Gemm in ONNX."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),   # 16 x 16
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 8 x 8
            nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 4 x 4
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.classifier(self.features(x))


def upsample(digits: np.ndarray) -> np.ndarray:
    """Turn (N, 8, 8) digits with values 0..16 into (N, 32, 32) uint8 images (bilinear, white ink on black)."""
    out = np.empty((len(digits), SIZE, SIZE), dtype=np.uint8)
    for i, d in enumerate(digits):
        small = Image.fromarray(np.round(d * (255.0 / 16.0)).astype(np.uint8), mode="L")
        out[i] = np.asarray(small.resize((SIZE, SIZE), Image.BILINEAR))
    return out


def shift_batch(x: torch.Tensor, gen: torch.Generator, max_shift: int = 2) -> torch.Tensor:
    """Random translation by up to ``max_shift`` pixels (zero fill), a light augmentation."""
    n = x.shape[0]
    padded = nn.functional.pad(x, (max_shift,) * 4)
    dy = torch.randint(0, 2 * max_shift + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * max_shift + 1, (n,), generator=gen)
    return torch.stack([padded[i, :, dy[i]:dy[i] + SIZE, dx[i]:dx[i] + SIZE] for i in range(n)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--out", type=Path, default=HERE / "digits")
    args = parser.parse_args()

    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    gen = torch.Generator().manual_seed(SEED)

    data = load_digits()
    images = upsample(data.images)
    labels = data.target.astype(np.int64)
    idx_train, idx_test = train_test_split(np.arange(len(labels)), test_size=0.25, random_state=SEED,
                                           stratify=labels)
    x_all = torch.from_numpy(images[:, None].astype(np.float32) / 255.0)
    y_all = torch.from_numpy(labels)
    x_train, y_train = x_all[idx_train], y_all[idx_train]
    x_test, y_test = x_all[idx_test], y_all[idx_test]

    model = DigitsCNN()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs)
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(len(x_train), generator=gen)
        total = 0.0
        for start in range(0, len(perm), 64):
            b = perm[start:start + 64]
            loss = nn.functional.cross_entropy(model(shift_batch(x_train[b], gen)), y_train[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(b)
        sched.step()
        if epoch % 10 == 9 or epoch == args.epochs - 1:
            print(f"epoch {epoch + 1:3d}  train loss {total / len(x_train):.4f}")

    model.eval()
    with torch.no_grad():
        pred_test = model(x_test).argmax(1)
        pred_train = model(x_train).argmax(1)
    acc_test = float((pred_test == y_test).float().mean())
    acc_train = float((pred_train == y_train).float().mean())
    print(f"train accuracy {acc_train:.4f}  test accuracy {acc_test:.4f} ({len(y_test)} test images)")

    args.out.mkdir(parents=True, exist_ok=True)
    onnx_path = args.out / "digits_cnn.onnx"
    tmp = onnx_path.with_suffix(".onnx.tmp")
    warnings.filterwarnings("ignore", message="You are using the legacy TorchScript-based ONNX export")
    torch.onnx.export(model, (x_test[:1],), str(tmp), dynamo=False, opset_version=17,
                      input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}})
    proto = onnx.load(str(tmp))
    proto.doc_string = ("onnxlrp example: CNN trained on scikit-learn digits upsampled to 32x32; "
                        "input = pixel / 255, white ink on black")
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(tmp))
    os.replace(tmp, onnx_path)

    # The exported graph must agree with torch.
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        ref = model(x_test[:64]).numpy()
    got = sess.run(None, {"image": x_test[:64].numpy()})[0]
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)

    (args.out / "labels.txt").write_text("".join(f"{name}\n" for name in data.target_names))
    sample_dir = args.out / "samples"
    sample_dir.mkdir(exist_ok=True)
    for old in sample_dir.glob("*.png"):
        old.unlink()
    samples = []
    for digit in range(10):
        i = int(idx_test[np.flatnonzero(labels[idx_test] == digit)[0]])
        name = f"digit{digit}_{i:04d}.png"
        Image.fromarray(images[i], mode="L").save(sample_dir / name)
        samples.append({"file": f"samples/{name}", "dataset_index": i, "label": digit})

    metrics = {
        "test_accuracy": round(acc_test, 4), "train_accuracy": round(acc_train, 4),
        "n_train": len(idx_train), "n_test": len(idx_test), "epochs": args.epochs, "seed": SEED,
        "split": "sklearn train_test_split(test_size=0.25, stratify=labels, random_state=0)",
        "input": "float32 (N, 1, 32, 32) = uint8 pixel / 255", "torch": torch.__version__,
        "onnx_bytes": onnx_path.stat().st_size, "samples": samples,
    }
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"wrote {onnx_path} ({metrics['onnx_bytes']} bytes), labels.txt, {len(samples)} samples, metrics.json")


if __name__ == "__main__":
    main()
