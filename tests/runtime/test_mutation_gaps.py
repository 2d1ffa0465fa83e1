"""Tests written to kill surviving mutants of the device core (``make mutation-score``, promises/mutation.json):
each pins a behaviour that a mutant changed without any other test noticing."""

from __future__ import annotations

from pathlib import Path

import medinfer

from ..helpers import tiny


def test_a_pinned_file_in_a_subfolder_is_part_of_a_valid_bundle(tmp_path: Path) -> None:
    """Real bundles pin ``plots/roc.png``: its folder is needed, not an unpinned extra."""
    bundle = tiny.build(tmp_path / "m", extra_files={"plots/roc.png": (b"\x89PNG fake", "plot"),
                                                     "plots/pr.png": (b"\x89PNG fake 2", "plot")})
    assert medinfer.load(bundle).predict(tiny.GOLDEN_X).labels.tolist() == ["positive", "positive", "negative"]
