"""Change control records of a bundle (part of the manifest schema, see manifest.py): where it comes from and what
a successor must meet.

- :class:`Lineage`: the parent bundle (the sha256 of its ``manifest.json``, which pins every file), the change log
  (the parent's entries plus this bundle's own), and the monotonic ``release`` counter that orders bundles of one
  model for anti-rollback (``medinfer.lifecycle``: a bundle is newer when its ``(release, version)`` is larger).
- :class:`Pccp`: the predetermined change control plan declared at export: the acceptance criteria a candidate that
  replaces this bundle must meet (``medinfer diff OLD NEW``). Criteria are fixed in the parent, in advance; the
  candidate cannot relax them.

Both are optional in the manifest: bundles written before them load as before (a bundle without a PCCP is judged
by :func:`default_pccp` of its own declared metrics).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from .errors import ManifestError

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class ChangeEntry:
    """One entry of the change log: what changed, and why, in the bundle that made ``version`` / ``release``."""

    summary: str
    version: str = ""
    release: int = 0
    date: str = ""
    author: str = ""


@dataclass(frozen=True)
class Lineage:
    """Where a bundle comes from (see the module docstring)."""

    release: int
    parent_sha256: str | None = None
    parent_version: str | None = None
    parent_release: int | None = None
    changes: tuple[ChangeEntry, ...] = ()

    def _check(self, doc: str, path: str) -> None:
        where = f"{path}." if path else ""
        if self.release < 1:
            raise ManifestError(f"{doc}: field '{where}release' must be >= 1, got {self.release}")
        if self.parent_sha256 is not None and not _SHA256.match(self.parent_sha256):
            raise ManifestError(f"{doc}: field '{where}parent_sha256' must be 64 lowercase hex digits")
        if self.parent_release is not None and self.parent_release >= self.release:
            raise ManifestError(f"{doc}: field '{where}release' ({self.release}) must be larger than the parent's "
                                f"release ({self.parent_release}): releases only move forward")


@dataclass(frozen=True)
class MetricCriterion:
    """Non-inferiority of one metric: the candidate may be worse than the parent by at most ``margin`` (a fraction
    of the parent's value when ``relative``), in the metric's ``direction`` of better."""

    metric: str
    direction: Literal["higher", "lower"]
    margin: float
    relative: bool = False

    def _check(self, doc: str, path: str) -> None:
        if not self.margin >= 0:
            raise ManifestError(f"{doc}: field '{path}.margin' must be >= 0, got {self.margin}")

    def allowed_drop(self, parent_value: float) -> float:
        """How much worse than ``parent_value`` the candidate may be (a positive number, in metric units)."""
        return self.margin * abs(parent_value) if self.relative else self.margin


@dataclass(frozen=True)
class Pccp:
    """Acceptance criteria for a candidate replacing this bundle (``medinfer diff``; see docs/lifecycle.md, "Change
    control").

    Contract changes (inputs, outputs, labels, task, positive label, evidence rule) and the removal of the domain
    guard are never within a plan: a candidate with one is a new device submission, not a change under this plan.
    """

    metrics: tuple[MetricCriterion, ...] = ()
    max_flip_rate: float = 0.02  # decisions that differ on the reference set (classification)
    max_threshold_change: float = 0.0  # absolute change of the operating threshold
    subgroup_margin: float = 0.05  # per subgroup, how much worse the primary metric may be (a fraction of the
    # parent's value when that criterion is relative)
    subgroup_min_n: int = 20  # subgroups with fewer reference samples are reported, not judged
    max_domain_acceptance_drop: float = 0.05  # share of in-domain reference samples the new guard rejects more
    max_probe_rejection_drop: float = 0.10  # share of out-of-range probes the new guard accepts more
    max_mean_abs_change: float | None = None  # regression: mean |new - old| on the reference inputs
    confidence: float = 0.95  # of the paired-bootstrap intervals of metric differences
    n_boot: int = 1000
    description: str = ""

    def _check(self, doc: str, path: str) -> None:
        for name in ("max_flip_rate", "max_domain_acceptance_drop", "max_probe_rejection_drop"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ManifestError(f"{doc}: field '{path}.{name}' must be within [0, 1], got {value}")
        if not 0.5 <= self.confidence < 1.0:
            raise ManifestError(f"{doc}: field '{path}.confidence' must be within [0.5, 1), got {self.confidence}")
        if self.n_boot < 100 or self.subgroup_min_n < 1:
            raise ManifestError(f"{doc}: field '{path}.n_boot' must be >= 100 and subgroup_min_n >= 1")


#: Direction and default non-inferiority margin of the metrics the specs report (absolute unless relative).
METRIC_RULES: dict[str, tuple[Literal["higher", "lower"], float, bool]] = {
    "roc_auc": ("higher", 0.02, False),
    "accuracy": ("higher", 0.02, False),
    "sensitivity": ("higher", 0.02, False),
    "specificity": ("higher", 0.03, False),
    "macro_f1": ("higher", 0.03, False),
    "rmse": ("lower", 0.05, True),
    "mae": ("lower", 0.05, True),
    "clarke_A_pct": ("higher", 2.0, False),
}


def default_pccp(task: str, metrics: dict[str, Any]) -> Pccp:
    """The plan a bundle gets when its exporter declared none: non-inferiority of each declared metric that
    :data:`METRIC_RULES` knows, and the defaults of :class:`Pccp` (regression: a mean change of at most a quarter
    of the declared MAE).

    Args:
        task: the manifest's task.
        metrics: the declared held-out metrics by name (Metric objects, ``{"value": ...}`` dicts or numbers).
    """
    criteria = tuple(MetricCriterion(name, *METRIC_RULES[name]) for name in metrics if name in METRIC_RULES)
    mae = metrics.get("mae")
    mae_value = mae.get("value") if isinstance(mae, dict) else getattr(mae, "value", mae)
    change = 0.25 * float(mae_value) if task == "regression" and isinstance(mae_value, (int, float)) else None
    return Pccp(metrics=criteria, max_mean_abs_change=change,
                description="default plan: non-inferiority of the declared metrics (medinfer.change.default_pccp)")
