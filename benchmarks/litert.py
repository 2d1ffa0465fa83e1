"""Keras model -> LiteRT (TensorFlow Lite) flatbuffers, the peer a device team would pick for a Keras model.

Three variants, converted with the TensorFlow of the training venv (the interpreter runs in its own venv):

- ``fp32``: the plain conversion;
- ``dynamic-range int8``: int8 weights, float activations (``Optimize.DEFAULT`` without data);
- ``full-integer int8``: int8 weights and activations (``TFLITE_BUILTINS_INT8`` only), calibrated on the SAME
  training patches medinfer's int8 variant was calibrated on (``X_calib`` of the artifact); float input and
  output, so it takes the same input as every other contender.

A conversion that fails is recorded with its reason (e.g. an op with no int8 kernel), never skipped silently.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
from medinfer.integrity import sha256_bytes

log = logging.getLogger(__name__)
VARIANTS = ("fp32", "dynamic-range int8", "full-integer int8")
CALIBRATION_STEPS = 256


def _file(variant: str) -> str:
    return variant.replace(" ", "_").replace("-", "_") + ".tflite"


def convert(model: Any, calibration: np.ndarray, sample_shape: tuple[int, ...], out: Path) -> dict[str, Any]:
    """Write the three variants to ``out`` (cached by the Keras weights' digest); {variant: path or {"error"}}."""
    import tensorflow as tf

    key = sha256_bytes(b"".join(np.asarray(w).tobytes() for w in model.get_weights()))[:16]
    folder = out / key
    folder.mkdir(parents=True, exist_ok=True)
    done = folder / "conversions.json"
    if done.is_file():
        return {k: (str(folder / v) if isinstance(v, str) else v) for k, v in json.loads(done.read_text()).items()}
    saved = folder / "saved_model"
    model = _unrolled(model, sample_shape)
    if not saved.is_dir():  # Keras 3's own export: variables frozen into the graph the converter reads
        model.export(str(saved), format="tf_saved_model", verbose=False,
                     input_signature=[tf.TensorSpec([None, *sample_shape], tf.float32)])
    calib = np.asarray(calibration, dtype=np.float32)

    def representative() -> Any:
        for i in range(min(len(calib), CALIBRATION_STEPS)):
            yield [calib[i:i + 1]]

    results: dict[str, Any] = {}
    for variant in VARIANTS:
        converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
        if variant != "fp32":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if variant == "full-integer int8":
            converter.representative_dataset = representative
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        try:
            blob = converter.convert()
        except Exception as exc:  # noqa: BLE001 - the reason is the result
            results[variant] = {"error": f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1][:400]}"}
            log.warning("LiteRT %s conversion failed: %s", variant, results[variant]["error"])
            continue
        (folder / _file(variant)).write_bytes(blob)
        results[variant] = _file(variant)
    done.write_text(json.dumps(results, indent=1))
    return {k: (str(folder / v) if isinstance(v, str) else v) for k, v in results.items()}


def _unrolled(model: Any, sample_shape: tuple[int, ...]) -> Any:
    """The model with every recurrent layer unrolled over a fixed window (``sample_shape``'s time axis), the same
    weights: LiteRT's builtin ops then cover it (Keras 3's while-loop LSTM needs TensorFlow's own ops otherwise).
    Models without recurrent layers come back unchanged."""
    import keras

    recurrent = (keras.layers.LSTM, keras.layers.GRU, keras.layers.SimpleRNN)
    if not any(isinstance(layer, recurrent) for layer in model.layers):
        return model

    def clone(layer: Any) -> Any:
        config = layer.get_config()
        if isinstance(layer, recurrent):
            config["unroll"] = True
        return layer.__class__.from_config(config)

    fixed = keras.models.clone_model(model, input_tensors=keras.Input(shape=sample_shape), clone_function=clone)
    fixed.set_weights(model.get_weights())
    return fixed
