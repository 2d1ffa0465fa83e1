"""The cheap half of ``make promises`` (in make test): every mutation of promises/catalogue.toml still applies to the
current tree, every SECURITY.md row has its promise, the recorded results prove the catalogue as it is, and
SECURITY.md's table is their rendering. The mutation score section is the rendering of promises/mutation.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from promises import catalogue, mutation, render

ROOT = Path(__file__).resolve().parents[2]


def test_the_recorded_results_prove_the_current_catalogue_on_the_current_tree() -> None:
    problems = render.problems(catalogue.load(), render.load_results())
    assert problems == [], "\n".join(problems)


def test_every_cited_test_of_the_catalogue_exists() -> None:
    import re

    missing = []
    for p in catalogue.load():
        for t in p.tests:
            path, _, name = t.partition("::")
            text = (ROOT / path).read_text() if (ROOT / path).is_file() else None
            if text is None or name and not re.search(rf"^(async )?def {name}\(", text, re.M):
                missing.append(t)
    assert missing == []


def test_a_snippet_that_no_longer_applies_is_named(tmp_path: Path) -> None:
    (tmp_path / "runtime").mkdir()
    (tmp_path / "runtime" / "a.py").write_text("x = 1\nx = 1\n")
    with pytest.raises(catalogue.CatalogueError, match="occurs 2 times"):
        catalogue.Edit("runtime/a.py", "x = 1", "x = 2").apply(tmp_path)
    with pytest.raises(catalogue.CatalogueError, match="does not exist"):
        catalogue.Edit("runtime/b.py", "x", "y").apply(tmp_path)
    (tmp_path / "runtime" / "a.py").write_text("x = 1\n")
    bad = catalogue.Promise("p", "SECURITY.md", "r", "p", "m", "m", (catalogue.Edit("runtime/a.py", "x = 1", "x ="),),
                            ("tests/x.py",))
    with pytest.raises(catalogue.CatalogueError, match="does not compile"):
        bad.mutated(tmp_path)


def test_a_survivor_or_a_stale_result_is_a_problem() -> None:
    promises = catalogue.load()
    results = json.loads(json.dumps(render.load_results()))
    results["rows"][0]["caught"] = False
    assert any("not caught" in p for p in render.problems(promises, results))
    results["rows"][0]["mutation_sha256"] = "0" * 64
    assert any("changed since" in p for p in render.problems(promises, results))


def test_the_mutation_score_section_is_the_rendering_of_its_results() -> None:
    results = json.loads(mutation.RESULTS.read_text())
    modules = list(mutation.load_config()["modules"])
    assert mutation.section() == mutation.render(results, modules)
    assert set(results["modules"]) <= set(modules), "results of modules no longer in promises/mutation.toml"
    for module, entry in results["modules"].items():
        assert entry["mutants"] == sum(entry["counts"].values()) and entry["detected"] <= entry["mutants"], module
        assert "not checked" not in entry["counts"], f"{module}: an interrupted run (mutants not checked)"
