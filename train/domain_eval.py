"""How an applicability-domain guard is calibrated and judged: the threshold, the shifted sets, the goals.

The threshold is chosen on in-domain data the model never saw (:func:`choose_threshold`) and judged at that very
threshold, not only by AUROC: the share of each shifted set it REFUSES (scores above the threshold) against a goal
per kind of shift (:data:`GOALS`), and the share of held-out in-domain data it ACCEPTS against the coverage goal,
measured on samples that chose nothing (neither a part, nor a scale, nor the threshold).

Shifted sets come in families (e.g. "rescale faults", "texture nonsense", "other chemical series"). Each family is
either a ``design`` family (used while choosing the guard's parts: its numbers are reported but say little about new
faults) or an ``evaluation`` family (held out while designing: what the guard does on shifts it was not tuned on).
Each set says whether it is a synthetic corruption of real samples or real data of another population.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import comb
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .domain import DomainGuard

# Share of a shifted set the guard must refuse at its threshold, per kind of shift:
# - gross: a fault of the input (wrong calibration, units, order, a dead sensor) that makes any answer meaningless;
# - nonsense: input no real sample can be (physically impossible values, word salad, mixed-up descriptors);
# - subtle: real data of another population (another chemical series, cell type, body region, age group).
GOALS = {"gross": 0.95, "nonsense": 0.90, "subtle": 0.60}
ROLES = ("design", "evaluation")
CONFIDENCE = 0.9  # the threshold accepts >= coverage of new in-domain data with this confidence where data allow


@dataclass
class Shift:
    """A shifted set to evaluate a guard on: its scores (and, when the set needs its own in-domain reference, e.g.
    a guard refitted without one cell type, the in-domain scores to compare with).

    ``role`` is ``design`` (its family was used to choose the guard) or ``evaluation`` (its family was held out);
    ``synthetic``: a programmatic corruption of real samples (True) or real data of another population (False);
    ``auroc_goal``: an AUROC the guard should reach on this set besides the refused share of its kind."""

    kind: str  # "gross", "nonsense" or "subtle" (see GOALS)
    scores: np.ndarray
    description: str
    inside: np.ndarray | None = None
    source: str = ""  # where the shifted data comes from (package==version:file), for the card
    role: str = ""
    family: str = ""
    synthetic: bool = True
    auroc_goal: float | None = None
    note: str = ""  # what makes the set hard to refuse (the card shows it when the goal is missed)

    def to_dict(self, reference: np.ndarray, threshold: float) -> dict[str, Any]:
        inside = reference if self.inside is None else self.inside
        refused = round(float(np.mean(self.scores > threshold)), 4) if len(self.scores) else None
        return {"kind": self.kind, "family": self.family, "role": self.role, "synthetic": bool(self.synthetic),
                "description": self.description, "n": int(len(self.scores)),
                "auroc": round(auroc(inside, self.scores), 4), "refused": refused, "source": self.source,
                **({"note": self.note} if self.note else {})}


def check_shifts(shifts: dict[str, Shift]) -> None:
    """Every shift names a known kind, a role and a family, and no family is both designed on and held out.

    Raises:
        ValueError: naming the shift or family at fault.
    """
    roles: dict[str, set[str]] = {}
    for name, s in shifts.items():
        if s.kind not in GOALS:
            raise ValueError(f"shift {name!r}: kind {s.kind!r} is not one of {sorted(GOALS)}")
        if s.role not in ROLES:
            raise ValueError(f"shift {name!r}: role {s.role!r} is not one of {ROLES} (say whether its family was "
                             "used to design the guard)")
        if not s.family:
            raise ValueError(f"shift {name!r} names no family")
        roles.setdefault(s.family, set()).add(s.role)
    mixed = sorted(f for f, r in roles.items() if len(r) > 1)
    if mixed:
        raise ValueError(f"shift families {mixed} are both design and evaluation: hold whole families out")


def threshold_confidence(n: int, above: int, coverage: float) -> float:
    """Probability that a threshold placed just below the ``above + 1``-th largest of ``n`` calibration scores
    accepts at least ``coverage`` of new in-domain data: P(Binomial(n, 1 - coverage) >= above + 1) (distribution
    free: it only assumes calibration and new data are exchangeable)."""
    p = 1.0 - coverage
    return 1.0 - sum(comb(n, i) * p ** i * (1.0 - p) ** (n - i) for i in range(above + 1))


def choose_threshold(scores: np.ndarray, coverage: float, confidence: float = CONFIDENCE) -> float:
    """The threshold that accepts at least ``coverage`` of new in-domain data with ``confidence``: above the
    ``j + 1`` largest calibration scores for the largest ``j`` that keeps :func:`threshold_confidence` >=
    ``confidence`` (the largest score when even ``j = 0`` falls short: small calibration sets), placed midway to the
    next score so that no calibration score sits on it."""
    s = np.sort(np.asarray(scores, dtype=np.float64))
    n = len(s)
    above = 0
    while above + 1 < n and threshold_confidence(n, above + 1, coverage) >= confidence:
        above += 1
    k = n - 1 - above  # the smallest calibration score the threshold must accept
    upper = s[k + 1] if k + 1 < n else s[k] * 1.05 + 1e-6
    return float(np.float32((s[k] + upper) / 2))


def calibration_facts(scores: np.ndarray, threshold: float, coverage: float) -> dict[str, Any]:
    """How the threshold sits on its calibration scores (for the manifest)."""
    s = np.asarray(scores, dtype=np.float64)
    above = int(np.sum(s > threshold))
    return {"n": int(len(s)), "above_threshold": above,
            "confidence": round(threshold_confidence(len(s), above, coverage), 4),
            "rule": f"above all but the {above} largest of {len(s)} calibration scores: the most refusing threshold "
                    f"that still accepts >= {coverage:.0%} of new in-domain data with {CONFIDENCE:.0%} confidence "
                    "(binomial order statistic; the largest score when the data are too few for that confidence)"}


def auroc(inside: np.ndarray, outside: np.ndarray) -> float:
    """Area under the ROC of ``domain_score`` separating shifted (positive) from in-domain samples (ties: 0.5)."""
    a = np.asarray(inside, dtype=np.float64)
    b = np.asarray(outside, dtype=np.float64)
    if not len(a) or not len(b):
        return float("nan")
    allv = np.concatenate([a, b])
    order = allv.argsort(kind="mergesort")
    ranks = np.empty(len(allv))
    sorted_v = allv[order]
    i = 0
    while i < len(allv):  # average ranks of ties
        j = i
        while j + 1 < len(allv) and sorted_v[j + 1] == sorted_v[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[len(a):].sum() - len(b) * (len(b) + 1) / 2) / (len(a) * len(b)))


def selective_curve(scores: np.ndarray, errors: np.ndarray, points: int = 11) -> list[dict[str, float]]:
    """Error among the accepted samples vs coverage, accepting the lowest domain scores first."""
    order = np.argsort(scores, kind="mergesort")
    err = np.asarray(errors, dtype=np.float64)[order]
    out = []
    for cov in np.linspace(0.5, 1.0, points):
        n = max(1, int(round(cov * len(err))))
        out.append({"coverage": round(float(n / len(err)), 4), "error": round(float(err[:n].mean()), 6)})
    return out


def goal_of(shift: dict[str, Any], auroc_goal: float | None) -> dict[str, Any]:
    """The goal of one shifted set at the threshold: its kind's refused share (and an AUROC where one is set)."""
    want = GOALS[shift["kind"]]
    met = shift["refused"] is not None and shift["refused"] >= want
    goal: dict[str, Any] = {"refused_goal": want}
    if auroc_goal is not None:
        goal["auroc_goal"] = auroc_goal
        met = met and shift["auroc"] >= auroc_goal
    return {**goal, "met": bool(met)}


def evaluate(guard: DomainGuard, shifts: dict[str, Shift], cal_scores: np.ndarray, X_eval: Any, errors: np.ndarray,
             coverage: float, calibration: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Choose the threshold on ``cal_scores`` (in-domain, never trained on), then measure on ``X_eval`` (in-domain,
    never used to fit or choose anything): acceptance, AUROC and refused share per shift against its goal, the
    selective-prediction curve (``errors`` per eval sample).

    Returns:
        (the manifest's ``domain`` fields, arrays for the card's figure).
    """
    check_shifts(shifts)
    threshold = choose_threshold(cal_scores, coverage)
    inside = guard.score(X_eval)
    report = {name: s.to_dict(inside, threshold) for name, s in shifts.items()}
    goals = {name: goal_of(report[name], s.auroc_goal) for name, s in shifts.items()}
    acceptance = float(np.mean(inside <= threshold))
    out = {
        "threshold": threshold, "coverage": coverage, "method": guard.method,
        "calibration": {"data": calibration, **calibration_facts(cal_scores, threshold, coverage)},
        "evaluation": {"n": int(len(inside)), "acceptance": round(acceptance, 4),
                       "acceptance_goal_met": bool(acceptance >= coverage),
                       "parts": [p.label for p in guard.parts], "shifts": report, "goals": goals,
                       "design": sorted(n for n, s in shifts.items() if s.role == "design"),
                       "evaluation": sorted(n for n, s in shifts.items() if s.role == "evaluation"),
                       "selective": selective_curve(inside, errors),
                       "note": "in-domain acceptance on held-out samples that chose nothing; refused = share of a "
                               "shifted set above the shipped threshold; design families were used to choose the "
                               "guard's parts, evaluation families were held out; scores measured with the native "
                               "reference (numpy), which the parity gate checks the graph's domain_score against"},
    }
    arrays = {"inside": inside, **{f"shift:{k}": s.scores for k, s in shifts.items()}}
    return out, arrays


def figure(arrays: dict[str, np.ndarray], report: dict[str, Any], path: Any) -> str:
    """The card's figure: domain-score distributions (in-domain held-out vs each shifted set, the threshold
    marked; a log axis, so that faults scoring thousands of times the threshold do not squash the rest) and the
    selective-prediction curve (error among accepted samples vs coverage). Returns ``plots/<file>``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    threshold = float(report["threshold"])
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    inside = np.asarray(arrays["inside"], dtype=np.float64)
    shifts = {k.split(":", 1)[1]: np.asarray(v, dtype=np.float64) for k, v in arrays.items() if k.startswith("shift:")}
    values = np.concatenate([inside, *shifts.values()])
    low = max(float(np.percentile(values[values > 0], 0.5)) if np.any(values > 0) else 1e-3, threshold * 1e-3, 1e-9)
    high = max(float(values.max(initial=0.0)), threshold * 2.0, low * 10)
    bins = np.geomspace(low, high, 48)
    a.hist(np.clip(inside, low, high), bins=bins, weights=np.full(len(inside), 1.0 / max(len(inside), 1)),
           alpha=0.6, label=f"held-out, in domain ({len(inside)})")
    for name, v in shifts.items():
        s = report["evaluation"]["shifts"][name]
        a.hist(np.clip(v, low, high), bins=bins, weights=np.full(len(v), 1.0 / max(len(v), 1)), histtype="step",
               linewidth=1.4,
               label=f"{name} ({s['role'][:4]}.; {s['refused']:.0%} refused)")
    a.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.3g}")
    a.set_xscale("log")
    a.set_xlabel("domain score (log scale; larger = further from the training data)")
    a.set_ylabel("share of the set")
    a.set_title("who is refused")
    a.legend(fontsize=6)
    curve = report["evaluation"]["selective"]
    b.plot([c["coverage"] for c in curve], [c["error"] for c in curve], marker="o")
    b.set_xlabel("coverage (share answered, lowest domain scores first)")
    b.set_ylabel("error among the answered")
    b.set_title("selective prediction")
    b.axvline(report["coverage"], color="black", linestyle="--", label=f"target coverage {report['coverage']:.0%}")
    b.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)
    return f"plots/{Path(path).name}"
