"""Change control at export: `--parent/--change/--release/--pccp` record the parent's manifest sha256, the change log
and the plan; every bundle declares a PCCP; the candidate then passes `medinfer diff` against its parent."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import medinfer
from medinfer.cli import main

from ..train.test_toy_spec import toy  # noqa: F401 - the fixture registering the toy spec


def test_export_records_the_parent_the_change_log_and_the_plan(toy, tmp_path: Path, capsys) -> None:  # noqa: F811
    artifacts, old, new = tmp_path / "artifacts", tmp_path / "old", tmp_path / "new"
    assert main(["build", "toy_logistic", "--artifacts", str(artifacts), "--out", str(old), "--set", "c=0.5"]) == 0
    parent = old / "toy_logistic"
    first = medinfer.load_manifest(parent)
    assert first.lineage is None and first.pccp is not None  # every bundle declares a plan
    assert {c.metric for c in first.pccp.metrics} >= {"roc_auc", "accuracy"}
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"metrics": [{"metric": "roc_auc", "direction": "higher", "margin": 0.01}],
                                "max_flip_rate": 0.01, "description": "tight"}))
    assert main(["export", "toy_logistic", "--artifacts", str(artifacts), "--out", str(new), "--parent",
                 str(parent), "--change", "same data, tighter plan", "--pccp", str(plan)]) == 0
    child = medinfer.load_manifest(new / "toy_logistic")
    assert child.lineage is not None and child.lineage.release == 1 and child.lineage.parent_release == 0
    assert child.lineage.parent_sha256 == hashlib.sha256((parent / "manifest.json").read_bytes()).hexdigest()
    assert [c.summary for c in child.lineage.changes] == ["same data, tighter plan"]
    assert child.pccp is not None and child.pccp.description == "tight" and child.pccp.max_flip_rate == 0.01
    card = (new / "toy_logistic" / "model_card.md").read_text()
    assert "## Change log" in card and "same data, tighter plan" in card and child.lineage.parent_sha256 in card
    assert "roc_auc: not worse than this bundle by more than 0.01" in card
    capsys.readouterr()
    assert main(["diff", str(parent), str(new / "toy_logistic")]) == 0
    assert "PASS" in capsys.readouterr().out


def test_export_refuses_a_parent_without_a_change_or_a_release_that_does_not_move(toy, tmp_path: Path,  # noqa: F811
                                                                                 capsys) -> None:
    artifacts, old = tmp_path / "artifacts", tmp_path / "old"
    assert main(["build", "toy_logistic", "--artifacts", str(artifacts), "--out", str(old), "--release", "3",
                 "--change", "first release"]) == 0
    parent = old / "toy_logistic"
    assert medinfer.load_manifest(parent).lineage.release == 3
    base = ["export", "toy_logistic", "--artifacts", str(artifacts), "--out", str(tmp_path / "n"), "--parent",
            str(parent)]
    assert main(base) == 2 and "--change" in capsys.readouterr().err
    assert main([*base, "--change", "x", "--release", "3"]) == 2 and "does not move forward" in capsys.readouterr().err
    bad = tmp_path / "plan.json"
    bad.write_text(json.dumps({"max_flip_rate": 2.0}))
    assert main([*base, "--change", "x", "--pccp", str(bad)]) == 4  # a plan that does not fit the schema
