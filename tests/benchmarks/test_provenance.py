"""Runs say what they measured: the commit, the clean-tree flag and the start time are taken BEFORE a run measures,
every timed bundle is pinned by sha256, and nothing is published from a dirty tree or a foreign commit
(benchmarks/provenance.py). Every test uses a throw-away git repository; none measures anything."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from benchmarks import provenance, results


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git repository with one commit, standing in for the checkout (provenance.ROOT)."""
    root = tmp_path / "repo"
    root.mkdir()
    _git(root, "init", "-q")
    _git(root, "config", "user.email", "t@example.org")
    _git(root, "config", "user.name", "t")
    (root / "code.py").write_text("x = 1\n")
    _git(root, "add", "code.py")
    _git(root, "commit", "-q", "-m", "one")
    monkeypatch.setattr(provenance, "ROOT", root)
    return root


def test_capture_names_the_commit_and_every_kind_of_change(repo: Path) -> None:
    clean = provenance.capture()
    assert clean["commit"] == _git(repo, "rev-parse", "HEAD") and clean["dirty"] is False and clean["changed"] == 0
    (repo / "code.py").write_text("x = 2\n")  # a tracked change
    assert provenance.capture()["dirty"] is True
    _git(repo, "checkout", "-q", "code.py")
    (repo / "new_module.py").write_text("")  # an untracked file can change what runs too
    state = provenance.capture()
    assert state["dirty"] is True and state["changed_paths"] == ["new_module.py"]


def test_what_the_benchmarks_write_is_not_a_change_of_the_code_measured(repo: Path) -> None:
    """A chain of measurements (make bench appends to the history, then make bench-publish; bench-edge's three
    results files) is not refused for the previous step's output; anything else beside them still is."""
    for out in ("benchmarks/results/tails.json", "benchmarks/history/cpu.jsonl", "benchmarks/plots/a.png",
                "benchmarks/REPORT.md"):
        (repo / out).parent.mkdir(parents=True, exist_ok=True)
        (repo / out).write_text("{}")
    assert provenance.require_clean()["dirty"] is False
    (repo / "benchmarks" / "results_helper.py").write_text("")  # code beside the outputs is code
    assert provenance.capture()["changed_paths"] == ["benchmarks/results_helper.py"]


def test_a_dirty_tree_is_refused_with_a_typed_error_saying_commit_first(repo: Path) -> None:
    from medinfer.errors import UsageError, exit_code

    assert provenance.require_clean()["dirty"] is False
    (repo / "code.py").write_text("x = 2\n")
    with pytest.raises(provenance.UnpublishableRun, match="commit first") as err:
        provenance.require_clean(what="bench-publish")
    assert isinstance(err.value, UsageError) and exit_code(err.value) == 2


def test_a_run_that_started_dirty_or_on_a_foreign_commit_is_refused(repo: Path) -> None:
    start = provenance.capture()
    provenance.check_recorded(start)  # clean, HEAD itself
    with pytest.raises(provenance.UnpublishableRun, match="uncommitted changes"):
        provenance.check_recorded({**start, "dirty": True})
    with pytest.raises(provenance.UnpublishableRun, match="not a known git checkout"):
        provenance.check_recorded({**start, "dirty": None})
    with pytest.raises(provenance.UnpublishableRun, match="no provenance"):
        provenance.check_recorded(None)
    with pytest.raises(provenance.UnpublishableRun, match="not HEAD or an ancestor"):
        provenance.check_recorded({**start, "commit": "f" * 40})
    (repo / "code.py").write_text("x = 3\n")
    _git(repo, "commit", "-qam", "two")
    provenance.check_recorded(start)  # an ancestor of HEAD: its numbers describe this history
    _git(repo, "checkout", "-q", "--orphan", "other")
    _git(repo, "commit", "-qm", "unrelated")
    with pytest.raises(provenance.UnpublishableRun, match="not HEAD or an ancestor"):
        provenance.check_recorded(start)


def test_write_into_a_checkout_checks_the_recorded_start(repo: Path, tmp_path: Path) -> None:
    doc = {"command": "c", "provenance": provenance.capture(), "rows": [{"model": "m", "p50_us": 1.0}],
           "bundles": {"m": {"manifest_sha256": "a" * 64, "graphs": {"default": "b" * 64}}}}
    out = repo / "results"
    assert results.write("x", doc, out, root=repo).is_file()
    with pytest.raises(provenance.UnpublishableRun):
        results.write("x", {**doc, "provenance": {**doc["provenance"], "dirty": True}}, out, root=repo)


def test_bundle_digests_are_the_bytes_on_disk(tiny_bundle_ro: Path) -> None:
    import hashlib

    got = provenance.bundle_digests(tiny_bundle_ro)
    manifest = json.loads((tiny_bundle_ro / "manifest.json").read_text())
    assert got["manifest_sha256"] == hashlib.sha256((tiny_bundle_ro / "manifest.json").read_bytes()).hexdigest()
    for key, variant in manifest["variants"].items():
        assert got["graphs"][key] == hashlib.sha256((tiny_bundle_ro / variant["file"]).read_bytes()).hexdigest()


def test_the_suite_records_the_state_taken_before_it_measured(monkeypatch: pytest.MonkeyPatch,
                                                              tiny_bundle_ro: Path) -> None:
    """The tree changes while the suite runs: the record keeps what was there when it started, and its time."""
    from benchmarks import suite

    state = {"commit": "1" * 40, "dirty": False, "changed": 0, "changed_paths": [], "started": "2026-12-01T09:00:00Z"}
    monkeypatch.setattr(provenance, "capture", lambda root=None: dict(state))

    def measure(*args: Any, **kwargs: Any) -> dict[str, Any]:
        state.update(commit="2" * 40, dirty=True, started="2026-12-01T10:00:00Z")  # edited and committed meanwhile
        return {"model": "tiny_logistic", "batches": []}

    monkeypatch.setattr(suite, "run_model", measure)
    rec = suite.run_suite([tiny_bundle_ro], batches=[1], artifacts=None, seconds=0.1, rounds=1, cold=False,
                          progress=lambda _: None, threads=1)
    assert rec["provenance"]["commit"] == "1" * 40 and rec["provenance"]["dirty"] is False
    assert rec["time"] == "2026-12-01T09:00:00Z" and rec["threads"] == 1
    assert rec["bundles"] == {"tiny_logistic": provenance.bundle_digests(tiny_bundle_ro)}


def _full_run(tmp_path: Path, prov: dict[str, Any]) -> Path:
    from benchmarks import runs

    record = {"kind": "medinfer.suite", "time": prov["started"], "provenance": prov, "full": True,
              "command": "python -m benchmarks run", "env": {"cpu": {"model": "AMD EPYC"}}, "models": [],
              "bundles": {"m": {"manifest_sha256": "a" * 64, "graphs": {"default": "b" * 64}}}}
    return runs.write(record, tmp_path / "runs")


def _publish(folder: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    from benchmarks.__main__ import main

    code = main(["publish", "--from", str(folder)])
    return code, capsys.readouterr().err


def test_publish_refuses_a_dirty_tree_a_dirty_run_and_a_foreign_commit(
        repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(results, "FOLDER", tmp_path / "results")  # nothing of the real repository is touched
    clean = provenance.capture()
    (repo / "code.py").write_text("x = 2\n")
    code, err = _publish(_full_run(tmp_path, clean), capsys)
    assert code == 2 and "commit first" in err and "UnpublishableRun" in err
    _git(repo, "checkout", "-q", "code.py")
    code, err = _publish(_full_run(tmp_path, {**clean, "dirty": True, "changed": 1}), capsys)
    assert code == 2 and "started on a tree that had uncommitted changes" in err
    code, err = _publish(_full_run(tmp_path, {**clean, "commit": "e" * 40}), capsys)
    assert code == 2 and "not HEAD or an ancestor" in err
    assert not (tmp_path / "results").exists()  # refused before anything was written


def test_a_measuring_command_refuses_to_start_on_a_dirty_tree_when_it_would_publish(
        repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks.__main__ import main

    monkeypatch.setattr(results, "FOLDER", tmp_path / "results")
    (repo / "code.py").write_text("x = 2\n")
    for command in (["safety", "--soak-seconds", "0"], ["concurrency"], ["slice"], ["models"], ["domain"]):
        assert main([*command, "--bundles", str(tmp_path / "none")]) == 2, command
        assert "commit first" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()


def test_runs_on_rows_are_kept_then_published_with_their_commit_and_date(
        repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
    import edge_check
    import runs_on

    kept, out = tmp_path / "recorded", repo / "results" / "runs_on.json"
    row = {"key": "min|x86_64|1.18.0|3 test", "check": "min", "arch": "x86_64", "how": "native", "python": "3.11.7",
           "numpy": "1.26.0", "onnxruntime": "1.18.0", "tests": None, "bundles": None, "result": "pass",
           "command": "python scripts/edge_check.py min --tests full", "provenance": provenance.capture()}
    runs_on.keep(row, kept)
    runs_on.keep({**row, "key": "arm|dirty", "provenance": {**row["provenance"], "dirty": True}}, kept)
    with pytest.raises(provenance.UnpublishableRun, match="arm|dirty"):
        runs_on.publish(kept, out)
    (kept / "arm-dirty.json").unlink()
    (repo / "code.py").write_text("x = 2\n")
    with pytest.raises(provenance.UnpublishableRun, match="commit first"):
        runs_on.publish(kept, out)
    assert edge_check.main(["min", "--record"]) == 2  # a recorded run does not even start on a dirty tree
    assert "commit first" in capsys.readouterr().err
    _git(repo, "checkout", "-q", "code.py")
    assert runs_on.publish(kept, out) == [row["key"]] and not list(kept.glob("*.json"))
    doc = json.loads(out.read_text())
    table = edge_check.render_table(doc)
    assert f"| pass | `{row['provenance']['commit'][:10]}` | {row['provenance']['started'][:10]} |" in table
    assert "| commit | date |" in table.splitlines()[0]


def test_runs_of_uncommitted_code_set_no_baseline_and_no_range() -> None:
    from benchmarks import history

    def record(t: str, ratio: float, prov: dict[str, Any] | None, commit: str = "c" * 40) -> dict[str, Any]:
        rec = {"time": t, "full": True, "env": {"git_commit": commit, "cpu": {"model": "X", "usable_cores": 2}},
               "models": [{"model": "m", "overhead": {"predict_vs_bare_same_options_p50": ratio}, "batches": []}]}
        return {**rec, "provenance": prov} if prov is not None else rec

    clean = {"commit": "c" * 40, "dirty": False, "started": "t"}
    runs = [record("a", 1.0, clean), record("b", 9.0, {**clean, "dirty": True}),
            record("c", 8.0, None, "d" * 40 + "+dirty"), record("d", 1.2, None)]
    assert [history.clean(r) for r in runs] == [True, False, False, True]
    base, used = history.baseline(runs, record("new", 1.0, clean), window=5)
    assert [r["time"] for r in used] == ["a", "d"] and base["m|overhead|predict_vs_bare_same_options_p50"] == 1.1
    assert history.overhead_ranges(runs, last=5)["m"]["predict_vs_bare_same_options_p50"] == (1.0, 1.2, 2)
