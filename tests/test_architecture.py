"""The package's layers, checked from the source: import arrows, cycles, private members, module size.

Layers (README, "Layout"): ``engine`` ← ``lrp`` ← ``methods`` ← ``explainer``/``text`` ← ``cli``; ``kernels`` is
written against the engine's kernel protocol only; ``views`` draws arrays and never touches the engine.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "onnxlrp"
KERNELS = ROOT / "kernels"
MAX_LINES = 500
#: NamedTuple API: underscored by design, public
NAMEDTUPLE_API = {"_replace", "_asdict", "_fields", "_make"}


def _modules() -> dict[str, Path]:
    """``dotted module name -> file`` for the package and the kernels (installed as ``onnxlrp.kernels``)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    for path in sorted(KERNELS.glob("*.py")):
        stem = path.stem
        found["onnxlrp.kernels" if stem == "__init__" else f"onnxlrp.kernels.{stem}"] = path
    return found


MODULES = _modules()


def _resolve(module: str, path: Path, node: ast.ImportFrom | ast.Import) -> list[str]:
    """The package modules an import statement (anywhere in the file, function level included) loads."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.startswith("onnxlrp")]
    if node.level:
        package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        for _ in range(node.level - 1):
            package = package.rsplit(".", 1)[0]
        base = f"{package}.{node.module}" if node.module else package
    else:
        base = node.module or ""
    if not base.startswith("onnxlrp"):
        return []
    targets = []
    for alias in node.names:
        candidate = f"{base}.{alias.name}"
        targets.append(candidate if candidate in MODULES else base)
    return targets


def import_graph() -> nx.DiGraph:
    graph = nx.DiGraph()
    for module, path in MODULES.items():
        graph.add_node(module)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target in _resolve(module, path, node):
                    if target != module and target in MODULES:
                        graph.add_edge(module, target)
    return graph


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "onnxlrp"


def test_no_import_cycles():
    """No module imports itself through others (package ``__init__`` re-exports excluded: importing a submodule is
    not importing its parent's re-exports)."""
    graph = import_graph()
    inits = {m for m, p in MODULES.items() if p.name == "__init__.py"}
    graph.remove_edges_from([(a, b) for a, b in list(graph.edges) if a in inits and b.startswith(a + ".")])
    cycles = list(nx.simple_cycles(graph))
    assert cycles == [], f"import cycles: {cycles[:5]}"


# layer -> the layers it must never import
FORBIDDEN = {
    "engine": {"lrp", "methods", "views", "cli", "text", "explainer", "inputs", "kernels", "evaluate"},
    "lrp": {"methods", "views", "cli", "text", "explainer", "inputs", "kernels", "evaluate"},
    "kernels": {"lrp", "methods", "views", "cli", "text", "explainer", "inputs", "evaluate"},
    "methods": {"views", "cli", "text", "explainer", "evaluate"},
    "views": {"engine", "lrp", "methods", "cli", "explainer", "kernels", "evaluate"},
    "inputs": {"engine", "lrp", "methods", "views", "cli", "explainer", "kernels", "evaluate"},
    # the measures run the model (engine, explainer) and return arrays: no screen, no command line
    "evaluate": {"cli", "views"},
    # the audit explains datasets and returns tables and arrays; the command line draws them
    "audit": {"cli", "views"},
}
#: within the engine, what lrp and kernels may import: the protocol (and the registry for kernels)
ALLOWED_ENGINE = {"lrp": {"onnxlrp.engine.kernel"},
                  "kernels": {"onnxlrp.engine.kernel", "onnxlrp.engine.registry"}}


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layers_point_one_way(layer):
    graph = import_graph()
    bad = [(a, b) for a, b in graph.edges if _layer(a) == layer and _layer(b) in FORBIDDEN[layer]]
    if layer in ALLOWED_ENGINE:
        bad += [(a, b) for a, b in graph.edges if _layer(a) == layer and _layer(b) == "engine"
                and b not in ALLOWED_ENGINE[layer]]
    assert bad == []


def _private_accesses(path: Path) -> list[str]:
    """``obj._name`` where ``obj`` is not ``self``/``cls`` (a NamedTuple's ``_replace`` is public API)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__") \
                and node.attr not in NAMEDTUPLE_API \
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}: .{node.attr}")
    return found


def test_nothing_outside_the_engine_touches_private_members():
    """Methods, rules, kernels, views and the CLI use public names only (the engine's Session, a kernel's
    protocol, the Explainer's attributes); only the engine may reach into its own objects."""
    offenders = [hit for module, path in MODULES.items() if _layer(module) != "engine"
                 for hit in _private_accesses(path)]
    assert offenders == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_modules_stay_small(module):
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_LINES, f"{module} has {lines} lines"


def test_help_does_not_import_onnxruntime():
    code = ("import sys\nfrom onnxlrp.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('onnxruntime' in sys.modules, 'numpy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False False"


def test_every_kernel_module_is_imported_by_the_kernels_package():
    imported = {b for a, b in import_graph().edges if a == "onnxlrp.kernels"}
    modules = {m for m in MODULES if m.startswith("onnxlrp.kernels.") and not m.rsplit(".", 1)[1].startswith("_")}
    assert modules <= imported
