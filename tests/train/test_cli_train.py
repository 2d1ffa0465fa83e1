"""The [train]-extra half of the CLI: unknown names, options and missing extras answered in one line."""

from __future__ import annotations

from medinfer.cli import main


def test_train_commands_explain_unknown_spec(capsys) -> None:
    assert main(["train", "drug_activty_rf"]) == 2
    assert "did you mean 'drug_activity_rf'" in capsys.readouterr().err
