"""The tail rule: for a model whose batch-1 call takes under ``SUB_US`` µs, a session setting that lowers the slow
calls (p99.9) without raising the typical one (p50) replaces the profile's batch-1 threading.

Why: a 10-50 µs call that wakes an intra-op thread pool pays the wake-up and the scheduling of a second thread on
its slow calls (the published run saw p99.9 of 4-8 ms on such calls); one thread has no pool to wake. The settings
tried against the profile chosen by :mod:`medinfer.export.profiles` (``baseline``): one intra-op thread; all cores
with spinning off. The rule (:func:`choose`, interleaved rounds, synthetic latencies in tests):

- the candidate's per-round p50 ratio to the baseline is at most ``1 + P50_SLACK`` in EVERY round (p50 not raised);
- its p99.9 over all rounds is at most ``1 - TAIL_GAIN`` times the baseline's, and its p99 no higher;
- no win counts while other processes kept more than ``BUSY_CORES`` of a core busy (preemption there is not the
  device's; the same rule as the profile's);
- among the candidates that pass, the lowest p99.9 ships; none: the profile stays as it was.

The evidence (per-setting p50 / p99 / p99.9 and the decision) goes into ``profile.measured["tails"]``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from medinfer.manifest import SessionProfile
from medinfer.tools.profile_check import BUSY_CORES, round_ratios

SUB_US = 50.0
P50_SLACK = 0.03
TAIL_GAIN = 0.20
ROUNDS = 8
SECONDS = 0.4  # per setting and round: 10^4 calls of a sub-50 µs model per block, 10^5 in all
BASELINE = "profile"
RULE = (f"below {SUB_US:g} µs at batch 1: a setting whose p50 is at most {P50_SLACK:.0%} above the profile's in "
        f"every one of {ROUNDS} interleaved rounds and whose p99.9 is at least {TAIL_GAIN:.0%} lower (p99 no "
        f"higher) replaces the batch-1 threading; no win counts while other processes kept more than "
        f"{BUSY_CORES:g} of a core busy")

#: ``timings(names, rounds, total seconds) -> ({name: [per-query ns of each round]}, other_cores or None)``
Timings = Callable[[list[str], int, float], tuple[dict[str, list[np.ndarray]], float | None]]


def candidates(base: SessionProfile) -> dict[str, SessionProfile]:
    """The settings tried, by name (the baseline is ``base`` itself)."""
    explicit = dataclasses.replace(base, onnxruntime_defaults=False, inter_op_num_threads=1,
                                   execution_mode="sequential")
    return {BASELINE: base,
            "1 intra-op thread": dataclasses.replace(explicit, intra_op_num_threads=1, allow_spinning=False),
            "all cores, spinning off": dataclasses.replace(explicit, intra_op_num_threads=0, allow_spinning=False)}


def _stats(rounds: list[np.ndarray]) -> dict[str, float]:
    us = np.concatenate(rounds) / 1e3
    return {"p50_us": float(np.median([np.median(r) for r in rounds])) / 1e3,
            "p99_us": float(np.percentile(us, 99)), "p99.9_us": float(np.percentile(us, 99.9)), "n": int(us.size)}


def choose(times: Mapping[str, list[np.ndarray]], other_cores: float | None = None,
           baseline: str = BASELINE) -> tuple[str, dict[str, Any]]:
    """(the setting to ship, evidence) from interleaved per-round latencies of ``baseline`` and the candidates."""
    stats = {k: _stats(v) for k, v in times.items()}
    base = stats[baseline]
    evidence: dict[str, Any] = {"rule": RULE, "settings": stats, "other_cores": other_cores}
    if base["p50_us"] >= SUB_US:
        return baseline, {**evidence, "decision": f"the profile (p50 {base['p50_us']:.0f} µs is not below {SUB_US:g})"}
    passing = []
    for name, rounds in times.items():
        if name == baseline:
            continue
        worst = max(round_ratios(rounds, times[baseline]))
        s = stats[name]
        if (worst <= 1.0 + P50_SLACK and s["p99.9_us"] <= (1.0 - TAIL_GAIN) * base["p99.9_us"]
                and s["p99_us"] <= base["p99_us"]):
            passing.append(name)
    if not passing:
        return baseline, {**evidence, "decision": "the profile (no setting lowered the tail without raising p50)"}
    best = min(passing, key=lambda n: stats[n]["p99.9_us"])
    if other_cores is not None and other_cores > BUSY_CORES:
        return baseline, {**evidence, "decision": f"the profile ({best} won, not counted: other processes kept "
                                                  f"{other_cores:.2f} cores busy, limit {BUSY_CORES:g})"}
    return best, {**evidence, "decision": best}


def tail_profile(profile: SessionProfile, model_bytes: bytes, feeds: dict[str, Any], fetch: list[str], *,
                 timings: Timings | None = None) -> SessionProfile:
    """``profile`` with its batch-1 threading replaced when :func:`choose` says so (batches from 16 on keep the
    profile's own settings in a second session; a graph above the profiles' one-session size is left as it is);
    the evidence attached."""
    from .profiles import LARGE_SESSION_MAX_BYTES

    if len(model_bytes) > LARGE_SESSION_MAX_BYTES:
        return profile
    screened = [r["p50_us"] for r in profile.measured.get("batch1", {}).get("screen", []) if "p50_us" in r]
    if screened and min(screened) >= 2 * SUB_US:  # the profile's own screening: clearly not a sub-50 µs model
        return dataclasses.replace(profile, measured={**profile.measured, "tails": {
            "rule": RULE, "decision": f"the profile (screened p50 {min(screened):.0f} µs)"}})
    settings = candidates(profile)
    if timings is None:
        from medinfer.session import cpu_session
        from medinfer.tools.profile_check import OtherLoad, timed

        sessions = {k: cpu_session(model_bytes, p) for k, p in settings.items()}

        def real(names: list[str], rounds: int, seconds: float) -> tuple[dict[str, list[np.ndarray]], float | None]:
            with OtherLoad() as other:
                out = timed({n: (lambda s=sessions[n]: s.run(fetch, feeds)) for n in names}, rounds, seconds)
            return out, other.cores

        timings = real
    times, other = timings(list(settings), ROUNDS, SECONDS * len(settings) * ROUNDS)  # seconds in all
    chosen, evidence = choose(times, other)
    measured = {**profile.measured, "tails": evidence}
    if chosen == BASELINE:
        return dataclasses.replace(profile, measured=measured)
    return dataclasses.replace(_keep_large_batches(profile, settings[chosen]), measured=measured)


def _keep_large_batches(profile: SessionProfile, picked: SessionProfile) -> SessionProfile:
    """``picked`` for small batches; from the profile's large-batch size on (:data:`LARGE_BATCH_FROM` when it has
    one session) the very session ``profile`` runs there (:func:`medinfer.session.session_for_batch`)."""
    from medinfer.session import large_batch_from, profile_changes, session_for_batch

    from .profiles import LARGE_BATCH_FROM

    start = large_batch_from(profile) or LARGE_BATCH_FROM
    large = profile_changes(picked, session_for_batch(profile, start).profile)
    return dataclasses.replace(picked, large_batch=large, large_batch_from=start if large else 0)
