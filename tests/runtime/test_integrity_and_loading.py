"""Integrity and loading in detail: exact refusals, kept bytes, the digest formats bundles carry, every contract field,
load options and the last-line BundleError. These tests pin behaviours that mutation testing (``make mutation-
score``, promises/mutation.toml) found unpinned: each fails when the code it names is changed in the way the mutant
changed it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import medinfer
import numpy as np
import pytest

from ..helpers import tiny


def _pins(bundle: Path) -> dict:
    return json.loads((bundle / "manifest.json").read_text())["files"]


def test_an_altered_or_truncated_or_missing_file_is_named_with_both_digests_or_sizes(tmp_path: Path) -> None:
    """The refusal says which file, what it is now, what the manifest pins, and what to do (exact messages)."""
    bundle = tiny.build(tmp_path / "m")
    graph = bundle / "model.onnx"
    original = graph.read_bytes()
    graph.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    actual, pinned = hashlib.sha256(graph.read_bytes()).hexdigest(), _pins(bundle)["model.onnx"]["sha256"]
    with pytest.raises(medinfer.IntegrityError) as info:
        medinfer.load(bundle)
    assert str(info.value) == (f"{bundle}: file 'model.onnx' has sha256 {actual[:16]}…, the manifest pins "
                               f"{pinned[:16]}…: the file was altered; restore the bundle from its source")
    graph.write_bytes(original[:100])
    with pytest.raises(medinfer.IntegrityError) as info:
        medinfer.load(bundle)
    assert str(info.value) == (f"{bundle}: file 'model.onnx' has 100 bytes, the manifest pins {len(original)}: the "
                               "file was altered or truncated; restore the bundle from its source")
    graph.unlink()
    with pytest.raises(medinfer.IntegrityError) as info:
        medinfer.load(bundle)
    assert str(info.value) == (f"{bundle}: file 'model.onnx' is pinned by the manifest but missing; restore the "
                               "bundle from its source")


def test_a_special_file_is_refused_by_its_name(tmp_path: Path) -> None:
    """The reader's refusal names the pinned file and what it is now (a pinned file that became a folder)."""
    bundle = tiny.build(tmp_path / "m")
    (bundle / "golden.npz").unlink()
    (bundle / "golden.npz").mkdir()
    with pytest.raises(medinfer.IntegrityError) as info:
        medinfer.load(bundle)
    assert str(info.value) == (f"{bundle}: file 'golden.npz' is a folder, not a regular file; restore the bundle "
                               "from its source")


def test_unpinned_entries_are_counted_and_an_unpinned_folder_is_named(tmp_path: Path) -> None:
    bundle = tiny.build(tmp_path / "m", extra_files={"plots/roc.png": (b"png", "plot")})
    for name in ("a.onnx", "b.onnx", "c.onnx"):
        (bundle / name).write_bytes(b"x")
    with pytest.raises(medinfer.IntegrityError) as info:
        medinfer.load(bundle)
    assert str(info.value) == (f"{bundle}: 'a.onnx' is not pinned by the manifest (and 2 more); a bundle holds only "
                               "the files its manifest pins: remove it or re-export the bundle")
    (bundle / "c.onnx").unlink()
    with pytest.raises(medinfer.IntegrityError, match=r"'a.onnx' is not pinned by the manifest \(and 1 more\); a"):
        medinfer.load(bundle)
    for name in ("a.onnx", "b.onnx"):
        (bundle / name).unlink()
    (bundle / "empty").mkdir()
    with pytest.raises(medinfer.IntegrityError) as info:
        medinfer.load(bundle)
    assert str(info.value) == (f"{bundle}: 'empty/' is not pinned by the manifest; a bundle holds only the files its "
                               "manifest pins: remove it or re-export the bundle")


def test_files_kept_by_verify_are_returned_whole_whatever_their_size(tmp_path: Path) -> None:
    """verify_files hands back the very bytes it hashed: also for a file of several read blocks (3 MiB)."""
    from medinfer.integrity import verify_files
    from medinfer.manifest import decode_manifest, read_manifest_bytes

    big = np.random.default_rng(0).bytes(3 << 20)  # three read blocks
    two = np.random.default_rng(1).bytes(3 << 19)  # two read blocks
    bundle = tiny.build(tmp_path / "m", extra_files={"plots/big.bin": (big, "other"), "plots/two.bin": (two, "other")})
    manifest = decode_manifest(read_manifest_bytes(bundle))
    kept = verify_files(bundle, manifest, keep=("plots/big.bin", "plots/two.bin", "golden.npz"), seal=("model.onnx",))
    try:
        assert kept["plots/big.bin"] == big and kept["plots/two.bin"] == two
        assert kept["golden.npz"] == (bundle / "golden.npz").read_bytes()
        assert kept["model.onnx"].read() == (bundle / "model.onnx").read_bytes()
    finally:
        kept["model.onnx"].close()


_CONTRACT_KEYS = ("name", "version", "task", "inputs", "outputs", "labels", "decision")


def test_the_contract_digest_is_sha256_of_the_canonical_contract_fields() -> None:
    """The format bundles in the field carry in their graph's metadata (computed here independently): sha256 of
    the sorted, compact JSON of exactly these seven fields; anything else in the manifest is left out."""
    from medinfer.integrity import contract_digest

    doc = {"labels": ["b", "a"], "files": {"x": 1}, "version": "1.2", "name": "n", "task": "regression",
           "decision": {"threshold": 0.25}, "inputs": [{"name": "x"}], "outputs": [{"name": "y", "é": "ü"}],
           "metrics": {"auc": 0.9}}
    part = {k: doc[k] for k in _CONTRACT_KEYS}
    want = hashlib.sha256(json.dumps(part, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert contract_digest(doc) == want
    assert contract_digest({**doc, "files": {}, "metrics": {}}) == want
    partial = {"name": "n"}
    assert contract_digest(partial) == hashlib.sha256(json.dumps(
        {k: partial.get(k) for k in _CONTRACT_KEYS}, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def test_the_variant_contract_digest_covers_inputs_outputs_windows_of_and_max_elements() -> None:
    from medinfer.integrity import variant_contract_digest
    from medinfer.manifest import TensorSpec, Variant
    from medinfer.schema import to_json

    v = Variant(file="model.slice.onnx", inputs=(TensorSpec("hu", "float32", (1, "H", "W", 1)),),
                outputs=(TensorSpec("probability", "float32", ("K", 1)),), windows_of="default", max_elements=4096)
    part = {k: to_json(getattr(v, k)) for k in ("inputs", "outputs", "windows_of", "max_elements")}
    want = hashlib.sha256(json.dumps(part, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert variant_contract_digest(v) == want
    import dataclasses

    for change in ({"max_elements": 4097}, {"windows_of": "int8"}, {"outputs": ()}, {"inputs": ()}):
        assert variant_contract_digest(dataclasses.replace(v, **change)) != want, change
    assert variant_contract_digest(dataclasses.replace(v, file="other.onnx", precision="int8")) == want


def test_the_outputs_digest_is_sha256_of_name_dtype_shape_and_bytes_in_order() -> None:
    from medinfer.integrity import outputs_digest

    outs = {"scores": np.array([[0.25], [1.5]], np.float32), "labels": np.array(["no", "yes"], dtype=object)}

    def by_hand(order: tuple[str, ...]) -> str:
        h = hashlib.sha256()
        for name in order:
            arr = outs[name]
            h.update(f"{name}|{arr.dtype.str}|{arr.shape}|".encode())
            h.update("\x00".join(map(str, arr.ravel().tolist())).encode() if arr.dtype.kind in "OU" else arr.tobytes())
        return h.hexdigest()

    assert outputs_digest(outs) == by_hand(("labels", "scores"))  # sorted by name when no order is given
    assert outputs_digest(outs, ("scores", "labels")) == by_hand(("scores", "labels"))
    text = {"labels": np.array(["no", "yes"])}  # a numpy str array digests like the object one
    assert outputs_digest(text) == hashlib.sha256(b"labels|<U3|(2,)|no\x00yes").hexdigest()


@pytest.mark.parametrize("field,edit", [
    ("version", lambda d: d.update(version="9.9.9")),
    ("task", lambda d: d.update(task="multiclass_classification")),
    ("inputs", lambda d: d["inputs"][0].update(units="mmol/L")),
    ("outputs", lambda d: d["outputs"][1].update(description="edited")),
    ("labels", lambda d: d.update(labels=["positive", "negative"])),
    ("decision", lambda d: d["decision"].update(threshold=0.75)),
])
def test_a_contract_field_edited_after_export_is_refused(tmp_path: Path, field: str, edit) -> None:
    """Every field of the contract is covered by the digest the graph carries: editing one in manifest.json (the
    files still match their pins) is refused before a session runs."""
    bundle = tiny.build(tmp_path / "m")
    path = bundle / "manifest.json"
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))
    with pytest.raises(medinfer.IntegrityError, match="contract_sha256|medinfer.version"):
        medinfer.load(bundle)

def test_load_refuses_unknown_policies_and_names_before_reading(tmp_path: Path) -> None:
    bundle = tiny.build(tmp_path / "m")
    with pytest.raises(medinfer.UnknownNameError) as info:
        medinfer.load(bundle, out_of_domain="ignore")
    assert str(info.value) == "unknown out_of_domain policy 'ignore' (3 known: flag, no_result, raise)"
    with pytest.raises(medinfer.UnknownNameError) as info:
        medinfer.load(bundle, on_error="skip")
    assert str(info.value) == "unknown on_error policy 'skip' (2 known: no_result, raise)"
    with pytest.raises(medinfer.UnknownNameError) as info:
        medinfer.load(bundle, variant="int4")
    assert str(info.value) == "unknown variant 'int4' of tiny_logistic (1 known: default)"


def test_a_path_that_is_not_a_bundle_folder(tmp_path: Path) -> None:
    bundle = tiny.build(tmp_path / "m")
    assert medinfer.load(bundle / "manifest.json").name == "tiny_logistic"  # the manifest's own path is accepted
    with pytest.raises(medinfer.ManifestError) as info:
        medinfer.load(bundle / "model.onnx")
    assert str(info.value) == (f"{bundle / 'model.onnx'} is not a medinfer bundle: it is a file, not a bundle folder "
                               "(a bundle folder holds model.onnx, manifest.json and model_card.md)")
    with pytest.raises(medinfer.ManifestError) as info:
        medinfer.load(tmp_path / "nothing")
    assert str(info.value) == (f"{tmp_path / 'nothing'} is not a medinfer bundle: it does not exist (a bundle folder "
                               "holds model.onnx, manifest.json and model_card.md)")


def test_whatever_a_broken_bundle_provokes_becomes_one_typed_refusal(tmp_path: Path, monkeypatch) -> None:
    """The last line of defence: an exception nobody anticipated (here: the Model constructor failing) is a
    BundleError naming the bundle and the original error, and NO_RESULT under on_error="no_result"."""
    import medinfer.loader as loader

    bundle = tiny.build(tmp_path / "m")

    def broken(*args, **kwargs):
        raise KeyError("surprise")

    monkeypatch.setattr(loader, "Model", broken)
    with pytest.raises(medinfer.BundleError) as info:
        medinfer.load(bundle)
    assert str(info.value) == f"{bundle}: the bundle cannot be loaded (KeyError: 'surprise')"
    assert isinstance(info.value.__cause__, KeyError)
    unavailable = medinfer.load(bundle, on_error="no_result")
    assert isinstance(unavailable, medinfer.UnavailableModel) and unavailable.reason == "bundle"


def test_the_load_options_reach_the_model(tmp_path: Path) -> None:
    from medinfer.audit import AuditLog

    bundle = tiny.build(tmp_path / "m", profile={"intra_op_num_threads": 1, "inter_op_num_threads": 1,
                                                 "large_batch_from": 64, "large_batch": {"intra_op_num_threads": 2}})
    log = AuditLog(tmp_path / "a.jsonl")
    model = medinfer.load(bundle, audit=log, deadline_ms=250.0, out_of_domain="raise", cast="same_kind")
    assert model.audit is log and model.deadline_ms == 250.0 and model.out_of_domain == "raise"
    assert model.predict(np.array([[1.0, 2.0, 3.0]])).labels.tolist() == ["positive"]  # float64 cast (same_kind)
    assert model.large_session is not None and model.variant == "default"
    assert model.signature is not None and model.signature.state == "unsigned" and model.signed_by is None
    assert model.model_sha256 == _pins(bundle)["model.onnx"]["sha256"]
    assert model.manifest_sha256 == hashlib.sha256((bundle / "manifest.json").read_bytes()).hexdigest()
    log.close()


def test_self_test_false_skips_the_golden_run(tmp_path: Path) -> None:
    """self_test=False loads a bundle whose golden output does not match (the caller runs model.self_test())."""
    bundle = tiny.build(tmp_path / "m", golden_out=np.full((3, 2), 0.5, np.float32))
    with pytest.raises(medinfer.SelfTestError):
        medinfer.load(bundle)
    model = medinfer.load(bundle, self_test=False)
    with pytest.raises(medinfer.SelfTestError):
        model.self_test()


def test_the_graph_metadata_refusal_names_the_key_and_both_values(tmp_path: Path) -> None:
    bundle = tiny.build(tmp_path / "m", metadata={"medinfer.name": "tiny_logistic", "medinfer.version": "0.0.1",
                                                  "medinfer.contract_sha256": "0" * 64})
    from medinfer.integrity import contract_digest

    want = contract_digest(json.loads((bundle / "manifest.json").read_text()))
    with pytest.raises(medinfer.IntegrityError) as info:
        medinfer.load(bundle)
    assert str(info.value) == (f"{bundle}: 'model.onnx' carries medinfer.contract_sha256={'0' * 64!r} but the "
                               f"manifest says {want!r}: the graph belongs to another model or contract; re-export "
                               "the bundle")


def test_a_session_onnxruntime_cannot_open_from_the_sealed_path_is_built_from_its_bytes(tmp_path: Path, monkeypatch,
                                                                                       caplog) -> None:
    """Where /proc is restricted onnxruntime cannot open the sealed copy by path: the same sealed bytes are used."""
    import medinfer.loader as loader

    bundle = tiny.build(tmp_path / "m")
    real = loader.create_session
    seen = []

    def path_refused(source, *args, **kwargs):
        seen.append(type(source).__name__)
        if isinstance(source, str):
            raise medinfer.BundleError("cannot open the path")
        return real(source, *args, **kwargs)

    monkeypatch.setattr(loader, "create_session", path_refused)
    with caplog.at_level("WARNING", logger="medinfer.loader"):
        model = medinfer.load(bundle)
    assert model.predict(tiny.GOLDEN_X).labels.tolist() == ["positive", "positive", "negative"]
    assert "str" in seen and seen[-1] == "bytes"
    assert any("could not read the sealed copy" in r.getMessage() for r in caplog.records)
