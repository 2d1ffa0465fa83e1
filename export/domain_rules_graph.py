"""The graph form of the part kinds of :mod:`medinfer.train.domain_rules` (each checked against its native statistic
by the parity gate and by tests/export/test_domain_rules.py).

Each is a part graph of :data:`medinfer.export.domain_graph.PARTS` (registered there from :data:`GRAPHS`): it takes
the graph builder, the part, the tensor it reads, its scale and the tensors of ``part.more``, and returns a (N,)
tensor, gain x the raw statistic, with the gain (RULE_GAIN for a rule, 1 / scale otherwise) folded into its
constants (a rule's Relu is added by the caller).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..train.domain import RULE_GAIN, Part
from ..train.domain_rules import BIG

_END = np.iinfo(np.int64).max


RuleGraph = Callable[..., str]


def _rule(fn: RuleGraph) -> Callable[..., tuple[str, bool]]:
    """``fn(b, params, gain, x, *more) -> gain x statistic`` as a part graph ``(b, part, x, scale, *more)``."""
    def graph(b: Any, part: Part, source: str, scale: float, *more: str) -> tuple[str, bool]:
        return fn(b, part.params, RULE_GAIN if part.rule else 1.0 / scale, source, *more), True

    graph.__name__ = graph.__qualname__ = fn.__name__
    graph.__doc__ = fn.__doc__
    return graph


@_rule
def _bound(b: Any, p: dict[str, np.ndarray], gain: float, x: str) -> str:
    inv = np.asarray(p["inv_width"], np.float64)
    lo, hi = np.asarray(p["lo"], np.float64), np.asarray(p["hi"], np.float64)
    table = b.rank(x) == 2  # (N, F): reduce over features; else (N, ..., F) as (N, -1, F)
    shaped = b.source(x) if table else b.node("Reshape", [b.source(x), b.const([0, -1, len(inv)], "shape3",
                                                                                np.int64)], "per_feature")
    axes = [1] if table else [1, 2]
    y = b.node("Mul", [shaped, b.const(inv * gain, "inv_width")], "scaled")
    sides = []
    if np.any(lo > -BIG):
        if np.allclose(lo, lo[0]):  # one constant: max_j (c - y_j) = c - min_j y_j
            sides.append(b.node("Sub", [b.const(lo[0] * gain, "lo"), b.reduce("ReduceMin", y, axes)], "below"))
        else:
            sides.append(b.reduce("ReduceMax", b.node("Sub", [b.const(lo * gain, "lo"), y], "below"), axes))
    if np.any(hi < BIG):
        if np.allclose(hi, hi[0]):
            sides.append(b.node("Sub", [b.reduce("ReduceMax", y, axes), b.const(hi[0] * gain, "hi")], "above"))
        else:
            sides.append(b.reduce("ReduceMax", b.node("Sub", [y, b.const(hi * gain, "hi")], "above"), axes))
    if not sides:
        raise ValueError("a bound part without any finite bound")
    return sides[0] if len(sides) == 1 else b.node("Max", sides, "outside")


@_rule
def _window_sum(b: Any, p: dict[str, np.ndarray], gain: float, x: str) -> str:
    w = int(p["steps"][0])
    f = b.node("Gather", [b.source(x), b.const(p["features"], "features", np.int64)], "series", axis=2)
    c = b.node("CumSum", [f, b.const(1, "time_axis", np.int64)], "running_total")
    ax = b.const([1], "ax", np.int64)
    first = b.node("Slice", [c, b.const([0], "s0", np.int64), b.const([w], "w", np.int64), ax], "first_totals")
    later = b.node("Slice", [c, b.const([w], "w", np.int64), b.const([_END], "end", np.int64), ax], "later")
    earlier = b.node("Slice", [c, b.const([0], "s0", np.int64), b.const([-w], "mw", np.int64), ax], "earlier")
    totals = b.node("Concat", [first, b.node("Sub", [later, earlier], "window_totals")], "totals", axis=1)
    relative = b.node("Mul", [totals, b.const(np.asarray(p["inv_limits"]) * gain, "inv_limits")], "relative")
    return b.node("Sub", [b.reduce("ReduceMax", relative, [1, 2]), b.const(gain, "one")], "excess")


@_rule
def _identities(b: Any, p: dict[str, np.ndarray], gain: float, x: str) -> str:
    d = b.node("MatMul", [b.flat_source(x), b.const(np.asarray(p["scaled"]) * gain, "identities")], "imbalance")
    return b.node("Sub", [b.reduce("ReduceMax", b.node("Abs", [d], "abs_imbalance"), 1), b.const(gain, "one")],
                  "excess")


@_rule
def _floor_share_residual(b: Any, p: dict[str, np.ndarray], gain: float, x: str, z: str) -> str:
    flat = b.flat_source(x)
    n = len(p["floor"])
    at = b.node("Cast", [b.node("LessOrEqual", [flat, b.const(p["floor"], "floor")], "at_floor")], "at_floorf", to=1)
    count = b.reduce("ReduceSum", at, 1, keepdims=1)  # (N, 1): the share x n, against the expected count
    expected = b.node("Gemm", [b.flat_source(z), b.const(np.asarray(p["beta"]).reshape(-1, 1) * n, "beta"),
                               b.const([float(p["intercept"][0]) * n], "intercept")], "expected")
    gap = b.node("Abs", [b.node("Sub", [count, expected], "gap")], "abs_gap")
    scaled = b.node("Mul", [gap, b.const(gain * float(p["inv_sigma"][0]) / n, "gain")], "residual")
    return b.node("Reshape", [scaled, b.const([-1], "flat1", np.int64)], "residual_n")


@_rule
def _zscore(b: Any, p: dict[str, np.ndarray], gain: float, x: str) -> str:
    cols = b.node("Gather", [b.flat_source(x), b.const(p["columns"], "columns", np.int64)], "selected", axis=1)
    z = b.node("Abs", [b.node("Sub", [cols, b.const(p["mean"], "mean")], "centred")], "abs_centred")
    return b.reduce("ReduceMax", b.node("Mul", [z, b.const(np.asarray(p["inv_sd"]) * gain, "inv_sd")], "z"), 1)


@_rule
def _at_bounds(b: Any, p: dict[str, np.ndarray], gain: float, x: str) -> str:
    f = b.node("Gather", [b.source(x), b.const(int(p["feature"][0]), "feature", np.int64)], "series", axis=2)
    pinned = b.node("Or", [b.node("LessOrEqual", [f, b.const(float(p["low"][0]), "low")], "at_low"),
                           b.node("GreaterOrEqual", [f, b.const(float(p["high"][0]), "high")], "at_high")], "pinned")
    share = b.reduce("ReduceMean", b.node("Cast", [pinned], "pinnedf", to=1), 1)
    return b.node("Mul", [share, b.const(gain, "gain")], "share_pinned")


#: Part kind -> its part graph (registered in :data:`medinfer.export.domain_graph.PARTS`).
GRAPHS: dict[str, Callable[..., tuple[str, bool]]] = {
    "bound": _bound, "window_sum": _window_sum, "identities": _identities,
    "floor_share_residual": _floor_share_residual, "zscore": _zscore, "at_bounds": _at_bounds,
}
