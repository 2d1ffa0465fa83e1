"""``medinfer diff OLD NEW [--reference DATA]``: compare a candidate bundle with the bundle it replaces, against the
acceptance criteria the OLD bundle declared (its PCCP, ``manifest.pccp``; :func:`medinfer.change.default_pccp` of
its declared metrics when it has none).

What is compared, each a :class:`Finding` (``passed`` True / False, or None when reported but not judged):

- **identity and lineage**: the same model; the candidate's declared parent (reported; a candidate naming ANOTHER
  parent is refused: the plan covers changes from this bundle);
- **contract**: task, inputs (names, dtypes, shapes, ranges, units, feature names and facts), outputs, labels,
  positive label, score/label outputs, evidence rule: any change is outside every plan;
- **operating threshold**: at most ``max_threshold_change``;
- **domain guard**: present in the parent means present in the candidate;
- **declared metrics** (the manifests' held-out values): non-inferiority per criterion;
- on the reference inputs (``--reference``, else the parent's parity sample and golden inputs): **decision flips**
  (or the mean change of a regression), **domain acceptance** of in-domain data, and the **rejection of
  out-of-range probes** (uniform in the parent's declared input ranges: a guard that stops rejecting them was
  weakened);
- with labels in the reference: each plan metric on both models with a paired-bootstrap CI of the difference
  (non-inferior when the CI's lower end in the direction of better is above ``-margin``), and the primary metric
  per subgroup (``group``; point estimate against ``subgroup_margin``, groups of at least ``subgroup_min_n``).

A candidate outside any criterion makes :func:`require_pass` raise :class:`~medinfer.errors.ChangeRejected` (exit 16).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import medinfer
from medinfer.change import Pccp, default_pccp
from medinfer.decision import DEFAULT_THRESHOLD
from medinfer.errors import ChangeRejected
from medinfer.manifest import Manifest
from medinfer.schema import to_json

from .slots import bundle_key


@dataclass
class Finding:
    """One comparison: ``passed`` True (within the plan), False (outside it) or None (reported, not judged)."""

    check: str
    passed: bool | None
    detail: str
    values: dict[str, Any] = field(default_factory=dict)


@dataclass
class DiffReport:
    """Everything ``medinfer diff`` found; ``passed`` when no finding is outside the plan."""

    old: dict[str, Any]
    new: dict[str, Any]
    plan: str
    reference: str | None
    findings: list[Finding]

    @property
    def passed(self) -> bool:
        return all(f.passed is not False for f in self.findings)

    def failures(self) -> list[Finding]:
        return [f for f in self.findings if f.passed is False]

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "old": self.old, "new": self.new, "plan": self.plan,
                "reference": self.reference, "findings": [asdict(f) for f in self.findings]}


def plan_of(manifest: Manifest) -> tuple[Pccp, str]:
    """The parent's declared plan, or the default plan of its declared metrics (and which one it is)."""
    if manifest.pccp is not None:
        return manifest.pccp, f"the PCCP declared in {manifest.name} {manifest.version}"
    return (default_pccp(manifest.task, manifest.metrics.heldout),
            f"the default plan ({manifest.name} {manifest.version} declares no PCCP)")


_CONTRACT_DECISION = ("score_output", "label_output", "positive_label", "evidence")


def contract_findings(old: Manifest, new: Manifest) -> list[Finding]:
    """Identity, contract, threshold and domain-guard findings (from the manifests alone)."""
    found: list[Finding] = []
    if old.name != new.name:
        found.append(Finding("model", False, f"the candidate is {new.name!r}, not a version of {old.name!r}"))
    guard_outputs = {m.domain.output for m in (old, new) if m.domain is not None}
    changes = []
    for what, a, b in (("task", old.task, new.task), ("labels", old.labels, new.labels),
                       ("inputs", to_json(old.inputs), to_json(new.inputs)),
                       ("outputs", [o for o in to_json(old.outputs) if o["name"] not in guard_outputs],
                        [o for o in to_json(new.outputs) if o["name"] not in guard_outputs]),
                       *((f"decision.{k}", to_json(getattr(old.decision, k)), to_json(getattr(new.decision, k)))
                         for k in _CONTRACT_DECISION)):
        if a != b:
            changes.append(what)
            detail = _first_difference(a, b)
            found.append(Finding(f"contract: {what}", False, f"{what} changed ({detail}): a contract change is "
                                 "outside every change plan", {"old": a, "new": b}))
    if not changes:
        found.append(Finding("contract", True, "task, inputs, outputs, labels and decision rule are unchanged"))
    return found


def _first_difference(a: Any, b: Any, path: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                return _first_difference(a.get(k), b.get(k), f"{path}.{k}" if path else str(k))
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{path or 'list'}: {len(a)} -> {len(b)} entries"
        for i, (x, y) in enumerate(zip(a, b)):
            if x != y:
                return _first_difference(x, y, f"{path}[{i}]")
    shown = lambda v: repr(v) if len(repr(v)) < 80 else repr(v)[:77] + "..."  # noqa: E731
    return f"{path or 'value'}: {shown(a)} -> {shown(b)}"


def threshold_and_guard_findings(old: Manifest, new: Manifest, plan: Pccp) -> list[Finding]:
    found = []
    if old.task == "binary_classification":
        t_old = DEFAULT_THRESHOLD if old.decision.threshold is None else old.decision.threshold
        t_new = DEFAULT_THRESHOLD if new.decision.threshold is None else new.decision.threshold
        change = abs(t_new - t_old)
        found.append(Finding("operating threshold", change <= plan.max_threshold_change + 1e-12,
                             f"{t_old:g} -> {t_new:g} (change {change:.4g}, plan allows {plan.max_threshold_change:g})",
                             {"old": t_old, "new": t_new}))
    if old.domain is not None:
        if new.domain is None:
            found.append(Finding("domain guard", False, "the candidate has NO applicability-domain guard; the parent "
                                 "has one: removing it is outside every change plan"))
        else:
            found.append(Finding("domain guard", True, f"present (coverage {old.domain.coverage:g} -> "
                                 f"{new.domain.coverage:g}, method {new.domain.method!r})",
                                 {"old_coverage": old.domain.coverage, "new_coverage": new.domain.coverage}))
    return found


def declared_metric_findings(old: Manifest, new: Manifest, plan: Pccp) -> list[Finding]:
    found = []
    for c in plan.metrics:
        a, b = old.metrics.heldout.get(c.metric), new.metrics.heldout.get(c.metric)
        if a is None:
            continue  # the plan names a metric the parent never declared: judged on the reference only
        if b is None:
            found.append(Finding(f"declared {c.metric}", False, f"the candidate declares no {c.metric} (the parent: "
                                 f"{a.value:.4g})"))
            continue
        worse = (a.value - b.value) if c.direction == "higher" else (b.value - a.value)
        allowed = c.allowed_drop(a.value)
        found.append(Finding(f"declared {c.metric}", worse <= allowed + 1e-12,
                             f"{_fmt(a)} -> {_fmt(b)} ({'worse' if worse > 0 else 'not worse'} by {max(worse, 0):.4g}; "
                             f"plan allows {allowed:.4g}, {c.direction} is better)",
                             {"old": a.value, "new": b.value, "old_ci95": a.ci95, "new_ci95": b.ci95}))
    return found


def _fmt(m: Any) -> str:
    return f"{m.value:.4g}" + (f" [{m.ci95[0]:.4g}, {m.ci95[1]:.4g}]" if m.ci95 else "")


def diff(old: str | Path, new: str | Path, reference: str | Path | None = None, *,
         trusted_keys: tuple[str | Path, ...] = (), probes: int = 64) -> DiffReport:
    """Compare candidate ``new`` with ``old`` against ``old``'s plan (see the module docstring).

    Both bundles are loaded (digests, a present signature, self-test) before anything is compared.

    Raises:
        UsageError: an unreadable reference file; load errors of either bundle.
    """
    from .evaluate import reference_findings

    old_model = medinfer.load(old, trusted_keys=list(trusted_keys))
    new_model = medinfer.load(new, trusted_keys=list(trusted_keys))
    om, nm = old_model.manifest, new_model.manifest
    plan, plan_source = plan_of(om)
    old_key, new_key = bundle_key(old), bundle_key(new)
    findings = contract_findings(om, nm)
    lineage = nm.lineage
    if lineage is None or lineage.parent_sha256 is None:
        findings.append(Finding("lineage", None, "the candidate records no parent bundle"))
    else:
        findings.append(Finding("lineage", lineage.parent_sha256 == old_key.sha256,
                                f"the candidate names parent {lineage.parent_sha256[:12]}… "
                                + ("(this bundle)" if lineage.parent_sha256 == old_key.sha256 else
                                   f"(NOT this bundle, {old_key.sha256[:12]}…: the plan covers changes from it)"),
                                {"change": lineage.changes[-1].summary if lineage.changes else ""}))
    findings += threshold_and_guard_findings(om, nm, plan)
    findings += declared_metric_findings(om, nm, plan)
    comparable = not any(f.check.startswith(("contract:", "model")) for f in findings if f.passed is False)
    source, more = reference_findings(old_model, new_model, plan, reference, probes, comparable)
    findings += more
    return DiffReport(
        old={"bundle": str(old), **asdict(old_key)}, new={"bundle": str(new), **asdict(new_key)},
        plan=plan_source, reference=source, findings=findings)


def require_pass(report: DiffReport) -> DiffReport:
    """The report, or ChangeRejected naming every criterion the candidate is outside of."""
    failed = report.failures()
    if failed:
        raise ChangeRejected(f"{report.new['name']} {report.new['version']} is outside {report.plan}: "
                             + "; ".join(f"{f.check}: {f.detail}" for f in failed))
    return report
