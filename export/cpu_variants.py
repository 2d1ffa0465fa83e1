"""Which variant ``load(variant="auto")`` runs on each CPU class (``profile.variant_by_cpu``), chosen at export.

The rule (:func:`choose`): on the export machine, at batch 1 with one intra-op thread (a device scoring one patch),
the validated fp32 graph and every int8 patch variant run in ``ROUNDS`` interleaved rounds; the variant with the
lowest median is preferred for this CPU's classes if it beats the fp32 graph by more than ``MARGIN`` in EVERY round
(the per-round ratio of medians, :func:`medinfer.tools.profile_check.trial`). It is written for the export CPU's
most specific class and, where that class sums int8 products exactly (VNNI, AMX), for the other exact x86 classes
too: a gated int8 graph computes the same integers there (their speed is not measured: ``measured`` says where it
was). CPUs without exact int8 arithmetic (AVX2 without VNNI: saturating 16-bit pair sums) get no entry, i.e. the
fp32 graph. The measurement is injectable (``timings=``): tests drive the rule with synthetic latencies.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from medinfer.cpu_class import EXACT_INT8, GENERIC, X86_CLASSES, this_cpu
from medinfer.tools.profile_check import MARGIN, ROUNDS, trial

from ..train.spec import Progress, quiet

BASELINE = "default"
SECONDS = 0.3  # per contender and round
RULE = (f"at batch 1 with 1 intra-op thread, the int8 patch variant with the lowest median, if faster than the fp32 "
        f"graph by more than {MARGIN:.0%} in every one of {ROUNDS} interleaved rounds; written for the export CPU's "
        "class and, where it sums int8 products exactly, the other exact x86 classes")
_X86 = {name for name, _ in X86_CLASSES}

#: ``timings(names, rounds, seconds) -> {name: [per-query ns of round 0, round 1, ...]}``
Timings = Callable[[list[str], int, float], dict[str, list[np.ndarray]]]


def choose(times: Mapping[str, list[np.ndarray]], classes: tuple[str, ...],
           baseline: str = BASELINE) -> tuple[dict[str, str], dict[str, Any]]:
    """(class -> variant, evidence) from interleaved per-round latencies of ``baseline`` and the int8 variants.

    Args:
        times: per variant, the per-query ns of each round (the same rounds for all).
        classes: the export CPU's classes, most specific first (:func:`medinfer.cpu_class.cpu_classes`).
    """
    medians = {k: float(np.median(np.concatenate(v))) for k, v in times.items()}
    others = [k for k in times if k != baseline]
    evidence: dict[str, Any] = {"rule": RULE, "cpu_classes": list(classes),
                                "p50_us": {k: round(v / 1e3, 3) for k, v in medians.items()}}
    if not others or baseline not in times:
        return {}, {**evidence, "decision": "no int8 patch variant"}
    best = min(others, key=medians.__getitem__)
    t = trial(1, best, baseline, {}, dict(times), 1.0 - MARGIN)
    evidence["trial"] = {"contender": best, "ratios": list(t.ratios), "bound": t.bound, "wins": t.wins}
    own = classes[0] if classes else GENERIC
    if not t.wins or own == GENERIC:
        return {}, {**evidence, "decision": f"the fp32 graph ({best} did not win in every round)"
                    if not t.wins else "the fp32 graph (unknown CPU class)"}
    targets = [own] + ([c for c in sorted(EXACT_INT8 & _X86) if c != own] if own in EXACT_INT8 & _X86 else [])
    evidence["measured"] = own
    return {c: best for c in targets}, {**evidence, "decision": f"{best} on {', '.join(targets)}"}


def preference(graphs: Mapping[str, bytes], feeds: dict[str, Any], fetch: list[str], *,
               timings: Timings | None = None, classes: tuple[str, ...] | None = None,
               progress: Progress = quiet, name: str = "") -> tuple[dict[str, str], dict[str, Any]]:
    """Measure ``graphs`` (``"default"`` + the int8 patch variants, by key) on ``feeds`` (one batch-1 input) and
    apply :func:`choose`; ({} , evidence) when there is no int8 variant."""
    if len(graphs) < 2:
        return {}, {"rule": RULE, "decision": "no int8 patch variant"}
    if timings is None:
        import onnxruntime as ort
        from medinfer.tools.profile_check import timed

        def real(names: list[str], rounds: int, seconds: float) -> dict[str, list[np.ndarray]]:
            sessions = {}
            for k in names:
                so = ort.SessionOptions()
                so.intra_op_num_threads, so.inter_op_num_threads, so.log_severity_level = 1, 1, 3
                sessions[k] = ort.InferenceSession(graphs[k], so, providers=["CPUExecutionProvider"])
            return timed({k: (lambda s=s: s.run(fetch, feeds)) for k, s in sessions.items()}, rounds, seconds)

        timings = real
    progress(f"[{name}] variant per CPU class: {', '.join(graphs)} at batch 1, 1 thread, {ROUNDS} interleaved rounds")
    chosen, evidence = choose(timings(list(graphs), ROUNDS, SECONDS * len(graphs)),
                              classes if classes is not None else this_cpu())
    progress(f"[{name}] variant per CPU class: {evidence['decision']}")
    return chosen, evidence
