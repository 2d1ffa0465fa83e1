"""The session profile a bundle ships: onnxruntime's default options unless a setting beats them by a margin that
survives noise.

A profile chosen from one median on a busy machine once shipped settings that lost 2x to plain defaults in a
later quiet run. The rule now (each comparison: :mod:`medinfer.tools.profile_check`, interleaved rounds, per-round
ratios, worst round decides):

1. **Screen** a grid (threads 1 / all, spinning on / off, optimisation extended / all) together with
   onnxruntime's defaults at batch 1; the fastest by median is the candidate.
2. **Confirm** the candidate against the defaults in ``ROUNDS`` fresh interleaved rounds: it ships only if it is
   faster by more than ``MARGIN`` in EVERY round; otherwise the bundle keeps onnxruntime's defaults
   (``SessionProfile.onnxruntime_defaults``).
3. A win measured while other processes kept more than ``BUSY_CORES`` busy does not count
   (:class:`~medinfer.tools.profile_check.OtherLoad`): fewer threads and no spinning win on a busy machine and lose
   on a quiet device (the CNN's 1-thread large-batch session measured 0.68-0.81x the defaults during a loaded export
   and 1.85x on the same machine later).
4. At ``LARGE_BATCH``, screen again, then time the batch-1 choice, the defaults and the large-batch candidate
   together: the session used at large batches must itself beat the defaults in every round or be the defaults;
   a second session with other settings is added only when it also beats the batch-1 choice by ``LARGE_GAIN`` in
   every round (it must earn its memory).

Every trial (per-round ratios, bound, p50s), the CPU fingerprint and the batch sizes go into
``SessionProfile.evidence``; the screening tables into ``measured``. The measurement is injectable
(``timings=``): tests drive the rule with synthetic latencies.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from medinfer.build_records import ProfileEvidence, ProfileTrial
from medinfer.manifest import SessionProfile
from medinfer.session import cpu_session, performance_settings, profile_changes
from medinfer.tools.profile_check import (
    BASELINE,
    BUSY_CORES,
    LARGE_BATCH,
    MARGIN,
    ROUNDS,
    Measure,
    OtherLoad,
    timed,
    trial,
)

from ..train.spec import ModelSpec, Progress, quiet
from .feeds import feeds, tile

LARGE_BATCH_FROM = 16
LARGE_GAIN = 0.85
# Every onnxruntime session holds its own copy of the weights (measured: +34 MB for the CNN's second session, also
# with shared initializers; its cold start went from 140 to 204 MB), so a graph above this size gets one session
# for all batch sizes: the batch-1 choice if it is admissible at the large batch too, else onnxruntime's defaults.
LARGE_SESSION_MAX_BYTES = 8 << 20
SCREEN_ROUNDS = 3
SCREEN_SECONDS = 0.25  # per candidate
CONFIRM_SECONDS = 0.3  # per contender
RULE = (f"onnxruntime's default options unless the fastest of a screened grid is faster than them by more than "
        f"{MARGIN:.0%} in every one of {ROUNDS} interleaved rounds (per-round ratio of medians); at batch "
        f"{LARGE_BATCH} the session used must also win in every round or be the defaults, and a second session "
        f"needs a worst-round ratio <= {LARGE_GAIN} against the batch-1 choice and a graph of at most "
        f"{LARGE_SESSION_MAX_BYTES >> 20} MB (else one session: the batch-1 choice if it also wins at batch "
        f"{LARGE_BATCH}, else the defaults); no win counts when other processes "
        f"kept more than {BUSY_CORES:g} of a core busy during its rounds")


def defaults_of(base: SessionProfile) -> SessionProfile:
    """``base`` with onnxruntime's default options (the performance fields set to onnxruntime's own defaults
    too, for tools that read them rather than the flag)."""
    return dataclasses.replace(base, onnxruntime_defaults=True, intra_op_num_threads=0, inter_op_num_threads=0,
                               allow_spinning=True, graph_optimization_level="all", execution_mode="sequential")


def candidate_grid(base: SessionProfile, max_threads: int | None = None) -> dict[str, SessionProfile]:
    """The screened settings by label: threads 1 / all usable cores (at most 4), spinning, optimisation level."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 2)
    cores = max_threads or min(usable, 4)
    grid = {}
    for t, s, o in itertools.product(sorted({1, cores}), (True, False), ("extended", "all")):
        grid[f"threads={t} spinning={'on' if s else 'off'} opt={o}"] = dataclasses.replace(
            base, onnxruntime_defaults=False, intra_op_num_threads=t, inter_op_num_threads=1, allow_spinning=s,
            graph_optimization_level=o, execution_mode="sequential")
    return grid


def _screen(times: dict[str, list[np.ndarray]]) -> tuple[str, list[dict[str, Any]]]:
    table = [{"candidate": k, "p50_us": round(float(np.median(np.concatenate(v))) / 1e3, 3),
              "p99_us": round(float(np.percentile(np.concatenate(v), 99)) / 1e3, 3)} for k, v in times.items()]
    return min(table, key=lambda r: r["p50_us"])["candidate"], table


#: ``timings(batch, contender names, rounds, seconds) -> ({name: [per-query ns of round 0, ...]}, other_cores)``,
#: ``other_cores`` the CPU cores other processes kept busy meanwhile (None: unknown).
Timings = Callable[[int, list[str], int, float], tuple[dict[str, list[np.ndarray]], float | None]]


def _real_timings(contenders: dict[str, SessionProfile], model_bytes: bytes, feeds: Callable[[int], dict[str, Any]],
                  fetch: list[str], measure: Measure | None) -> Timings:
    """One onnxruntime session per contender, timed by ``measure`` (default: interleaved rounds), with the CPU
    cores other processes kept busy meanwhile."""
    measure = measure or timed
    sessions = {k: cpu_session(model_bytes, p) for k, p in contenders.items()}

    def real(batch: int, names: list[str], rounds: int,
             seconds: float) -> tuple[dict[str, list[np.ndarray]], float | None]:
        f = feeds(batch)
        with OtherLoad() as other:
            times = measure({n: (lambda s=sessions[n]: s.run(fetch, f)) for n in names}, rounds, seconds)
        return times, other.cores

    return real


@dataclass
class _Contest:
    """The contenders, how to time them, and the trials judged so far."""

    contenders: dict[str, SessionProfile]
    timings: Timings
    trials: list[ProfileTrial] = field(default_factory=list)

    def screen(self, batch: int) -> tuple[str, list[dict[str, Any]]]:
        return _screen(self.timings(batch, list(self.contenders), SCREEN_ROUNDS,
                                    SCREEN_SECONDS * len(self.contenders))[0])

    def confirm(self, batch: int, names: list[str]) -> tuple[dict[str, list[np.ndarray]], float | None]:
        return self.timings(batch, names, ROUNDS, CONFIRM_SECONDS * len(names))

    def judge(self, batch: int, contender: str, baseline: str, times: dict[str, list[np.ndarray]], required: float,
              other: float | None) -> ProfileTrial:
        """One trial, kept; a win measured while other processes kept the cores busy does not count (OtherLoad)."""
        t = trial(batch, contender, baseline, performance_settings(self.contenders[contender]), times, required)
        t = dataclasses.replace(t, other_cores=None if other is None else round(other, 3))
        if t.wins and other is not None and other > BUSY_CORES:
            t = dataclasses.replace(t, wins=False, note=f"not counted: other processes kept {other:.2f} cores busy "
                                                        f"during the rounds (limit {BUSY_CORES:g})")
        self.trials.append(t)
        return t

    def batch1(self, best1: str) -> str:
        """The batch-1 choice: the fastest screened setting if it beats the defaults in every round."""
        if best1 == BASELINE:
            return BASELINE
        times, other = self.confirm(1, [best1, BASELINE])
        return best1 if self.judge(1, best1, BASELINE, times, 1.0 - MARGIN, other).wins else BASELINE

    def large(self, chosen: str, best_l: str) -> tuple[str | None, set[str]]:
        """The large-batch session's setting (None: the batch-1 session serves large batches too), and the settings
        admissible at the large batch (the defaults, and each that beats them there)."""
        names = list(dict.fromkeys([chosen, BASELINE, best_l]))
        if len(names) == 1:
            return None, {BASELINE}
        times, other = self.confirm(LARGE_BATCH, names)
        admissible = {BASELINE} | {n for n in names if n != BASELINE and
                                   self.judge(LARGE_BATCH, n, BASELINE, times, 1.0 - MARGIN, other).wins}
        if chosen not in admissible:
            return (best_l if best_l in admissible else BASELINE), admissible
        if best_l != chosen and best_l in admissible:
            return (best_l if self.judge(LARGE_BATCH, best_l, chosen, times, LARGE_GAIN, other).wins else None,
                    admissible)
        return None, admissible


def choose_profile(base: SessionProfile, model_bytes: bytes, feeds: Callable[[int], dict[str, Any]], fetch: list[str],
                   *, timings: Timings | None = None, measure: Measure | None = None, progress: Progress = quiet,
                   name: str = "", machine: dict[str, Any] | None = None) -> SessionProfile:
    """Apply the module's rule; returns the profile to ship, its evidence and screening tables attached.

    Args:
        base: the spec's profile (provider options, chunk sizes ... are kept).
        model_bytes: the validated graph.
        feeds: batch size -> the feeds of one run at that size (realistic inputs: held-out samples).
        fetch: the outputs to fetch.
        timings: replaces the whole measurement (tests drive the rule with synthetic latencies); default: one
            onnxruntime session per contender, timed by ``measure`` (default: interleaved rounds).
        machine: the CPU fingerprint recorded with the evidence (default: this machine's).
    """
    contenders = {BASELINE: defaults_of(base), **candidate_grid(base)}
    contest = _Contest(contenders, timings or _real_timings(contenders, model_bytes, feeds, fetch, measure))
    progress(f"[{name}] session profile: screening {len(contenders)} settings at batch 1 and {LARGE_BATCH}, then "
             f"each winner against onnxruntime's defaults in {ROUNDS} interleaved rounds")
    best1, table1 = contest.screen(1)
    chosen = contest.batch1(best1)
    best_l, table_l = contest.screen(LARGE_BATCH)
    large_key, admissible = contest.large(chosen, best_l)
    one_session = ""
    if large_key is not None and len(model_bytes) > LARGE_SESSION_MAX_BYTES:
        one_session = (f" (one session: a second would hold another copy of the "
                       f"{len(model_bytes) / 2**20:.0f} MB graph's weights)")
        if chosen not in admissible:  # the batch-1 choice loses at the large batch: the defaults serve both
            chosen = BASELINE
        large_key = None
    profile = contenders[chosen]
    large = profile_changes(profile, contenders[large_key]) if large_key is not None else {}
    decision = (f"batch 1: {'onnxruntime defaults' if chosen == BASELINE else chosen}; batch {LARGE_BATCH}: "
                + ("the same session" if large_key is None else f"a second session with {large_key}") + one_session)
    progress(f"[{name}] session profile: {decision}")
    measured = {**base.measured, "batch1": {"screen": table1, "fastest": best1},
                f"batch{LARGE_BATCH}": {"screen": table_l, "fastest": best_l},
                "method": f"screening: interleaved medians over {SCREEN_ROUNDS} rounds; decision: see evidence"}
    return dataclasses.replace(profile, evidence=_evidence(contest.trials, decision, machine), measured=measured,
                               large_batch=large, large_batch_from=LARGE_BATCH_FROM if large else 0)


def _evidence(trials: list[ProfileTrial], decision: str, machine: dict[str, Any] | None) -> ProfileEvidence:
    if machine is None:
        from medinfer.tools.fingerprint import cpu

        machine = {k: cpu()[k] for k in ("model", "arch", "flags", "usable_cores")}
    import onnxruntime

    return ProfileEvidence(rule=RULE, margin=MARGIN, batches=(1, LARGE_BATCH), trials=tuple(trials),
                           decision=decision, cpu=machine, onnxruntime=onnxruntime.__version__, busy_cores=BUSY_CORES)


def chosen_profile(spec: ModelSpec, model_bytes: bytes, input_name: str, sample_x: Any, progress: Progress = quiet,
                   timings: Timings | None = None) -> SessionProfile:
    """The profile to ship for ``spec`` (its own profile unchanged when ``spec.measure_profile`` is False),
    measured on ``sample_x`` (held-out inputs, tiled to each batch size)."""
    base: SessionProfile = spec.profile
    if not spec.measure_profile:
        return base

    def batch_feeds(n: int) -> dict[str, np.ndarray]:
        return feeds(input_name, tile(sample_x, n))

    return choose_profile(base, model_bytes, batch_feeds, [spec.score_output], timings=timings, progress=progress,
                          name=spec.name)
