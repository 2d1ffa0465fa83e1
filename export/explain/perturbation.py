"""Explanations by the model's own graph on perturbed copies (methods ``occlusion`` and ``masking``).

No explanation graph is made: the device runs the validated model graph on a batch of copies built in numpy
(:mod:`medinfer.explain_perturb`). The gate compares that on-device computation (onnxruntime, the shipped graph)
with the same copies scored by the native model, on held-out samples, within the model's parity tolerance: the
copies are inputs the model's own gate never saw (occluded squares, repeated time steps).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from medinfer.explain import Explainer
from medinfer.explain_spec import ExplanationEntry

from ...train.artifact import calibration_indices
from . import graphs
from .context import Built, Context

GATE_SAMPLES = 4  # held-out samples whose perturbed copies go through the native model too


def _gate(ctx: Context, entry: ExplanationEntry, arrays: dict[str, np.ndarray], subject: Any) -> dict[str, Any]:
    """The on-device explanation (onnxruntime) vs the same copies scored natively, on the first held-out samples."""
    from medinfer.explain import Feeds

    score_output = ctx.spec.score_output
    name = ctx.input_name

    def onnx_scores(feeds: Feeds) -> np.ndarray:
        return np.asarray(ctx.model_session.run([score_output], {name: feeds[name]})[0])

    def native_scores(feeds: Feeds) -> np.ndarray:
        native = ctx.native or (lambda X: ctx.spec.native_outputs(ctx.model, X))
        return np.asarray(native(feeds[name])[score_output])

    X = np.asarray(ctx.dataset.X_test[:GATE_SAMPLES], np.float32)
    feeds = {name: X}
    got = Explainer(subject, entry, arrays, onnx_scores, None).explain(feeds)
    ref = Explainer(subject, entry, arrays, native_scores, None).explain(feeds)
    tol = ctx.spec.parity
    report = {"reference": "the same perturbed copies scored by the native model",
              "attributions": graphs.gate(ctx.spec.name, f"{entry.method} effects vs native", got.values, ref.values,
                                          tol.atol, tol.rtol)}
    if got.groups:
        report["groups"] = graphs.gate(ctx.spec.name, "feature-group effects vs native",
                                       np.stack(list(got.groups.values()), 1), np.stack(list(ref.groups.values()), 1),
                                       tol.atol, tol.rtol)
    return report


def build_occlusion(ctx: Context, subject: Any) -> Built:
    """Occlusion of a square ``window`` every ``stride`` px with the patch's median; cells of ``cell`` px."""
    s = ctx.settings
    params = {"window": int(s.get("window", 20)), "stride": int(s.get("stride", 10)), "cell": int(s.get("cell", 10)),
              "fill": "the patch's median"}
    entry = ExplanationEntry(
        method="occlusion", explains=str(s.get("explains", "score")), units="probability",
        baseline="a square of the patch set to the patch's median value (its background)", params=params,
        atol=ctx.spec.parity.atol)
    ctx.progress(f"[{ctx.spec.name}] explanation (occlusion {params['window']} px every {params['stride']} px): gating "
                 f"{GATE_SAMPLES} held-out patches' occluded copies against the native model")
    report = _gate(ctx, entry, {}, subject)
    return Built(_with(entry, parity=report), None, {}, None)


def build_masking(ctx: Context, subject: Any) -> Built:
    """Masking of each past time step (carry forward, events 0) and each feature group (training mean)."""
    s = ctx.settings
    names = list(subject.input.names or ())
    groups = {g: [names.index(f) for f in features] for g, features in s["groups"].items()}
    events = [names.index(f) for f in s.get("events", ())]
    X_train = np.asarray(ctx.dataset.X_train, np.float32)
    rows = X_train[calibration_indices(len(X_train), ctx.seed)]
    mean = rows.reshape(-1, rows.shape[-1]).mean(axis=0)
    params = {"groups": groups, "events": events, "mean": [round(float(v), 6) for v in mean],
              "mean_of": f"{len(rows)} training sequences (seeded)",
              "step_minutes": float((subject.input.facts or {}).get("step_minutes", 1))}
    entry = ExplanationEntry(
        method="masking", explains=str(s.get("explains", "forecast")),
        units=next((o.units or "" for o in ctx.spec.outputs() if o.name == ctx.spec.score_output), ""),
        baseline="a masked time step repeats the last unmasked step (events such as a bolus or a meal become 0); a "
                 "masked feature group takes its training mean at every step", params=params,
        atol=ctx.spec.parity.atol)
    ctx.progress(f"[{ctx.spec.name}] explanation (masking {len(groups)} groups and each time step): gating "
                 f"{GATE_SAMPLES} held-out sequences' masked copies against the native model")
    report = _gate(ctx, entry, {}, subject)
    return Built(_with(entry, parity=report), None, {}, None)


def _with(entry: ExplanationEntry, **changes: Any) -> ExplanationEntry:
    import dataclasses

    return dataclasses.replace(entry, **changes)
