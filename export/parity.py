"""The fail-closed parity gate: the exported graph must reproduce the native model, or nothing ships.

Every failing check is collected (output, set, max diff, tolerance, flips) and raised as ONE ParityError, so a
failed export says everything that is wrong at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from medinfer.errors import ParityError
from medinfer.manifest import SessionProfile
from medinfer.session import cpu_session

from ..train.spec import ParityTolerance
from .feeds import feeds, n_rows, rows

if TYPE_CHECKING:
    from ..train.spec import ModelSpec


DOMAIN_TOLERANCE = ParityTolerance(atol=2e-3, rtol=2e-3)


def ort_session(model_bytes: bytes, threads: int = 1) -> Any:
    """A CPU session with ``threads`` intra-op threads (the gate's reference settings)."""
    return cpu_session(model_bytes, SessionProfile(intra_op_num_threads=threads, inter_op_num_threads=1))


def run_batched(session: Any, input_name: str, X: Any, batch: int = 256) -> dict[str, np.ndarray]:
    """Run ``X`` (one input's array, or {input name: array} for several: :mod:`.feeds`) through ``session`` in
    batches; returns all outputs by name."""
    names = [o.name for o in session.get_outputs()]
    parts: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for start in range(0, n_rows(X), batch):
        chunk = rows(X, start, start + batch)
        for n, v in zip(names, session.run(names, feeds(input_name, chunk))):
            parts[n].append(v)
    return {n: np.concatenate(v) for n, v in parts.items()}


def compare(spec: ModelSpec, native: dict[str, np.ndarray], exported: dict[str, np.ndarray], set_name: str,
            threshold: float | None, tolerance: ParityTolerance | None = None) -> tuple[dict[str, Any], list[str]]:
    """Compare one input set at the operating ``threshold``; return (report, failures)."""
    tol = tolerance or spec.parity
    failures: list[str] = []
    report: dict[str, Any] = {"n": int(len(next(iter(native.values()))))}
    for name, ref in native.items():
        got = exported[name]
        # the domain score is a distance computed in float32 in the graph (e.g. |x|^2 + |r|^2 - 2 x.r for the
        # nearest neighbours) against a float64 reference: its own, stated tolerance
        out_tol = DOMAIN_TOLERANCE if name == "domain_score" else tol
        if got.shape != ref.shape:
            failures.append(f"{set_name}: output '{name}' has shape {got.shape}, native {ref.shape}")
            continue
        if ref.dtype.kind in "f":
            diff = np.abs(got.astype(np.float64) - ref.astype(np.float64))
            allowed = out_tol.atol + out_tol.rtol * np.abs(ref.astype(np.float64))
            worst = float(diff.max(initial=0.0))
            bad = int(np.sum(~(diff <= allowed)))
            report[f"{name}_max_abs_diff"] = worst
            if bad:
                failures.append(
                    f"{set_name}: output '{name}' max abs diff {worst:.3g} exceeds tolerance atol={out_tol.atol:g} "
                    f"rtol={out_tol.rtol:g} on {bad} of {ref.size} values"
                )
        else:
            mismatches = int(np.sum(got != ref))
            report[f"{name}_mismatches"] = mismatches
            if mismatches:
                failures.append(f"{set_name}: output '{name}' differs from the native model on {mismatches} samples")
    if spec.task != "regression" and not any("has shape" in f for f in failures):
        flips = int(np.sum(spec.decisions(spec.scores(native), threshold)
                           != spec.decisions(spec.scores(exported), threshold)))
        report["decision_flips"] = flips
        if flips > tol.max_decision_flips:
            failures.append(
                f"{set_name}: {flips} decisions at the operating threshold differ from the native model "
                f"(allowed {tol.max_decision_flips})"
            )
    return report, failures


def gate(spec: ModelSpec, sets: dict[str, tuple[dict[str, np.ndarray], dict[str, np.ndarray]]],
         threshold: float | None, tolerance: ParityTolerance | None = None, what: str = "export") -> dict[str, Any]:
    """Compare every input set; raise ParityError listing all failures, else return the parity report."""
    tol = tolerance or spec.parity
    report: dict[str, Any] = {"tolerance": {"atol": tol.atol, "rtol": tol.rtol,
                                            "max_decision_flips": tol.max_decision_flips}, "sets": {}}
    failures: list[str] = []
    for set_name, (native, exported) in sets.items():
        sub, fails = compare(spec, native, exported, set_name, threshold, tol)
        report["sets"][set_name] = sub
        failures += fails
    report["n_samples"] = sum(s["n"] for s in report["sets"].values())
    report["max_abs_diff"] = max(
        (v for s in report["sets"].values() for k, v in s.items()
         if k.endswith("_max_abs_diff") and not k.startswith("domain_score")), default=0.0
    )
    report["decision_flips"] = sum(s.get("decision_flips", 0) for s in report["sets"].values())
    report["passed"] = not failures
    if failures:
        raise ParityError(
            f"{spec.name}: parity gate FAILED for {what} ({len(failures)} problem(s)); nothing was written:\n  - "
            + "\n  - ".join(failures)
        )
    return report


def gate_profiles(spec: ModelSpec, graphs: dict[str, bytes], profile: Any, input_name: str, X: Any,
                  references: dict[str, dict[str, np.ndarray]], tolerances: dict[str, ParityTolerance],
                  threshold: float | None, large_batch: int = 64) -> dict[str, Any]:
    """Gate every session a device will build — each graph (fp32, int8, ...) under each shipped profile (the batch-1
    profile at batch 1, the large-batch profile at ``large_batch``) — on the full held-out set.

    Args:
        graphs: {variant: graph bytes}.
        profile: the manifest's SessionProfile (its ``large_batch`` overrides make the second session).
        references: {variant: outputs} to compare with (native for the fp32 graph; the variant's own
            default-options run for a variant, whose clinical metrics were gated already).
        tolerances: {variant: tolerance}.

    Returns:
        {"<variant>/<profile>": sub-report}.

    Raises:
        ParityError: any session differs beyond its tolerance or flips a decision.
    """
    from medinfer.session import cpu_session, large_batch_from, session_for_batch

    batches = {"batch1": 1}
    start = large_batch_from(profile)
    if start is not None:  # the large-batch session, at a batch size it runs
        batches["large_batch"] = max(large_batch, start)
    out: dict[str, Any] = {}
    failures: list[str] = []
    for variant, data in graphs.items():
        for label, batch in batches.items():
            prof = session_for_batch(profile, batch).profile
            session = cpu_session(data, prof)
            got = run_batched(session, input_name, X, batch=batch)
            sub, fails = compare(spec, references[variant], got, f"{variant}/{label} (batch {batch})", threshold,
                                 tolerances[variant])
            sub.update(intra_op_num_threads=prof.intra_op_num_threads, batch=batch)
            out[f"{variant}/{label}"] = sub
            failures += fails
    if failures:
        raise ParityError(f"{spec.name}: parity gate FAILED for the shipped session profiles ({len(failures)} "
                          "problem(s)); nothing was written:\n  - " + "\n  - ".join(failures))
    return out
