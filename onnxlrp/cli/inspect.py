"""``onnxlrp inspect``: a model's inputs and outputs, op histogram with kernel support, which methods can explain
it, the relevance path and the rule each node gets; for a model the engine refuses, what the ONNX file alone shows
and which ops lack a kernel."""
from __future__ import annotations

import argparse
import json
import os
from typing import Any

from ..engine import registry as engine_registry
from ..errors import NameSelectionError, UnsupportedGraphError, UnsupportedOpError
from ..inputs.images import format_shape
from .args import ChosenMethod, first_line, one_method
from .inputs import open_explainer
from .outputs import jsonable


def cmd_inspect(args: argparse.Namespace) -> int:
    chosen = one_method(args, "inspect")
    method, params = chosen.name, chosen.params
    roles = token_inputs(args)
    try:
        ex = open_explainer(args)
    except (UnsupportedOpError, UnsupportedGraphError) as exc:
        _inspect_unexplainable(args, exc)
        raise
    info = ex.model_info()
    path = ex.path_nodes()
    rules = rule_table(ex.session, chosen)
    registered = engine_registry.registered()
    on_path = {op for _, op in path}
    canonical_ops = {n.op_type for n in ex.session.canonical.nodes}
    ops = [{"op_type": op, "count": n,
            "kernel": _kernel_status(op, op in on_path, registered, rewritten=op not in canonical_ops)}
           for op, n in sorted(info["op_histogram"].items(), key=lambda kv: (-kv[1], kv[0]))]
    explained_output = ex.output_name
    usable, unusable = method_coverage(ex.session)
    text = None
    if roles is not None and ex.lookup is not None:
        text = text_summary(ex, roles)
        info["inputs"] = [i for i in info["inputs"] if i[0] != ex.lookup.tensor]  # the cut's input: see "text"
        usable, unusable = text_coverage(ex.session, usable, unusable)
    if args.json:
        doc = {"model": str(args.model), "info": info, "explained_input": ex.input_name, "text": text,
               "explained_output": explained_output, "ops": ops,
               "coverage": {"explainable": True, "methods": usable, "not_applicable": dict(unusable)},
               "relevance_path": [{"node": n, "op_type": op} for n, op in path], "method": method,
               "params": params, "rules": [{"node": n, "op_type": op, "rule": r} for n, op, r in rules]}
        print(json.dumps(jsonable(doc), indent=2))
        return 0
    _print_header(args.model, info, ex.input_name, explained_output)
    if text is not None:
        _print_text(text)
    _print_coverage(usable, unusable)
    if args.output_name and args.output_name != explained_output:
        print(f"{'':<9} (--output-name {args.output_name!r} ends in a Softmax; its input, the logits, is explained)")
    _print_ops(ops)
    print(f"\nrelevance path: {len(path)} nodes from {ex.input_name!r} to {explained_output!r}; rules under "
          f"{method}{' (' + ', '.join(f'{k}={v!r}' for k, v in params.items()) + ')' if params else ''}")
    nw = max([len(n) for n, _, _ in rules] + [4])
    ow = max([len(o) for _, o, _ in rules] + [2])
    for name, op, rule in rules:
        print(f"  {name:<{nw}}  {op:<{ow}}  {rule}")
    return 0


def rule_table(session, chosen: ChosenMethod) -> list[tuple[str, str, str]]:
    """``(node name, op type, rule)`` for every node on the relevance path under the chosen method (the gradient
    where the method assigns no rule), as :meth:`onnxlrp.explainer.Explainer.rules_for` gives it."""
    assigned = chosen.method.rules(session, chosen.full)
    return [(n.name, n.op_type, assigned[n.name].describe() if n.name in assigned else "Gradient()")
            for n in session.path.nodes]


def method_coverage(session) -> tuple[list[str], list[tuple[str, str]]]:
    """Which registered methods can explain this model: ``(usable names, [(name, reason), ...])``.

    Each method's :meth:`~onnxlrp.methods.base.Method.check` decides, without running the model (an LRP rule that
    cannot handle a node's category, RAP without a dense logit layer, a CAM method without a spatial feature map,
    ...); parameters without a default (``contrast=``) do not count against a method. Method families are checked
    through their base methods.
    """
    from ..methods import METHODS
    usable: list[str] = []
    unusable: list[tuple[str, str]] = []
    for name, method in METHODS.items():
        check = method.check(session)
        if check.ok:
            usable.append(name)
        else:
            unusable.append((name, check.reason))
    return usable, unusable


def token_inputs(args: argparse.Namespace) -> dict[str, str] | None:
    """For a text model (integer inputs only, or ``--input-name`` naming an integer input): the role of each
    integer input (:func:`onnxlrp.text.token_roles`), and ``args.input_name`` set to the token ids when it was not
    given; ``None`` for any other model."""
    import onnx

    from ..engine.lookup import INT_TYPES
    from ..errors import ModelLoadError
    from ..limits import check_file
    from ..text import token_roles
    check_file(args.model, "model", ModelLoadError)  # a FIFO, device or oversized file: refused before reading
    try:
        proto = onnx.load(args.model, load_external_data=False)
    except Exception:  # noqa: BLE001 - the engine reports an unreadable model with its own error
        return None
    inits = {t.name for t in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in inits]
    ints = [i for i in inputs if i.type.tensor_type.elem_type in INT_TYPES]
    if args.input_name is not None:
        if args.input_name not in {i.name for i in ints}:
            return None
        try:
            roles = token_roles(inputs)
        except NameSelectionError:
            roles = {}
        if roles.get("ids") != args.input_name:
            roles = {"ids": args.input_name, **{k: v for k, v in roles.items() if v != args.input_name and k != "ids"}}
        return roles
    if not ints or len(ints) != len(inputs):
        return None
    try:
        roles = token_roles(inputs)
    except NameSelectionError:  # several unrecognised integer inputs: the engine asks for --input-name
        return None
    args.input_name = roles["ids"]
    return roles


def text_summary(ex, roles: dict[str, str]) -> dict:
    """The token ids input, the embedding lookup where explanations start, the other integer inputs (fed
    unchanged) and the transformer blocks a per-layer view reads."""
    from ..text.layers import block_outputs
    lookup = ex.lookup
    return {"ids_input": lookup.ids_input, "lookup": lookup.tensor,
            "other_inputs": {role: name for role, name in roles.items() if role != "ids"},
            "blocks": [{"label": label, "tensor": tensor} for label, tensor in block_outputs(lookup.cut,
                                                                                             lookup.tensor)]}


def text_coverage(session, usable: list[str], unusable: list[tuple[str, str]]
                  ) -> tuple[list[str], list[tuple[str, str]]]:
    """Methods for a text model: as :func:`method_coverage`, less those that put the box rule (ZBox, which bounds
    the input to a pixel range [low, high]) on a node reading the token embedding: embeddings have no such range."""
    from ..errors import OnnxLrpError
    from ..methods import METHODS
    keep, dropped = [], []
    for name in usable:
        method = METHODS[name]
        try:
            rules = method.rules(session, method.params)
        except (OnnxLrpError, AttributeError, TypeError):
            rules = {}
        if any(rule.describe().startswith("ZBox") for rule in rules.values()):
            dropped.append((name, "its first-layer box rule bounds the input to a pixel range (low, high); token "
                                  "embeddings have none"))
        else:
            keep.append(name)
    return keep, [*unusable, *dropped]


def _print_text(text: dict) -> None:
    others = ", ".join(f"{name} ({role})" for role, name in text["other_inputs"].items())
    print(f"\ntext      token ids {text['ids_input']!r}: integers, so relevance starts at the embedding lookup "
          f"{text['lookup']!r} and is summed over its last axis per token")
    if others:
        print(f"{'':<9} fed unchanged (no relevance): {others}")
    blocks = text["blocks"]
    print(f"{'':<9} {len(blocks)} transformer block{'s' if len(blocks) != 1 else ''} for --per-layer"
          + (f": {blocks[0]['tensor']!r} ... {blocks[-1]['tensor']!r}" if blocks else ""))


def _print_coverage(usable: list[str], unusable: list[tuple[str, str]]) -> None:
    total = len(usable) + len(unusable)
    print(f"\ncoverage  explainable: yes, with {len(usable)} of {total} methods: {', '.join(usable)}")
    for name, reason in unusable:
        print(f"{'':<9} not with {name}: {reason}")
    print(f"{'':<9} (method families, see 'onnxlrp methods', apply where their base method does)")


def _kernel_status(op: str, on_path: bool, registered: dict, rewritten: bool = False) -> str:
    if rewritten:
        return "rewritten before propagation (see canonizers)"
    if not on_path:
        return "not needed (off the relevance path)"
    return "yes" if op in registered else "MISSING"


def _inspect_unexplainable(args: argparse.Namespace, exc: UnsupportedOpError | UnsupportedGraphError) -> None:
    """Describe a model the engine refuses (an op without a kernel, an output that does not depend on the input)
    from the ONNX file alone, then the error."""
    import onnx
    try:
        proto = onnx.load(args.model, load_external_data=False)
    except Exception:  # noqa: BLE001 - the engine loaded it; if we cannot, just show the error
        return
    inits = {t.name for t in proto.graph.initializer}
    info = {"producer": f"{proto.producer_name} {proto.producer_version}".strip(),
            "opset": {o.domain: o.version for o in proto.opset_import},
            "inputs": [(v.name, _value_shape(v), _value_dtype(v)) for v in proto.graph.input if v.name not in inits],
            "outputs": [(v.name, _value_shape(v), _value_dtype(v)) for v in proto.graph.output]}
    hist: dict[str, int] = {}
    for node in proto.graph.node:
        key = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}"
        hist[key] = hist.get(key, 0) + 1
    registered = engine_registry.registered()
    ops = [{"op_type": op, "count": n, "kernel": "yes" if op in registered else "no kernel"}
           for op, n in sorted(hist.items(), key=lambda kv: (-kv[1], kv[0]))]
    unsupported = getattr(exc, "unsupported", [])
    reason = (f"on the relevance path without a kernel: {_missing_kernels(exc)}" if unsupported
              else first_line(exc))
    if args.json:
        print(json.dumps(jsonable({"model": str(args.model), "info": info, "ops": ops,
                                    "coverage": {"explainable": False, "methods": [], "reason": reason,
                                                 "missing": _missing_kernels(exc) if unsupported else ""},
                                    "error": str(exc)}), indent=2))
        return
    _print_header(args.model, info, args.input_name, args.output_name)
    print(f"\ncoverage  explainable: no, with no method: {reason}")
    for node in sorted((n for n, _ in unsupported), key=lambda n: n.index):
        if node.op_type == "ZipMap" and node.inputs:  # scikit-learn's: probabilities as maps; explain the tensor
            print(f"{'':<9} hint: ZipMap turns a tensor into a list of maps; explain the tensor before it with "
                  f"--output-name {node.inputs[0]}")
    _print_ops(ops, note="kernel: whether onnxlrp has one for the op type")
    print(f"\nsupported op types: {', '.join(sorted(op for op in registered if not op.startswith('onnxlrp::')))}")
    if unsupported:
        print("(the nodes without a kernel are listed on stderr)")


def _missing_kernels(exc: UnsupportedOpError) -> str:
    """``Cos (1 node, e.g. 'my_cos'), Erf (2 nodes, e.g. 'erf_1')``: the op types of ``exc.unsupported``."""
    by_op: dict[str, list] = {}
    for node, _ in exc.unsupported:
        by_op.setdefault(node.op_type, []).append(node)
    if not by_op:
        return first_line(exc)
    return ", ".join(f"{op} ({len(nodes)} node{'s' if len(nodes) != 1 else ''}, e.g. {nodes[0].name!r})"
                     for op, nodes in sorted(by_op.items()))


def _value_shape(v) -> tuple:
    dims = v.type.tensor_type.shape.dim
    return tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in dims)


def _value_dtype(v) -> str:
    import onnx
    try:
        return str(onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type))
    except Exception:  # noqa: BLE001
        return "?"


def _opset_text(opset: Any) -> str:
    if isinstance(opset, dict):
        return ", ".join(f"{d or 'ai.onnx'} {v}" for d, v in sorted(opset.items()))
    return str(opset)


def _print_header(model: str, info: dict, input_name: str | None, output_name: str | None) -> None:
    size = os.path.getsize(model) if os.path.exists(model) else 0
    print(f"model     {model}  ({size / 1024:.0f} KiB, producer {info.get('producer') or '?'}, "
          f"opset {_opset_text(info.get('opset'))})")
    outputs = [name for name, _, _ in info["outputs"]]
    for title, key, chosen in (("inputs", "inputs", input_name), ("outputs", "outputs", output_name)):
        for i, (name, shape, dtype) in enumerate(info[key]):
            mark = "   <- explained" if name == chosen else ""
            print(f"{title if i == 0 else '':<9} {name}  {dtype}  {format_shape(tuple(shape or ()))}{mark}")
    if output_name is not None and output_name not in outputs:
        print(f"{'':<9} explained output: {output_name!r} (the logits before the final Softmax)")


def _print_ops(ops: list[dict], note: str = "kernel: yes = on the relevance path and supported") -> None:
    print(f"\nops ({note})")
    width = max([len(o["op_type"]) for o in ops] + [2])
    for o in ops:
        print(f"  {o['op_type']:<{width}}  {o['count']:>5}  kernel: {o['kernel']}")
