"""Array backends: numpy on the CPU, CuPy on a GPU (imported lazily)."""
from __future__ import annotations

from types import ModuleType

import numpy as np

from ..errors import BackendUnavailableError


def get_xp(device: str) -> ModuleType:
    """``numpy`` for ``'cpu'``, ``cupy`` for ``'cuda'`` (raising a clear error when CuPy is missing)."""
    if device == "cpu":
        return np
    if device in ("cuda", "gpu"):
        try:
            import cupy  # noqa: F401
        except Exception as exc:
            raise BackendUnavailableError(
                f"device='cuda' needs CuPy, which cannot be imported ({exc}); install it with "
                "`pip install onnxlrp[gpu]`") from exc
        return cupy
    raise BackendUnavailableError(f"unknown device {device!r}; use 'cpu' or 'cuda'")


def to_numpy(a) -> np.ndarray:
    """Host copy of a numpy or CuPy array."""
    return a.get() if hasattr(a, "get") else np.asarray(a)
