"""The rule that writes ``profile.variant_by_cpu`` at export, driven with synthetic interleaved latencies."""

from __future__ import annotations

import numpy as np
from medinfer.export.cpu_variants import choose

AMX = ("amx", "avx512_vnni", "avx_vnni", "avx2", "generic")


def _rounds(*p50_us: float) -> list[np.ndarray]:
    return [np.full(20, v * 1e3) for v in p50_us]


def test_a_variant_faster_in_every_round_is_written_for_the_exact_int8_classes() -> None:
    times = {"default": _rounds(2000, 2100, 1900), "int8": _rounds(1000, 1100, 950),
             "int8_nhwc": _rounds(700, 720, 690)}
    chosen, evidence = choose(times, AMX)
    assert chosen == {"amx": "int8_nhwc", "avx512_vnni": "int8_nhwc", "avx_vnni": "int8_nhwc"}
    assert evidence["measured"] == "amx" and evidence["trial"]["wins"] is True


def test_a_win_that_fails_in_one_round_keeps_the_fp32_graph() -> None:
    times = {"default": _rounds(1000, 1000, 1000), "int8_nhwc": _rounds(500, 500, 990)}
    chosen, evidence = choose(times, AMX)
    assert chosen == {} and "did not win in every round" in evidence["decision"]


def test_a_cpu_without_exact_int8_arithmetic_gets_only_its_own_class() -> None:
    """On an AVX2 machine the variant was gated on AVX2's own arithmetic: valid there, and nowhere else."""
    times = {"default": _rounds(1000, 1000, 1000), "int8": _rounds(500, 500, 500)}
    assert choose(times, ("avx2", "generic"))[0] == {"avx2": "int8"}
    assert choose(times, ("generic",))[0] == {}  # an unknown CPU: nothing to name


def test_no_int8_variant_means_no_preference() -> None:
    assert choose({"default": _rounds(10, 10, 10)}, AMX)[0] == {}
