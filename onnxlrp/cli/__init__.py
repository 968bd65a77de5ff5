"""The ``onnxlrp`` command line; :func:`main` is the entry point (``onnxlrp`` script and ``python -m onnxlrp``)."""
from __future__ import annotations

from .main import main

__all__ = ["main"]
