"""Shared checks run on the tiny bundle (runtime tests) and on every spec's bundle (spec tests)."""

from __future__ import annotations

import threading
from pathlib import Path

import medinfer


def deterministic_check(path: Path, x) -> None:
    """1000 repeats and a second session give bit-identical outputs under the deterministic profile."""
    a = medinfer.load(path, deterministic=True)
    b = medinfer.load(path, deterministic=True)
    first = a.predict(x).outputs
    for _ in range(1000):
        again = a.predict(x).outputs
        for k in first:
            assert again[k].tobytes() == first[k].tobytes()
    other = b.predict(x).outputs
    assert all(other[k].tobytes() == first[k].tobytes() for k in first)


def concurrent_check(path: Path, x, threads: int = 8, calls: int = 60) -> None:
    """``threads`` threads sharing one Model get bit-identical answers and no errors."""
    model = medinfer.load(path)
    ref = model.predict(x).outputs

    def call() -> bool:
        got = model.predict(x).outputs
        return all(got[k].tobytes() == ref[k].tobytes() for k in ref)

    results, errors = hammer(call, threads=threads, calls=calls * threads)
    assert not errors and all(results)


def hammer(fn, *, threads: int, calls: int, seconds: float | None = None) -> tuple[list, list[BaseException]]:
    """Call ``fn`` from ``threads`` threads, ``calls`` times in all (or until ``seconds`` pass); returns the
    results and the exceptions raised (a bounded load generator for concurrency and load tests)."""
    import time

    lock = threading.Lock()
    remaining = [calls]
    results: list = []
    errors: list[BaseException] = []
    end = None if seconds is None else time.monotonic() + seconds

    def loop() -> None:
        while end is None or time.monotonic() < end:
            with lock:
                if remaining[0] <= 0:
                    return
                remaining[0] -= 1
            try:
                value = fn()
            except BaseException as exc:  # noqa: BLE001 - collected for the caller to assert on
                with lock:
                    errors.append(exc)
                continue
            with lock:
                results.append(value)

    pool = [threading.Thread(target=loop) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=300)
    return results, errors


def dciodvfy(path: Path) -> tuple[list[str], list[str]]:
    """Debian's dciodvfy's error and warning lines for one DICOM file ([], [] when dciodvfy is not installed)."""
    import shutil
    import subprocess

    exe = shutil.which("dciodvfy")
    if exe is None:
        return [], []
    proc = subprocess.run([exe, str(path)], capture_output=True, text=True, check=False)
    lines = (proc.stdout + proc.stderr).splitlines()
    return [x for x in lines if x.startswith("Error")], [x for x in lines if x.startswith("Warning")]
