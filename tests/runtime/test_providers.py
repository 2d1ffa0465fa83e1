"""Provider selection against the real installed build and against fake lists of available providers."""

from __future__ import annotations

from pathlib import Path

import medinfer
import pytest
from medinfer.cli import main
from medinfer.providers import canonical, diagnose, resolve

GPU_BOX = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]


NAMES = [("cpu", "CPUExecutionProvider"), ("CUDA", "CUDAExecutionProvider"),
         ("tensorrt", "TensorrtExecutionProvider"), ("trt", "TensorrtExecutionProvider"),
         ("openvino", "OpenVINOExecutionProvider"), ("dml", "DmlExecutionProvider"),
         ("coreml", "CoreMLExecutionProvider"), ("qnn", "QNNExecutionProvider"),
         ("CUDAExecutionProvider", "CUDAExecutionProvider"), ("cudaexecutionprovider", "CUDAExecutionProvider")]


@pytest.mark.parametrize(("short", "full"), NAMES)
def test_short_and_full_names(short: str, full: str) -> None:
    assert canonical(short) == full


def test_preference_order_is_kept_and_unavailable_skipped() -> None:
    got = resolve(["tensorrt", "cuda", "cpu"], available=["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert [n for n, _ in got] == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    got = resolve(["cpu", "cuda"], available=GPU_BOX)
    assert [n for n, _ in got] == ["CPUExecutionProvider", "CUDAExecutionProvider"]  # the caller's order wins


def test_default_is_cpu_only() -> None:
    assert resolve(None, available=GPU_BOX) == [("CPUExecutionProvider", {})]


def test_options_from_call_override_profile() -> None:
    profile = {"CUDAExecutionProvider": {"device_id": 0, "arena_extend_strategy": "kSameAsRequested"}}
    got = resolve([("cuda", {"device_id": 1}), "cpu"], available=GPU_BOX, profile_options=profile)
    assert got[0] == ("CUDAExecutionProvider", {"use_tf32": 0, "device_id": 1,
                                                "arena_extend_strategy": "kSameAsRequested"})
    assert resolve([("cuda", {"use_tf32": 1})], available=GPU_BOX)[0][1]["use_tf32"] == 1  # an explicit opt-in
    trt = resolve([("tensorrt", {"trt_fp16_enable": True, "trt_engine_cache_path": "/tmp/c"})], available=GPU_BOX)
    assert trt[0][1]["trt_fp16_enable"] is True


def test_none_available_lists_what_is() -> None:
    expected = (r"Specified provider 'TensorrtExecutionProvider', 'CUDAExecutionProvider' are unavailable\. "
                r"Available providers: 'CPUExecutionProvider'\. CUDA/TensorRT need the onnxruntime-gpu")
    with pytest.raises(medinfer.ProviderError, match=expected):
        resolve(["tensorrt", "cuda"], available=["CPUExecutionProvider"])
    with pytest.raises(medinfer.ProviderError, match="onnxruntime-openvino build INSTEAD"):
        resolve("openvino", available=["CPUExecutionProvider"])


def test_bad_requests() -> None:
    with pytest.raises(medinfer.ProviderError, match="did you mean 'tensorrt'"):
        resolve("tensorrtt", available=GPU_BOX)
    with pytest.raises(medinfer.ProviderError, match=r"\(name, \{...\}\)"):
        resolve([("cuda", "device=0")], available=GPU_BOX)
    with pytest.raises(medinfer.ProviderError, match="must be named by a string"):
        resolve([3], available=GPU_BOX)


def test_fallback_is_disabled_without_cpu(tiny_bundle_ro: Path) -> None:
    from medinfer.session import session_options

    profile = medinfer.load_manifest(tiny_bundle_ro).profile
    options = session_options(profile, cpu_fallback=False)
    assert options.get_session_config_entry("session.disable_cpu_ep_fallback") == "1"


def test_diagnosis_of_this_build() -> None:
    rows = {r["provider"]: r for r in diagnose()}
    assert rows["CPUExecutionProvider"]["usable"] is True
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        cuda = rows["CUDAExecutionProvider"]
        assert cuda["missing"] == "package" and "onnxruntime-gpu" in cuda["why"]


def test_cpu_end_to_end_with_placement(tiny_bundle_ro: Path, capsys) -> None:
    model = medinfer.load(tiny_bundle_ro, providers=["cpu"])
    placement = model.placement()
    assert placement["all_on_first_provider"] and placement["nodes"]["CPUExecutionProvider"] >= 1
    assert main(["verify", str(tiny_bundle_ro), "--provider", "cpu", "--placement"]) == 0
    assert "nodes per provider: CPU:" in capsys.readouterr().out


def test_accelerator_check_exits_cleanly_without_gpu(tmp_path: Path) -> None:
    import shutil
    import subprocess

    if shutil.which("nvidia-smi"):
        pytest.skip("this machine has nvidia-smi: the GPU path is exercised by running the script for real")
    script = Path(__file__).parents[2] / "scripts" / "accelerator_check.sh"
    out = tmp_path / "acc.json"
    proc = subprocess.run(["bash", str(script), "--out", str(out)], capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode == 0 and "no NVIDIA GPU visible" in proc.stdout
    assert not out.exists()
    bad = subprocess.run(["bash", str(script), "--nope"], capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode == 2 and "unknown option --nope" in bad.stderr


def test_accelerator_driver_on_cpu(tiny_bundle_ro: Path, tmp_path: Path) -> None:
    """The per-bundle driver of the GPU check, run against the CPU provider only (no GPU needed)."""
    import sys

    sys.path.insert(0, str(Path(__file__).parents[2]))
    from benchmarks.accelerator import check_bundle, markdown

    result = check_bundle(tiny_bundle_ro, ["cuda"], [1, 8], 0.05, tmp_path)
    cpu = result["providers"]["cpu"]
    assert cpu["status"] == "ok" and "parity_vs_cpu" not in cpu  # the reference is never compared with itself
    assert result["parity_sample"]["source"] == "regenerated from the golden inputs" and result["parity_sample"]["n"]
    cuda = result["providers"]["cuda"]
    import onnxruntime as ort

    text = "\n".join(markdown({"results": [result], "seconds": 0.05, "env": {}}))
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        assert cuda["status"] == "failed" and cuda["error"]["exception"] == "ProviderError"
        assert "No accelerator ran on this machine" in text
    else:
        assert cuda["status"] == "ok" and cuda["parity_vs_cpu"]["within_tolerance"]
        assert "| tiny_logistic | cuda |" in text


def test_several_builds_detection() -> None:
    from medinfer.providers import installed_builds, several_builds

    assert several_builds(["onnxruntime==1.32.0", "onnxruntime-gpu==1.31.1"])
    assert not several_builds(["onnxruntime==1.32.0", "onnxruntime-training==1.19.0"])
    assert any(b.startswith("onnxruntime") for b in installed_builds())
