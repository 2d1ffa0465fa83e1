"""A brought model as a model spec: the contract (declared + inferred) in the attributes every spec has, the native
side run by its source adapter. The export pipeline (:mod:`medinfer.export.bundle`) takes it like any of the five."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from medinfer.errors import UsageError
from medinfer.manifest import SessionProfile, TensorSpec

from ...train import domain
from ...train.domain import DomainGuard, Part, Shift
from ...train.spec import Dataset, ModelSpec
from ..feeds import packed
from .contract import Contract
from .sources import Loaded, Source

VARIANT_BUDGET = {"binary_classification": {"roc_auc": 0.005}, "multiclass_classification": {"accuracy": 0.01},
                  "regression": {"rmse": 0.0}}
GUARD_METHOD = ("the largest of, per input: the mean distance to the 5 nearest training samples (standardised "
                "values), and how far the sample's mean and spread lie from the training samples'; each relative to "
                "in-domain data's 99th percentile")
STATS_METHOD = ("how far the sample's mean and spread lie from the training samples' (per input; an input whose size "
                "is free, such as a whole slice, has no nearest-neighbour part), relative to in-domain data's 99th "
                "percentile")


class BroughtSpec(ModelSpec):
    """The spec of a model brought with ``medinfer bundle`` (built by :func:`medinfer.export.bring.bundle`).

    With no arguments (a child process converting a Keras model) it only saves and loads the native model.
    """

    name = "brought"
    task = "regression"
    family = "onnx"
    explain = None
    variants: tuple[str, ...] = ()
    measure_profile = True
    domain_method = GUARD_METHOD

    def __init__(self, contract: Contract | None = None, source: Source | None = None, loaded: Loaded | None = None,
                 *, given: dict[str, np.ndarray] | None = None, reference_x: Any = None, guard: bool = False,
                 int8: bool = False, measure_profile: bool = True) -> None:
        self.source, self.loaded, self.given, self.reference_x = source, loaded, given or {}, reference_x
        self.guard = guard
        self.measure_profile = measure_profile
        self.variants = ("int8",) if int8 else ()
        self._inputs: tuple[TensorSpec, ...] = ()
        self._outputs: tuple[TensorSpec, ...] = ()
        if source is not None:
            self.family = source.family
            self.parity = source.tolerance
            self.opset = {"": 18} if source.family == "torch" else {"": 17, "ai.onnx.ml": 3}
        if contract is not None:
            self.apply(contract)

    def apply(self, c: Contract) -> None:
        """Take the whole contract (after conversion, when every output is known)."""
        self.name, self.version, self.task, self.description = c.name, c.version, c.task, c.description
        self.labels, self.positive_label, self.threshold = c.labels, c.positive_label, c.threshold
        self.threshold_rationale = c.threshold_rationale
        self.score_output, self.label_output = c.score_output, c.label_output
        self.card, self.parity = c.card, c.parity
        self.profile = SessionProfile()
        self.variant_budget = VARIANT_BUDGET[c.task]
        self._inputs, self._outputs = c.inputs, c.outputs

    def set_io(self, inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...]) -> None:
        """The contract's tensors before conversion (names, dtypes and shapes the converter needs)."""
        self._inputs, self._outputs = inputs, outputs

    # -- the contract --------------------------------------------------------------------------------------
    def inputs(self, dataset: Dataset) -> tuple[TensorSpec, ...]:
        return self._inputs

    def outputs(self) -> tuple[TensorSpec, ...]:
        return self._outputs

    def frameworks(self) -> dict[str, str]:
        return self.source.frameworks() if self.source is not None else {}

    # -- the native side -----------------------------------------------------------------------------------
    def native_outputs(self, model: Any, X: Any) -> dict[str, np.ndarray]:
        """The source framework's outputs on ``X``; for an ``.onnx`` source, the outputs REF.npz gives for its own
        inputs (no other inputs can be answered without a framework).

        Raises:
            UsageError: an ``.onnx`` source asked about inputs that are not the reference's.
        """
        if self.source is None or self.loaded is None:
            raise UsageError("a brought spec without its source cannot run the native model")
        if self.source.run is None:
            if X is not self.reference_x:
                raise UsageError(f"{self.name}: an .onnx source has no framework to run other inputs than REF.npz's")
            return dict(self.given)
        inputs = X if isinstance(X, dict) else {self._inputs[0].name: X}
        names = tuple(o.name for o in self._outputs) or None
        return self.source.run(self.loaded, inputs, names)

    def native_predictors(self, model: Any) -> dict[str, Any]:
        if self.source is None or self.source.run is None:
            return {}
        return {f"{self.source.kind} (source framework)": lambda X: self.native_outputs(model, X)}

    def evaluate(self, scores: np.ndarray, y: np.ndarray, X: Any, threshold: float | None) -> dict[str, Any]:
        from ...train.metrics import binary_metrics, multiclass_metrics, regression_metrics

        if self.task == "binary_classification":
            return binary_metrics(self.outcome(y), scores, threshold)
        if self.task == "multiclass_classification":
            return multiclass_metrics(np.asarray(y).astype(int), scores, self.labels or ())
        pred = np.asarray(scores, dtype=np.float64).reshape(len(y), -1)
        truth = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
        if pred.shape[1] != 1 or truth.shape[1] != 1:
            return {"heldout": {}, "n_test": int(len(y)), "method": "several predicted values per sample: no "
                    "summary metric (RMSE/MAE take one value per sample)"}
        baseline = np.full(len(truth), float(truth.mean()))
        return regression_metrics(truth[:, 0], pred[:, 0], baseline, "the mean of the reference labels")

    def save_native(self, model: Any, folder: Path) -> str:  # the keras converter's child process
        model.save(folder / "model.keras")
        return "model.keras"

    def load_native(self, folder: Path) -> Any:
        from .adapters.keras_file import load_keras

        return load_keras(str(folder / "model.keras"))

    # -- the applicability-domain guard (a declared training sample) ---------------------------------------
    def domain_features(self, model: Any) -> Any:
        names = [t.name for t in self._inputs]

        def features(X: Any) -> dict[str, np.ndarray]:
            arrays = X if isinstance(X, dict) else {names[0]: X}
            return {k: np.asarray(arrays[k], dtype=np.float32) for k in self._guarded()}

        return features

    def _guarded(self) -> list[str]:
        return [t.name for t in self._inputs if t.dtype != "string"]

    def domain_sources(self, onx: Any) -> dict[str, str]:
        return {k: k for k in self._guarded()}

    def domain_parts(self, model: Any, dataset: Dataset) -> list[Part]:
        if not self.guard:
            return []
        feats = self.domain_features(model)(dataset.X_train)
        free = {t.name for t in self._inputs if any(isinstance(d, str) for d in t.shape[1:])}
        if free:  # an input whose size is free (a whole slice): only what does not depend on the size
            self.domain_method = STATS_METHOD
        parts = []
        for name in self._guarded():
            if name not in free:
                parts.append(domain.knn(name, feats[name], label=f"distance to the nearest training samples ({name})"))
            parts.append(domain.value_stats(name, feats[name], label=f"mean and spread of the values ({name})"))
        return parts

    def domain_shifts(self, model: Any, dataset: Dataset, guard: DomainGuard) -> dict[str, Shift]:
        X = dataset.X_test
        arrays = dict(X) if isinstance(X, dict) else {self._inputs[0].name: X}
        guarded = set(self._guarded())
        scaled = {k: (v * 10).astype(v.dtype) if k in guarded else v for k, v in arrays.items()}
        flat = {k: np.broadcast_to(np.asarray(v).reshape(len(v), -1).mean(1).reshape((-1,) + (1,) * (v.ndim - 1)),
                                   v.shape).astype(v.dtype) if k in guarded else v for k, v in arrays.items()}
        one = not isinstance(X, dict)

        def pick(d: dict[str, np.ndarray]) -> Any:
            return packed(d) if one else d

        # Neither family chose the guard (a generic kNN and value-statistics guard, fitted on the reference inputs
        # alone): both are evaluation sets, programmatic corruptions of the reference inputs.
        return {"values_x10": Shift("gross", guard.score(pick(scaled)), "reference inputs with every value x10 (a "
                                    "unit or scaling fault)", role="evaluation", family="scaling", synthetic=True),
                "values_flat": Shift("gross", guard.score(pick(flat)), "reference inputs with every value replaced "
                                     "by the sample's own mean (a stuck sensor, a blank image)", role="evaluation",
                                     family="constant", synthetic=True)}

