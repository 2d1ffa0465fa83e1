"""Session profiles that never lose to onnxruntime's defaults: ``load(session_profile="default")``, profiles that
leave the settings to onnxruntime, the noise-proof comparison rule and ``medinfer bench --check-profile`` (driven
with synthetic timings: nothing here asserts a speed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import medinfer
import numpy as np
import pytest
from medinfer.errors import EXIT_CODES, ProfileLoses, UnknownNameError
from medinfer.tools import profile_check
from medinfer.tools.profile_check import check_profile, raise_if_loses, round_ratios, trial, verdict

from ..helpers import tiny
from ..helpers.fields import MakeBundle

TUNED = {"intra_op_num_threads": 1, "inter_op_num_threads": 1, "allow_spinning": False,
         "graph_optimization_level": "basic", "large_batch_from": 4, "large_batch": {"intra_op_num_threads": 2}}


def _options(model: medinfer.Model, session: Any = None) -> Any:
    return (session or model.session).get_session_options()


def _spinning(options: Any) -> str | None:
    try:
        return str(options.get_session_config_entry("session.intra_op.allow_spinning"))
    except Exception:  # noqa: BLE001 - onnxruntime raises when the entry was never set
        return None


def test_load_default_gives_onnxruntime_default_options_for_every_batch_size(make_bundle: MakeBundle) -> None:
    """``session_profile="default"``: onnxruntime's own SessionOptions (no thread, spinning or optimisation setting)
    and no second session, where the bundle's profile tunes all of them and adds a large-batch session."""
    import onnxruntime as ort

    bundle = make_bundle("tuned", profile=TUNED)
    tuned = medinfer.load(bundle)
    assert _options(tuned).intra_op_num_threads == 1 and tuned.large_session is not None
    assert _options(tuned).graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    assert _spinning(_options(tuned)) == "0"

    plain = medinfer.load(bundle, session_profile="default")
    fresh = ort.SessionOptions()
    got = _options(plain)
    assert plain.large_session is None
    assert got.intra_op_num_threads == fresh.intra_op_num_threads == 0
    assert got.inter_op_num_threads == fresh.inter_op_num_threads
    assert got.graph_optimization_level == fresh.graph_optimization_level
    assert got.execution_mode == fresh.execution_mode
    assert _spinning(got) is None  # never configured
    x = np.tile(tiny.GOLDEN_X, (3, 1))
    np.testing.assert_allclose(plain.predict(x).scores, tuned.predict(x).scores, atol=1e-6)


def test_a_profile_that_leaves_settings_to_onnxruntime_still_takes_the_callers_overrides(
        make_bundle: MakeBundle) -> None:
    bundle = make_bundle("defaults", profile={"onnxruntime_defaults": True, "intra_op_num_threads": 3})
    assert medinfer.load(bundle).manifest.profile.onnxruntime_defaults
    assert _options(medinfer.load(bundle)).intra_op_num_threads == 0  # the field is ignored: onnxruntime decides
    assert _options(medinfer.load(bundle, session_profile={"intra_op_num_threads": 1})).intra_op_num_threads == 1
    assert _options(medinfer.load(bundle, deterministic=True)).intra_op_num_threads == 3


def test_an_unknown_profile_name_is_refused_naming_default(tiny_bundle: Path) -> None:
    with pytest.raises(UnknownNameError, match="'default'"):
        medinfer.load(tiny_bundle, session_profile="defaults")


def _rounds(per_round_us: list[float], n: int = 5) -> list[np.ndarray]:
    return [np.full(n, us * 1e3) for us in per_round_us]


def test_the_rule_wins_only_when_every_round_wins_by_the_margin() -> None:
    base = [100.0] * 7
    faster = trial(1, "c", "d", {}, {"c": _rounds([90.0] * 7), "d": _rounds(base)}, 0.97)
    assert faster.wins and faster.bound == pytest.approx(0.9) and faster.ratios == (0.9,) * 7
    one_bad_round = trial(1, "c", "d", {}, {"c": _rounds([90.0] * 6 + [99.0]), "d": _rounds(base)}, 0.97)
    assert not one_bad_round.wins and one_bad_round.bound == pytest.approx(0.99)
    assert verdict([0.9] * 7) == "wins"
    assert verdict([1.1] * 6 + [1.02]) == "within noise"
    assert verdict([1.1] * 7) == "loses"
    # the ratio is taken within each round: a slow stretch of the machine hitting both cancels out
    assert round_ratios(_rounds([200.0, 100.0]), _rounds([400.0, 200.0])) == [0.5, 0.5]
    with pytest.raises(ValueError, match="same number of rounds"):
        round_ratios(_rounds([1.0]), _rounds([1.0, 2.0]))


def _fake(bundle_us: float, default_us: float, calls: list[int]) -> profile_check.Measure:
    def measure(fns: Any, rounds: int, seconds: float) -> dict[str, list[np.ndarray]]:
        calls.append(rounds)
        for fn in fns.values():
            fn()  # the callables really predict (a broken one would raise here)
        return {"bundle": _rounds([bundle_us] * rounds), "default": _rounds([default_us] * rounds)}

    return measure


def test_other_load_sees_a_process_that_keeps_a_core_busy() -> None:
    import time

    from medinfer.tools.profile_check import OtherLoad

    if not Path("/proc/stat").exists():
        pytest.skip("no /proc/stat: the load is unknown here (OtherLoad.cores stays None)")
    spin = subprocess.Popen([sys.executable, "-c", "import time\nt = time.time()\nwhile time.time() - t < 1.5: pass"])
    try:
        time.sleep(0.3)
        with OtherLoad() as other:
            time.sleep(0.8)  # this process idles; the child spins
    finally:
        spin.wait()
    assert other.cores is not None and other.cores > 0.25


def test_check_profile_reports_a_loss_and_raises_exit_15(make_bundle: MakeBundle) -> None:
    bundle = make_bundle("tuned", profile=TUNED)
    calls: list[int] = []
    report = check_profile(bundle, rounds=4, measure=_fake(130.0, 100.0, calls))
    assert [r["batch"] for r in report["batches"]] == [1, 64] and calls == [4, 4]
    assert [r["session"] for r in report["batches"]] == ["batch-1", "large-batch"]
    assert all(r["verdict"] == "loses" and r["median_ratio"] == pytest.approx(1.3) for r in report["batches"])
    assert report["loses"]
    with pytest.raises(ProfileLoses, match="batch 1: 1.30x") as info:
        raise_if_loses(report)
    assert EXIT_CODES[info.value.code] == 15
    json.dumps(report)  # JSON-ready

    within = check_profile(bundle, rounds=4, measure=_fake(101.0, 100.0, []))
    assert not within["loses"] and {r["verdict"] for r in within["batches"]} == {"within noise"}
    raise_if_loses(within)


def test_check_profile_does_not_time_a_bundle_that_uses_the_defaults(make_bundle: MakeBundle) -> None:
    bundle = make_bundle("defaults", profile={"onnxruntime_defaults": True})
    calls: list[int] = []
    report = check_profile(bundle, measure=_fake(500.0, 100.0, calls))
    assert calls == [] and {r["verdict"] for r in report["batches"]} == {"defaults"} and not report["loses"]


def test_bench_check_profile_command_runs_and_reports_json(make_bundle: MakeBundle) -> None:
    """The command end to end (a short real timing; its verdict is not asserted: timings are noise here)."""
    bundle = make_bundle("tuned", profile=TUNED)
    proc = subprocess.run([sys.executable, "-m", "medinfer", "bench", str(bundle), "--check-profile", "--rounds", "2",
                           "--min-seconds", "0.05", "--batch", "1", "8", "--json"],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode in (0, 15), proc.stderr
    report = json.loads(proc.stdout)
    assert [r["batch"] for r in report["batches"]] == [1, 8]
    assert all(len(r["ratios"]) == 2 for r in report["batches"])
    assert (proc.returncode == 15) == report["loses"]


def test_parity_sample_is_read_verified_and_none_for_old_bundles(make_bundle: MakeBundle) -> None:
    from medinfer.build_records import ParitySample
    from medinfer.samples import npz_bytes

    x = np.random.default_rng(0).uniform(-3, 3, size=(10, 3)).astype(np.float32)
    arrays = {"in.x": x, "index": np.arange(10), "out.probabilities": tiny.reference(x),
              "out@int8.probabilities": tiny.reference(x) + np.float32(1e-3)}
    entry = ParitySample(file="parity.npz", n=10, of=50, seed=14, outputs=("probabilities",), atol=1e-5)
    bundle = make_bundle("with", extra_files={"parity.npz": (npz_bytes(arrays), "parity")},
                        parity_sample=entry)
    model = medinfer.load(bundle)
    inputs, outputs = model.parity_sample()  # type: ignore[misc]
    np.testing.assert_array_equal(inputs["x"], x)
    np.testing.assert_array_equal(outputs["probabilities"], tiny.reference(x))
    np.testing.assert_allclose(model.predict(inputs["x"]).scores, outputs["probabilities"][:, 1], atol=1e-6)
    data = bytearray((bundle / "parity.npz").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (bundle / "parity.npz").write_bytes(bytes(data))  # altered after load()
    with pytest.raises(medinfer.IntegrityError, match="parity.npz"):
        model.parity_sample()

    old = medinfer.load(make_bundle("old"))
    assert old.manifest.parity_sample is None and old.parity_sample() is None


def test_a_manifest_naming_a_parity_file_it_does_not_pin_is_refused(make_bundle: MakeBundle) -> None:
    from medinfer.build_records import ParitySample

    entry = ParitySample(file="parity.npz", n=1, of=1, seed=0, outputs=("probabilities",), atol=1e-5)
    with pytest.raises(medinfer.ManifestError, match="parity_sample.file"):
        make_bundle("bad", parity_sample=entry)
