"""``load()``'s options are checked before any file is read: a typo is a UsageError (exit 2) naming the choices,
an unavailable provider a ProviderError, and neither reads, hashes or opens anything of the bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import medinfer
import pytest
from medinfer.errors import EXIT_CODES, exit_code

TYPOS: dict[str, tuple[dict[str, Any], str]] = {
    "cast": ({"cast": "sane"}, r"unknown cast policy 'sane'; did you mean 'safe'\? \(2 known: safe, same_kind\)"),
    "session_profile name": ({"session_profile": "defualt"}, r"unknown session profile 'defualt'.*known: default"),
    "session_profile setting": ({"session_profile": {"intra_threads": 1}},
                                r"unknown session profile setting 'intra_threads'.*intra_op_num_threads"),
    "session_profile value": ({"session_profile": {"intra_op_num_threads": "two"}},
                              r"field 'intra_op_num_threads' must be int, got 'two'"),
    "session_profile type": ({"session_profile": 3}, "takes 'default' or a mapping"),
    "on_error": ({"on_error": "no-result"}, r"unknown on_error policy 'no-result'; did you mean 'no_result'"),
    "out_of_domain": ({"out_of_domain": "drop"}, r"unknown out_of_domain policy 'drop'.*flag, no_result, raise"),
    "deadline": ({"deadline_ms": -5}, "deadline_ms must be > 0"),
    "self_test": ({"self_test": "yes"}, r"self_test=\.\.\.\) takes True or False"),
    "variant type": ({"variant": 8}, "takes a variant name"),
    "trusted_keys": ({"trusted_keys": [3]}, "each key is a PEM path or bytes"),
    "audit": ({"audit": 3.5}, "takes an AuditLog or the path"),
    "provider name": ({"providers": ["cdua"]}, r"unknown execution provider 'cdua'; did you mean 'cuda'"),
    "provider request": ({"providers": [("cuda", "device=0")]}, r"\(name, \{...\}\)"),
}


@pytest.fixture
def untouchable(tiny_bundle_ro: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The bundle, with every way load() reads a bundle file made to fail the test."""
    import medinfer.loader as loader

    def touched(*_: Any, **__: Any) -> Any:
        raise AssertionError("a bundle file was read although the options were wrong")

    monkeypatch.setattr(loader, "read_manifest_bytes", touched)
    monkeypatch.setattr(loader, "verify_files", touched)
    return tiny_bundle_ro


@pytest.mark.parametrize("case", sorted(TYPOS))
def test_a_typo_is_a_usage_error_naming_the_choices_before_any_file_is_read(untouchable: Path, case: str) -> None:
    kwargs, message = TYPOS[case]
    for on_error in ("raise", "no_result"):  # a caller's typo is never an "unavailable model"
        if "on_error" in kwargs:
            on_error = kwargs["on_error"]
        with pytest.raises(medinfer.UsageError, match=message) as info:
            medinfer.load(untouchable, **{"on_error": on_error, **kwargs})
        assert exit_code(info.value) == EXIT_CODES["usage"] == 2


def test_a_provider_typo_is_still_a_provider_error_for_callers_that_catch_it(untouchable: Path) -> None:
    with pytest.raises(medinfer.ProviderError):
        medinfer.load(untouchable, providers="cdua")


def test_an_unavailable_provider_is_refused_before_anything_is_hashed(untouchable: Path) -> None:
    import onnxruntime as ort

    if "OpenVINOExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime build offers OpenVINO")
    with pytest.raises(medinfer.ProviderError, match="'OpenVINOExecutionProvider' is unavailable") as info:
        medinfer.load(untouchable, providers="openvino")
    assert exit_code(info.value) == 6


def test_valid_options_load_and_one_key_alone_is_a_list_of_one(tiny_bundle_ro: Path) -> None:
    options = medinfer.LoadOptions(trusted_keys="key.pem", session_profile={"intra_op_num_threads": 1})
    assert options.trusted_keys == ("key.pem",)
    model = medinfer.load(tiny_bundle_ro, session_profile={"intra_op_num_threads": 1}, cast="same_kind",
                          deadline_ms=1000)
    assert model.deadline_ms == 1000
    with pytest.raises(AttributeError):
        options.cast = "same_kind"  # type: ignore[misc]  # frozen


def test_auto_is_a_variant_request_checked_up_front_and_resolved_by_the_loader(tiny_bundle_ro: Path) -> None:
    assert medinfer.LoadOptions(variant="auto").variant == "auto"  # accepted before any file is read
    with pytest.raises(medinfer.UsageError, match=r"or 'auto' \(the variant the manifest prefers"):
        medinfer.LoadOptions(variant="")
    # the tiny bundle's manifest prefers no variant on any CPU: "auto" runs the validated graph
    assert medinfer.load(tiny_bundle_ro, variant="auto").variant == "default"
