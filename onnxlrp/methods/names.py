"""The peers' method names as onnxlrp methods: iNNvestigate's analyzer names and signxai's method names, verbatim.

:data:`onnxlrp.methods.names_table` says what each name means in its peer and which onnxlrp method and parameters
it maps onto. Here the table becomes a method family (:data:`FAMILY`, registered after every other family):

* a name an onnxlrp method or grammar already accepts keeps that meaning (``gradient``, ``lrp_epsilon_0_1``,
  ``lrpsign_epsilon_0_1_std_x``): the table documents it, with the peer's defaults where they differ;
* another name runs its onnxlrp method with the entry's parameters (the defaults of the new method; ``--set``
  still changes them), then multiplies by the entry's post-hoc factor: ``R ⊙ x`` (``_x_input``), ``R ⊙ sgn0(x)``
  (``_x_sign``, ``sgn0(0) = +1``) or ``R ⊙ x ⊙ sgn0(x) = R ⊙ |x|`` (``_x_input_x_sign``), as signxai's wrappers do;
* a refused name raises :class:`~onnxlrp.errors.MethodError` with the reason.

:func:`all_names` lists every name with its method and parameters (``onnxlrp methods --all-names``), and
:func:`names_markdown` writes ``docs/method-names.md`` from it.
"""
from __future__ import annotations

import re
from decimal import Decimal
from functools import cache

from ..errors import MethodError
from ..lrp.sign import sign_mu
from . import registry
from .base import Method, MethodFamily, Result
from .names_table import (
    FACTOR_SUFFIXES,
    FACTORS,
    INNVESTIGATE_NAMES,
    SIGNXAI,
    SIGNXAI_NAMES,
    SIGNXAI_SPECIAL,
    PeerName,
)

_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def signxai_number(value: float) -> str:
    """signxai's method-name notation of a number: 0.1 → ``0_1``, 1e-07 → ``0_0000001``, 2.0 → ``2``, −0.5 →
    ``neg_0_5`` (the inverse of the parsing in :mod:`onnxlrp.methods.sign`)."""
    text = format(Decimal(repr(float(abs(value)))), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return ("neg_" if value < 0 else "") + text.replace(".", "_")


def _claimed(name: str) -> Method | None:
    """The method another family (or the registry) gives ``name``, ignoring this module's family."""
    if name in registry.METHODS:
        return registry.METHODS[name]
    for family in registry.FAMILIES:
        if family is not FAMILY:
            try:
                method = family.parse(name)
            except MethodError:  # a name of that grammar with impossible values: not claimed
                continue
            if method is not None:
                return method
    return None


def _target_name(entry: PeerName, params: dict) -> str:
    return _PLACEHOLDER.sub(lambda m: signxai_number(params[m[1]]), entry.method)


def _target(entry: PeerName, params: dict) -> Method:
    name = _target_name(entry, params)
    method = _claimed(name)
    if method is None:
        raise MethodError(f"method {entry.name!r} ({entry.peer}) maps to {name!r}, which is not an onnxlrp method")
    return method


def _refusal(entry: PeerName) -> MethodError:
    return MethodError(f"method {entry.name!r} ({entry.peer}) is not supported: {entry.refused}")


def honoured(entry: PeerName) -> bool:
    """Whether ``entry`` runs in this build (not refused; its method registered where that is optional)."""
    if entry.method is None:
        return False
    return entry.registered or _target_name(entry, entry.params) in registry.METHODS


def _apply_factor(session, x, result: Result, factor: str | None) -> Result:
    """``R ⊙ x``, ``R ⊙ sgn0(x)`` or ``R ⊙ |x|`` (signxai's ``_x_input``, ``_x_sign``, ``_x_input_x_sign``)."""
    if factor is None:
        return result
    xp = session.xp
    x = session.array(x)
    if factor == "input":
        scale = x
    elif factor == "sign":
        scale = sign_mu(xp, x, 0.0)
    else:
        scale = x * sign_mu(xp, x, 0.0)
    return result._replace(relevance=result.relevance * scale)


def peer_method(entry: PeerName) -> Method:
    """The :class:`Method` a (not refused) table entry runs."""
    if not honoured(entry):
        raise _refusal(entry)
    default = _target(entry, entry.params)
    params = {**default.params, **entry.params}

    def split(full):
        method = _target(entry, full)
        return method, {k: full[k] for k in method.params if k in full}

    def run(session, x, feeds, target, full, options):
        method, own = split(full)
        return _apply_factor(session, x, method.run(session, x, feeds, target, own, options), entry.factor)

    def assign(session, full):
        method, own = split(full)
        return method.assign(session, own) if method.assign is not None else {}

    def requires(session, full):
        method, own = split(full)
        if method.requires is not None:
            method.requires(session, own)

    return Method(entry.name, describe(entry), params, default.kind, run,
                  assign if default.assign is not None else None, requires)


def describe(entry: PeerName) -> str:
    """One line: the peer, what the name runs in onnxlrp, and the difference where there is one."""
    if not honoured(entry):
        return f"{entry.peer} name, refused: {entry.refused}"
    text = f"{entry.peer} name for {_PLACEHOLDER.sub(lambda m: f'<{m[1]}>', entry.method)}"
    if entry.params:
        text += "(" + ", ".join(f"{k}={v!r}" for k, v in entry.params.items()) + ")"
    if entry.factor:
        text += f" times {FACTORS[entry.factor]}"
    if entry.formula:
        text += f"; {entry.peer}: {entry.formula}"
    return text + (f" ({entry.note})" if entry.note else "")


def _derived(name: str) -> PeerName | None:
    """A signxai ``<base>_x_input`` / ``_x_sign`` / ``_x_input_x_sign`` name from its base's entry."""
    for suffix, factor in FACTOR_SUFFIXES:
        if name.endswith(suffix):
            base = _signxai_base(name[: -len(suffix)])
            formula = f"{base.name}(x) * {FACTORS[factor]}"
            return PeerName(name, SIGNXAI, base.method, dict(base.params), formula, factor, base.note, base.refused,
                            base.registered)
    return None


def _signxai_base(name: str) -> PeerName:
    if name in SIGNXAI_SPECIAL:
        return SIGNXAI_SPECIAL[name]
    if _claimed(name) is not None:
        return PeerName(name, SIGNXAI, name)
    raise ValueError(f"signxai base name {name!r} has no entry")  # a table error, caught by the tests


def _signxai_entry(name: str) -> PeerName:
    claimed = _claimed(name)
    special = SIGNXAI_SPECIAL.get(name)
    if claimed is not None:  # onnxlrp's own meaning of the name stands; the peer's settings are noted
        note = (special.note if special else "")
        if special and special.params:
            note = "; ".join(filter(None, [note, "signxai's settings: " + ", ".join(
                f"--set {k}={v}" for k, v in special.params.items())]))
        return PeerName(name, SIGNXAI, name, {}, special.formula if special else claimed.description, None, note)
    return special or _derived(name) or PeerName(name, SIGNXAI, None, refused="no entry")


def _innvestigate_entry(entry: PeerName) -> PeerName:
    if _claimed(entry.name) is not None and entry.method != entry.name:
        return PeerName(entry.name, entry.peer, entry.name, {}, entry.formula, None,
                        "; ".join(filter(None, [entry.note, f"onnxlrp's own {entry.name!r} takes precedence"])))
    return entry


@cache
def peer_names() -> dict[str, tuple[PeerName, ...]]:
    """``name -> entries`` (one per peer that uses the name), iNNvestigate's names first."""
    table: dict[str, list[PeerName]] = {}
    for entry in INNVESTIGATE_NAMES:
        table.setdefault(entry.name, []).append(_innvestigate_entry(entry))
    for name in SIGNXAI_NAMES:
        table.setdefault(name, []).append(_signxai_entry(name))
    return {name: tuple(entries) for name, entries in table.items()}


def parse(name: str) -> Method | None:
    """The method of a peer name no other family accepts (``None`` for a name that is not a peer's)."""
    entries = peer_names().get(name)
    if not entries:
        return None
    return peer_method(entries[0])


def all_names() -> list[dict]:
    """Every peer name: ``{"name", "peer", "method", "params", "factor", "formula", "note", "refused"}``, with
    ``method`` the concrete onnxlrp method for the default parameters (``None`` when refused) and ``params`` the
    values the name sets on top of that method's defaults."""
    rows = []
    for name, entries in peer_names().items():
        for entry in entries:
            ok = entry.method is not None  # a method only some builds register is listed (refused where absent)
            rows.append({"name": name, "peer": entry.peer,
                         "method": _target_name(entry, entry.params) if ok else None,
                         "params": dict(entry.params) if ok else {}, "factor": entry.factor if ok else None,
                         "formula": entry.formula, "note": entry.note if ok else "",
                         "refused": "" if ok else entry.refused})
    return rows


def names_markdown() -> str:
    """``docs/method-names.md``: the table of every peer name, generated from :func:`all_names`."""
    lines = ["# Peer method names", "",
             "Generated by `onnxlrp.methods.names.names_markdown()` (`onnxlrp methods --all-names` prints the same "
             "table); a test checks that this file is current.", "",
             "`--method NAME` accepts every iNNvestigate analyzer name (`innvestigate.create_analyzer`) and every "
             "signxai method name (`signxai.calculate_relevancemap`) verbatim. Each runs the onnxlrp method in the "
             "third column with the parameters in the fourth (on top of that method's defaults; `--set` changes "
             "them), then multiplies by the factor. A refused name stops with the reason given here; nothing is "
             "approximated silently. `sgn0(x)` is +1 for x >= 0, else -1; `S_c` is the explained logit.", "",
             "| name | peer | onnxlrp method | parameters | factor | the peer's definition; difference |",
             "|---|---|---|---|---|---|"]
    for row in all_names():
        params = ", ".join(f"{k}={v!r}" for k, v in row["params"].items())
        method = f"`{row['method']}`" if row["method"] else "**refused**"
        text = row["refused"] if row["refused"] else "; ".join(filter(None, [row["formula"], row["note"]]))
        factor = FACTORS[row["factor"]] if row["factor"] else ""
        lines.append(f"| `{row['name']}` | {row['peer']} | {method} | {params} | {factor} | "
                     f"{text.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


FAMILY = MethodFamily(
    pattern="<an iNNvestigate analyzer name or a signxai method name>",
    description="the peers' own names, verbatim (lrp.z, lrp.epsilon, lrp.sequential_preset_a_flat, "
                "input_t_gradient, gradient_x_input, lrp_flat_x_sign, ...), mapped onto onnxlrp methods; "
                "'onnxlrp methods --all-names' lists each with its method and parameters",
    examples=("lrp.z", "lrp.epsilon", "lrp.alpha_1_beta_0", "lrp.sequential_preset_a_flat", "input_t_gradient",
              "gradient_x_input", "lrp_epsilon_0_1_x_sign"),
    parse=parse)

METHODS: list[Method] = []
FAMILIES = [FAMILY]
