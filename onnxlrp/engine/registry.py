"""The kernel registry keyed by ``(domain, op_type)`` and opset version.

Resolution follows the ONNX reference evaluator: the kernel registered with the greatest ``since`` that is not newer
than the node's schema version. The built-in kernels (the repository's ``kernels/`` folder, installed as
``onnxlrp.kernels``) register themselves when :func:`load_builtin_kernels` imports them.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys

from .graph import Node
from .kernel import Kernel

_REGISTRY: dict[tuple[str, str], dict[int, Kernel]] = {}


def register_kernel(op_type: str, *, since: int = 1, domain: str = "", override: bool = False):
    """Class decorator: register an instance of the kernel class for ``op_type`` from opset ``since`` on."""

    def decorate(cls):
        versions = _REGISTRY.setdefault((domain, op_type), {})
        if since in versions and not override:
            raise ValueError(f"a kernel for {op_type!r} (domain {domain!r}, since {since}) is already registered")
        kernel = cls()
        kernel.op_type = op_type
        kernel.domain = domain
        versions[since] = kernel
        return cls

    return decorate


def resolve(node: Node) -> Kernel | None:
    """The kernel for ``node``: greatest registered ``since`` not newer than the node's schema version."""
    load_builtin_kernels()
    versions = _REGISTRY.get((node.domain, node.op_type))
    if not versions:
        return None
    eligible = [v for v in versions if v <= node.since]
    return versions[max(eligible)] if eligible else None


def registered() -> dict[str, list[int]]:
    """``op_type -> sorted since-versions`` of every registered kernel (domain-qualified when not ai.onnx)."""
    load_builtin_kernels()
    return {(f"{d}::{op}" if d else op): sorted(v) for (d, op), v in sorted(_REGISTRY.items())}


def kernels_by_op() -> dict[tuple[str, str], dict[int, Kernel]]:
    """``(domain, op_type) -> {since: kernel}`` of every registered kernel, sorted (a copy: registering goes
    through :func:`register_kernel`)."""
    load_builtin_kernels()
    return {key: dict(sorted(versions.items())) for key, versions in sorted(_REGISTRY.items())}


def data_inputs(node: Node, varying: set[str]):
    """Preflight hook for :func:`onnxlrp.engine.graph.relevance_path`."""
    kernel = resolve(node)
    if kernel is None:
        if node.op_type == "If":
            return ("its condition depends on the explained input's values, so no branch can be inlined (an If "
                    "whose condition is a constant or a test on a static input shape is inlined)")
        if node.op_type in ("Loop", "Scan"):
            return "control flow (Loop, Scan) on the relevance path is not supported; export the loop unrolled"
        versions = _REGISTRY.get((node.domain, node.op_type))
        if versions:
            return f"kernels exist only for opset versions {sorted(versions)}"
        return "no kernel registered"
    return kernel.data_inputs(node, varying)


def load_builtin_kernels():
    """Import ``onnxlrp.kernels`` (registering every built-in kernel; a no-op once imported); from a source
    checkout without an install, load the repository's top-level ``kernels/`` folder under that name."""
    if "onnxlrp.kernels" in sys.modules:
        return sys.modules["onnxlrp.kernels"]
    try:
        return importlib.import_module("onnxlrp.kernels")
    except ModuleNotFoundError as exc:
        if exc.name != "onnxlrp.kernels":
            raise
    folder = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "kernels")
    spec = importlib.util.spec_from_file_location("onnxlrp.kernels", os.path.join(folder, "__init__.py"),
                                                  submodule_search_locations=[folder])
    module = importlib.util.module_from_spec(spec)
    sys.modules["onnxlrp.kernels"] = module
    spec.loader.exec_module(module)
    return module
