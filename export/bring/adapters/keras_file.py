"""A Keras 3 model file (``.keras``; ``.h5`` as Keras reads it), converted by the five specs' ``keras`` converter
(tf2onnx through ``tf.function``, in a child process). One input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from medinfer.errors import UsageError
from medinfer.extras import optional_import

from ....train.spec import ParityTolerance
from ..sources import Loaded, Source, register_source, suffix


def load_keras(path: str) -> Any:
    optional_import("tensorflow", "train", "bringing a Keras model (medinfer bundle)")  # brings keras with it
    import keras

    return keras.models.load_model(path, compile=False)


def _load(source: str, task: str) -> Loaded:
    if not Path(source).is_file():
        raise UsageError(f"Keras file {source} does not exist")
    model = load_keras(source)
    if len(model.inputs) != 1:
        raise UsageError(f"{source} has {len(model.inputs)} inputs; Keras models are brought with one input (export "
                         "it to ONNX yourself and bring the .onnx for several)")
    return Loaded("keras", model, source, input_names=None)


def _run(loaded: Loaded, inputs: dict[str, np.ndarray], output_names: tuple[str, ...] | None) -> dict[str, np.ndarray]:
    (X,) = inputs.values()
    out = loaded.obj.predict(X, batch_size=64, verbose=0)
    outs = out if isinstance(out, (list, tuple)) else [out]
    names = output_names or (("output",) if len(outs) == 1 else None)
    if names is None or len(names) != len(outs):
        raise UsageError(f"the Keras model has {len(outs)} outputs; name them in the contract: output_names = [...]")
    return {n: np.asarray(o) for n, o in zip(names, outs)}


def _frameworks() -> dict[str, str]:
    import keras
    import tensorflow as tf

    return {"tensorflow": tf.__version__, "keras": keras.__version__}


register_source(Source(
    kind="keras", family="keras", extra="train", matches=lambda s: suffix(s) in (".keras", ".h5"), load=_load,
    run=_run, frameworks=_frameworks, tolerance=ParityTolerance(atol=1e-4, rtol=1e-4),
    describe="a Keras 3 model file (.keras, .h5)"))
