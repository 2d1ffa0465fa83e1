"""Who runs in the serve benchmark and what each one really is: a context-manager factory per server, and for each
a ``label`` (engine, version, what hosts the model), its ``threads`` and where it lives, or a reason code when it
is not there (``venv_missing``, ``checkout_failed``: the renderer says them in words)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .schema import from_exception

_PROBE = ("import json, importlib.metadata as m, onnxruntime as o\n"
          "def v(name):\n"
          "    try:\n        return m.version(name)\n    except m.PackageNotFoundError:\n        return None\n"
          "print(json.dumps({'onnxruntime': o.__version__, 'mlserver': v('mlserver'), "
          "'pytriton': v('nvidia-pytriton')}))")
REASONS = {"venv_missing": "its venv is not built (make bench-serve builds it)",
           "checkout_failed": "its tree could not be checked out"}


def venv_versions(venv: Path) -> dict[str, Any]:
    """onnxruntime's, MLServer's and PyTriton's versions in a server's venv (None for what it lacks)."""
    try:
        out = subprocess.run([str(venv / "bin" / "python"), "-c", _PROBE], capture_output=True, text=True,
                             timeout=120, check=True)
        return dict(json.loads(out.stdout.strip().splitlines()[-1]))
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return {}


def labels(versions: dict[str, dict[str, Any]], baseline_ref: str) -> dict[str, str]:
    """What each server really runs, in one line."""
    import medinfer
    import onnxruntime as ort

    ml, tr = versions.get("mlserver", {}), versions.get("tritonserver", {})
    hosted = "medinfer.load + Model.predict (validation, decision rule; audit when asked)"
    return {
        "medinfer": f"medinfer serve {medinfer.__version__} (uvicorn, httptools + uvloop) running {hosted}, "
                    f"onnxruntime {ort.__version__}",
        "medinfer-baseline": f"medinfer serve at {baseline_ref} (uvicorn h11 + starlette) running {hosted}, "
                             f"onnxruntime {ort.__version__}",
        "mlserver": f"MLServer {ml.get('mlserver')}, custom runtime hosting a bare onnxruntime "
                    f"{ml.get('onnxruntime')} InferenceSession",
        "tritonserver": f"tritonserver (PyTriton {tr.get('pytriton')}), Python backend hosting a bare onnxruntime "
                        f"{tr.get('onnxruntime')} InferenceSession",
    }


def medinfer_version() -> str:
    import medinfer

    return str(medinfer.__version__)


def medinfer_command(bundle: Path, work: Path, audit: bool, threads: int, extra: Sequence[str] = ()) -> list[str]:
    """``medinfer serve`` through :mod:`benchmarks.serve_threads` (every ``medinfer.load`` with ``threads``), with
    ``extra`` serve options (auth, gRPC)."""
    import sys
    import time

    from . import serve

    args = ["--audit", str(work / f"audit-{time.monotonic_ns()}.jsonl"), *serve.README_AUDIT] if audit else []
    wrapper = str(Path(__file__).with_name("serve_threads.py"))
    return [sys.executable, wrapper, str(threads), "serve", str(bundle), "--port", "0", "--max-queue", "256", *args,
            *extra]


def server_version(port: int) -> str | None:
    """The server's version from its metadata (``GET /v2``), None when it does not say."""
    import contextlib
    import urllib.request

    with contextlib.suppress(Exception), urllib.request.urlopen(f"http://127.0.0.1:{port}/v2", timeout=5) as r:
        return str(json.loads(r.read()).get("version") or "") or None
    return None


def candidates(servers: list[str], baseline_ref: str, work: Path, threads: int, root: Path,
               ) -> tuple[dict[str, Callable[[Path], Any]], dict[str, Any]]:
    """Context-manager factories per candidate, and what each one is (or why it is missing)."""
    from . import serve

    out: dict[str, Callable[[Path], Any]] = {}
    info: dict[str, Any] = {}
    venvs = {"mlserver": root / "build" / "mlserver-venv", "tritonserver": root / "build" / "triton-venv"}
    versions = {k: venv_versions(v) for k, v in venvs.items() if k in servers and (v / "bin" / "python").exists()}
    label = labels(versions, baseline_ref)
    if "medinfer-baseline" in servers:
        try:
            tree = serve.baseline_tree(baseline_ref)
        except (subprocess.CalledProcessError, OSError) as exc:
            info["medinfer-baseline"] = {"available": False, "reason": "checkout_failed",
                                         "error": from_exception(exc)}
        else:
            for audit in (True, False):
                out[f"medinfer-baseline{' +audit' if audit else ''}"] = \
                    lambda b, a=audit, t=tree: serve.medinfer_server(b, work, a, t, threads)
            info["medinfer-baseline"] = {"available": True, "ref": baseline_ref, "tree": str(tree),
                                         "label": label["medinfer-baseline"], "threads": threads}
    if "medinfer" in servers:
        for audit in (True, False):
            out[f"medinfer{' +audit' if audit else ''}"] = \
                lambda b, a=audit: serve.medinfer_server(b, work, a, None, threads)
        info["medinfer"] = {"available": True, "label": label["medinfer"], "threads": threads}
    if "medinfer-workers" in servers:  # the same cores split among worker processes (audit on, one chain)
        workers = max(2, threads)
        each = max(1, threads // workers)
        out[f"medinfer x{workers} workers +audit"] = \
            lambda b: serve.medinfer_server(b, work, True, None, each, workers=workers)
        info["medinfer-workers"] = {"available": True, "threads": each, "workers": workers,
                                    "label": f"medinfer serve {medinfer_version()} --workers {workers} (weights "
                                             f"shared), otherwise as medinfer"}
    for name, factory in (("mlserver", serve.mlserver_server), ("tritonserver", serve.triton_server)):
        if name not in servers:
            continue
        venv = venvs[name]
        if name not in versions:
            info[name] = {"available": False, "reason": "venv_missing", "venv": str(venv.relative_to(root))}
            continue
        out[name] = lambda b, f=factory, v=venv: f(b, work, v, threads)
        info[name] = {"available": True, "venv": str(venv.relative_to(root)), "label": label[name],
                      "threads": threads}
    return out, info


def server_lines(record: dict[str, Any]) -> list[str]:
    """What each server really runs and with how many threads (a record made before issue 24 did not say: its
    tritonserver hosted medinfer in the Python backend, and each server used its own thread count)."""
    from .schema import error_text

    lines = []
    for name, v in record["servers"].items():
        if not v.get("available"):
            reason = REASONS.get(v.get("reason", ""), v.get("reason"))
            lines.append(f"- {name}: not measured ({reason}{': ' + error_text(v['error']) if v.get('error') else ''})")
        elif v.get("label"):
            lines.append(f"- {name}: {v['label']}; {v.get('threads')} intra-op thread(s)")
        else:
            legacy = {"tritonserver": "tritonserver, Python backend hosting medinfer (medinfer.load + Model.predict)",
                      "mlserver": "MLServer, custom runtime hosting a bare onnxruntime session with the bundle's "
                                  "profile threads"}.get(name, f"{name}, the bundle's profile threads")
            lines.append(f"- {name}: {legacy} (recorded before issue 24)")
    return [*lines, ""] if lines else []
