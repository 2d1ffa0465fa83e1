"""Helpers for tests that start real server processes."""

from __future__ import annotations

import signal
import subprocess


def stop(proc: subprocess.Popen, timeout: float) -> None:
    """SIGTERM (graceful shutdown), then SIGKILL if it does not exit within ``timeout`` seconds."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
