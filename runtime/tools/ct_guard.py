"""The applicability-domain guard of a scored CT slice: per window and for the slice as a whole, under the model's
out-of-domain policy.

- each window's domain score comes from the graph that scored it: the patch graph's ``domain_score`` (patch by
  patch, ``--center``) or the whole-slice variant's per-window ``domain_score`` (one pass); a window is inside the
  domain when :func:`medinfer.decision.in_domain` says so AND the slice is;
- the slice is inside when its calibration is plausible (:mod:`medinfer.tools.ct_checks`: a wrong rescale, another
  modality, stored values read without their rescale are caught on the whole slice) AND, where the graph gives one
  (the whole-slice variant's ``domain_score_slice``: the upper median of the tissue windows' scores), the slice's
  domain score is within the threshold (at least half of the windows the model is meant to read lie outside: the
  slice is, whatever its calibration says);
- the policy is the model's (``load(..., out_of_domain=...)``, CLI ``--out-of-domain``): ``flag`` answers every
  window and flags those outside; ``no_result`` gives a window outside its own NoResult (the others are answered)
  and a slice outside no result at all; ``raise`` raises OutOfDomainError for either.

The scoring itself runs under the flag policy (:func:`flagging`), so that every window's domain score is known;
this module applies the model's policy to the windows.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..decision import in_domain
from ..errors import OutOfDomainError
from ..failsafe import NoResult
from .ct_checks import CalibrationCheck

if TYPE_CHECKING:
    from ..model import Model


@dataclass
class SliceGuard:
    """The guard's verdict on one scored slice (see the module docstring)."""

    policy: str
    calibration: CalibrationCheck
    threshold: float | None = None  # the bundle's domain threshold (None: no window guard)
    domain_scores: np.ndarray | None = None  # per window; None when the graph has no guard output
    window_in_domain: np.ndarray | None = None  # per window: its own score within the threshold (None: unknown)
    refusal: NoResult | None = None  # the whole slice got no result
    refused: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))  # per window: got no result
    slice_score: float | None = None  # the graph's slice-level domain score (None: the graph gives none)

    @property
    def slice_score_in_domain(self) -> bool | None:
        """The graph's slice-level score within the threshold (None: no such score, or no threshold)."""
        if self.slice_score is None or self.threshold is None:
            return None
        return bool(in_domain(np.array([self.slice_score], np.float32), self.threshold)[0])

    @property
    def slice_in_domain(self) -> bool:
        return self.calibration.plausible and self.slice_score_in_domain is not False

    def slice_reason(self) -> str:
        """Why the slice is outside (or 'calibrated'): the calibration check's reasons and the slice score's."""
        reasons = list(self.calibration.reasons)
        if self.slice_score_in_domain is False:
            reasons.append(f"the slice's domain score {self.slice_score:.4g} is above the threshold "
                           f"{self.threshold:.4g}: at least half of the windows that hold tissue lie outside the "
                           "domain")
        return "; ".join(reasons) if reasons else "calibrated"

    @property
    def in_domain(self) -> np.ndarray:
        """Per window: inside the domain (its own score, where known, and the slice's calibration)."""
        n = len(self.refused)
        own = np.ones(n, dtype=bool) if self.window_in_domain is None else self.window_in_domain
        return own & self.slice_in_domain

    @property
    def guarded(self) -> bool:
        """Whether each window was checked by a window guard (not only the slice-level rule)."""
        return self.window_in_domain is not None

    def to_dict(self) -> dict[str, Any]:
        inside = self.in_domain
        return {"policy": self.policy, "slice_in_domain": self.slice_in_domain,
                "calibration": self.calibration.to_dict(), "domain_threshold": self.threshold,
                "slice_domain_score": None if self.slice_score is None else round(float(self.slice_score), 6),
                "window_guard": self.guarded, "windows_out_of_domain": int((~inside).sum()),
                "windows_refused": int(self.refused.sum()),
                "refusal": None if self.refusal is None else self.refusal.to_dict()}


def flagging(model: Model) -> Model:
    """``model`` under the flag policy (the same session, audit trail and deadline): every window is scored and
    its domain score known; :func:`decide` then applies the model's own policy."""
    if model.out_of_domain == "flag":
        return model
    return copy.copy(model).configure(audit=model.audit, deadline_ms=model.deadline_ms, out_of_domain="flag",
                                      audit_explanations=model.audit_explanations)


def decide(model: Model, domain_scores: np.ndarray | None, calibration: CalibrationCheck, n: int,
           path: str | Path, slice_score: float | None = None) -> SliceGuard:
    """The guard's verdict for ``n`` windows of the slice at ``path`` under ``model``'s policy (``slice_score``:
    the graph's slice-level domain score, where it gives one).

    Raises:
        OutOfDomainError: policy ``raise`` and the slice, or a window of it, lies outside the domain.
    """
    domain = model.manifest.domain
    guard = SliceGuard(model.out_of_domain, calibration, refused=np.zeros(n, dtype=bool))
    if domain is not None and domain_scores is not None:
        guard.threshold = domain.threshold
        guard.domain_scores = np.asarray(domain_scores, np.float64).reshape(n)
        guard.window_in_domain = in_domain(guard.domain_scores.astype(np.float32), domain.threshold)
        guard.slice_score = None if slice_score is None else float(slice_score)
    inside = guard.in_domain
    name = Path(path).name
    if guard.policy == "flag" or inside.all():
        return guard
    if not guard.slice_in_domain:
        what = ("its values are not a calibrated CT in Hounsfield units" if not calibration.plausible
                else "most of what it shows lies outside the data the model was validated on")
        message = (f"{name}: the slice is outside {model.name}'s applicability domain: {what} "
                   f"({guard.slice_reason()}); check RescaleSlope/RescaleIntercept, the modality, the body region "
                   f"and the pixel padding. Loaded with out_of_domain={guard.policy!r}, it gets no result")
        if guard.policy == "raise":
            raise OutOfDomainError(message)
        guard.refusal = NoResult("out_of_domain", message, model.name, model.version, None, "OutOfDomainError")
        guard.refused = np.ones(n, dtype=bool)
        return guard
    outside = np.flatnonzero(~inside)
    if guard.policy == "raise":
        coverage = domain.coverage if domain is not None else float("nan")
        raise OutOfDomainError(f"{name}: {outside.size} of {n} window(s) lie outside {model.name}'s applicability "
                               f"domain (domain score above {guard.threshold:.4g}, the threshold that accepts "
                               f"{coverage:.0%} of held-out in-domain data); loaded with out_of_domain='raise'")
    guard.refused = ~inside
    return guard


def window_no_result(model: Model, guard: SliceGuard, i: int) -> NoResult:
    """Window ``i``'s NoResult under the ``no_result`` policy."""
    score = guard.domain_scores[i] if guard.domain_scores is not None else float("nan")
    return NoResult("out_of_domain", f"window {i} lies outside {model.name}'s applicability domain (domain score "
                                     f"{score:.4g} above {guard.threshold}); it gets no result", model.name,
                    model.version, None, "OutOfDomainError", index=i)
