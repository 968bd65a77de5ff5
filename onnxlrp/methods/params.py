"""Every method parameter's type and range, declared once and checked once (when a method is resolved).

Parameters with the same name mean the same thing in every method (``epsilon`` is always a stabiliser ≥ 0,
``steps`` always a count), so the table is keyed by name. A value outside its declared type or range raises
:class:`~onnxlrp.errors.MethodError` naming the parameter, what it takes and what it got; numbers are normalised
(``steps=50.0`` becomes ``50``); other valid values pass unchanged.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import MethodError
from ..lrp.presets import PRESETS
from ..patterns.store import PATTERN_SOURCE, PATTERN_TYPES

#: upper bounds on counts that multiply the work (each step or sample is a full backward pass)
MAX_PASSES = 100_000


@dataclass(frozen=True)
class Param:
    """A parameter's type (``kind``) and range.

    ``kind``: ``number`` (finite real), ``integer``, ``bool``, ``choice`` (one of ``choices``), ``text`` (a
    non-empty string), ``numbers`` (a number or an array of numbers, broadcast against an input), ``classes`` (a
    class index or one per sample; the range is checked against the output), ``names`` (parameter names, e.g.
    ``("bias",)``). ``optional``: ``None`` allowed (the default, meaning "not given").
    """

    kind: str
    low: float | None = None
    high: float | None = None
    choices: tuple = ()
    optional: bool = False

    def describe(self) -> str:
        """What the parameter takes, in words (for error messages and ``onnxlrp methods``)."""
        if self.kind == "choice":
            text = "one of " + ", ".join(repr(c) for c in self.choices)
        elif self.kind in ("number", "integer"):
            text = "a number" if self.kind == "number" else "an integer"
            if self.low is not None and self.high is not None:
                text += f" in [{_fmt(self.low)}, {_fmt(self.high)}]"
            elif self.low is not None:
                text += f" >= {_fmt(self.low)}"
            elif self.high is not None:
                text += f" <= {_fmt(self.high)}"
        else:
            text = {"bool": "true or false", "text": "a non-empty name", "numbers": "a number or an array of numbers",
                    "classes": "an int or one int per sample",
                    "names": "parameter names such as 'bias'"}[self.kind]
        return text

    def check(self, method: str, name: str, value: Any) -> Any:
        """``value`` normalised, or a :class:`MethodError` saying what ``name`` takes."""
        if value is None:
            if self.optional:
                return None
            raise _error(method, name, self, value)
        normalised = _NORMALISE[self.kind](self, value)
        if normalised is _BAD:
            raise _error(method, name, self, value)
        return normalised


_BAD = object()


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _error(method: str, name: str, param: Param, value: Any) -> MethodError:
    shown = " ".join(repr(value).split())  # one line: an array's repr spans several
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return MethodError(f"{name} must be {param.describe()}; got {shown} (a parameter of method {method!r})")


def _in_range(param: Param, x: float) -> bool:
    return (param.low is None or x >= param.low) and (param.high is None or x <= param.high)


def _number(param: Param, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        return _BAD
    if not _in_range(param, float(value)):
        return _BAD
    return value if isinstance(value, (int, float)) else float(value)


def _integer(param: Param, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) \
            or value != int(value):
        return _BAD
    return int(value) if _in_range(param, int(value)) else _BAD


def _bool(param: Param, value):
    return bool(value) if isinstance(value, (bool, np.bool_)) else _BAD


def _choice(param: Param, value):
    return value if isinstance(value, str) and value in param.choices else _BAD


def _text(param: Param, value):
    return value if isinstance(value, str) and value else _BAD


def _numbers(param: Param, value):
    if isinstance(value, bool):
        return _BAD
    if isinstance(value, numbers.Real):
        return _number(param, value)
    try:
        array = np.asarray(value)
    except (ValueError, TypeError):
        return _BAD
    if array.size == 0 or array.dtype.kind not in "iuf" or not np.isfinite(array).all():
        return _BAD
    return value


def _classes(param: Param, value):
    if isinstance(value, bool):
        return _BAD
    if isinstance(value, numbers.Integral):
        return value
    try:
        array = np.asarray(value)
    except (ValueError, TypeError):
        return _BAD
    return value if array.ndim == 1 and array.size and array.dtype.kind in "iu" else _BAD


def _names(param: Param, value):
    names = (value,) if isinstance(value, str) else value
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) and n for n in names):
        return _BAD
    if param.choices and not set(names) <= set(param.choices):
        return _BAD
    return tuple(names)


_NORMALISE = {"number": _number, "integer": _integer, "bool": _bool, "choice": _choice, "text": _text,
              "numbers": _numbers, "classes": _classes, "names": _names}

NON_NEGATIVE = Param("number", low=0.0)

#: every parameter any method takes, by name
PARAMS: dict[str, Param] = {
    "epsilon": NON_NEGATIVE, "stabilizer": NON_NEGATIVE, "product_epsilon": NON_NEGATIVE, "gamma": NON_NEGATIVE,
    "stdfactor": NON_NEGATIVE, "noise_level": NON_NEGATIVE, "alpha": NON_NEGATIVE, "beta": NON_NEGATIVE,
    "zero_params": Param("names", choices=("bias",)),  # a zero weight leaves nothing to propagate through
    "low": Param("numbers", optional=True), "high": Param("numbers", optional=True),
    "baseline": Param("numbers", optional=True), "mu": Param("numbers"),
    "steps": Param("integer", low=1, high=MAX_PASSES), "samples": Param("integer", low=1, high=MAX_PASSES),
    "random_state": Param("integer", low=0, high=2**32 - 1, optional=True),
    "internal_batch_size": Param("integer", low=1, optional=True),
    "integration": Param("choice", choices=("gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_right",
                                            "riemann_middle")),
    "layer": Param("text", optional=True),
    "layout": Param("choice", choices=("auto", "NCHW", "NHWC")),
    "variant": Param("choice", choices=("1konny", "paper")),
    "contrast": Param("classes", optional=True),
    "preset": Param("choice", choices=("clrp", *PRESETS)),
    "combine": Param("choice", choices=("norm_diff", "raw_diff")),
    "dual_seed": Param("choice", choices=("abs_logits", "uniform_target", "splice_sum")),
    "relu": Param("bool"),
    "division": Param("choice", choices=("safe", "innvestigate")),
    "sign_input_stabilizer": Param("choice", choices=("none", "same_as_layer")),
    "patterns": PATTERN_SOURCE, "pattern_type": Param("choice", choices=tuple(PATTERN_TYPES)),
}


def check_params(method: str, params: dict, extra: dict[str, Param] | None = None) -> dict:
    """``params`` with every value checked against its declaration (``extra`` adds method-specific ones)."""
    table = {**PARAMS, **(extra or {})}
    return {name: table[name].check(method, name, value) if name in table else value
            for name, value in params.items()}
