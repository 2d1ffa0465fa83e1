"""How a bundle explains its answers: the manifest's ``explanation`` section (made and gated at export).

A bundle explains with one of four methods, each computed on the device by the bundle's own graphs:

- ``linear``: exact per-feature contributions of a linear model to its logit (TF-IDF weight x coefficient, or a gene's
  value x the folded SVD + logistic-regression weight), by an explanation graph (``file``) beside the model's;
- ``saabas``: per-feature path contributions of a tree ensemble (Saabas), by an explanation graph that is itself a
  tree ensemble with one target per feature;
- ``occlusion``: the drop of the score when a square of the image is replaced by the patch's median, by the
  model's own graph on a batch of occluded copies;
- ``masking``: the change of a forecast when one past time step (or a feature group) is masked, by the model's own
  graph on a batch of masked copies.

Bundles written before explanations existed have no section and load as before (``Model.explain`` then says so).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

METHODS = ("linear", "saabas", "occlusion", "masking")
GRAPH_METHODS = ("linear", "saabas")  # computed by an explanation graph (``file``); the others by the model's own
ATTRIBUTIONS = "attributions"  # the explanation graph's output


@dataclass(frozen=True)
class ExplanationEntry:
    """The manifest's ``explanation`` section.

    Attributes:
        method: one of :data:`METHODS`.
        explains: the explained quantity in words (``"log-odds of 'abnormal'"``, ``"forecast"``).
        units: its units (``"log-odds"``, ``"probability"``, ``"mg/dL"``).
        file: the explanation graph (graph methods): the model's inputs in, ``output`` out, shaped (N, F) or, for a
            multiclass model, (N, C, F); pinned in ``files`` like every graph.
        data: a pinned ``.npz`` with the feature names when the input does not name them (``names``: a
            vocabulary), the baseline of a removed feature (``baseline``) and the explanation graph's golden input
            and output (``in.<input>``, ``out.<output>``), checked when the explainer is first used.
        exact: the method is additive: ``bias`` + the sum of the attributions equals the explained quantity.
        bias: the explained quantity with every contribution removed, one value per class (multiclass) or one.
        baseline: what a removed feature becomes, in words (the deletion curves and the occlusion/masking use it).
        params: the method's settings (occlusion window and stride, masking groups, the training mean, ...).
        parity: what the export's fail-closed gate compared and found (explanation vs the native reference).
        fidelity: deletion and insertion curves on held-out samples (attribution order vs random order).
        can_tell / cannot_tell: what the explanation can and cannot tell a clinician (the card shows both).
        atol: tolerance of the explanation graph's golden check.
    """

    method: Literal["linear", "saabas", "occlusion", "masking"]
    explains: str
    units: str = ""
    file: str | None = None
    output: str = ATTRIBUTIONS
    data: str | None = None
    exact: bool = False
    bias: tuple[float, ...] = ()
    baseline: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    parity: dict[str, Any] = field(default_factory=dict)
    fidelity: dict[str, Any] = field(default_factory=dict)
    can_tell: str = ""
    cannot_tell: str = ""
    atol: float = 1e-5

    def _check(self, doc: str, path: str) -> None:
        from .errors import ManifestError

        if (self.method in GRAPH_METHODS) != (self.file is not None):
            raise ManifestError(f"{doc}: field '{path}.file' must name the explanation graph of method "
                                f"{self.method!r}" if self.method in GRAPH_METHODS else
                                f"{doc}: field '{path}.file' must be absent: method {self.method!r} runs the model's "
                                "own graph")
        if self.exact and not self.bias:
            raise ManifestError(f"{doc}: field '{path}.bias' is needed by an exact (additive) explanation")
        if self.atol < 0:
            raise ManifestError(f"{doc}: field '{path}.atol' must be >= 0, got {self.atol}")
