"""Reproducible bundles: the same trained model exported again gives the same bytes, and the check that says so
fails, naming the file and the part, when two builds differ."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import medinfer
import numpy as np
import pytest
from medinfer.export.reproduce import ALLOWED, check_reproducible, compare_bundles, json_differences
from medinfer.train import registry

from ..helpers import tiny
from ..helpers.fields import MakeBundle


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "medinfer", *args], capture_output=True, text=True, timeout=900,
                          check=False, env={**os.environ, **(env or {})})


@pytest.mark.parametrize("name", registry.names())
def test_two_exports_of_the_same_artifact_are_byte_identical(built, tmp_path: Path, name: str) -> None:
    """The fixture trains and exports in this process (pytest's own string-hash seed, frameworks already warm);
    ``medinfer export`` of the saved artifact in a fresh process with another hash seed must give the same bytes
    for every file: model.onnx and variants, golden and parity samples, plots, card. The manifest may differ only
    in its build time and the session profile measured on the machine."""
    art, first = built(name)
    again = run_cli("export", name, "--artifacts", str(art.folder.parent), "--out", str(tmp_path),
                    env={"PYTHONHASHSEED": "7"})
    assert again.returncode == 0, again.stderr[-3000:]
    result = compare_bundles(first, tmp_path / name)
    assert result.ok, result.differ
    assert {"model.onnx", "golden.npz", "parity.npz", "model_card.md"} <= set(result.identical)
    assert all(a.split(" ")[0] in ALLOWED for a in result.allowed)


def _perturbed_copy(src: Path, dst: Path) -> None:
    import onnx
    from onnx import numpy_helper

    shutil.copytree(src, dst)
    m = onnx.load(str(dst / "model.onnx"))
    w = m.graph.initializer[0]
    w.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(w) + np.float32(1e-3), w.name))
    onnx.save(m, str(dst / "model.onnx"))


def test_compare_names_the_differing_file_and_graph_part(make_bundle: MakeBundle, tmp_path: Path) -> None:
    a = make_bundle("a")
    _perturbed_copy(a, tmp_path / "b")
    (tmp_path / "b" / "extra.txt").write_text("only here")
    result = compare_bundles(a, tmp_path / "b")
    assert not result.ok
    assert result.differ["model.onnx"] == "initializer 'W': values differ (max abs diff 0.001)"
    assert result.differ["extra.txt"] == "only in build 2"
    assert "model.onnx" not in result.identical and "golden.npz" in result.identical
    # the manifest is identical here (the graph bytes were swapped behind its back)
    assert "manifest.json" in result.identical
    card = (tmp_path / "b" / "model_card.md").read_text().replace("tests only", "tests only!")
    (tmp_path / "b" / "model_card.md").write_text(card)
    assert compare_bundles(a, tmp_path / "b").differ["model_card.md"].startswith("line ")


def test_the_manifest_may_differ_only_in_time_and_measured_profile(make_bundle: MakeBundle) -> None:
    a = make_bundle("a", created="2026-01-01T00:00:00+00:00")
    b = make_bundle("b", created="2026-01-02T00:00:00+00:00", profile={"intra_op_num_threads": 2})
    result = compare_bundles(a, b)
    assert result.ok and result.allowed[0] == "created" and result.allowed[1].startswith("profile (")
    c = make_bundle("c", description="another description")
    other = compare_bundles(a, c)
    assert not other.ok and other.differ["manifest.json"].startswith("fields differ: ")
    assert "description" in other.differ["manifest.json"]
    assert json_differences({"a": {"b": [1, 2]}, "c": 1}, {"a": {"b": [1, 3]}, "d": 1}) == ["a.b", "c", "d"]


def test_the_check_fails_when_two_builds_differ(make_bundle: MakeBundle, tmp_path: Path) -> None:
    """check_reproducible over a build step that does not repeat itself (here: the second build's graph has other
    weights) reports the file and the initializer."""
    source = make_bundle("src")

    def build(index: int, artifacts: Path, out: Path) -> None:
        out.mkdir(parents=True)
        if index == 0:
            shutil.copytree(source, out / "tiny_logistic")
        else:
            _perturbed_copy(source, out / "tiny_logistic")

    result, bundles = check_reproducible("tiny_logistic", tmp_path / "work", build, progress=lambda _: None)
    assert not result.ok and "initializer 'W'" in result.differ["model.onnx"]
    assert [b.parent.parent.name for b in bundles] == ["build1", "build2"]

    def same(index: int, artifacts: Path, out: Path) -> None:
        tiny.build(out / "tiny_logistic", created=f"2026-01-0{index + 1}T00:00:00+00:00")

    ok, _ = check_reproducible("tiny_logistic", tmp_path / "work2", same, progress=lambda _: None)
    assert ok.ok and ok.allowed == ["created"] and "model.onnx" in ok.identical


def test_the_card_is_the_same_under_every_hash_seed(make_bundle: MakeBundle) -> None:
    """Seen on the full CNN build: the card listed two data citations in set order, which follows the process's
    string-hash seed. Rendered in processes with six seeds, the card must be one text, citations in source order."""
    import dataclasses

    from medinfer.manifest import DataProvenance, DataSource

    source = DataSource(name="a", package="p", version="1", file="f", sha256="0" * 64, licence="CC0",
                        citation="first citation")
    data = DataProvenance(sources=(source, dataclasses.replace(source, name="b", citation="second citation"),
                                   dataclasses.replace(source, name="c", citation="third citation")),
                          split={"method": "none"})
    bundle = make_bundle("b", data=data)
    code = ("import sys; from medinfer.export.card import render; from medinfer.manifest import load_manifest; "
            "print(render(load_manifest(sys.argv[1])))")
    cards = {subprocess.run([sys.executable, "-c", code, str(bundle)], capture_output=True, text=True, check=True,
                            env={**os.environ, "PYTHONHASHSEED": str(seed)}).stdout for seed in range(1, 7)}
    assert len(cards) == 1
    lines = [line for line in cards.pop().splitlines() if line.startswith("- Citation")]
    assert lines == ["- Citation: first citation", "- Citation: second citation", "- Citation: third citation"]


def test_canonical_names_give_one_graph_for_one_computation() -> None:
    """Two graphs that compute the same thing with other generated names and another node order become the same
    bytes; other weights stay different."""
    import onnx
    from medinfer.export.canonical import canonical_names, canonicalize
    from onnx import TensorProto, helper, numpy_helper

    def graph(c: str, d: str, t: str, u: str, swap: bool, bias: float = 1.0) -> bytes:
        nodes = [helper.make_node("Add", ["x", c], [t], name=f"add__{len(c)}"),
                 helper.make_node("Mul", ["x", d], [u], name="mul_3")]
        nodes = nodes[::-1] if swap else nodes
        nodes.append(helper.make_node("Sub", [t, u], ["y"], name="out__1"))
        g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
                              [numpy_helper.from_array(np.full(2, bias, np.float32), c),
                               numpy_helper.from_array(np.full(2, 2.0, np.float32), d)])
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("ai.onnx.ml", 3), helper.make_opsetid("", 17)])
        return canonical_names(canonicalize(m, "g")).SerializeToString()  # type: ignore[no-any-return]

    one = graph("const__5", "const__9", "t__12", "u_1", swap=False)
    two = graph("const__81", "const__3", "t__2", "u_7", swap=True)
    assert one == two
    assert graph("const__5", "const__9", "t__12", "u_1", swap=False, bias=1.5) != one
    m = onnx.load_from_string(one)
    assert [o.domain for o in m.opset_import] == ["", "ai.onnx.ml"]
    assert [i.name for i in m.graph.input] == ["x"] and [o.name for o in m.graph.output] == ["y"]


def test_build_check_reproducible_passes_and_records_the_check(tmp_path: Path) -> None:
    """``medinfer build drug_activity_rf --check-reproducible`` (on a sample): two fresh-process builds, identical
    files; the published bundle verifies and its manifest says what was compared, on which CPU and versions."""
    art, out = tmp_path / "artifacts", tmp_path / "bundles"
    proc = run_cli("build", "drug_activity_rf", "--sample", "120", "--set", "shift_sample=30",
                   "--check-reproducible", "--artifacts", str(art), "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert re.search(r"^model\.onnx +identical$", proc.stdout, re.M), proc.stdout[-2000:]  # any column width
    bundle = out / "drug_activity_rf"
    manifest = medinfer.load(bundle).manifest
    check = manifest.reproducibility
    assert check is not None and check.builds == 2 and "model.onnx" in check.identical
    assert check.cpu["model"] and check.versions["onnxruntime"] and check.versions["scikit-learn"]
    assert "--check-reproducible" in check.command and "--sample 120" in check.command
    assert (art / "drug_activity_rf" / "train.json").is_file()
    assert sorted(p.name for p in out.iterdir()) == ["drug_activity_rf"]  # no work folders left behind
    doc = json.loads((bundle / "manifest.json").read_text())
    assert doc["parity_sample"]["file"] == "parity.npz" and doc["parity_sample"]["n"] > 4


def _arrays(obj: object, path: str = "model", seen: set[int] | None = None) -> dict[str, np.ndarray]:
    """Every numpy array reachable through a fitted estimator's attributes (pipeline steps included)."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return {}
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        return {path: obj}
    out: dict[str, np.ndarray] = {}
    items = (obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, (list, tuple))
             else vars(obj).items() if hasattr(obj, "__dict__") and type(obj).__module__.startswith("sklearn")
             else ())
    for key, value in items:
        out.update(_arrays(value, f"{path}.{key}", seen))
    return out


@pytest.mark.parametrize("name", ["gene_expression_svd", "drug_activity_rf", "clinical_notes_tfidf"])
def test_the_trained_artifact_is_the_saved_model_down_to_its_memory_layout(built, name: str) -> None:
    """The cause of the Intel-only reproducibility failure: TruncatedSVD leaves ``components_`` as a strided view
    and LogisticRegression ``coef_`` Fortran-ordered; the saved copy is contiguous, and BLAS sums the two layouts in
    another order (parity figures 8.94e-08 vs 5.96e-08). ``train`` must hand export the model as saved: every
    array has the layout of the one read back from the artifact (a CPU-independent check of the mechanism)."""
    from medinfer.train import artifact

    art, _ = built(name)
    fresh = artifact.load(name, art.folder.parent).model
    ours, theirs = _arrays(art.model), _arrays(fresh)
    assert ours.keys() == theirs.keys() and ours
    layout = {k: (a.flags["C_CONTIGUOUS"], a.flags["F_CONTIGUOUS"], a.strides) for k, a in ours.items()}
    assert layout == {k: (a.flags["C_CONTIGUOUS"], a.flags["F_CONTIGUOUS"], a.strides) for k, a in theirs.items()}
