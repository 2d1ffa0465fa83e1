"""CPU classes and the per-CPU variant preference ``load(variant="auto")`` resolves (fake feature sets)."""

from __future__ import annotations

import pytest
from medinfer.cpu_class import chosen_variant, cpu_classes, cpu_features, resolve

SAPPHIRE_RAPIDS = {"avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16"}
EPYC_GENOA = {"avx2", "avx512f", "avx512_vnni"}
ALDER_LAKE = {"avx2", "avx_vnni"}
HASWELL = {"avx2", "fma"}
GRAVITON3 = {"asimd", "asimddp", "i8mm", "sve"}
CORTEX_A72 = {"asimd", "crc32"}


@pytest.mark.parametrize(("flags", "machine", "expected"), [
    (SAPPHIRE_RAPIDS, "x86_64", ("amx", "avx512_vnni", "avx_vnni", "avx2", "generic")),
    (EPYC_GENOA, "x86_64", ("avx512_vnni", "avx2", "generic")),
    (ALDER_LAKE, "x86_64", ("avx_vnni", "avx2", "generic")),
    (HASWELL, "x86_64", ("avx2", "generic")),
    (set(), "x86_64", ("generic",)),
    (GRAVITON3, "aarch64", ("arm64_i8mm", "arm64_dotprod", "generic")),
    (CORTEX_A72, "aarch64", ("generic",)),
    ({"amx_int8", "amx_tile"}, "x86_64", ("generic",)),  # AMX without the VNNI it is dispatched with: not "amx"
])
def test_cpu_classes_most_specific_first(flags: set[str], machine: str, expected: tuple[str, ...]) -> None:
    assert cpu_classes(flags, machine) == expected


def test_features_are_read_from_cpuinfo_text() -> None:
    x86 = "processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu avx2 avx512f avx512_vnni amx_int8\n\n"
    arm = "processor\t: 0\nFeatures\t: fp asimd asimddp i8mm\nCPU implementer\t: 0x41\n"
    assert cpu_features(x86) >= {"avx2", "avx512_vnni", "amx_int8"}
    assert cpu_features(arm) == {"fp", "asimd", "asimddp", "i8mm"}
    assert cpu_features("model name : something\n") == frozenset()


PREFER = {"amx": "int8_nhwc", "avx512_vnni": "int8"}


@pytest.mark.parametrize(("flags", "machine", "expected"), [
    (SAPPHIRE_RAPIDS, "x86_64", "int8_nhwc"),
    (EPYC_GENOA, "x86_64", "int8"),
    (HASWELL, "x86_64", None),  # saturating int8 arithmetic: no int8 variant unless the manifest names one
    (GRAVITON3, "aarch64", None),
])
def test_the_most_specific_class_the_manifest_covers_wins(flags: set[str], machine: str, expected: str | None) -> None:
    assert resolve(PREFER, cpu_classes(flags, machine)) == expected


def test_auto_resolves_and_other_requests_pass_through() -> None:
    amx = cpu_classes(SAPPHIRE_RAPIDS, "x86_64")
    assert chosen_variant("auto", PREFER, amx) == "int8_nhwc"
    assert chosen_variant("auto", PREFER, cpu_classes(HASWELL, "x86_64")) == "default"
    assert chosen_variant("auto", {}, amx) == "default"
    assert chosen_variant(None, PREFER, amx) == "default"  # no request: the validated graph, as always
    assert chosen_variant("int8", PREFER, amx) == "int8"  # a named variant is run as named


def test_load_auto_runs_the_manifest_s_choice_and_refuses_a_preference_for_a_missing_variant(
        tiny_bundle, tmp_path) -> None:
    import json
    import shutil

    import medinfer

    manifest = json.loads((tiny_bundle / "manifest.json").read_text())
    manifest["profile"]["variant_by_cpu"] = {"generic": "default"}  # every CPU is "generic" at least
    (tiny_bundle / "manifest.json").write_text(json.dumps(manifest))
    assert medinfer.load(tiny_bundle, variant="auto").variant == "default"
    bad = tmp_path / "bad"
    shutil.copytree(tiny_bundle, bad)
    manifest["profile"]["variant_by_cpu"] = {"generic": "int8"}
    (bad / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(medinfer.ManifestError, match=r"profile\.variant_by_cpu\.generic.*names 'int8'"):
        medinfer.load(bad, variant="auto")
