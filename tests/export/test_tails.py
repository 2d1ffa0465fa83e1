"""The tail rule (export/tails.py) driven with synthetic interleaved latencies: a setting ships only if it lowers
p99.9 without raising p50, on a sub-50 µs model, measured on a quiet machine."""

from __future__ import annotations

import numpy as np
from medinfer.export.tails import BASELINE, choose, tail_profile
from medinfer.manifest import SessionProfile


def _rounds(p50_us: float, spikes_us: float, n: int = 10_000, rounds: int = 8, every: int = 500) -> list[np.ndarray]:
    """Per round: ``n`` calls at ``p50_us`` with one call in ``every`` taking ``spikes_us`` (a wake-up)."""
    out = []
    for _ in range(rounds):
        ns = np.full(n, p50_us * 1e3)
        ns[::every] = spikes_us * 1e3
        out.append(ns)
    return out


def test_one_thread_ships_when_it_cuts_the_tail_and_keeps_p50() -> None:
    times = {BASELINE: _rounds(12.0, 4000.0), "1 intra-op thread": _rounds(11.5, 40.0)}
    chosen, evidence = choose(times, other_cores=0.05)
    assert chosen == "1 intra-op thread" and evidence["settings"]["1 intra-op thread"]["p99.9_us"] < 100


def test_a_lower_tail_bought_with_a_higher_p50_does_not_ship() -> None:
    times = {BASELINE: _rounds(12.0, 4000.0), "all cores, spinning off": _rounds(14.0, 40.0)}
    chosen, evidence = choose(times, other_cores=0.0)
    assert chosen == BASELINE and "no setting lowered the tail" in evidence["decision"]


def test_a_model_above_the_sub_50_us_class_keeps_its_profile() -> None:
    times = {BASELINE: _rounds(80.0, 4000.0), "1 intra-op thread": _rounds(78.0, 90.0)}
    assert choose(times, other_cores=0.0)[0] == BASELINE


def test_a_win_on_a_busy_machine_does_not_count() -> None:
    times = {BASELINE: _rounds(12.0, 4000.0), "1 intra-op thread": _rounds(11.5, 40.0)}
    chosen, evidence = choose(times, other_cores=1.5)
    assert chosen == BASELINE and "not counted" in evidence["decision"]


def test_the_shipped_profile_keeps_large_batches_on_the_profile_s_own_settings() -> None:
    def timings(names: list[str], rounds: int, seconds: float):
        fake = {BASELINE: _rounds(12.0, 4000.0), "1 intra-op thread": _rounds(11.0, 40.0),
                "all cores, spinning off": _rounds(13.0, 3000.0)}
        return {n: fake[n] for n in names}, 0.0

    base = SessionProfile(onnxruntime_defaults=True)
    shipped = tail_profile(base, b"tiny graph", {}, [], timings=timings)
    assert shipped.intra_op_num_threads == 1 and shipped.onnxruntime_defaults is False
    assert shipped.large_batch_from == 16 and shipped.large_batch["onnxruntime_defaults"] is True
    assert shipped.measured["tails"]["decision"] == "1 intra-op thread"


def test_a_profile_s_own_large_batch_session_is_kept_as_it_was() -> None:
    from medinfer.session import performance_settings, session_for_batch

    def timings(names: list[str], rounds: int, seconds: float):
        fake = {BASELINE: _rounds(12.0, 4000.0), "1 intra-op thread": _rounds(11.0, 40.0),
                "all cores, spinning off": _rounds(13.0, 3000.0)}
        return {n: fake[n] for n in names}, 0.0

    base = SessionProfile(intra_op_num_threads=2, allow_spinning=True, large_batch={"intra_op_num_threads": 4},
                          large_batch_from=32)
    shipped = tail_profile(base, b"tiny graph", {}, [], timings=timings)
    assert performance_settings(session_for_batch(shipped, 1).profile)["intra_op_num_threads"] == 1
    for batch in (32, 64):  # the large batches run exactly the session they ran before (threads AND spinning)
        assert (performance_settings(session_for_batch(shipped, batch).profile)
                == performance_settings(session_for_batch(base, batch).profile))
    assert session_for_batch(shipped, 31).profile.intra_op_num_threads == 1


def test_a_model_screened_well_above_the_class_is_not_measured_again() -> None:
    def timings(names: list[str], rounds: int, seconds: float):
        raise AssertionError("measured a model the profile's screening already placed at 900 µs")

    base = SessionProfile(measured={"batch1": {"screen": [{"candidate": "x", "p50_us": 900.0}]}})
    shipped = tail_profile(base, b"graph", {}, [], timings=timings)
    assert shipped.intra_op_num_threads == base.intra_op_num_threads and "screened" in shipped.measured["tails"][
        "decision"]
