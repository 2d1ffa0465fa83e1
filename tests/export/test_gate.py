"""The fail-closed parity gate: an export whose graph disagrees with the native model writes nothing."""

from __future__ import annotations

import medinfer
import numpy as np
import pytest
from medinfer.train import registry


@pytest.mark.parametrize("name", registry.names())
def test_parity_gate_fails_closed(built, tmp_path, name: str) -> None:
    """A native model that disagrees with the graph must stop the export, and no bundle may appear."""
    import dataclasses

    from medinfer.export.bundle import export
    from medinfer.train.spec import ParityTolerance

    art, _ = built(name)
    strict = dataclasses.replace(art, spec=type(art.spec)())
    real = strict.spec.native_outputs

    def skewed(model, X):
        out = real(model, X)
        key = strict.spec.score_output
        out[key] = (out[key] + np.float32(0.01)).astype(out[key].dtype)
        return out

    strict.spec.native_outputs = skewed
    strict.spec.parity = ParityTolerance(atol=1e-4)
    with pytest.raises(medinfer.ParityError, match="(?s)parity gate FAILED.*max abs diff"):
        export(strict, tmp_path / "bundles")
    out = tmp_path / "bundles"
    assert not out.exists() or not any(out.iterdir())  # no bundle and no staging folder left behind
