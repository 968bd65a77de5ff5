"""Decomposed operators fused so that rules see the true op (the transformer rules need this; intermediate tensors
of a pattern must have no consumer outside it).

* ``fuse_norms``: ``ReduceMean → Sub → Pow(2) → ReduceMean → Add(ε) → Sqrt → Div`` (or ``Mul`` by a
  ``Reciprocal``) becomes ``onnxlrp::LayerNorm``; without the centring (``x · Reciprocal(Sqrt(ReduceMean(x²) + ε))``,
  HF ``LlamaRMSNorm``) ``onnxlrp::RMSNorm`` (the affine ``Mul``/``Add`` after either stay separate nodes).
* ``fuse_erf_gelu``: ``Div(x, c) → Erf → Add/Mul by constants → Mul(x or k·x, ·)`` becomes ``onnxlrp::ErfGelu``.
* ``fuse_tanh_gelu``: ``s·x·(1 + tanh(a·x + b·x³))`` in any arrangement of its arithmetic becomes
  ``onnxlrp::TanhGelu`` (matched by structure, then checked by evaluating the subgraph on test points).
* ``fuse_silu``: ``Mul(x, Sigmoid(x))`` or ``Mul(x, Sigmoid(α·x))`` (QuickGELU) becomes ``onnxlrp::SiLU``.
* ``fuse_softmax``: ``[Sub(x, ReduceMax x) →] Exp → ReduceSum → Div`` over one axis becomes ``Softmax``.

Rewritten nodes keep the output tensor of the last original node, so the forward runner's values still apply.
Each ``fuse_*`` takes and returns the node list (``constants`` and ``log`` are filled in place).
"""
from __future__ import annotations

import numpy as np

from .graph import Node


class _Pattern:
    """Producer/consumer look-ups over the current node list, for matching small subgraphs."""

    def __init__(self, graph, nodes, constants, protected):
        self.graph, self.constants, self.protected = graph, constants, protected
        self.producer = {t: n for n in nodes for t in n.outputs if t}
        self.consumers: dict[str, list[Node]] = {}
        for n in nodes:
            for t in n.inputs:
                if t:
                    self.consumers.setdefault(t, []).append(n)

    def op(self, tensor, *op_types):
        """The producer of ``tensor`` if it is one of ``op_types`` (default domain), else ``None``."""
        n = self.producer.get(tensor)
        return n if n is not None and n.domain == "" and n.op_type in op_types else None

    def const(self, name):
        if not name:
            return None
        return self.constants.get(name, self.graph.constants.get(name))

    def scalar(self, name):
        value = self.const(name)
        if value is None or value.size != 1 or value.dtype.kind != "f":
            return None
        v = value.reshape(-1)[0]
        return float(str(v)) if value.dtype == np.float32 else float(v)  # float32 literal as written (1e-05)

    def private(self, tensor, users):
        """``tensor`` is read only by ``users`` (node names) and is not a protected output."""
        if tensor in self.protected or tensor in {o.name for o in self.graph.output_infos}:
            return False
        return all(c.name in users for c in self.consumers.get(tensor, []))

    def other(self, node, tensor):
        """The operand of a binary ``node`` that is not ``tensor`` (``None`` if ``tensor`` is not an operand)."""
        a, b = node.inputs[0], node.inputs[1]
        return b if a == tensor else (a if b == tensor else None)

    def axes(self, node):
        """Reduction axes of a Reduce* node (attribute or input), or ``None`` when not static."""
        if node.attrs.get("keepdims", 1) != 1:
            return None
        axes = node.attrs.get("axes")
        if len(node.inputs) > 1 and node.inputs[1]:
            value = self.const(node.inputs[1])
            if value is None:
                return None
            axes = [int(a) for a in value.reshape(-1)]
        return tuple(sorted(int(a) for a in axes)) if axes else None


def _rewrite(nodes, drop: set[str], new: Node):
    out = [n for n in nodes if n.name not in drop and n.name != new.name] + [new]
    return sorted(out, key=lambda m: m.index)


def _fuse_until_done(graph, nodes, constants, protected, log, rewrite):
    """Apply ``rewrite(pattern, node) -> (new node, dropped node names, log line) | None`` until nothing matches
    (the pattern index is rebuilt after each rewrite, since a rewrite changes producers and consumers)."""
    while True:
        pat = _Pattern(graph, nodes, constants, protected)
        for node in nodes:
            found = rewrite(pat, node)
            if found is not None:
                new, drop, line = found
                nodes = _rewrite(nodes, drop, new)
                log.append(line)
                break
        else:
            return nodes


def fuse_norms(graph, nodes, constants, protected, log):
    def rewrite(pat, div):
        match = _match_norm(pat, div)
        if match is None:
            return None
        op_type, x, axes, eps, drop = match
        new = Node(name=div.name, op_type=op_type, domain="onnxlrp", since=1, inputs=(x,),
                   outputs=div.outputs, attrs={"axes": list(axes), "epsilon": eps}, index=div.index)
        return new, drop, f"fused a decomposed {op_type} ending at {div.op_type} {div.name!r}"

    return _fuse_until_done(graph, nodes, constants, protected, log, rewrite)


def _match_norm(pat, div):
    """``d / Sqrt(ReduceMean(d²) + ε)`` (or ``d · Reciprocal(Sqrt(…))``, ``d · (1 / Sqrt(…))``): ``LayerNorm``
    when ``d = x − ReduceMean(x)`` over the same axes, else ``RMSNorm`` of ``x = d``."""
    if div.domain != "" or div.op_type not in ("Div", "Mul"):
        return None
    d, s = div.inputs[0], div.inputs[1]
    drop = []
    if div.op_type == "Mul":  # d · Reciprocal(sqrt(var + eps)) or d · (1 / sqrt(var + eps)), either order
        for d_, r_ in ((div.inputs[0], div.inputs[1]), (div.inputs[1], div.inputs[0])):
            rec = pat.op(r_, "Reciprocal", "Div")
            if rec is not None and (rec.op_type == "Reciprocal" or pat.scalar(rec.inputs[0]) == 1.0):
                d, s, drop = d_, rec.inputs[-1], [rec]
                break
        else:
            return None
    sqrt = pat.op(s, "Sqrt")
    add = pat.op(sqrt.inputs[0], "Add") if sqrt is not None else None
    if add is None:
        return None
    var_t = next((t for t in add.inputs if pat.scalar(t) is None), None)
    eps = pat.scalar(pat.other(add, var_t)) if var_t is not None else None
    var = pat.op(var_t, "ReduceMean") if var_t is not None else None
    if var is None or eps is None:
        return None
    sq = pat.op(var.inputs[0], "Pow", "Mul")
    if sq is None:
        return None
    if sq.op_type == "Pow":
        if sq.inputs[0] != d or pat.scalar(sq.inputs[1]) != 2.0:
            return None
    elif sq.inputs[0] != d or sq.inputs[1] != d:
        return None
    axes = pat.axes(var)
    if axes is None:
        return None
    op_type, x, drop = "RMSNorm", d, [sq, var, add, sqrt] + drop
    sub = pat.op(d, "Sub")
    if sub is not None:
        mean = pat.op(sub.inputs[1], "ReduceMean")
        if mean is not None and mean.inputs[0] == sub.inputs[0] and pat.axes(mean) == axes:
            op_type, x, drop = "LayerNorm", sub.inputs[0], [mean, sub] + drop
    inner = {n.name for n in drop} | {div.name}
    if not all(pat.private(t, inner) for n in drop for t in n.outputs if t):
        return None
    return op_type, x, axes, eps, {n.name for n in drop}


def fuse_erf_gelu(graph, nodes, constants, protected, log):
    def rewrite(pat, erf):
        match = _match_erf_gelu(pat, erf) if erf.op_type == "Erf" and erf.domain == "" else None
        if match is None:
            return None
        join, x, attrs, drop = match
        new = Node(name=join.name, op_type="ErfGelu", domain="onnxlrp", since=1, inputs=(x,),
                   outputs=join.outputs, attrs=attrs, index=join.index)
        return new, drop, f"fused an Erf-based GELU ending at Mul {join.name!r}"

    return _fuse_until_done(graph, nodes, constants, protected, log, rewrite)


def _match_erf_gelu(pat, erf):
    scaled = pat.op(erf.inputs[0], "Div", "Mul")
    if scaled is None:
        return None
    x = next((t for t in scaled.inputs if pat.scalar(t) is None), None)
    c = pat.scalar(pat.other(scaled, x)) if x is not None else None
    if c is None or (scaled.op_type == "Div" and scaled.inputs[1] != pat.other(scaled, x)) or c == 0:
        return None
    divisor = c if scaled.op_type == "Div" else 1.0 / c
    drop, mul, add, tensor = [scaled, erf], 1.0, 0.0, erf.outputs[0]
    while True:  # constant affine steps on the erf branch: Add / Mul by scalars
        users = pat.consumers.get(tensor, [])
        if len(users) != 1 or users[0].domain != "" or users[0].op_type not in ("Add", "Mul"):
            return None
        step = users[0]
        other = pat.other(step, tensor)
        k = pat.scalar(other)
        if k is None:
            join = step
            break
        if step.op_type == "Add":
            add += k
        else:
            mul, add = mul * k, add * k
        drop.append(step)
        tensor = step.outputs[0]
    if join.op_type != "Mul":
        return None
    v = pat.other(join, tensor)
    scale_x = 1.0
    if v != x:
        pre = pat.op(v, "Mul")
        if pre is None or x not in pre.inputs:
            return None
        k = pat.scalar(pat.other(pre, x))
        if k is None:
            return None
        scale_x = k
        drop.append(pre)
    inner = {n.name for n in drop} | {join.name}
    if not all(pat.private(t, inner) for n in drop for t in n.outputs if t):
        return None
    attrs = {"divisor": divisor, "scale_x": scale_x, "erf_mul": mul, "erf_add": add}
    return join, x, attrs, {n.name for n in drop}


_ARITHMETIC = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide, "Pow": np.power}


def _scalar_chain(pat, tensor, ops=("Add", "Sub", "Mul", "Div")):
    """The nodes after ``tensor`` that each combine the previous result with a scalar constant (one consumer each)."""
    chain = []
    while True:
        users = pat.consumers.get(tensor, [])
        if len(users) != 1 or users[0].domain != "" or users[0].op_type not in ops:
            return chain, tensor
        other = pat.other(users[0], tensor)
        if other is None or pat.scalar(other) is None:
            return chain, tensor
        chain.append(users[0])
        tensor = users[0].outputs[0]


def _arithmetic_tree(pat, tensor, x, limit=8):
    """Nodes computing ``tensor`` from ``x`` and scalar constants with Add/Sub/Mul/Div/Pow only, or ``None``."""
    if tensor == x or pat.scalar(tensor) is not None:
        return []
    node = pat.op(tensor, *_ARITHMETIC)
    if node is None or limit <= 0:
        return None
    found = [node]
    for t in node.inputs:
        sub = _arithmetic_tree(pat, t, x, limit - len(found))
        if sub is None:
            return None
        found += [n for n in sub if n not in found]
    return found


def _evaluate(pat, nodes, x, values):
    """Run ``nodes`` (arithmetic and Tanh) in float64 on ``values`` fed in for ``x``; the last node's output."""
    env = {x: values}
    ordered = sorted(nodes, key=lambda m: m.index)
    for n in ordered:
        args = [env[t] if t in env else pat.scalar(t) for t in n.inputs]
        env[n.outputs[0]] = np.tanh(args[0]) if n.op_type == "Tanh" else _ARITHMETIC[n.op_type](*args)
    return env[ordered[-1].outputs[0]]


def fuse_tanh_gelu(graph, nodes, constants, protected, log):
    def rewrite(pat, tanh):
        match = _match_tanh_gelu(pat, tanh) if tanh.op_type == "Tanh" and tanh.domain == "" else None
        if match is None:
            return None
        last, x, attrs, drop = match
        new = Node(name=last.name, op_type="TanhGelu", domain="onnxlrp", since=1, inputs=(x,), outputs=last.outputs,
                   attrs=attrs, index=last.index)
        return new, drop, f"fused a tanh-approximated GELU ending at {last.op_type} {last.name!r}"

    return _fuse_until_done(graph, nodes, constants, protected, log, rewrite)


def _match_tanh_gelu(pat, tanh):
    """``s·x·(1 + tanh(a·x + b·x³))`` written out in any arrangement (torch ``gelu(approximate="tanh")`` before
    opset 20, HF ``gelu_new``/``NewGELU``, Keras ``gelu(approximate=True)``). Matched by structure: scalar steps
    after the Tanh, one ``Mul`` by ``x`` (or by ``k·x``), scalar factors after it, and an arithmetic tree from ``x``
    to the Tanh's input; then checked by value: the subgraph is evaluated in float64 on test points, ``a``/``b``
    are fitted and the result must equal the closed form to 1e-10."""
    steps, t = _scalar_chain(pat, tanh.outputs[0])
    users = pat.consumers.get(t, [])
    if len(users) != 1 or users[0].domain != "" or users[0].op_type != "Mul":
        return None
    join = users[0]
    v = pat.other(join, t)
    candidates = [(v, [])]
    pre = pat.op(v, "Mul")
    if pre is not None:
        for a in pre.inputs:
            if pat.scalar(pat.other(pre, a)) is not None and pat.scalar(a) is None:
                candidates.append((a, [pre]))
    tail, _ = _scalar_chain(pat, join.outputs[0], ops=("Mul", "Div"))
    for x, extra in candidates:
        inner = _arithmetic_tree(pat, tanh.inputs[0], x)
        if not inner or any(n in extra for n in inner):
            continue
        drop = inner + [tanh] + steps + extra
        for end in range(len(tail), -1, -1):  # the longest run of trailing scalar factors that still matches
            last = (tail[:end] or [join])[-1]
            body = drop + [join] + tail[:end]
            names = {n.name for n in body}
            if not all(pat.private(o, names) for n in body if n is not last for o in n.outputs if o):
                continue
            attrs = _fit_tanh_gelu(pat, inner, body, x)
            if attrs is not None:
                return last, x, attrs, names - {last.name}
    return None


def _fit_tanh_gelu(pat, inner, body, x):
    """``{"linear": a, "cubic": b, "scale": s}`` when ``body`` computes ``s·x·(1 + tanh(a·x + b·x³))`` (``inner``
    computes the Tanh's argument), else ``None``."""
    xs = np.linspace(-3.0, 3.0, 13)
    with np.errstate(all="ignore"):
        u = _evaluate(pat, inner, x, xs)
        y = _evaluate(pat, body, x, xs)
    if not (np.all(np.isfinite(u)) and np.all(np.isfinite(y))):
        return None
    (a, b), *_ = np.linalg.lstsq(np.stack([xs, xs ** 3], 1), u, rcond=None)
    mask = np.abs(xs) > 0.5
    base = xs * (1 + np.tanh(a * xs + b * xs ** 3))
    scale = float(np.median(y[mask] / base[mask]))
    want = scale * base
    if a <= 0 or scale == 0 or not np.allclose(a * xs + b * xs ** 3, u, rtol=1e-10, atol=1e-12) or \
            not np.allclose(y, want, rtol=1e-10, atol=1e-12):
        return None
    return {"linear": float(a), "cubic": float(b), "scale": scale}


def fuse_silu(graph, nodes, constants, protected, log):
    pat = _Pattern(graph, nodes, constants, protected)
    drop, new_nodes = set(), {}
    for mul in nodes:
        if mul.op_type != "Mul" or mul.domain != "" or mul.name in drop:
            continue
        for x, t in ((mul.inputs[0], mul.inputs[1]), (mul.inputs[1], mul.inputs[0])):
            sig = pat.op(t, "Sigmoid")
            if sig is None or sig.name in drop or not pat.private(t, {mul.name}):
                continue
            alpha, scaled = 1.0, pat.op(sig.inputs[0], "Mul")  # x·sigmoid(α·x): QuickGELU (α = 1.702), Swish-β
            if sig.inputs[0] != x:
                k = pat.scalar(pat.other(scaled, x)) if scaled is not None and x in scaled.inputs else None
                if k is None or not pat.private(sig.inputs[0], {sig.name}) or scaled.name in drop:
                    continue
                alpha = k
                drop.add(scaled.name)
            drop.add(sig.name)
            new_nodes[mul.name] = Node(name=mul.name, op_type="SiLU", domain="onnxlrp", since=1, inputs=(x,),
                                       outputs=mul.outputs, attrs={"alpha": alpha}, index=mul.index)
            log.append(f"fused Sigmoid {sig.name!r} and Mul {mul.name!r} into SiLU (alpha {alpha:g})")
            break
    out = [new_nodes.get(n.name, n) for n in nodes if n.name not in drop]
    return sorted(out, key=lambda m: m.index)


def fuse_softmax(graph, nodes, constants, protected, log):
    def rewrite(pat, div):
        match = _match_softmax(pat, div) if div.op_type == "Div" and div.domain == "" else None
        if match is None:
            return None
        x, axis, drop = match
        new = Node(name=div.name, op_type="Softmax", domain="", since=13, inputs=(x,), outputs=div.outputs,
                   attrs={"axis": axis}, index=div.index)
        return new, drop, f"fused Exp/ReduceSum/Div ending at {div.name!r} into Softmax"

    return _fuse_until_done(graph, nodes, constants, protected, log, rewrite)


def _match_softmax(pat, div):
    e_t, s_t = div.inputs
    exp, rsum = pat.op(e_t, "Exp"), pat.op(s_t, "ReduceSum")
    if exp is None or rsum is None or rsum.inputs[0] != e_t:
        return None
    axes = pat.axes(rsum)
    if axes is None or len(axes) != 1:
        return None
    drop = [exp, rsum]
    x = exp.inputs[0]
    sub = pat.op(x, "Sub")
    if sub is not None:
        rmax = pat.op(sub.inputs[1], "ReduceMax")
        if rmax is not None and rmax.inputs[0] == sub.inputs[0] and pat.axes(rmax) == axes \
                and pat.private(rmax.outputs[0], {sub.name}) and pat.private(sub.outputs[0], {exp.name}):
            drop = [rmax, sub] + drop
            x = sub.inputs[0]
    inner = {n.name for n in drop} | {div.name}
    if not all(pat.private(t, inner) for n in drop for t in n.outputs if t):
        return None
    return x, axes[0], {n.name for n in drop}
