"""No network: the runtime never opens a connection. A fresh interpreter installs an audit hook (PEP 578) that
records and refuses every socket operation (creation, bind, connect, name lookup, send) and every new process
(which would escape the hook), then imports medinfer and does what a device does: load (digests, signature,
self-test) with an audit trail, predict, try_predict on bad input, and the CLI's verify, predict, info and audit
verify. Any attempt fails the test, also one the runtime caught and swallowed (the hook records it before it
raises). The hook sees Python-level calls (medinfer and the Python libraries it uses); onnxruntime's C++ core is
outside its view."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from ..helpers import tiny

DEVICE = r"""
import json, sys
attempts = []
WATCHED = ("socket.", "urllib.Request", "http.client.", "ftplib.", "smtplib.", "webbrowser.", "subprocess.Popen",
           "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty", "pty.spawn")


def hook(event, args):
    if event.startswith(WATCHED):
        attempts.append(f"{event} {args!r}"[:300])
        raise PermissionError(f"no network (test hook): {event}")


sys.addaudithook(hook)
import numpy as np
import medinfer
from medinfer.cli import main

bundle, x_path, log, key = sys.argv[1:5]
steps = {}
model = medinfer.load(bundle, audit=log, trusted_keys=[key] if key != "-" else (), deterministic=True)
steps["predict"] = model.predict(np.load(x_path)).labels.tolist()
steps["refused"] = model.try_predict(np.full((1, 3), np.nan, np.float32)).reason
steps["verify"] = main(["verify", bundle] + (["--trusted-key", key] if key != "-" else []))
steps["cli_predict"] = main(["predict", bundle, x_path, "--json"])
steps["info"] = main(["info", bundle, "--json"])
steps["audit_verify"] = main(["audit", "verify", log])
print("RESULT " + json.dumps({"steps": steps, "attempts": attempts}))
"""


def _device_run(bundle: Path, tmp_path: Path, key: Path | None) -> dict:
    x = tmp_path / "x.npy"
    np.save(x, tiny.GOLDEN_X)
    proc = subprocess.run([sys.executable, "-c", DEVICE, str(bundle), str(x), str(tmp_path / "audit.jsonl"),
                           str(key) if key else "-"], capture_output=True, text=True, timeout=120, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-2000:] + proc.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT "):])


def test_the_runtime_never_opens_a_connection(tmp_path: Path) -> None:
    bundle = tiny.build(tmp_path / "m")
    key = None
    if importlib.util.find_spec("cryptography") is not None:  # a signed bundle checked against a trusted key
        from medinfer.cli import main
        from medinfer.signing import generate_keypair

        _, key, _ = generate_keypair(tmp_path / "k.pem")
        assert main(["sign", str(bundle), "--key", str(tmp_path / "k.pem")]) == 0
    got = _device_run(bundle, tmp_path, key)
    assert got["attempts"] == [], f"the runtime tried to reach the network or start a process: {got['attempts']}"
    steps = got["steps"]
    assert steps["predict"] == ["positive", "positive", "negative"] and steps["refused"] == "input"
    assert steps["verify"] == steps["cli_predict"] == steps["info"] == steps["audit_verify"] == 0, steps


def test_the_hook_sees_a_connection_attempt(tmp_path: Path) -> None:
    """The check can fail: the same hook, with one lookup of a host name before loading, records it."""
    probe = DEVICE.replace("import medinfer\n", "import medinfer\ntry:\n    __import__('socket').getaddrinfo("
                                                "'localhost', 443)\nexcept OSError:\n    pass\n", 1)
    x = tmp_path / "x.npy"
    np.save(x, tiny.GOLDEN_X)
    proc = subprocess.run([sys.executable, "-c", probe, str(tiny.build(tmp_path / "m")), str(x),
                           str(tmp_path / "audit.jsonl"), "-"], capture_output=True, text=True, timeout=120,
                          check=False)
    result = json.loads(next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))[len("RESULT "):])
    assert [a.split()[0] for a in result["attempts"]] == ["socket.getaddrinfo"]

