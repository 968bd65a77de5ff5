"""Hypothesis profiles for the fuzz suite.

``default`` (what ``make test`` runs): 120 examples per unit of weight (``support.examples``), derandomized (the
same examples on every run, so CI is reproducible): the whole folder in about 30-40 s on 2 cores. ``long``
(``ONNXLRP_FUZZ=long``, what ``make fuzz`` runs): 1500, about 3-4 minutes, still derandomized so a failure found
there reproduces; ``ONNXLRP_FUZZ=random`` is the same budget with a fresh seed per run, to look further.
``ONNXLRP_FUZZ_EXAMPLES=N`` overrides the example count of either.

Every example is also bounded in time by :func:`tests.fuzz.support.bounded` (a SIGALRM watchdog), and hypothesis's
``deadline`` is a generous backstop on top of it.
"""
from __future__ import annotations

import os
from datetime import timedelta

from hypothesis import HealthCheck, Phase, settings

#: examples per test (each test may scale this by its own weight, see ``support.examples``)
DEFAULT_EXAMPLES = 120
LONG_EXAMPLES = 1500

_common = dict(
    deadline=timedelta(seconds=30),
    database=None,  # no example database: a failure prints its example and a @reproduce_failure blob
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
                           HealthCheck.function_scoped_fixture],
)
settings.register_profile("default", max_examples=DEFAULT_EXAMPLES, derandomize=True,
                          phases=[Phase.explicit, Phase.generate, Phase.shrink], **_common)
settings.register_profile("long", max_examples=LONG_EXAMPLES, derandomize=True, **_common)
settings.register_profile("random", max_examples=LONG_EXAMPLES, derandomize=False, **_common)

_profile = os.environ.get("ONNXLRP_FUZZ", "").strip().lower() or "default"
if _profile not in ("default", "long", "random"):
    raise ValueError(f"ONNXLRP_FUZZ must be 'long' or 'random' (or unset); got {_profile!r}")
_count = os.environ.get("ONNXLRP_FUZZ_EXAMPLES", "")
if _count.isdigit() and int(_count) > 0:
    settings.register_profile(f"{_profile}-n", settings.get_profile(_profile), max_examples=int(_count))
    _profile = f"{_profile}-n"
settings.load_profile(_profile)
