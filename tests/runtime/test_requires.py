"""A bundle declares the onnxruntime it needs (manifest ``requires``); load() refuses an older one by name."""

from __future__ import annotations

import json
from pathlib import Path

import medinfer
import numpy as np
import onnxruntime as ort
import pytest
from medinfer.cli import main
from medinfer.errors import EXIT_CODES, EXIT_MEANINGS
from medinfer.manifest import Requires, load_manifest
from medinfer.session import check_runtime, release

from ..helpers import tiny
from ..helpers.fields import MakeBundle


def test_written_bundle_declares_its_needs(tiny_bundle_ro: Path) -> None:
    requires = load_manifest(tiny_bundle_ro).requires
    assert requires is not None
    # The tiny graph is stamped IR 8, ai.onnx opset 17: onnxruntime 1.18 (the oldest claimed) accepts it.
    assert (requires.onnxruntime, requires.ir_version, requires.opsets) == ("1.18.0", 8, {"ai.onnx": 17})
    assert "ort_support.json" in requires.source


def test_a_newer_requirement_is_refused_before_any_session(make_bundle: MakeBundle, capsys) -> None:
    bundle = make_bundle("needs_future", requires=Requires(
        onnxruntime="99.1.0", ir_version=8, opsets={"ai.onnx": 17}))
    with pytest.raises(medinfer.RuntimeTooOld, match=r"needs onnxruntime >= 99\.1\.0") as info:
        medinfer.load(bundle)
    message = str(info.value)
    assert f"this environment has onnxruntime {ort.__version__}" in message
    assert "ai.onnx opset 17" in message and "pip install --upgrade 'onnxruntime>=99.1.0'" in message
    assert (info.value.installed, info.value.required) == (ort.__version__, "99.1.0")
    assert isinstance(info.value, RuntimeError)
    unavailable = medinfer.load(bundle, on_error="no_result")
    assert unavailable.try_predict(tiny.GOLDEN_X).reason == "runtime_too_old"
    assert main(["verify", str(bundle)]) == EXIT_CODES["runtime_too_old"] == 13
    assert "RuntimeTooOld" in capsys.readouterr().err
    assert EXIT_MEANINGS[13].startswith("runtime too old")


def test_an_old_manifest_without_the_field_still_loads(make_bundle: MakeBundle) -> None:
    bundle = make_bundle("old")
    doc = json.loads((bundle / "manifest.json").read_text())
    del doc["requires"]
    (bundle / "manifest.json").write_text(json.dumps(doc))
    model = medinfer.load(bundle)
    assert model.manifest.requires is None
    np.testing.assert_allclose(model.predict(tiny.GOLDEN_X).scores, tiny.reference(tiny.GOLDEN_X)[:, 1], atol=1e-6)


def test_a_malformed_requirement_names_the_field(make_bundle: MakeBundle) -> None:
    bundle = make_bundle("bad")
    doc = json.loads((bundle / "manifest.json").read_text())
    doc["requires"]["onnxruntime"] = "latest"
    (bundle / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(medinfer.ManifestError, match="field 'requires.onnxruntime' must be a release"):
        medinfer.load(bundle)
    doc["requires"]["minimum"] = "1.18.0"
    (bundle / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(medinfer.ManifestError, match="unknown field 'requires.minimum'"):
        medinfer.load(bundle)


@pytest.mark.parametrize(("installed", "ok"), [("1.17.3", False), ("1.18.0", True), ("1.18", True),
                                                ("1.20.0.dev20240101", True), ("1.9.0", False), ("2.0.0+cu12", True)])
def test_versions_compare_as_releases_not_strings(tiny_bundle_ro: Path, installed: str, ok: bool) -> None:
    manifest = load_manifest(tiny_bundle_ro)  # requires 1.18.0
    if ok:
        check_runtime(manifest, installed)
    else:
        with pytest.raises(medinfer.RuntimeTooOld, match=f"has onnxruntime {installed}:"):
            check_runtime(manifest, installed)
    assert release("1.21.0.dev20241101") == (1, 21, 0) and release("1.18") == (1, 18, 0)


def test_the_measured_row_of_this_onnxruntime_is_true(tmp_path: Path) -> None:
    """export/ort_support.json's ceilings for the installed release (same minor line): the ceiling loads, one above
    is refused. Runs wherever the device tests run (newest x86, oldest x86, aarch64 under emulation)."""
    onnx = pytest.importorskip("onnx")
    from medinfer.export.requires import support_table
    from onnx import TensorProto, helper

    mine = release(ort.__version__)[:2]
    row = next((r for r in support_table() if release(r["onnxruntime"])[:2] == mine), None)
    if row is None:
        pytest.skip(f"onnxruntime {ort.__version__} is not in export/ort_support.json (scripts/ort_support_table.py)")

    def loads(opsets: dict[str, int], ir: int, ml: bool = False) -> bool:
        node = (helper.make_node("Normalizer", ["x"], ["y"], domain="ai.onnx.ml", norm="L2") if ml
                else helper.make_node("Identity", ["x"], ["y"]))
        graph = helper.make_graph([node], "probe", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()])
        model.ir_version = ir
        try:
            ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        except Exception:  # noqa: BLE001 - onnxruntime's own Fail types
            return False
        return True

    assert onnx is not None
    assert loads({"": row["ai.onnx"]}, 8) and not loads({"": row["ai.onnx"] + 1}, 8)
    assert loads({"": 7, "ai.onnx.ml": row["ai.onnx.ml"]}, 8, ml=True)
    assert not loads({"": 7, "ai.onnx.ml": row["ai.onnx.ml"] + 1}, 8, ml=True)
    assert loads({"": 7}, row["ir_version"]) and not loads({"": 7}, row["ir_version"] + 1)


def test_minimum_follows_the_measured_table() -> None:
    pytest.importorskip("onnx")
    from medinfer.export.requires import minimum_onnxruntime

    # Expected values read off export/ort_support.json (measured per release).
    assert minimum_onnxruntime(10, {"ai.onnx": 21, "ai.onnx.ml": 5})[0] == "1.18.0"
    assert minimum_onnxruntime(10, {"ai.onnx": 22})[0] == "1.21.0"
    assert minimum_onnxruntime(11, {"ai.onnx": 17})[0] == "1.23.0"
    assert minimum_onnxruntime(8, {"ai.onnx": 17, "com.microsoft": 1})[0] == "1.18.0"
    beyond, source = minimum_onnxruntime(99, {"ai.onnx": 17}, exporting="1.40.2")
    assert (beyond, "exporting onnxruntime" in source) == ("1.40.2", True)
