"""The guard's settings are part of the contract (issue 26): the domain threshold, the guard's output, coverage and
method, and the memory bounds (``profile.chunk``/``max_batch``, a variant's ``max_elements``) are covered by the
contract digest in the graph's metadata (scheme 2), like the decision threshold; an edit in an unsigned bundle is
refused at load; NaN or negative thresholds are refused by the manifest schema; bundles written before scheme 2
still load; every npz a bundle pins is decompressed within a bound."""

from __future__ import annotations

import io
import json
import math
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import medinfer
import numpy as np
import pytest
from medinfer import samples
from medinfer.integrity import CONTRACT_SCHEME, contract_digest, guard_settings

from ..helpers import tiny


@pytest.fixture(scope="module")
def signed_off(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A guarded tiny bundle whose graph carries the scheme-2 digest (as the exporter writes it)."""
    return tiny.build_domain(tmp_path_factory.mktemp("guard") / "tiny_domain", threshold=1.0, scheme="2")


def _edited(src: Path, tmp_path: Path, edit: Callable[[dict], None]) -> Path:
    bundle = tmp_path / src.name
    shutil.copytree(src, bundle)
    doc = json.loads((bundle / "manifest.json").read_text())
    edit(doc)
    (bundle / "manifest.json").write_text(json.dumps(doc))  # json writes NaN as NaN, as an editor could
    return bundle


def _set(*path: str, value: object) -> Callable[[dict], None]:
    def edit(doc: dict) -> None:
        node = doc
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value(node.get(path[-1])) if callable(value) else value
    return edit


def _one_digit(value: float) -> float:
    text = repr(value)
    i = next(i for i, c in enumerate(text) if c.isdigit() and c != "0")
    return float(text[:i] + str((int(text[i]) + 1) % 10) + text[i + 1:])


EDITS: dict[str, Callable[[dict], None]] = {
    "threshold x1000": _set("domain", "threshold", value=lambda t: t * 1000),
    "threshold one digit changed": _set("domain", "threshold", value=_one_digit),
    "domain section removed": lambda doc: doc.pop("domain"),
    "coverage edited": _set("domain", "coverage", value=0.5),
    "domain output renamed": _set("domain", "output", value="label"),
    "max_batch edited": _set("profile", "max_batch", value=10 ** 9),
    "chunk edited": _set("profile", "chunk", value=10 ** 7),
    "max_elements added to a variant": _set("variants", "default", "max_elements", value=10 ** 12),
}


def test_the_unedited_bundle_loads_and_carries_scheme_2(signed_off: Path) -> None:
    model = medinfer.load(signed_off)
    meta = model.session.get_modelmeta().custom_metadata_map
    assert meta["medinfer.contract_scheme"] == CONTRACT_SCHEME == "2"
    assert meta["medinfer.contract_sha256"] == contract_digest(model.manifest.to_json(), "2") != \
        contract_digest(model.manifest.to_json(), "1")
    assert guard_settings(model.manifest.to_json())["domain"]["threshold"] == 1.0


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_an_edit_of_the_guard_or_the_memory_bounds_is_refused(signed_off: Path, tmp_path: Path, edit: str) -> None:
    bundle = _edited(signed_off, tmp_path, EDITS[edit])
    with pytest.raises(medinfer.IntegrityError, match="contract_sha256.*re-export the bundle"):
        medinfer.load(bundle)


def test_the_same_edit_to_the_decision_threshold_is_refused_too(signed_off: Path, tmp_path: Path) -> None:
    with pytest.raises(medinfer.IntegrityError, match="contract_sha256"):
        medinfer.load(_edited(signed_off, tmp_path, _set("decision", "threshold", value=0.9)))


@pytest.mark.parametrize("value", [-1.0, float("nan"), float("inf"), -0.5])
def test_nan_or_negative_domain_thresholds_are_refused_by_the_schema(signed_off: Path, tmp_path: Path,
                                                                       value: float) -> None:
    bundle = _edited(signed_off, tmp_path, _set("domain", "threshold", value=value))
    with pytest.raises(medinfer.ManifestError, match=r"'domain\.threshold' must be a finite number >= 0"):
        medinfer.load_manifest(bundle)
    with pytest.raises(medinfer.ManifestError):
        medinfer.load(bundle)


@pytest.mark.parametrize("field,value", [("coverage", float("nan")), ("coverage", 0.0)])
def test_a_nan_or_empty_coverage_is_refused(signed_off: Path, tmp_path: Path, field: str, value: float) -> None:
    with pytest.raises(medinfer.ManifestError, match=rf"'domain\.{field}'"):
        medinfer.load_manifest(_edited(signed_off, tmp_path, _set("domain", field, value=value)))


def test_a_bundle_written_before_scheme_2_still_loads(tmp_path: Path) -> None:
    old = tiny.build_domain(tmp_path / "old" / "tiny_domain", threshold=1.0)  # scheme 1: no scheme key
    model = medinfer.load(old)
    assert "medinfer.contract_scheme" not in model.session.get_modelmeta().custom_metadata_map
    assert model.predict(tiny.GOLDEN_X).in_domain.all()
    assert model.self_test().status in ("bit_exact", "within_tolerance")
    # its decision contract is still checked as before
    with pytest.raises(medinfer.IntegrityError, match="contract_sha256"):
        medinfer.load(_edited(old, tmp_path, _set("decision", "threshold", value=0.9)))


def test_a_graph_naming_an_unknown_scheme_is_refused(tmp_path: Path) -> None:
    import onnx

    bundle = tiny.build_domain(tmp_path / "future" / "tiny_domain", scheme="2")
    onx = onnx.load(bundle / "model.onnx")
    for prop in onx.metadata_props:
        if prop.key == "medinfer.contract_scheme":
            prop.value = "9"
    data = onx.SerializeToString()
    (bundle / "model.onnx").write_bytes(data)
    doc = json.loads((bundle / "manifest.json").read_text())
    doc["files"]["model.onnx"] = {**doc["files"]["model.onnx"], "sha256": medinfer.integrity.sha256_bytes(data),
                                  "size": len(data)}
    (bundle / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(medinfer.IntegrityError, match="contract digest scheme this medinfer does not know"):
        medinfer.load(bundle)


def _bomb(declared: int) -> bytes:
    """An npz whose one member expands to ``declared`` zero bytes (a few kB compressed)."""
    buf = io.BytesIO()
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False, "shape": (declared,)})
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf, zf.open("in.x.npy", "w", force_zip64=True) as fh:
        fh.write(header.getvalue())
        block = bytes(1 << 20)
        left = declared
        while left > 0:
            fh.write(block[:left])
            left -= len(block)
    return buf.getvalue()


def test_a_samples_file_is_refused_before_it_is_unpacked_beyond_the_bound() -> None:
    bomb = _bomb(64 << 20)
    assert len(bomb) < 1 << 20  # 64 MiB behind well under 1 MiB
    with pytest.raises(medinfer.BundleError, match=r"expands to \d+ bytes; at most 1048576"):
        samples.load_npz(bomb, "golden.npz", max_bytes=1 << 20)
    assert samples.load_npz(bomb, "golden.npz", max_bytes=65 << 20)["in.x"].shape == (64 << 20,)
    assert samples.MAX_NPZ_BYTES <= 1 << 30  # the default bound is finite


def test_every_pinned_npz_is_read_within_the_bound(signed_off: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = medinfer.load(signed_off)
    monkeypatch.setattr(samples, "MAX_NPZ_BYTES", 64)  # smaller than this bundle's golden file expands to
    with pytest.raises(medinfer.BundleError, match="expands to"):
        model.golden()
    with pytest.raises(medinfer.BundleError, match="expands to"):
        medinfer.load(signed_off)  # the self-test reads the golden file through the same bound


def test_a_pickled_member_is_never_loaded() -> None:
    buf = io.BytesIO()
    np.savez(buf, **{"in.x": np.array([{"a": 1}], dtype=object)})
    with pytest.raises(medinfer.BundleError, match="not a readable samples file"):
        samples.load_npz(buf.getvalue(), "golden.npz")
    assert math.isfinite(samples.MAX_NPZ_BYTES)
