"""What an explanation builder gets (:class:`Context`) and gives back (:class:`Built`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from medinfer.explain_spec import ATTRIBUTIONS, ExplanationEntry

from ...train.spec import Dataset, ModelSpec, Progress, quiet
from .. import parity

GRAPH_FILE = "explain.onnx"
DATA_FILE = "explain.npz"


@dataclass
class Context:
    """One export's explanation job: the spec and its ``explain`` settings, the native model, the data, the model's
    converted graph (``onx``) and the session of the validated graph (``model_session``)."""

    spec: ModelSpec
    model: Any
    dataset: Dataset
    onx: Any
    input_name: str
    metadata: dict[str, str]
    settings: dict[str, Any]
    model_session: Any
    seed: int = 0
    progress: Progress = quiet
    graph_file: str = GRAPH_FILE
    data_file: str = DATA_FILE
    native: Callable[[Any], dict[str, np.ndarray]] | None = field(default=None, repr=False)

    def session(self, graph: bytes) -> Any:
        """A CPU session of an explanation graph (the gate's settings)."""
        return parity.ort_session(graph)

    def run(self, session: Any, X: Any) -> np.ndarray:
        """The explanation graph's attributions for ``X`` (batched)."""
        return parity.run_batched(session, self.input_name, X)[ATTRIBUTIONS]

    def native_rows(self, X: Any) -> Any:
        """``X`` as the native pipeline takes it, for a float64 reference: a flat list of documents for a text input,
        else float64 (scikit-learn computes in float32 when given float32)."""
        arr = np.asarray(X)
        if arr.dtype.kind in "OUS":
            return [str(s) for s in arr.astype(object).reshape(-1)]
        return arr.astype(np.float64)


@dataclass
class Built:
    """A gated explanation: its manifest entry (without fidelity yet), its graph's bytes (graph methods), the arrays
    of its data file, and a session of its graph."""

    entry: ExplanationEntry
    graph: bytes | None
    arrays: dict[str, np.ndarray]
    session: Any = None
