"""The typed result of ``Model.predict``: decision, scores, raw outputs and provenance."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .decision import decide, in_domain, positive_index, score_column, scores_of
from .manifest import Manifest


@dataclass(frozen=True)
class PredictionMeta:
    """Per-model facts every Prediction shares (built once at load, so predict allocates nothing for them)."""

    model: str
    version: str
    task: str
    variant: str
    model_sha256: str
    manifest_sha256: str
    provider: str
    fetch: tuple[str, ...]
    score_column: int | None
    labels: np.ndarray | None
    threshold: float | None
    positive: int
    evidence_minimum: float | None
    manifest: Manifest | None = None  # the whole contract (model card, units) for encoders such as tools.fhir
    domain_index: int | None = None  # raw[domain_index] is the domain score output (None: the bundle has no guard)
    domain_threshold: float | None = None

    @staticmethod
    def build(manifest: Manifest, variant: str, model_sha256: str, manifest_sha256: str,
              provider: str, every_output: bool = False) -> PredictionMeta:
        decision = manifest.decision
        # only what the decision needs is fetched: raw[0] is always the score output, raw[1] the evidence output
        # (then, with ``every_output``, the others: e.g. the window centres of a whole-slice graph)
        evidence = decision.evidence
        fetch = (decision.score_output,) + ((evidence.output,) if evidence is not None else ())
        domain = manifest.domain
        domain_index = None
        if domain is not None:
            domain_index = len(fetch)
            fetch += (domain.output,)
        if every_output:
            fetch += tuple(o.name for o in manifest.outputs if o.name not in fetch)
        score_spec = next(o for o in manifest.outputs if o.name == decision.score_output)
        labels = np.array(manifest.labels, dtype=object) if manifest.labels else None
        column = score_column(manifest.task, manifest.labels, decision.positive_label, score_spec.shape)
        return PredictionMeta(
            model=manifest.name,
            version=manifest.version,
            task=manifest.task,
            variant=variant,
            model_sha256=model_sha256,
            manifest_sha256=manifest_sha256,
            provider=provider,
            fetch=fetch,
            score_column=column,
            labels=labels,
            threshold=decision.threshold,
            positive=positive_index(manifest.labels, decision.positive_label),
            evidence_minimum=evidence.minimum if evidence is not None else None,
            manifest=manifest,
            domain_index=domain_index,
            domain_threshold=domain.threshold if domain is not None else None,
        )


class Prediction:
    """What one ``predict`` call returns.

    Attributes:
        outputs: raw graph outputs by name (only those the decision needs are fetched).
        scores: binary: positive-class score per sample (N,); multiclass: class probabilities (N, C);
            regression: predicted values (N,) (or (N, K) for multi-target).
        labels: class label per sample (N,) decided at the manifest's operating threshold; None for regression.
        single: True when the input was one sample (then ``label``/``score`` give it directly).
        model, version, variant, model_sha256, manifest_sha256, provider: provenance.
    """

    __slots__ = ("_meta", "_raw", "single", "_labels", "_scores")
    ok = True  # a NoResult has ok = False
    explanation: Any = None  # predict(..., explain=True) gives an ExplainedPrediction holding a medinfer.Explanation

    def __init__(self, meta: PredictionMeta, raw: list[np.ndarray], single: bool) -> None:
        self._meta = meta
        self._raw = raw
        self.single = single
        self._labels: np.ndarray | None = None
        self._scores: np.ndarray | None = None

    # provenance ---------------------------------------------------------------------------------------
    @property
    def model(self) -> str:
        return self._meta.model

    @property
    def version(self) -> str:
        return self._meta.version

    @property
    def variant(self) -> str:
        return self._meta.variant

    @property
    def model_sha256(self) -> str:
        return self._meta.model_sha256

    @property
    def manifest_sha256(self) -> str:
        return self._meta.manifest_sha256

    @property
    def provider(self) -> str:
        return self._meta.provider

    @property
    def manifest(self) -> Manifest | None:
        """The manifest of the bundle that made this prediction (its card, units, labels, threshold)."""
        return self._meta.manifest

    # results ------------------------------------------------------------------------------------------
    @property
    def outputs(self) -> dict[str, np.ndarray]:
        return dict(zip(self._meta.fetch, self._raw))

    @property
    def scores(self) -> np.ndarray:
        if self._scores is None:
            self._scores = scores_of(self._meta.task, self._raw[0], self._meta.score_column)
        return self._scores

    @property
    def labels(self) -> np.ndarray | None:
        meta = self._meta
        if self._labels is None and meta.labels is not None:
            self._labels = meta.labels[decide(meta.task, self.scores, meta.threshold, meta.positive)]
        return self._labels

    @property
    def domain_scores(self) -> np.ndarray | None:
        """Per sample, how far it lies from the training data (larger = further); None for a bundle without a
        domain guard."""
        index = self._meta.domain_index
        return None if index is None else self._raw[index].reshape(len(self._raw[index]))

    @property
    def in_domain(self) -> np.ndarray | None:
        """Per sample, whether its domain score is within the bundle's threshold; None without a domain guard."""
        scores = self.domain_scores
        return None if scores is None else in_domain(scores, self._meta.domain_threshold)

    @property
    def label(self) -> Any:
        """The single sample's label (for ``single`` predictions or a batch of one)."""
        labels = self.labels
        if labels is None:
            raise AttributeError(f"{self.model} is a regression model: it has no labels; use .score")
        self._one()
        return labels[0]

    @property
    def score(self) -> Any:
        self._one()
        s = self.scores[0]
        return s.item() if np.ndim(s) == 0 else s

    def _one(self) -> None:
        n = len(self._raw[0])
        if n != 1:
            raise ValueError(f"this prediction holds {n} samples; use .labels / .scores")

    def __len__(self) -> int:
        return len(self._raw[0])

    def split(self, sizes: Sequence[int]) -> list[Prediction]:
        """Cut a batched prediction into consecutive parts of ``sizes`` samples (one per request of a batch).

        Raises:
            ValueError: the sizes do not add up to the number of samples.
        """
        if sum(sizes) != len(self) or any(n < 0 for n in sizes):
            raise ValueError(f"sizes {list(sizes)} do not add up to the {len(self)} samples of this prediction")
        parts, start = [], 0
        for n in sizes:
            parts.append(Prediction(self._meta, [r[start:start + n] for r in self._raw], False))
            start += n
        return parts

    def take(self, rows: Sequence[int] | np.ndarray) -> Prediction:
        """The samples at ``rows`` (positions in this prediction) as a prediction of their own."""
        index = np.asarray(rows, dtype=np.int64)
        return Prediction(self._meta, [r[index] for r in self._raw], False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (lists, not arrays)."""
        labels = self.labels
        return {
            "model": self.model,
            "version": self.version,
            "variant": self.variant,
            "model_sha256": self.model_sha256,
            "manifest_sha256": self.manifest_sha256,
            "provider": self.provider,
            "threshold": self._meta.threshold,
            "labels": None if labels is None else [str(v) for v in labels],
            "scores": np.asarray(self.scores).tolist(),
            "domain_scores": None if self.domain_scores is None else self.domain_scores.tolist(),
            "in_domain": None if self.in_domain is None else self.in_domain.tolist(),
            "domain_threshold": self._meta.domain_threshold,
        }

    def __repr__(self) -> str:
        kind, shown = ("labels", self.labels) if self.labels is not None else ("scores", self.scores)
        return f"Prediction(model={self.model!r}, n={len(self)}, {kind}={shown!r})"
