"""Execution providers: short names, explicit preference lists, and errors that say what IS available.

Nothing ever runs on a provider the caller did not list: ``load()`` disables onnxruntime's silent CPU fallback
when the CPU provider is not in the resolved list.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .errors import OnnxruntimeMissing, ProviderError, ProviderRequestError, UnknownProvider

log = logging.getLogger(__name__)

SHORT_NAMES: dict[str, str] = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "dml": "DmlExecutionProvider",
    "directml": "DmlExecutionProvider",
    "qnn": "QNNExecutionProvider",
    "rocm": "ROCMExecutionProvider",
    "migraphx": "MIGraphXExecutionProvider",
    "xnnpack": "XnnpackExecutionProvider",
    "nnapi": "NnapiExecutionProvider",
    "acl": "ACLExecutionProvider",
    "dnnl": "DnnlExecutionProvider",
    "webgpu": "WebGpuExecutionProvider",
}
_FULL_NAMES = sorted(set(SHORT_NAMES.values()))

ProviderRequest = str | tuple[str, Mapping[str, Any]]

# Defaults that keep an accelerator inside the validated tolerance. Measured on an H200 with onnxruntime-gpu
# 1.31: with TF32 (CUDA's default on Ampere+) the golden self-test differed by 1.5e-4 (CNN), 1.3e-4 (SVD) and
# 0.025 mg/dL (LSTM) against tolerances of 1e-5 / 1e-3. Full fp32 unless the caller opts in.
SAFE_DEFAULTS: dict[str, dict[str, Any]] = {
    "CUDAExecutionProvider": {"use_tf32": 0},
    "TensorrtExecutionProvider": {"trt_fp16_enable": False, "trt_int8_enable": False},
}


# -- which onnxruntime build: exactly one per environment, chosen by an extra of medinfer ---------------------
#: The extra of medinfer that installs each onnxruntime build (the base distribution installs none of them).
FLAVOURS: dict[str, str] = {"cpu": "onnxruntime", "gpu": "onnxruntime-gpu", "openvino": "onnxruntime-openvino"}
_FLAVOUR_OF_PROVIDER = {"CUDAExecutionProvider": "gpu", "TensorrtExecutionProvider": "gpu",
                        "OpenVINOExecutionProvider": "openvino", "CPUExecutionProvider": "cpu"}


def install_command(extra: str, installed: Sequence[str] | None = None) -> str:
    """The shell command that leaves exactly the onnxruntime build of ``extra`` in this environment.

    Every installed build is uninstalled first (two builds overwrite each other's ``onnxruntime`` module, and an
    extra cannot replace what is installed); pip keeps the installed medinfer and adds only the extra's package
    (tests/docs/test_flavours.py runs these commands in fresh venvs).

    Args:
        extra: ``"cpu"``, ``"gpu"`` or ``"openvino"``.
        installed: the builds installed now as ``name==version`` (default: :func:`installed_builds`).
    """
    if extra not in FLAVOURS:
        raise ValueError(f"unknown onnxruntime flavour {extra!r}; one of {', '.join(FLAVOURS)}")
    names = [d.split("==")[0] for d in (installed_builds() if installed is None else installed)]
    add = f"pip install 'medinfer[{extra}]'"
    return f"pip uninstall -y {' '.join(names)} && {add}" if names else add


def import_onnxruntime() -> Any:
    """The ``onnxruntime`` module; the one place the device core imports it (lazily: ``import medinfer`` stays fast
    and works without it, e.g. to read a manifest or verify an audit log).

    Raises:
        OnnxruntimeMissing: (a MissingExtraError, exit 9) no onnxruntime build is installed (one line: the three
            extras), or the installed one cannot be imported (the command that reinstalls exactly one build).
    """
    try:
        import onnxruntime
    except ImportError as exc:
        raise missing_onnxruntime(exc) from None
    return onnxruntime


def missing_onnxruntime(exc: BaseException | None = None) -> OnnxruntimeMissing:
    """The error for an environment whose ``import onnxruntime`` fails (also used by the CLI for callers outside
    the core)."""
    installed = installed_builds()
    if not installed:
        return OnnxruntimeMissing(
            "medinfer needs one onnxruntime build and none is installed: pip install 'medinfer[cpu]' "
            "(or 'medinfer[gpu]' for CUDA/TensorRT, 'medinfer[openvino]' for OpenVINO; exactly one of them)")
    extra = next((e for e, d in FLAVOURS.items() if d != "onnxruntime" and any(i.startswith(d + "==")
                                                                                 for i in installed)), "cpu")
    why = f"{type(exc).__name__}: {exc}" if exc is not None else "unknown"
    return OnnxruntimeMissing(
        f"{', '.join(installed)} is installed but 'import onnxruntime' fails ({str(why)[:200]}): reinstall exactly "
        f"one build: {install_command(extra, installed)}", extra)


def available_providers() -> list[str]:
    return list(import_onnxruntime().get_available_providers())


def canonical(name: str) -> str:
    """Map a short or full provider name to onnxruntime's full name (case-insensitive)."""
    if not isinstance(name, str):
        raise ProviderRequestError(f"a provider must be named by a string, got {type(name).__name__}")
    key = name.strip()
    lowered = key.lower()
    if lowered in SHORT_NAMES:
        return SHORT_NAMES[lowered]
    for full in _FULL_NAMES:
        if full.lower() == lowered or full.lower() == lowered + "executionprovider":
            return full
    if key.endswith("ExecutionProvider"):
        return key  # a provider this table does not know yet; the availability check still applies
    raise UnknownProvider("execution provider", name, SHORT_NAMES,
                          "; or a full onnxruntime name such as 'CUDAExecutionProvider'")


def resolve(
    requested: Sequence[ProviderRequest] | ProviderRequest | None,
    available: Iterable[str] | None = None,
    profile_options: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[tuple[str, dict[str, Any]]]:
    """Resolve a preference list against the providers this onnxruntime build offers.

    Args:
        requested: ``None`` (CPU only), one name, or an ordered list of names or ``(name, options)`` pairs.
            A list is a preference order: providers not available here are skipped (logged), those
            available are kept in order. A single name must be available.
        available: the providers to resolve against (default: ``onnxruntime.get_available_providers()``).
        profile_options: per-provider options from the manifest's profile, overridden by the call's options.

    Returns:
        ``[(full_name, options), ...]`` in preference order, never empty.

    Raises:
        ProviderError: an unknown name, or none of the requested providers is available here.
    """
    avail = list(available) if available is not None else available_providers()
    if requested is None:
        requested = ["cpu"]
    elif isinstance(requested, (str, tuple)):
        requested = [requested]
    items: list[tuple[str, dict[str, Any]]] = []
    for req in requested:
        if isinstance(req, tuple):
            if len(req) != 2 or not isinstance(req[1], Mapping):
                raise ProviderRequestError(f"a provider with options is (name, {{...}}), got {req!r}")
            name, options = canonical(req[0]), dict(req[1])
        else:
            name, options = canonical(req), {}
        merged = {**SAFE_DEFAULTS.get(name, {}), **dict((profile_options or {}).get(name, {})), **options}
        if name not in (n for n, _ in items):
            items.append((name, merged))
    usable = [(n, o) for n, o in items if n in avail]
    missing = [n for n, _ in items if n not in avail]
    if not usable:
        asked = ", ".join(f"'{n}'" for n, _ in items)
        raise ProviderError(
            f"Specified provider {asked} {'is' if len(items) == 1 else 'are'} unavailable. "
            f"Available providers: {', '.join(repr(a) for a in avail)}. "
            + _install_hint(missing)
        )
    for name in missing:
        log.info("provider %s is not available here; using the next in the preference list", name)
    return usable


def _install_hint(missing: Sequence[str]) -> str:
    extra = next((_FLAVOUR_OF_PROVIDER[m] for m in missing if _FLAVOUR_OF_PROVIDER.get(m, "cpu") != "cpu"), None)
    if extra == "gpu":
        return ("CUDA/TensorRT need the onnxruntime-gpu build INSTEAD of any other onnxruntime build "
                f"({install_command('gpu')}), an NVIDIA driver and CUDA libraries; run 'medinfer info --providers' "
                "for a diagnosis.")
    if extra == "openvino":
        return ("OpenVINO needs the onnxruntime-openvino build INSTEAD of any other onnxruntime build "
                f"({install_command('openvino')}).")
    return "Ask for one of the available providers, or install an onnxruntime build that has it."


# -- diagnosis: why a provider is (not) usable here -------------------------------------------------------
_PACKAGES = {
    "CUDAExecutionProvider": "onnxruntime-gpu",
    "TensorrtExecutionProvider": "onnxruntime-gpu",
    "OpenVINOExecutionProvider": "onnxruntime-openvino",
    "DmlExecutionProvider": "onnxruntime-directml",
    "QNNExecutionProvider": "onnxruntime-qnn",
    "CoreMLExecutionProvider": "onnxruntime (macOS wheels)",
    "ROCMExecutionProvider": "onnxruntime-rocm",
    "MIGraphXExecutionProvider": "onnxruntime-migraphx",
}
# shared libraries each provider needs at run time: (what, candidates)
_LIBRARIES = {
    "CUDAExecutionProvider": [("NVIDIA driver", ["libcuda.so.1", "nvcuda.dll"]),
                              ("CUDA runtime", ["libcudart.so.13", "libcudart.so.12", "cudart64_12.dll"]),
                              ("cuBLAS", ["libcublas.so.13", "libcublas.so.12", "cublas64_12.dll"]),
                              ("cuDNN", ["libcudnn.so.9", "cudnn64_9.dll"])],
    "TensorrtExecutionProvider": [("NVIDIA driver", ["libcuda.so.1", "nvcuda.dll"]),
                                  ("TensorRT", ["libnvinfer.so.10", "nvinfer_10.dll"])],
}
ORT_DISTRIBUTIONS = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml",
                     "onnxruntime-qnn", "onnxruntime-rocm", "onnxruntime-migraphx", "onnxruntime-training")


def _loadable(candidates: Sequence[str]) -> str | None:
    import ctypes

    for name in candidates:
        try:
            ctypes.CDLL(name)
        except OSError:
            continue
        return name
    return None


def _preload_pip_cuda_libraries() -> None:
    """onnxruntime-gpu can load CUDA/cuDNN from the nvidia-* pip wheels; make them visible to the check too."""
    try:
        preload = getattr(import_onnxruntime(), "preload_dlls", None)
        if preload is not None:
            preload()
    except Exception:  # noqa: BLE001 - best effort: the diagnosis reports what is still missing
        pass


def installed_builds() -> list[str]:
    """The onnxruntime distributions installed in this environment, as ``name==version``."""
    from importlib import metadata

    found = []
    for dist in ORT_DISTRIBUTIONS:
        try:
            found.append(f"{dist}=={metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            continue
    return found


def several_builds(installed: Sequence[str]) -> bool:
    """More than one inference build: they overwrite each other's ``onnxruntime`` module."""
    return len([d for d in installed if not d.startswith("onnxruntime-training")]) > 1


def several_builds_message(installed: Sequence[str]) -> str:
    """What to say (and run) when several builds share this environment: remove them all, install one."""
    extra = next((e for e, d in FLAVOURS.items() if d != "onnxruntime" and any(i.startswith(d + "==")
                                                                                 for i in installed)), "cpu")
    others = " or ".join(f"[{e}]" for e in FLAVOURS if e != extra)
    return (f"several onnxruntime builds are installed ({', '.join(installed)}): they overwrite the same "
            f"'onnxruntime' module; keep exactly one: {install_command(extra, installed)} (or {others})")


def diagnose(names: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """For each provider: is it usable here, and if not, is the package, the driver or a library missing?"""
    avail = available_providers()
    installed = installed_builds()
    if any(d.startswith("onnxruntime-gpu") for d in installed):
        _preload_pip_cuda_libraries()
    rows = []
    for full in [canonical(n) for n in names] if names else sorted(set(SHORT_NAMES.values())):
        row: dict[str, Any] = {"provider": full, "in_build": full in avail, "usable": False}
        if full not in avail:
            row["missing"] = "package"
            extra = _FLAVOUR_OF_PROVIDER.get(full)
            how = (f": {install_command(extra, installed)}" if extra and extra != "cpu" else "")
            row["why"] = (f"this onnxruntime build ({', '.join(installed) or 'none'}) has no {full}; it comes with "
                          f"{_PACKAGES.get(full, 'another onnxruntime build')}, installed INSTEAD of the others{how}")
        else:
            missing = [(what, cands) for what, cands in _LIBRARIES.get(full, []) if _loadable(cands) is None]
            if missing:
                what, cands = missing[0]
                row["missing"] = "driver" if what == "NVIDIA driver" else "library"
                row["why"] = f"{what} not loadable ({' / '.join(cands)})" + (
                    f"; also missing: {', '.join(w for w, _ in missing[1:])}" if len(missing) > 1 else "")
            else:
                row["usable"] = True
                row["why"] = "ready"
        rows.append(row)
    if several_builds(installed):
        rows.append({"provider": "(environment)", "in_build": False, "usable": False, "missing": "conflict",
                     "why": several_builds_message(installed)})
    return rows
