"""``onnxlrp explain`` on a torchvision ResNet-50 export (random weights) over 16 inputs: it works and its peak
memory is set by ``--batch-size``, not by the number of inputs."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO  # noqa: E402

sys.path.insert(0, str(REPO / "tools"))

PEAK_SCRIPT = """
import resource, sys
from onnxlrp.cli import main
rc = main(sys.argv[1:])
print("PEAK_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, flush=True)
sys.exit(rc)
"""


@pytest.fixture(scope="module")
def resnet50(tmp_path_factory):
    pytest.importorskip("torchvision")
    from make_resnet50_fixture import export_resnet50, write_images

    root = tmp_path_factory.mktemp("resnet50")
    model = export_resnet50(root / "resnet50.onnx")
    images = write_images(root / "images16", 16)
    (root / "images4").mkdir()
    for p in images[:4]:
        os.link(p, root / "images4" / p.name)
    return root, model


def _explain_peak_kb(model: Path, inputs: Path, out: Path) -> int:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    argv = ["explain", str(model), str(inputs), "--batch-size", "4", "--mean", "0.485,0.456,0.406", "--std",
            "0.229,0.224,0.225", "--out", str(out), "--quiet"]
    r = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, *argv], capture_output=True, text=True, env=env,
                       cwd=REPO, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return int(r.stdout.split("PEAK_KB")[1].split()[0])


def test_resnet50_16_inputs_memory_is_bounded_by_the_batch(resnet50, tmp_path):
    root, model = resnet50
    peak4 = _explain_peak_kb(model, root / "images4", tmp_path / "out4")
    peak16 = _explain_peak_kb(model, root / "images16", tmp_path / "out16")
    summary = json.loads((tmp_path / "out16" / "summary.json").read_text())
    assert len(summary["inputs"]) == 16
    assert summary["preprocessing"]["height"] == 224 and summary["preprocessing"]["channels"] == 3
    for entry in summary["inputs"]:
        assert (tmp_path / "out16" / entry["explanations"][0]["files"]["heatmap"]).is_file()
    print(f"\nResNet-50, epsilon_plus_flat, batch 4: peak RSS {peak4 / 1024:.0f} MiB for 4 inputs, "
          f"{peak16 / 1024:.0f} MiB for 16 inputs")
    # four times the inputs, (nearly) the same peak: memory follows the batch, not the input count
    assert peak16 < peak4 * 1.25, (peak4, peak16)
