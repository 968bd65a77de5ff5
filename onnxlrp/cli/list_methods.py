"""``onnxlrp methods``: every method (and method family) with its parameters, defaults and a one-line description."""
from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np

from .outputs import jsonable


def cmd_methods(args: argparse.Namespace) -> int:
    from ..methods import methods
    registry = methods()
    if args.json:
        print(json.dumps(jsonable(registry), indent=2))
        return 0
    width = max(len(n) for n in registry)
    for name in sorted(registry, key=lambda n: (registry[n].get("kind", ""), n)):
        info = registry[name]
        params = ", ".join(f"{k}={_fmt_default(v)}" for k, v in info["params"].items()) or "(no parameters)"
        kind = info.get("kind")
        print(f"{name:<{width}}  {('[' + kind + '] ') if kind else ''}{info['description']}")
        print(f"{'':<{width}}    {params}")
    print(f"\n{len(registry)} methods. Set parameters with: onnxlrp explain MODEL INPUT --method NAME "
          f"--set key=value")
    return 0


def _fmt_default(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"array{value.shape}"
    return repr(value) if isinstance(value, str) else str(value)
