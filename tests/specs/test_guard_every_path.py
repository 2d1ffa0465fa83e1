"""The guard and per-item answers on every model (issue 26), on the bundles the five specs export from their test
samples: a mixed batch answers each valid item like the model alone and gives each invalid or out-of-domain item
its own reason; the exported graph carries the scheme-2 contract digest, so an edited domain threshold or memory
bound is refused; the CT bundle's DICOM path gives a miscalibrated slice no confident finding."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import medinfer
import numpy as np
import pytest
from medinfer.train import registry

from .test_all_specs import _shifted


def _mixed(name: str, X: np.ndarray, model: medinfer.Model, art) -> tuple[object, list[int], int, int, str]:
    """(items, positions of the valid held-out items, position of the invalid one, of the shifted one, the invalid
    one's reason)."""
    rng = np.random.default_rng(1)
    bad = _shifted(name, X, rng)
    if model.manifest.inputs[0].dtype == "string":
        texts = np.array([str(v) for v in X.reshape(-1)], dtype=object)
        known = art.spec.native_outputs(art.model, texts).get("known_tokens")
        good = list(texts[known > 0][:4]) if known is not None else list(texts[:4])
        return [*good[:2], "", *good[2:], str(bad[0])], [0, 1, 3, 4], 2, 5, "no_information"
    good = X[:4].astype(np.float32)
    if X.ndim == 3:  # sequences (glucose): any length is valid, another feature width is not
        items = [good[0], good[1][: max(2, len(good[1]) // 2)], good[2][:, :-1], good[3], bad[0]]
        return items, [0, 1, 3], 2, 4, "input"
    nan = good[:1].copy()
    nan.reshape(-1)[0] = np.nan
    return np.concatenate([good[:2], nan, good[2:], bad[:1].astype(np.float32)]), [0, 1, 3, 4], 2, 5, "input"


@pytest.mark.parametrize("name", registry.names())
def test_a_mixed_batch_answers_each_valid_item_of_every_model(built, name: str) -> None:
    art, path = built(name)
    refusing = medinfer.load(path, out_of_domain="no_result")
    flagging = medinfer.load(path)
    items, valid, invalid, shifted, reason = _mixed(name, np.asarray(art.dataset.X_test), refusing, art)
    with pytest.raises(medinfer.MedinferError):
        refusing.predict(items)  # the default: one bad item refuses the call
    got = refusing.predict(items, on_error="item")
    assert len(got) == len(items)
    assert got[invalid].reason == reason and got[shifted].reason == "out_of_domain"
    for i in valid:
        alone = flagging.predict(items[i] if isinstance(items, list) else items[i:i + 1])
        if alone.in_domain is not None and not alone.in_domain.all():
            assert got[i].reason == "out_of_domain"  # refused under no_result: its own reason, no answer
            continue
        np.testing.assert_allclose(np.asarray(got[i].scores).reshape(-1), np.asarray(alone.scores).reshape(-1),
                                   rtol=1e-5, atol=1e-6)
        if alone.labels is not None:
            assert list(got[i].labels) == list(alone.labels)


@pytest.mark.parametrize("name", registry.names())
def test_the_exported_guard_settings_are_in_the_contract(built, name: str, tmp_path: Path) -> None:
    _, path = built(name)
    model = medinfer.load(path)
    assert model.session.get_modelmeta().custom_metadata_map["medinfer.contract_scheme"] == "2"
    for field, edit in (("domain", lambda d: d["domain"].update(threshold=d["domain"]["threshold"] * 1000)),
                        ("profile", lambda d: d["profile"].update(max_batch=d["profile"]["max_batch"] * 10))):
        copy = tmp_path / f"{field}_{name}"
        shutil.copytree(path, copy)
        doc = json.loads((copy / "manifest.json").read_text())
        edit(doc)
        (copy / "manifest.json").write_text(json.dumps(doc))
        with pytest.raises(medinfer.IntegrityError, match="contract_sha256"):
            medinfer.load(copy)


def test_the_ct_bundle_gives_a_miscalibrated_slice_no_confident_finding(built, tmp_path: Path) -> None:
    pydicom = pytest.importorskip("pydicom")
    from medinfer.tools import ct_slice, dicom
    from pydicom.data import get_testdata_file

    _, path = built("lung_nodule_cnn")
    manifest = medinfer.load_manifest(path)
    one_pass = ct_slice.slice_variant_of(manifest, None)
    # the one-pass graph is taken only when it guards every window (else the CLI scores patch by patch)
    assert one_pass is None or ct_slice.guards_every_window(manifest, one_pass)
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.RescaleIntercept = -2048
    ds.save_as(tmp_path / "shifted.dcm")
    for variant in {None, one_pass}:
        for policy in ("flag", "no_result"):
            result = dicom.predict_file(medinfer.load(path, variant=variant, out_of_domain=policy),
                                        tmp_path / "shifted.dcm")
            positive = np.array([lab == manifest.decision.positive_label for lab in result.labels])
            assert not (positive & result.confident).any()
            assert (result.refusal is not None) == (policy == "no_result") and result.slice_in_domain is False
