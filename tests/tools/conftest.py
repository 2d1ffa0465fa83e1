"""Fixtures the tool tests share: a CT bundle like lung_nodule_cnn's contract (read only), built once."""

from __future__ import annotations

from pathlib import Path

import pytest

from ..helpers import tiny


@pytest.fixture(scope="session")
def lung_ct_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny CT stand-in under the shipped CT model's name (its DICOM finding and FHIR codes apply; read only)."""
    return tiny.build_ct(tmp_path_factory.mktemp("ct") / "lung_nodule_cnn", name="lung_nodule_cnn")
