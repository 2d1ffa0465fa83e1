"""The CLI explains itself: every option and argument has a help line, every subcommand's --help shows examples
(which parse) and the exit-code table, and verify says which provider each bundle runs on."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from medinfer.cli import main
from medinfer.cli.common import provider_fallback
from medinfer.cli.main import build_parser
from medinfer.errors import EXIT_MEANINGS
from medinfer.export.cli import build_parser as train_parser
from medinfer.providers import available_providers

from ..helpers.commands import check_medinfer, commands


def _parsers() -> dict[str, argparse.ArgumentParser]:
    """Every parser a user can ask for --help: 'medinfer', each device/fleet command, each [train] command."""
    out = {"medinfer": build_parser()}
    for root in (build_parser(), train_parser()):
        sub = next(a for a in root._actions if isinstance(a, argparse._SubParsersAction))
        for name, parser in sub.choices.items():
            if parser.add_help:  # the [train] placeholders hand over to train_parser(), checked here too
                out[f"medinfer {name}"] = parser
    return out


PARSERS = _parsers()


def test_all_commands_are_covered() -> None:
    assert {"medinfer verify", "medinfer predict", "medinfer serve", "medinfer score", "medinfer train",
            "medinfer data", "medinfer build"} <= set(PARSERS)


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_every_option_and_argument_has_a_help_line(name: str) -> None:
    missing = [a.option_strings[0] if a.option_strings else a.dest for a in PARSERS[name]._actions
               if not a.help or a.help == argparse.SUPPRESS]
    assert not missing, f"'{name} --help' leaves these without a help line: {missing}"
    sub = [a for a in PARSERS[name]._actions if isinstance(a, argparse._SubParsersAction)]
    for action in sub:
        assert all(choice.help for choice in action._choices_actions)


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_every_help_shows_examples_and_the_exit_codes(name: str) -> None:
    text = PARSERS[name].format_help()
    assert "\nexamples:\n" in text and f"\n  {name.split()[0]}" in text.split("examples:")[1]
    for code, meaning in EXIT_MEANINGS.items():
        assert f"{code:>3}  {meaning}" in text, f"'{name} --help' does not list exit code {code}"


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_every_example_in_every_help_parses(name: str) -> None:
    block = PARSERS[name].format_help().split("\nexamples:\n")[1].split("\n\n")[0]
    lines = [line.strip() for line in block.splitlines() if not line.strip().startswith("#")]
    assert lines
    for line in lines:
        for argv in commands(line):
            assert argv[0] == "medinfer" and check_medinfer(argv[1:]) is None, (line, check_medinfer(argv[1:]))


def test_the_example_checker_catches_a_wrong_example() -> None:
    assert "unrecognized arguments" in (check_medinfer(["verify", "b", "--no-such"]) or "")
    assert "invalid choice" in (check_medinfer(["data", "fetchall"]) or "")


# -- which provider a bundle runs on ---------------------------------------------------------------------------
def test_verify_says_where_each_bundle_runs_and_warns_when_the_first_choice_is_missing(tiny_bundle_ro: Path,
                                                                                        capsys) -> None:
    if "CUDAExecutionProvider" in available_providers():
        pytest.skip("this machine has CUDA: the first choice is available")
    assert main(["verify", str(tiny_bundle_ro), str(tiny_bundle_ro), "--provider", "cuda,cpu"]) == 0
    out, err = capsys.readouterr()
    assert out.count("runs on CPUExecutionProvider") == 2
    warnings = [line for line in err.splitlines() if line.startswith("medinfer: warning:")]
    assert len(warnings) == 2 and all("first choice CUDAExecutionProvider is not available" in w and
                                      "running on CPUExecutionProvider" in w for w in warnings)
    assert main(["verify", str(tiny_bundle_ro), "--provider", "cuda,cpu", "--json"]) == 0
    out, err = capsys.readouterr()
    record = json.loads(out)
    assert record["runs_on"] == "CPUExecutionProvider" and "CUDAExecutionProvider" in record["provider_warning"]
    assert "warning" in err  # on stderr also with --json
    for quiet in (["--provider", "cpu"], ["--provider", "cpu,cuda"], []):
        assert main(["verify", str(tiny_bundle_ro), *quiet]) == 0
        out, err = capsys.readouterr()
        assert "runs on CPUExecutionProvider" in out and "warning" not in err


def test_the_fallback_warning_tells_a_missing_build_from_a_provider_that_failed(monkeypatch) -> None:
    import medinfer.providers as providers

    assert provider_fallback(["cuda", "cpu"], ("CUDAExecutionProvider", "CPUExecutionProvider")) is None
    assert provider_fallback(None, ("CPUExecutionProvider",)) is None
    monkeypatch.setattr(providers, "available_providers", lambda: ["CPUExecutionProvider"])
    assert "does not offer it" in (provider_fallback(["cuda", "cpu"], ("CPUExecutionProvider",)) or "")
    monkeypatch.setattr(providers, "available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert "could not create it here" in (provider_fallback(["cuda", "cpu"], ("CPUExecutionProvider",)) or "")
