"""The model spec: the ONE place that knows a model's name, task, data, contract, fitting and tolerances.

A spec subclasses :class:`ModelSpec` (or a family base such as :class:`SklearnClassifierSpec`), sets the class
attributes, implements ``load_data`` and ``build``, and is registered with ``@register``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from medinfer.manifest import Card, DataSource, SessionProfile, TensorSpec

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
    """A split dataset with its provenance. Arrays are exactly what the exported graph will receive."""

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

    @property
    def n_train(self) -> int:
        return len(self.y_train)

    @property
    def n_test(self) -> int:
        return len(self.y_test)


class ModelSpec:
    """Base of every spec. Class attributes describe the model; methods fit and evaluate it."""

    name: ClassVar[str]
    version: ClassVar[str] = "1.0.0"
    task: ClassVar[str]  # binary_classification | multiclass_classification | regression
    family: ClassVar[str]  # converter family: "sklearn" | "keras"
    description: ClassVar[str] = ""
    seed_section: ClassVar[str] = ""
    labels: ClassVar[tuple[str, ...] | None] = None
    positive_label: ClassVar[str | None] = None
    threshold: ClassVar[float | None] = None
    threshold_rationale: ClassVar[str] = ""
    parity: ClassVar[ParityTolerance] = ParityTolerance(atol=1e-5)
    profile: ClassVar[SessionProfile] = SessionProfile()
    card: ClassVar[Card]
    opset: ClassVar[dict[str, int]] = {"": 17, "ai.onnx.ml": 3}
    score_output: ClassVar[str] = "probabilities"
    label_output: ClassVar[str | None] = None
    # Faster variants to build at export ("int8"), each shipped only within this budget of held-out metric loss.
    variants: ClassVar[tuple[str, ...]] = ()
    variant_budget: ClassVar[dict[str, float]] = {"roc_auc": 0.005}
    int8_exclude_prefixes: ClassVar[tuple[str, ...]] = ()
    # (conv name fragment, clip output fragment) of an input windowing layer to fold into the int8 input quantizer
    int8_fold_window: ClassVar[tuple[str, str] | None] = None
    measure_profile: ClassVar[bool] = True  # choose threads/spinning/optimisation level by measurement
    # What the registry-parametrized tests train on: a small seeded sample and cheap options (CI runs 2 cores).
    test_sample: ClassVar[int | None] = 200
    test_options: ClassVar[dict[str, Any]] = {}

    # -- to implement ------------------------------------------------------------------------------------
    def load_data(self, *, sample: int | None = None, seed: int = 0, progress: Progress = quiet) -> Dataset:
        raise NotImplementedError

    def build(self, dataset: Dataset) -> Any:
        """An unfitted native model."""
        raise NotImplementedError

    def fit(self, model: Any, dataset: Dataset, progress: Progress = quiet) -> Any:
        raise NotImplementedError

    def native_outputs(self, model: Any, X: Any) -> dict[str, np.ndarray]:
        """The native model's outputs on X, keyed by the exported graph's output names."""
        raise NotImplementedError

    def inputs(self, dataset: Dataset) -> tuple[TensorSpec, ...]:
        raise NotImplementedError

    def outputs(self) -> tuple[TensorSpec, ...]:
        raise NotImplementedError

    def evaluate(self, scores: np.ndarray, y: np.ndarray) -> dict[str, Any]:
        """Held-out metrics (with CIs) and the baseline: {"heldout": {...}, "baseline": {...}}."""
        raise NotImplementedError

    def save_native(self, model: Any, folder: Path) -> str:
        """Save the fitted native model into ``folder``; return the file name."""
        raise NotImplementedError

    def load_native(self, folder: Path) -> Any:
        raise NotImplementedError

    def frameworks(self) -> dict[str, str]:
        """Versions of the native frameworks this spec trains with (for the manifest)."""
        return {}

    def native_predictors(self, model: Any) -> dict[str, Callable[[Any], Any]]:
        """The native framework's own inference calls, for side-by-side benchmarks ({label: fn(X)})."""
        return {"native": lambda X: self.native_outputs(model, X)}

    # -- shared ------------------------------------------------------------------------------------------
    def scores(self, outputs: dict[str, np.ndarray]) -> np.ndarray:
        """The decision score per sample from native or ONNX outputs (positive-class probability if binary)."""
        raw = outputs[self.score_output]
        if self.task == "binary_classification":
            if raw.ndim == 2 and raw.shape[1] == 2:
                return raw[:, list(self.labels or ()).index(self.positive_label)]
            return raw.reshape(len(raw))
        if self.task == "regression" and raw.ndim == 2 and raw.shape[1] == 1:
            return raw[:, 0]
        return raw

    def decisions(self, scores: np.ndarray) -> np.ndarray:
        """Decision index per sample: thresholded (binary) or argmax (multiclass); values for regression."""
        if self.task == "binary_classification":
            return (scores >= float(self.threshold or 0.5)).astype(np.int64)
        if self.task == "multiclass_classification":
            return np.argmax(scores, axis=1)
        return scores


class SklearnClassifierSpec(ModelSpec):
    """Family base for scikit-learn classifiers exported with skl2onnx (ZipMap off)."""

    family = "sklearn"
    score_output = "probabilities"
    label_output = "label"

    def fit(self, model: Any, dataset: Dataset, progress: Progress = quiet) -> Any:
        progress(f"fitting {type(model).__name__} on {dataset.n_train} samples")
        model.fit(dataset.X_train, dataset.y_train)
        return model

    def save_native(self, model: Any, folder: Path) -> str:
        import joblib

        joblib.dump(model, folder / "model.joblib")
        return "model.joblib"

    def load_native(self, folder: Path) -> Any:
        import joblib

        return joblib.load(folder / "model.joblib")

    def frameworks(self) -> dict[str, str]:
        import sklearn

        return {"scikit-learn": sklearn.__version__}

    def native_predictors(self, model: Any) -> dict[str, Callable[[Any], Any]]:
        return {"sklearn predict_proba": model.predict_proba}

    def native_outputs(self, model: Any, X: Any) -> dict[str, np.ndarray]:
        return {
            "label": np.asarray(model.predict(X)).astype(np.int64),
            "probabilities": np.asarray(model.predict_proba(X), dtype=np.float32),
        }

    def outputs(self) -> tuple[TensorSpec, ...]:
        n = len(self.labels or ())
        return (
            TensorSpec("label", "int64", ("N",), description="argmax class index (the decision uses the threshold)"),
            TensorSpec("probabilities", "float32", ("N", n), description=f"class probabilities, columns {self.labels}"),
        )


class KerasSpec(ModelSpec):
    """Family base for Keras 3 models exported with tf2onnx (``tf.function`` path, see the stack notes).

    Subclasses implement ``build`` (a compiled ``keras.Model``) and may set ``validation`` in ``load_data``
    (``(X_val, y_val)``, shown per epoch and used for choices such as the operating threshold).
    """

    family = "keras"
    opset = {"": 17}
    epochs: ClassVar[int] = 10
    batch_size: ClassVar[int] = 32
    train_seed: ClassVar[int] = 42
    validation: tuple[Any, np.ndarray] | None = None

    def fit(self, model: Any, dataset: Dataset, progress: Progress = quiet) -> Any:
        import keras

        keras.utils.set_random_seed(int(self.train_seed))
        progress(f"fitting {model.name} ({model.count_params():,} parameters) on {dataset.n_train} samples, "
                 f"{self.epochs} epochs of batch {self.batch_size}")
        model.fit(dataset.X_train, dataset.y_train, epochs=int(self.epochs), batch_size=int(self.batch_size),
                  validation_data=self.validation, shuffle=True, verbose=0,
                  callbacks=[_tqdm_callback(int(self.epochs), -(-dataset.n_train // int(self.batch_size)))])
        return model

    def native_outputs(self, model: Any, X: Any) -> dict[str, np.ndarray]:
        out = model.predict(np.asarray(X), batch_size=256, verbose=0)
        return {self.score_output: np.asarray(out, dtype=np.float32)}

    def native_predictors(self, model: Any) -> dict[str, Callable[[Any], Any]]:
        import tensorflow as tf

        compiled = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
        return {"keras model.predict": lambda X: model.predict(X, verbose=0),
                "keras tf.function": lambda X: compiled(tf.convert_to_tensor(X)).numpy()}

    def save_native(self, model: Any, folder: Path) -> str:
        model.save(folder / "model.keras")
        return "model.keras"

    def load_native(self, folder: Path) -> Any:
        import keras

        return keras.models.load_model(folder / "model.keras")

    def frameworks(self) -> dict[str, str]:
        import keras
        import tensorflow as tf

        return {"tensorflow": tf.__version__, "keras": keras.__version__}


def _tqdm_callback(epochs: int, steps: int) -> Any:
    """A Keras callback that shows one tqdm bar over all training batches, with loss (and val_loss)."""
    import keras
    from tqdm.auto import tqdm

    class TqdmProgress(keras.callbacks.Callback):
        def on_train_begin(self, logs: Any = None) -> None:
            self.bar = tqdm(total=epochs * steps, desc="training", unit="batch", leave=False, mininterval=0.5)

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            self.bar.update(1)

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            shown = {k: f"{v:.4g}" for k, v in (logs or {}).items() if "loss" in k}
            self.bar.set_postfix(epoch=f"{epoch + 1}/{epochs}", **shown)

        def on_train_end(self, logs: Any = None) -> None:
            self.bar.close()

    return TqdmProgress()
