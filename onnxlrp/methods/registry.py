"""The method registry: every explanation method by name, with its parameters and defaults.

``onnxlrp.methods`` fills it from the explicit list of family modules; nothing else registers methods.
"""
from __future__ import annotations

from collections.abc import Mapping

from ..errors import MethodError
from .base import Method, MethodFamily
from .params import check_params

METHODS: dict[str, Method] = {}
FAMILIES: list[MethodFamily] = []


def register_method(method: Method) -> Method:
    if method.name in METHODS:
        raise ValueError(f"method {method.name!r} is already registered")
    METHODS[method.name] = method
    return method


def register_family(family: MethodFamily) -> MethodFamily:
    FAMILIES.append(family)
    return family


def methods() -> dict[str, dict]:
    """``name -> {"params": {name: default}, "description": str, "kind": ...}``; method families appear under
    their pattern (``kind: "family"``) with example names."""
    listed = {name: {"params": dict(m.params), "description": m.description, "kind": m.kind}
              for name, m in METHODS.items()}
    for family in FAMILIES:
        listed[family.pattern] = {"params": {}, "description": family.description, "kind": "family",
                                  "examples": list(family.examples)}
    return listed


def find_method(name: str) -> Method | None:
    """A registered method, or one parsed from a family's grammar."""
    if not isinstance(name, str):
        return None
    if name in METHODS:
        return METHODS[name]
    for family in FAMILIES:
        method = family.parse(name)
        if method is not None:
            return method
    return None


def resolve_method(name: str, params: Mapping[str, object]) -> tuple[Method, dict]:
    """The method and its full parameter dict (defaults filled, every value checked against its declared type and
    range in :data:`onnxlrp.methods.params.PARAMS`), with clear errors for unknown names."""
    if not isinstance(name, str):
        raise MethodError(f"method must be a method name (a string); got {' '.join(repr(name).split())[:80]}")
    method = find_method(name)
    if method is None:
        families = "".join(f"; or a name of the form {f.pattern}" for f in FAMILIES)
        raise MethodError(f"unknown method {name!r}; methods are: {', '.join(sorted(METHODS))}{families}")
    unknown = sorted(set(params) - set(method.params))
    if unknown:
        valid = ", ".join(sorted(method.params)) or "none"
        raise MethodError(f"method {name!r} has no parameter {unknown[0]!r}; its parameters are: {valid}")
    return method, check_params(name, {**method.params, **params})
