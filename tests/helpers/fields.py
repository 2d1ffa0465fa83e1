"""The manifest fields every tiny test bundle shares (one builder for tiny.py, tiny_cnn.py and the pipeline helpers),
and the synthetic data source they name."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from medinfer.manifest import Card, DataProvenance, DataSource, Metric, Metrics, Producer, Variant

SYNTHETIC = DataSource(name="synthetic", package="none", version="0", file="-", sha256="0" * 64, licence="CC0",
                       citation="generated in the test")


def synthetic_data(description: str = "synthetic weights") -> DataProvenance:
    """The provenance of a tiny bundle: one synthetic source, no split."""
    return DataProvenance(sources=(SYNTHETIC,), split={"method": "none"}, synthetic=True, description=description)


def bundle_fields(contract_doc: dict[str, Any], golden_out: dict[str, np.ndarray], *, n_test: int = 3,
                  **overrides: Any) -> dict[str, Any]:
    """Every manifest field of a tiny bundle but those ``write_bundle`` fills in (files, created, requires):
    ``contract_doc`` (name, version, task, inputs, outputs, labels, decision), one-thread profile, the default
    variant, synthetic data, a perfect metric, a passed gate, the golden outputs; ``overrides`` replace fields."""
    from medinfer.export.writer import golden_entry

    return {
        **contract_doc,
        "description": "tiny test model (synthetic)",
        "producer": Producer(medinfer="test", onnx="test", onnxruntime="test", opset={"ai.onnx": 17}),
        "profile": {"intra_op_num_threads": 1, "inter_op_num_threads": 1},
        "variants": {"default": Variant(file="model.onnx")},
        "data": synthetic_data(),
        "metrics": Metrics(heldout={"accuracy": Metric(1.0, (1.0, 1.0))}, n_test=n_test, method="none"),
        "parity": {"passed": True},
        "golden": golden_entry(golden_out, atol=1e-5),
        "card": Card(summary="tiny", intended_use="tests only"),
        **overrides,
    }


#: ``make_bundle(folder_name="tiny_logistic", **tiny.build options)``: the ``make_bundle`` fixture (tests/conftest.py)
MakeBundle = Callable[..., Path]
