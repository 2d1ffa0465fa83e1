"""The ``int8_nhwc`` variant on the sample-trained CNN: built at export, gated like every variant, loadable by
name (its own golden self-test) and through ``variant="auto"`` (the manifest's per-CPU preference)."""

from __future__ import annotations

import medinfer
import numpy as np


def test_the_int8_nhwc_variant_is_gated_and_auto_resolves(built) -> None:
    art, path = built("lung_nodule_cnn")
    manifest = medinfer.load_manifest(path)
    report = manifest.parity.variants["int8_nhwc"]
    if report["shipped"]:  # on the tiny sample the clinical gate may refuse it; then it must say why
        entry = manifest.variants["int8_nhwc"]
        assert entry.precision == "int8" and entry.accuracy_delta["roc_auc"] <= art.spec.variant_budget["roc_auc"]
        model = medinfer.load(path, variant="int8_nhwc")  # verifies the file and runs its golden self-test
        x = np.asarray(art.dataset.X_test[:6], dtype=np.float32)
        together = model.predict(x).scores
        alone = np.concatenate([model.predict(x[i:i + 1]).scores for i in range(len(x))])
        np.testing.assert_allclose(together, alone, atol=1e-5)  # no score depends on its batch mates
    else:
        assert "int8_nhwc" not in manifest.variants and report["reason"]
    preferred = set(manifest.profile.variant_by_cpu.values())
    assert preferred <= set(manifest.variants) - {"slice", "slice_int8"}
    assert "variant_by_cpu" in manifest.profile.measured  # the evidence of the choice
    assert medinfer.load(path, variant="auto").variant in ({"default"} | preferred)
