"""The model spec: the ONE place that knows a model's name, task, data, contract, fitting and tolerances.

A spec subclasses :class:`ModelSpec` (or a family base of :mod:`.families`, such as ``SklearnClassifierSpec``), sets
the class attributes, implements ``load_data`` and ``build``, and is registered with ``@register``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from medinfer.codings import Codings
from medinfer.decision import DEFAULT_THRESHOLD, decide, positive_index, score_column, scores_of
from medinfer.errors import UnknownNameError, UsageError
from medinfer.manifest import Card, DataSource, Evidence, SessionProfile, TensorSpec

from .domain import DomainGuard, Part, Shift

Progress = Callable[[str], None]


def quiet(_: str) -> None:
    """A progress callback that says nothing."""


@dataclass(frozen=True)
class ParityTolerance:
    """How close the exported graph must be to the native model (on the whole held-out set + edge inputs)."""

    atol: float
    rtol: float = 0.0
    max_decision_flips: int = 0


@dataclass
class Dataset:
    """A split dataset with its provenance: everything one training run needs, and nothing kept on the spec.

    Arrays are exactly what the exported graph will receive. ``X_val``/``y_val`` (optional) are a validation
    part for choices made after fitting, such as the operating threshold.
    """

    X_train: Any
    y_train: np.ndarray
    X_test: Any
    y_test: np.ndarray
    sources: tuple[DataSource, ...]
    split: dict[str, Any]
    synthetic: bool = False
    description: str = ""
    preprocessing: str = ""
    feature_names: tuple[str, ...] | None = None
    facts: dict[str, Any] = field(default_factory=dict)
    edge: Any = None  # extra inputs for the parity gate (hostile strings, extreme values, ...)
    X_val: Any = None
    y_val: np.ndarray | None = None
    # Per-sample group of each part, e.g. {"train": patient per window, "test": ...}: data-driven choices made on
    # held-out data (the domain guard's calibration half) keep a group whole. Not written to the manifest.
    groups: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n_train(self) -> int:
        return len(self.y_train)

    @property
    def n_test(self) -> int:
        return len(self.y_test)

    @property
    def validation(self) -> tuple[Any, np.ndarray] | None:
        """``(X_val, y_val)`` when the dataset has a validation part."""
        return None if self.X_val is None or self.y_val is None else (self.X_val, self.y_val)


@dataclass(frozen=True)
class OperatingPoint:
    """The fitted decision threshold of one training run and why it was chosen (None: not a binary task)."""

    threshold: float | None
    rationale: str = ""


class ModelSpec:
    """Base of every spec: class attributes describe the model, methods fit, evaluate and export it.

    A spec instance holds configuration only (class attributes and the options of :meth:`configure`); what one
    run produces (data, fitted model, operating point) travels in :class:`Dataset`, the returned model and
    :class:`OperatingPoint`, so any method can be called on a fresh instance.
    """

    name: ClassVar[str]
    version: ClassVar[str] = "1.0.0"
    task: ClassVar[str]  # binary_classification | multiclass_classification | regression
    family: ClassVar[str]  # converter family, registered with medinfer.export.converters.register_converter
    description: ClassVar[str] = ""
    seed_section: ClassVar[str] = ""
    labels: ClassVar[tuple[str, ...] | None] = None
    positive_label: ClassVar[str | None] = None
    threshold: ClassVar[float | None] = None  # the default operating point (see operating_point())
    threshold_rationale: ClassVar[str] = ""
    parity: ClassVar[ParityTolerance] = ParityTolerance(atol=1e-5)
    profile: ClassVar[SessionProfile] = SessionProfile()
    card: ClassVar[Card]
    opset: ClassVar[dict[str, int]] = {"": 17, "ai.onnx.ml": 3}
    score_output: ClassVar[str] = "probabilities"
    label_output: ClassVar[str | None] = None
    # Variants to build at export, in this order ("int8", "slice", ...: kinds registered in medinfer.export.variants),
    # each shipped only within this budget of held-out metric loss; their settings by kind (medinfer.train.variants).
    variants: ClassVar[tuple[str, ...]] = ()
    variant_budget: ClassVar[dict[str, float]] = {"roc_auc": 0.005}
    variant_settings: ClassVar[dict[str, Any]] = {}
    measure_profile: ClassVar[bool] = True  # choose threads/spinning/optimisation level by measurement
    # What the registry-parametrized tests train on: a small seeded sample and cheap options (CI runs 2 cores).
    test_sample: ClassVar[int | None] = 200
    test_options: ClassVar[dict[str, Any]] = {}
    # The names ``--set KEY=VALUE`` may change (each a class attribute holding its default).
    options: ClassVar[tuple[str, ...]] = ()
    # What the results mean in coded vocabularies (FHIR resource and codes, the DICOM SR finding), written into the
    # manifest; the output tools read it there. None: only generic outputs, on request.
    codings: ClassVar[Codings | None] = None
    # An output measuring how much information a sample carries; below its minimum the runtime gives no answer.
    evidence: ClassVar[Evidence | None] = None
    # What the domain guard is, in a sentence (the manifest and card), and the in-domain share its threshold keeps.
    domain_method: ClassVar[str] = ""
    domain_coverage: ClassVar[float] = 0.99
    # Memory bounds written into the session profile: samples per onnxruntime run, samples per call.
    chunk: ClassVar[int] = 256
    max_batch: ClassVar[int] = 65536
    # How the bundle explains its answers (made and gated at export by medinfer.export.explain, run on the device by
    # medinfer.explain): {"method": "linear" | "saabas" | "occlusion" | "masking", "explains": what, in words,
    # "can_tell" / "cannot_tell": for the card, and the method's settings}. None: no explanation.
    explain: ClassVar[dict[str, Any] | None] = None

    # -- configuration ---------------------------------------------------------------------------------
    def configure(self, **values: Any) -> ModelSpec:
        """Set options (``--set KEY=VALUE``); unknown names and values of the wrong type are refused.

        Raises:
            UnknownNameError: a name that is not among :attr:`options` (with the closest names).
            UsageError: a value whose type differs from the option's default.
        """
        for key, value in values.items():
            if key not in self.options:
                raise UnknownNameError("option", key, self.options, "; set one of these with --set KEY=VALUE",
                                       of=self.name)
            default = getattr(type(self), key, None)
            setattr(self, key, _coerce(self.name, key, value, default))
        return self

    def option_values(self) -> dict[str, Any]:
        """The current value of every option (recorded with the artifact)."""
        return {k: getattr(self, k) for k in self.options}

    # -- to implement ------------------------------------------------------------------------------------
    def load_data(self, *, sample: int | None = None, seed: int = 0, progress: Progress = quiet) -> Dataset:
        """Load (fetch, verify, featurise) and split the data; ``sample`` keeps a seeded subset for tests."""
        raise NotImplementedError

    def build(self, dataset: Dataset) -> Any:
        """An unfitted native model."""
        raise NotImplementedError

    def fit(self, model: Any, dataset: Dataset, progress: Progress = quiet) -> Any:
        """Fit ``model`` on the training part of ``dataset``; returns the fitted native model."""
        raise NotImplementedError

    def native_outputs(self, model: Any, X: Any) -> dict[str, np.ndarray]:
        """The native model's outputs on X, keyed by the exported graph's output names."""
        raise NotImplementedError

    def inputs(self, dataset: Dataset) -> tuple[TensorSpec, ...]:
        """The input contract (dtype, symbolic shape, range, units, names, facts) written into the manifest."""
        raise NotImplementedError

    def outputs(self) -> tuple[TensorSpec, ...]:
        """The graph's outputs (the score output among them)."""
        raise NotImplementedError

    def evaluate(self, scores: np.ndarray, y: np.ndarray, X: Any, threshold: float | None) -> dict[str, Any]:
        """Held-out metrics with CIs and the baseline: ``{"heldout": {...}, "baseline": {...}}``.

        Args:
            scores: per-sample scores of the model on ``X`` (see :meth:`scores`).
            y: the true targets.
            X: the inputs (for baselines computed from them, e.g. persistence).
            threshold: the operating point to decide at (binary tasks).
        """
        raise NotImplementedError

    def save_native(self, model: Any, folder: Path) -> str:
        """Save the fitted native model into ``folder``; return the file name."""
        raise NotImplementedError

    def load_native(self, folder: Path) -> Any:
        """Load what :meth:`save_native` wrote."""
        raise NotImplementedError

    # -- hooks with defaults -----------------------------------------------------------------------------
    def frameworks(self) -> dict[str, str]:
        """Versions of the native frameworks this spec trains with (for the manifest)."""
        return {}

    def native_predictors(self, model: Any) -> dict[str, Callable[[Any], Any]]:
        """The native framework's own inference calls, for side-by-side benchmarks ({label: fn(X)})."""
        return {"native": lambda X: self.native_outputs(model, X)}

    def operating_point(self, model: Any, dataset: Dataset) -> OperatingPoint:
        """The decision threshold of this run (binary tasks). Default: the class attribute ``threshold`` (0.5
        when unset); a spec may choose it on ``dataset.validation`` instead."""
        if self.task != "binary_classification":
            return OperatingPoint(None, self.threshold_rationale)
        threshold = DEFAULT_THRESHOLD if self.threshold is None else float(self.threshold)
        return OperatingPoint(threshold, self.threshold_rationale or f"default threshold {threshold:g}")

    def parity_sets(self, dataset: Dataset) -> dict[str, Any]:
        """Named edge-input sets for the parity gate, on top of the held-out set. Default: ``dataset.edge`` as
        one set; override when edge inputs cannot share one array (e.g. sequences of different lengths)."""
        edge = dataset.edge
        return {"edge": edge} if edge is not None and len(edge) else {}

    def parity_slices(self, dataset: Dataset) -> dict[str, np.ndarray]:
        """Held-out whole images (2-D, in the input's units) for the whole-slice variants' gate, by name. Default:
        none (the gate then uses mosaics of held-out samples only)."""
        return {}

    def extra_outputs(self) -> tuple[TensorSpec, ...]:
        """Outputs :meth:`augment_graph` adds to the converted graph (and :meth:`native_outputs` also returns, so
        the parity gate compares them). Default: none."""
        return ()

    def augment_graph(self, onx: Any, model: Any, dataset: Dataset) -> None:
        """Add :meth:`extra_outputs` to the converted ``onnx.ModelProto`` in place (e.g. an evidence output).
        Default: nothing."""

    # -- the applicability-domain guard (see medinfer.train.domain) -----------------------------------------
    def domain_parts(self, model: Any, dataset: Dataset) -> list[Part]:
        """The parts of the domain guard, fitted on ``dataset``'s TRAINING split only. Default: no guard."""
        return []

    def domain_features(self, model: Any) -> Callable[[Any], dict[str, np.ndarray]]:
        """``X -> {source: tensor}``: the native values of every tensor a part reads (same names as
        :meth:`domain_sources` gives in the graph). Default: the input as ``"input"``."""
        return lambda X: {"input": np.asarray(X)}

    def domain_sources(self, onx: Any) -> dict[str, str]:
        """Part source name -> tensor name in the converted graph. Default: ``"input"`` is the graph's input and
        every output is itself."""
        return {"input": onx.graph.input[0].name, **{o.name: o.name for o in onx.graph.output}}

    def domain_shifts(self, model: Any, dataset: Dataset, guard: DomainGuard) -> dict[str, Shift]:
        """Shifted sets to evaluate the guard on (each with a kind, ``gross`` or ``subtle``), keyed by name.
        Default: none."""
        return {}

    def plots(self, model: Any, dataset: Dataset, folder: Path, point: OperatingPoint) -> dict[str, str]:
        """Model-card figures drawn into ``folder``; returns ``{title: path relative to the bundle}``."""
        return {}

    # -- shared ------------------------------------------------------------------------------------------
    def scores(self, outputs: dict[str, np.ndarray]) -> np.ndarray:
        """The decision score per sample from native or ONNX outputs (the runtime's rule, medinfer.decision)."""
        raw = outputs[self.score_output]
        column = score_column(self.task, self.labels, self.positive_label, raw.shape)
        return scores_of(self.task, raw, column)

    @property
    def positive(self) -> int:
        """Index of the positive class (binary tasks; the runtime's rule, medinfer.decision.positive_index)."""
        return positive_index(self.labels, self.positive_label)

    def outcome(self, y: np.ndarray) -> np.ndarray:
        """The true binary outcome per sample, 1 for the positive class (what binary metrics and plots take)."""
        return (np.asarray(y).astype(int) == self.positive).astype(int)

    def decisions(self, scores: np.ndarray, threshold: float | None) -> np.ndarray:
        """Decision index per sample at ``threshold`` (the runtime's rule, medinfer.decision)."""
        return decide(self.task, scores, threshold, self.positive)


def _coerce(spec: str, key: str, value: Any, default: Any) -> Any:
    """``value`` as the type of the option's default (ints widen to floats; None defaults take anything)."""
    if default is None or value is None or isinstance(value, type(default)) and not (
            isinstance(value, bool) and not isinstance(default, bool)):
        return value
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    raise UsageError(f"option {key!r} of {spec} takes a {type(default).__name__} (default {default!r}), got "
                     f"{value!r} ({type(value).__name__})")
