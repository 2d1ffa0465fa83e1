"""README's "Runs on" table is the data of benchmarks/results/runs_on.json; the edge scripts' own logic."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from medinfer.errors import EXIT_MEANINGS

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import edge_check  # noqa: E402
import edge_env  # noqa: E402


def test_readme_table_is_rendered_from_the_results_file() -> None:
    doc = json.loads(edge_check.RESULTS.read_text())
    assert edge_check.readme_table(edge_check.README.read_text()) == edge_check.render_table(doc), (
        "README's 'Runs on' table differs from benchmarks/results/runs_on.json: "
        "python scripts/edge_check.py table --write-readme")
    for row in doc["rows"]:
        assert row["command"] and row["result"] and row["onnxruntime"] and row["arch"], row["key"]
    checks = {(r["check"], r["arch"]) for r in doc["rows"]}
    assert {("min", "x86_64"), ("arm", "aarch64")} <= checks


def test_the_min_row_holds_the_pyproject_lower_bounds() -> None:
    """The recorded oldest-versions run used exactly the lower bounds pyproject.toml claims today."""
    doc = json.loads(edge_check.RESULTS.read_text())
    bounds = dict(pin.split("==") for pin in edge_env.lower_bounds())
    rows = [r for r in doc["rows"] if r["check"] == "min"]
    assert rows, "no make test-min row recorded"
    for row in rows:
        for name in ("numpy", "onnxruntime"):
            assert edge_env.release(row[name]) == edge_env.release(bounds[name]), (name, row[name], bounds[name])
        assert row["result"] == "pass"


def test_readme_lists_every_exit_status() -> None:
    """The device guide (README's docs/) lists every exit status errors.py has."""
    text = " ".join((edge_check.README.parent / "docs" / "device-guide.md").read_text().split())
    listed = re.search(r"0 ok, 1 unexpected, .*?\.", text)
    assert listed is not None
    codes = [int(n) for n in re.findall(r"\b(\d+) [a-z]", listed.group(0))]
    assert codes == sorted(EXIT_MEANINGS), f"README lists exit statuses {codes}, errors.py has {sorted(EXIT_MEANINGS)}"


@pytest.mark.parametrize(("line", "expected"), [
    ("137 passed, 7 skipped, 5 deselected in 136.84s (0:02:16)", {"passed": 137, "skipped": 7, "deselected": 5}),
    ("6 failed, 120 passed, 7 skipped, 4 deselected in 82.61s", {"failed": 6, "passed": 120, "skipped": 7,
                                                                 "deselected": 4}),
    ("1 error in 0.20s", {"error": 1}),
    ("no tests ran in 0.01s", {}),
])
def test_pytest_summary_is_read(line: str, expected: dict[str, int]) -> None:
    counts = edge_check.pytest_counts(f"....\n{line}\n")
    assert counts == {k: expected.get(k, 0) for k in ("passed", "failed", "error", "skipped", "deselected")}


def test_a_machine_that_cannot_says_why(monkeypatch, capsys) -> None:
    monkeypatch.setattr(edge_env.platform, "system", lambda: "Darwin")
    assert "needs Linux" in edge_env.arm_unable()
    monkeypatch.setattr(edge_env.platform, "system", lambda: "Linux")
    monkeypatch.setattr(edge_env.platform, "machine", lambda: "aarch64")
    assert "is aarch64 itself" in edge_env.arm_unable()
    monkeypatch.setattr(edge_env.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(edge_env.shutil, "which", lambda name: None)
    reason = edge_env.arm_unable()
    assert reason is not None and ("apt-get" in reason or "Debian" in reason)
    assert edge_check.main(["arm", "--if-able"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out == [f"make test-arm: SKIPPED — {reason}"]  # one visible line, never silence
    assert edge_check.main(["arm"]) == 3  # asked for explicitly: an error


def test_debian_sources_are_read_from_the_machine(tmp_path: Path, monkeypatch) -> None:
    folder = tmp_path / "sources.list.d"
    folder.mkdir()
    (folder / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\n"
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\nComponents: main\n")
    (folder / "other.list").write_text("deb [arch=amd64] https://vendor.example/apt cloud-sdk main\n")
    monkeypatch.setattr(edge_env, "APT_SOURCES", (tmp_path / "sources.list", folder))
    assert edge_env.debian_sources() == ("http://mirror.example/debian", "http://mirror.example/debian-security")
    (folder / "debian.sources").unlink()
    with pytest.raises(LookupError, match="no Debian archive"):
        edge_env.debian_sources()


def test_the_comparison_with_x86_can_fail(tmp_path: Path) -> None:
    """edge_compare holds every output to the manifest's tolerance: a reference nudged beyond it is reported."""
    import edge_compare
    import numpy as np

    from ..helpers import tiny

    bundles = [tiny.build(tmp_path / "tiny_logistic"), tiny.build_sequence(tmp_path / "tiny_sequence")]
    ref = tmp_path / "ref.npz"
    meta = edge_compare.reference(bundles, ref)
    assert set(meta["runs"]) == {"tiny_logistic|default", "tiny_sequence|default"}
    assert meta["runs"]["tiny_logistic|default"]["sets"] == ["golden", "sampled"]
    same = edge_compare.compare(bundles, ref)
    assert all(r["ok"] for r in same) and sum(r["outputs_compared"] for r in same) == 6
    with np.load(ref) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["tiny_logistic|default|sampled|out|probabilities"] += np.float32(2e-5)  # golden atol is 1e-5
    arrays["tiny_logistic|default|golden|out|label"][0] ^= 1
    np.savez(ref, **arrays)
    moved = {r["run"]: r for r in edge_compare.compare(bundles, ref)}
    assert moved["tiny_sequence|default"]["ok"]
    bad = moved["tiny_logistic|default"]
    assert not bad["ok"] and bad["max_abs_diff"] > 1e-5
    assert any("sampled/probabilities: max abs diff" in p for p in bad["problems"])
    assert any("golden/label: values differ" in p for p in bad["problems"])
