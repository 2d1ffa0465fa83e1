"""Talking to a server over the Open Inference Protocol with tritonclient (serve and tritonserver tests alike)."""

from __future__ import annotations

from typing import Any

import medinfer
import numpy as np

from .answers import assert_same_answers, tolerance


def infer(client: Any, model: str, x: np.ndarray, name: str = "x", datatype: str = "FP32", binary: bool = True,
          **kwargs: Any) -> Any:
    """One tritonclient.http inference of ``x`` as input ``name``."""
    import tritonclient.http as th

    inp = th.InferInput(name, list(x.shape), datatype)
    inp.set_data_from_numpy(x, binary_data=binary)
    outputs = kwargs.pop("outputs", None)
    return client.infer(model, [inp], outputs=outputs, **kwargs)


def assert_same(result: Any, pred: medinfer.Prediction, raw: str, model: medinfer.Model) -> None:
    """The response carries the Prediction: labels, scores and the raw score output, within the bundle's stated
    tolerance (the server may have batched the request with others: tests/helpers/answers.py)."""
    labels = None
    if pred.labels is not None:
        labels = [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("labels").reshape(-1)]
    assert_same_answers(model, result.as_numpy("scores"), labels, pred)
    np.testing.assert_allclose(result.as_numpy(raw).reshape(pred.outputs[raw].shape), pred.outputs[raw], rtol=0,
                               atol=tolerance(model))


def wire_input(model: medinfer.Model, X: Any, n: int = 16, text_as_bytes: bool = False) -> tuple[np.ndarray, str]:
    """The first ``n`` held-out samples as the protocol sends them, and their datatype (BYTES for text)."""
    spec = model.manifest.inputs[0]
    x = np.asarray(X[:n])
    if spec.dtype == "string":
        items = [str(v).encode() if text_as_bytes else str(v) for v in x.reshape(-1)]
        return np.array(items, dtype=object).reshape(-1, *[1] * (len(spec.shape) - 1)), "BYTES"
    return x.astype(spec.dtype), "FP32"


def every_built_bundle(built: Any) -> dict[str, Any]:
    """{name: (artifact, bundle path)} for every registered spec, trained once per session by ``built``."""
    from medinfer.train import registry

    return {name: built(name) for name in registry.names()}
