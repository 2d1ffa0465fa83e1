"""The environment a benchmark ran in: CPU, instruction sets, cores, OS, versions, providers, git commit."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "avx_vnni",
          "amx_tile", "amx_int8", "amx_bf16", "neon", "asimd", "sve")


@lru_cache(maxsize=1)
def cpu() -> dict[str, Any]:
    """CPU model and the instruction-set flags that decide onnxruntime's kernels."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and value.strip():
            model = value.strip()
        elif key in ("flags", "features"):
            flags.update(value.split())
    if sys.platform == "darwin":
        with contextlib.suppress(OSError):
            model = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True,
                                   timeout=5, check=False).stdout.strip() or model
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    return {
        "model": model,
        "arch": platform.machine(),
        "flags": [f for f in _FLAGS if f in flags],
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
    }


def git_commit(start: str | Path | None = None) -> str | None:
    """The commit of the checkout this runs from ($MEDINFER_GIT_COMMIT wins), or None outside git."""
    if os.environ.get("MEDINFER_GIT_COMMIT"):
        return os.environ["MEDINFER_GIT_COMMIT"]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False,
                             cwd=str(start) if start else None)
    except OSError:
        return None
    if out.returncode != 0:
        return None
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True,
                           timeout=5, check=False, cwd=str(start) if start else None).stdout.strip()
    return out.stdout.strip() + ("+dirty" if dirty else "")


def environment() -> dict[str, Any]:
    """Everything a reader needs to know where a number came from."""
    import numpy as np
    import onnxruntime as ort

    from .._version import __version__

    return {
        "cpu": cpu(),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "onnxruntime": ort.__version__,
        "onnxruntime_build": ort.get_device(),
        "available_providers": list(ort.get_available_providers()),
        "medinfer": __version__,
        "git_commit": git_commit(),
        "hostname_hash": _host(),
    }


def _host() -> str:
    from ..integrity import sha256_bytes

    return sha256_bytes(platform.node().encode())[:12]
