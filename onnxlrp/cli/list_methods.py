"""``onnxlrp methods``: every method (and method family) with its parameters, defaults and a one-line description;
with ``--all-names``, every iNNvestigate and signxai name with the onnxlrp method and parameters it runs."""
from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np

from .outputs import jsonable


def cmd_methods(args: argparse.Namespace) -> int:
    if getattr(args, "all_names", False):
        return _all_names(args)
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


def _all_names(args: argparse.Namespace) -> int:
    """One line per peer name: name, peer, the onnxlrp method with the parameters the name sets and the factor, or
    the reason it is refused."""
    from ..methods.names import FACTORS, all_names
    rows = all_names()
    if args.json:
        print(json.dumps(jsonable(rows), indent=2))
        return 0
    width = max(len(r["name"]) for r in rows)
    for row in rows:
        if row["refused"]:
            runs = f"refused: {row['refused']}"
        else:
            params = ", ".join(f"{k}={_fmt_default(v)}" for k, v in row["params"].items())
            runs = row["method"] + (f"({params})" if params else "")
            if row["factor"]:
                runs += f" * {FACTORS[row['factor']]}"
            if row["note"]:
                runs += f"  [{row['note']}]"
        print(f"{row['name']:<{width}}  {row['peer']:<12}  {runs}")
    accepted = sum(1 for r in rows if not r["refused"])
    print(f"\n{len(rows)} names ({accepted} accepted, {len(rows) - accepted} refused with the reason). The table with "
          f"each peer's formula: docs/method-names.md")
    return 0


def _fmt_default(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"array{value.shape}"
    return repr(value) if isinstance(value, str) else str(value)
