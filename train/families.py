"""Family bases of the model specs: one per framework family the exporter has a converter for.

:class:`SklearnClassifierSpec` (scikit-learn classifiers exported with skl2onnx, ZipMap off) and
:class:`KerasSpec` (Keras 3 models exported with tf2onnx) implement the hooks every spec of their family shares
(fit, save/load, native outputs and predictors, framework versions); a spec subclasses one and declares the rest.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from medinfer.manifest import TensorSpec

from .spec import Dataset, ModelSpec, Progress, quiet


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

    Subclasses implement ``build`` (a compiled ``keras.Model``); a dataset's validation part
    (``Dataset.X_val``/``y_val``) is shown per epoch.
    """

    family = "keras"
    opset = {"": 17}
    epochs: int = 10
    batch_size: int = 32
    train_seed: int = 42
    options: ClassVar[tuple[str, ...]] = ("epochs", "batch_size", "train_seed")

    def fit(self, model: Any, dataset: Dataset, progress: Progress = quiet) -> Any:
        deterministic_keras(int(self.train_seed))
        progress(f"fitting {model.name} ({model.count_params():,} parameters) on {dataset.n_train} samples, "
                 f"{self.epochs} epochs of batch {self.batch_size}")
        model.fit(dataset.X_train, dataset.y_train, epochs=int(self.epochs), batch_size=int(self.batch_size),
                  validation_data=dataset.validation, shuffle=True, verbose=0,
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


def deterministic_keras(seed: int) -> None:
    """Seed Python's, numpy's and TensorFlow's generators and make TensorFlow's ops deterministic: the same data
    and seed train the same weights (on the CPU; an op without a deterministic kernel then raises, naming itself,
    instead of training a different model each time)."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


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
