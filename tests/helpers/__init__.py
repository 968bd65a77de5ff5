"""Shared test helpers: tiny ONNX model builders, exporter and peer models, and the reference scripts that run a peer
(LXT, zennit) in a process of its own."""
from pathlib import Path

#: the repository root
REPO = Path(__file__).resolve().parents[2]
#: this folder (the reference scripts are run from here)
HELPERS = Path(__file__).resolve().parent
