"""Does a session profile beat onnxruntime's default options, by a margin that survives noise?

One rule, used at export (``medinfer.export.profiles`` chooses the profile a bundle ships) and on the target device
(``medinfer bench BUNDLE --check-profile``): the contender and the baseline run in the SAME interleaved rounds
(:func:`medinfer.tools.bench.interleaved_rounds`); per round, the ratio of their median latencies is taken, so a
slow stretch of the machine hits both. The contender **wins** when it is faster by more than the margin in every
round (the worst-of-rounds ratio is at most ``1 - margin``); it **loses** when it is slower by more than the
margin in every round (the best-of-rounds ratio is at least ``1 + margin``); anything else is within noise, and
then the exporter keeps onnxruntime's defaults. Numpy + onnxruntime only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..build_records import ProfileTrial
from ..errors import ProfileLoses
from ..loader import load
from ..model import Model
from ..session import large_batch_from, performance_settings, session_for_batch
from .bench import batch_input, interleaved_rounds

MARGIN = 0.03
ROUNDS = 7
LARGE_BATCH = 64
BASELINE = "onnxruntime defaults"
BUSY_CORES = 0.25  # other processes using more than a quarter of a core on average: the machine is busy

#: ``measure(fns, rounds, seconds) -> {name: [per-query ns of round 0, round 1, ...]}``; tests inject synthetic ones.
Measure = Callable[[Mapping[str, Callable[[], Any]], int, float], dict[str, list[np.ndarray]]]


def timed(fns: Mapping[str, Callable[[], Any]], rounds: int, seconds: float) -> dict[str, list[np.ndarray]]:
    """The real measurement: interleaved rounds, at least 3 queries per block."""
    return interleaved_rounds(fns, seconds=seconds, rounds=rounds, warmup=5, min_queries=3)


class OtherLoad:
    """Measures how many CPU cores OTHER processes kept busy while the ``with`` block ran (Linux: /proc/stat's
    busy time of every CPU, steal included, minus this process's own CPU time); ``cores`` is None elsewhere.

    A setting that uses fewer threads, or no spinning, wins when other processes compete for the cores and loses on
    a quiet device: timings taken while the machine is busy say little about the device.
    """

    def __init__(self) -> None:
        self.cores: float | None = None

    @staticmethod
    def _busy() -> float | None:
        import os

        try:
            with open("/proc/stat", encoding="ascii") as fh:
                fields = [int(v) for v in fh.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")  # user .. steal

    def __enter__(self) -> OtherLoad:
        import os
        import time

        self._start = (time.perf_counter(), self._busy(), sum(os.times()[:2]))
        return self

    def __exit__(self, *exc: object) -> None:
        import os
        import time

        wall0, busy0, own0 = self._start
        busy1 = self._busy()
        wall = time.perf_counter() - wall0
        if busy0 is None or busy1 is None or wall <= 0:
            return
        self.cores = max(0.0, ((busy1 - busy0) - (sum(os.times()[:2]) - own0)) / wall)


def round_ratios(contender: Sequence[np.ndarray], baseline: Sequence[np.ndarray]) -> list[float]:
    """Per round: the contender's median latency over the baseline's median in the same round."""
    if len(contender) != len(baseline) or not contender:
        raise ValueError(f"need the same number of rounds (>= 1), got {len(contender)} and {len(baseline)}")
    return [float(np.median(c) / np.median(b)) for c, b in zip(contender, baseline)]


def trial(batch: int, contender: str, baseline: str, settings: Mapping[str, Any], rounds: dict[str, list[np.ndarray]],
          required: float) -> ProfileTrial:
    """The :class:`ProfileTrial` of ``contender`` against ``baseline`` from one interleaved measurement: it wins
    when its worst-of-rounds ratio is at most ``required``."""
    ratios = round_ratios(rounds[contender], rounds[baseline])
    bound = max(ratios)
    return ProfileTrial(batch=batch, contender=contender, baseline=baseline, settings=dict(settings),
                        rounds=len(ratios), ratios=tuple(round(r, 4) for r in ratios), bound=round(bound, 4),
                        required=required, wins=bound <= required,
                        contender_p50_us=round(float(np.median(np.concatenate(rounds[contender]))) / 1e3, 3),
                        baseline_p50_us=round(float(np.median(np.concatenate(rounds[baseline]))) / 1e3, 3))


def verdict(ratios: Sequence[float], margin: float = MARGIN) -> str:
    """``"wins"`` (faster by more than ``margin`` in every round), ``"loses"`` (slower by more than ``margin`` in
    every round) or ``"within noise"``."""
    if max(ratios) <= 1.0 - margin:
        return "wins"
    if min(ratios) >= 1.0 + margin:
        return "loses"
    return "within noise"


def sample_input(model: Model, batch: int) -> Any:
    """Realistic inputs: the bundle's parity sample (held-out data) tiled to ``batch``, else its golden inputs."""
    sample = model.parity_sample()
    if sample is None:
        return batch_input(model, batch)
    inputs, _ = sample
    return model.as_input({k: np.concatenate([v] * -(-batch // len(v)))[:batch] for k, v in inputs.items()})


def check_profile(path: str | Path, *, variant: str = "default", providers: Sequence[str] | None = None,
                  batches: Sequence[int] | None = None, rounds: int = ROUNDS, seconds: float = 3.0,
                  margin: float = MARGIN, measure: Measure | None = None) -> dict[str, Any]:
    """Re-measure the bundle's session profile against onnxruntime's default options on THIS machine.

    Both are loaded through :func:`medinfer.load` (the bundle's profile, and ``session_profile="default"``) and
    time ``Model.predict`` on the same inputs, interleaved, at each batch size (default: the sizes the export
    measured, else 1 and 64). A batch size at which the bundle already uses onnxruntime's defaults is not timed.

    Returns:
        A JSON-ready report: per batch size the settings, per-round ratios (bundle / default), p50s and the
        verdict (``wins`` / ``within noise`` / ``loses`` / ``defaults``), and ``loses`` overall.
    """
    measure = measure or timed
    bundle = load(path, providers, variant=variant)
    default = load(path, providers, variant=variant, session_profile="default")
    profile = bundle.manifest.profile
    evidence = profile.evidence
    sizes = list(batches or (evidence.batches if evidence else (1, max(LARGE_BATCH, large_batch_from(profile) or 0))))
    rows = []
    for batch in sizes:
        session = session_for_batch(profile, batch)  # what load() runs this batch size with
        used = session.profile
        row: dict[str, Any] = {"batch": batch, "settings": performance_settings(used),
                               "session": "large-batch" if session.large else "batch-1"}
        if used.onnxruntime_defaults:
            rows.append({**row, "verdict": "defaults"})
            continue
        fns: dict[str, Callable[[], Any]] = {"bundle": _caller(bundle, sample_input(bundle, batch)),
                                             "default": _caller(default, sample_input(bundle, batch))}
        with OtherLoad() as other:
            times = measure(fns, rounds, seconds)
        ratios = round_ratios(times["bundle"], times["default"])
        rows.append({**row, "ratios": [round(r, 4) for r in ratios], "median_ratio": round(float(np.median(ratios)), 4),
                     "other_cores": None if other.cores is None else round(other.cores, 3),
                     "bundle_p50_us": float(np.median(np.concatenate(times["bundle"]))) / 1e3,
                     "default_p50_us": float(np.median(np.concatenate(times["default"]))) / 1e3,
                     "verdict": verdict(ratios, margin)})
    from .fingerprint import cpu

    return {"kind": "medinfer.check_profile", "bundle": bundle.name, "variant": variant, "rounds": rounds,
            "margin": margin, "batches": rows, "loses": any(r["verdict"] == "loses" for r in rows),
            "exported_on": evidence.cpu.get("model") if evidence else None, "cpu": cpu()}


def _caller(model: Model, x: Any) -> Callable[[], Any]:
    return lambda: model.predict(x)


def raise_if_loses(report: Mapping[str, Any]) -> None:
    """Raise :class:`ProfileLoses` (exit 15) naming the batch sizes where the bundle's profile loses."""
    lost = [r for r in report["batches"] if r["verdict"] == "loses"]
    if lost:
        where = ", ".join(f"batch {r['batch']}: {r['median_ratio']:.2f}x the defaults' latency (every round slower "
                          f"by more than {report['margin']:.0%})" for r in lost)
        raise ProfileLoses(f"{report['bundle']}: the bundle's session profile loses to onnxruntime's default options "
                           f"on this machine ({where}); load it with session_profile=\"default\" here, or re-export "
                           "the bundle on this machine class")


def format_report(report: Mapping[str, Any]) -> str:
    """A readable table of :func:`check_profile`'s report."""
    from .tables import table

    rows = []
    for r in report["batches"]:
        settings = ", ".join(f"{k}={v}" for k, v in r["settings"].items())
        if r["verdict"] == "defaults":
            rows.append([r["batch"], r["session"], settings, "", "", "", "same as the defaults"])
            continue
        other = r.get("other_cores")
        rows.append([r["batch"], r["session"], settings, f"{r['bundle_p50_us']:.1f}", f"{r['default_p50_us']:.1f}",
                     f"{r['median_ratio']:.3f} [{min(r['ratios']):.3f}, {max(r['ratios']):.3f}]",
                     "?" if other is None else f"{other:.2f}", r["verdict"]])
    head = (f"{report['bundle']} [{report['variant']}]: bundle profile vs onnxruntime's default options, "
            f"{report['rounds']} interleaved rounds, margin {report['margin']:.0%}")
    text = head + "\n" + table(rows, ["batch", "session", "bundle settings", "bundle p50 µs", "default p50 µs",
                                      "ratio median [best, worst round]", "other load (cores)", "verdict"])
    if any((r.get("other_cores") or 0.0) > BUSY_CORES for r in report["batches"]):
        text += (f"\nnote: other processes kept more than {BUSY_CORES:g} of a core busy while this ran: the ratios "
                 "hold for this load, not for a quiet device")
    return text
