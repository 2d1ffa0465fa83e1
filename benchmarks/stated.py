"""Numbers the docs state as rules or settings, rendered from the constant that enforces them.

"``--check`` fails when a ratio is 15 % worse", "the threshold accepts 99 % of in-domain data": each of these is a
``<!-- n:const.KEY -->`` span in README.md / SECURITY.md whose text :func:`values` makes from the code (or the
results file) that applies the rule, so the sentence cannot drift from what the code does, and
:mod:`benchmarks.claims` can require every other speed or ratio in prose to come from measured data.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any


def percent(fraction: float) -> str:
    """``0.15`` -> ``15 %`` (the docs' way of writing a share)."""
    return f"{fraction * 100:.0f} %"


def _field_default(cls: Any, name: str) -> Any:
    return next(f.default for f in dataclasses.fields(cls) if f.name == name)


def _coverage(domain: dict[str, Any] | None) -> str:
    """The in-domain share every bundle's guard threshold keeps (one value across the models of domain.json)."""
    shares = {m["coverage"] for m in (domain or {}).get("models", {}).values()}
    if len(shares) != 1:
        raise ValueError(f"the bundles' guards keep different in-domain shares: {sorted(shares)}")
    return percent(shares.pop())


def _serve(name: str) -> float:
    from medinfer.fleet.serve import ServeConfig

    return float(_field_default(ServeConfig, name))


def _reserve_timeout() -> str:
    from medinfer.fleet.http import PROBATION_TIMEOUT

    return f"{PROBATION_TIMEOUT:g} s"


def _horizon() -> str:
    from medinfer.train.datasets import glucose

    return f"{glucose.HORIZON_STEPS * glucose.STEP_MIN} min"


def _sensitivity() -> str:
    from medinfer.train.specs.lung_nodule_cnn import LungNoduleCNN

    return percent(LungNoduleCNN.target_sensitivity)


def _large_gain() -> str:
    from medinfer.export.profiles import LARGE_GAIN

    return percent(1.0 - LARGE_GAIN)


def _domain_goal(kind: str) -> str:
    from medinfer.train.domain_eval import GOALS

    return percent(GOALS[kind])


def _domain_confidence() -> str:
    from medinfer.train.domain_eval import CONFIDENCE

    return percent(CONFIDENCE)
def _tails(name: str) -> str:
    from medinfer.export import tails

    return f"{tails.SUB_US:g} µs" if name == "sub_us" else percent(tails.TAIL_GAIN)


def _ct_check(name: str) -> str:
    from medinfer.tools import ct_checks

    return percent({"tissue_share": ct_checks.MIN_TISSUE_SHARE, "dark_quantile": ct_checks.DARK_QUANTILE,
                    "above_share": ct_checks.MAX_ABOVE_SHARE}[name])


def values(domain: dict[str, Any] | None) -> dict[str, Callable[[], str]]:
    """{marker key: how its text is made from the rule's constant}."""
    from medinfer.tools.profile_check import MARGIN

    from . import history
    from .domain import LATENCY_GOAL

    return {
        "const.gate.threshold": lambda: percent(history.DEFAULT_THRESHOLD),
        "const.profile.margin": lambda: percent(MARGIN),
        "const.profile.large_gain": _large_gain,
        "const.domain.coverage": lambda: _coverage(domain),
        "const.domain.latency_goal": lambda: percent(LATENCY_GOAL),
        "const.domain.confidence": _domain_confidence,
        **{f"const.domain.goal.{kind}": (lambda kind=kind: _domain_goal(kind)) for kind in ("gross", "nonsense",
                                                                                            "subtle")},
        "const.serve.inline_below": lambda: f"{_serve('inline_below_ms'):g} ms",
        "const.serve.request_timeout": lambda: f"{_serve('request_timeout'):g} s",
        "const.serve.reserve_timeout": _reserve_timeout,
        "const.glucose.horizon": _horizon,
        **{f"const.ct.{name}": (lambda name=name: _ct_check(name)) for name in ("tissue_share", "dark_quantile",
                                                                                  "above_share")},
        "const.cnn.sensitivity": _sensitivity,
        "const.tails.sub_us": lambda: _tails("sub_us"),
        "const.tails.gain": lambda: _tails("gain"),
    }
