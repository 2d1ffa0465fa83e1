"""The four brought examples (medinfer.export.bring.examples, tiny size): a MONAI DenseNet trained on the project's
CT patches (PyTorch, a saved ExportedProgram), a MONAI UNet segmenting them (whole slices in one pass, DICOM SEG out),
a LightGBM booster on the drug descriptors (its own .txt file), and an existing bundle's .onnx wrapped without its
framework. Each goes bundle -> verify -> predict -> serve, answers as its
source does, and a mutated source (a perturbed weight, a changed tree) is refused with exit 8 and no bundle."""

from __future__ import annotations

import json
from pathlib import Path

import medinfer
import numpy as np
import pytest
from medinfer.cli import main
from medinfer.samples import INPUT, OUTPUT, key

pytest.importorskip("torch")
pytest.importorskip("monai")
pytest.importorskip("lightgbm")

from medinfer.export.bring import examples  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, examples.Brought]:
    work = tmp_path_factory.mktemp("bring")
    return {"ct_nodule_monai": examples.monai_ct(work / "monai", "tiny"),
            "ct_nodule_unet": examples.monai_unet(work / "unet", "tiny"),
            "drug_activity_lgbm": examples.lightgbm_drug(work / "lightgbm", "tiny"),
            "gene_expression_svd_onnx": examples.onnx_rewrap(ROOT / "examples/sample-bundle/gene_expression_svd",
                                                             work / "onnx")}


@pytest.fixture(scope="module")
def bundles(made: dict[str, examples.Brought], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("bundles")
    for name, b in made.items():
        args = ["bundle", str(b.source), "--reference", str(b.reference), "--contract", str(b.contract),
                "--out", str(out), "--profile", "default"]
        assert main([*args, *(["--train-sample", str(b.train)] if b.train else [])]) == 0, name
    return {name: out / name for name in made}


@pytest.mark.parametrize("name", ["ct_nodule_monai", "ct_nodule_unet", "drug_activity_lgbm",
                                  "gene_expression_svd_onnx"])
def test_each_example_verifies_and_predicts_like_its_source(name: str, made, bundles, tmp_path: Path,
                                                           capsys) -> None:
    path = bundles[name]
    assert main(["verify", str(path)]) == 0
    ref = np.load(made[name].reference)
    (x_key,) = [k for k in ref.files if k.startswith(key(INPUT, ""))]
    np.save(tmp_path / "x.npy", ref[x_key][:4])
    capsys.readouterr()
    assert main(["predict", str(path), str(tmp_path / "x.npy"), "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    expected = ref[key(OUTPUT, "probabilities")][:4]
    got = medinfer.load(path).predict(ref[x_key][:4]).outputs["probabilities"]
    np.testing.assert_allclose(got, expected, atol=1e-5)  # the source framework's own outputs
    assert len(answer["labels"]) == 4
    card = (path / "model_card.md").read_text()
    m = medinfer.load(path).manifest
    if made[name].train is not None:  # a training sample was declared: a guard, evaluated
        assert m.domain is not None and "No applicability-domain guard" not in card
    if "y" in ref.files:
        assert m.metrics.heldout and all(v.ci95 is not None for v in m.metrics.heldout.values())


def test_the_examples_are_served(bundles, tmp_path: Path) -> None:
    pytest.importorskip("uvicorn")
    from tests.helpers.serving import http, serving

    with serving(list(bundles.values()), log=tmp_path / "serve.log") as (url, _):
        for name, path in bundles.items():
            m = medinfer.load(path).manifest
            x = np.asarray(medinfer.load(path).golden()[0][m.inputs[0].name])[:2]
            body = {"inputs": [{"name": m.inputs[0].name, "shape": list(x.shape), "datatype": "FP32",
                                "data": x.reshape(-1).tolist()}]}
            status, doc = http(url, f"/v2/models/{name}/infer", json.dumps(body).encode(),
                               {"Content-Type": "application/json"})
            assert status == 200, doc
            assert {o["name"] for o in doc["outputs"]} >= {"probabilities"}


def test_a_perturbed_monai_weight_is_refused_with_exit_8(made, tmp_path: Path, capsys) -> None:
    import torch

    b = made["ct_nodule_monai"]
    program = torch.export.load(b.source)
    module = program.module()
    with torch.no_grad():
        first = next(p for p in module.parameters() if p.ndim == 4)
        first[0, 0, 0, 0] += 0.5
    x = torch.from_numpy(np.load(b.reference)[key(INPUT, "hu")][:2])
    mutated = tmp_path / "mutated.pt2"
    torch.export.save(torch.export.export(module, (x,), dynamic_shapes={"hu": {0: torch.export.Dim("N", min=1)}}),
                      mutated)
    assert main(["bundle", str(mutated), "--reference", str(b.reference), "--contract", str(b.contract),
                 "--out", str(tmp_path / "out"), "--profile", "default"]) == 8
    assert "ParityError" in capsys.readouterr().err
    assert not (tmp_path / "out" / "ct_nodule_monai").exists()


def test_a_changed_booster_is_refused_with_exit_8(made, tmp_path: Path, capsys) -> None:
    b = made["drug_activity_lgbm"]
    text = b.source.read_text().splitlines()
    i = next(i for i, line in enumerate(text) if line.startswith("leaf_value="))
    values = text[i].split("=", 1)[1].split()
    values[0], values[1] = values[1], values[0]  # two leaves of the first tree swapped (the file's length kept)
    text[i] = "leaf_value=" + " ".join(values)
    mutated = tmp_path / "mutated.txt"
    mutated.write_text("\n".join(text) + "\n")
    assert main(["bundle", str(mutated), "--reference", str(b.reference), "--contract", str(b.contract),
                 "--out", str(tmp_path / "out"), "--profile", "default"]) == 8
    assert "ParityError" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("damage", ["tree_header", "truncated"])
def test_a_malformed_booster_file_is_refused_not_a_crash(damage: str, made, tmp_path: Path, capsys) -> None:
    """LightGBM itself aborts the process (std::terminate) on such files when it parses their trees in parallel."""
    b = made["drug_activity_lgbm"]
    text = b.source.read_text()
    broken = tmp_path / "broken.txt"
    broken.write_text(text.replace("Tree=1", "ree=1", 1) if damage == "tree_header" else text[: len(text) // 2])
    code = main(["bundle", str(broken), "--reference", str(b.reference), "--contract", str(b.contract),
                 "--out", str(tmp_path / "out"), "--profile", "default"])
    assert code in (2, 8), capsys.readouterr().err  # a usage error (unreadable) or the gate (another model)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_the_unet_segments_a_whole_dicom_slice_into_a_seg(made, bundles, tmp_path: Path, capsys) -> None:
    """The UNet's H and W are free: a 128 x 128 CT slice (not the 100 x 100 patches it was trained on) runs in one
    pass, its mask equals the PyTorch module's on the same slice, and --dicom-out writes a DICOM SEG of the slice."""
    pytest.importorskip("highdicom")
    import highdicom as hd
    import pydicom
    import torch
    from pydicom.data import get_testdata_file

    ct = get_testdata_file("CT_small.dcm")
    assert main(["predict", str(bundles["ct_nodule_unet"]), ct, "--dicom-out", str(tmp_path / "seg"), "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    seg = hd.seg.segread(answer["dicom_out"]["seg"])
    source = pydicom.dcmread(ct)
    assert seg.Modality == "SEG" and seg.SegmentSequence[0].SegmentLabel == "nodule"
    assert seg.get_source_image_uids()[0][2] == source.SOPInstanceUID
    from medinfer.tools.dicom import read_ct
    from medinfer.tools.segmentation import predict_slice

    result = predict_slice(medinfer.load(bundles["ct_nodule_unet"]), ct)
    assert result.mask.shape == (source.Rows, source.Columns) and int(result.mask.sum()) == answer["pixels"]
    hu = np.clip(read_ct(ct).hu, -1024, 3071).astype(np.float32)
    with torch.no_grad():
        _, mask = torch.export.load(made["ct_nodule_unet"].source).module()(torch.from_numpy(hu[None, None]))
    np.testing.assert_allclose(result.probability, mask.numpy()[0], atol=1e-4)
    frames = np.asarray(pydicom.dcmread(answer["dicom_out"]["seg"]).pixel_array).astype(bool)
    assert frames.reshape(-1, source.Rows, source.Columns).sum() == answer["pixels"]  # the SEG holds the mask
