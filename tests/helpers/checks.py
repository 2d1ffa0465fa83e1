"""Shared checks run on the tiny bundle (runtime tests) and on every spec's bundle (spec tests)."""

from __future__ import annotations

import itertools
import sys
import threading
import time
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
    """``threads`` threads sharing one Model, each call with its own sample (the rows of ``x`` in turn), get that
    sample's sequential answer bit for bit and no errors. The interpreter switches threads every microsecond
    meanwhile and each caller reads its answer only after yielding, so calls really interleave: a Model that kept
    one call's state (an input, an output buffer) where another call could reach it would hand some caller
    another's outputs."""
    model = medinfer.load(path)
    items = [x[i:i + 1] for i in range(len(x))] if len(x) > 1 else [x]
    refs = [{k: v.tobytes() for k, v in model.predict(item).outputs.items()} for item in items]  # bytes, not views
    counter = itertools.count()

    def call() -> bool:
        i = next(counter) % len(items)
        got = model.predict(items[i]).outputs
        time.sleep(0)  # the caller reads its answer a moment later, as real callers do: other calls run meanwhile
        return all(got[k].tobytes() == refs[i][k] for k in refs[i])

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        results, errors = hammer(call, threads=threads, calls=calls * threads)
    finally:
        sys.setswitchinterval(interval)
    assert not errors and all(results) and len(results) == calls * threads, (errors[:3], results.count(False))


def hammer(fn, *, threads: int, calls: int, seconds: float | None = None) -> tuple[list, list[BaseException]]:
    """Call ``fn`` from ``threads`` threads, ``calls`` times in all (or until ``seconds`` pass); returns the
    results and the exceptions raised (a bounded load generator for concurrency and load tests)."""

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


def dciodvfy_path() -> str | None:
    """dciodvfy on PATH, or where scripts/dicom3tools.py (run by make test) unpacked Debian's package."""
    import shutil

    unpacked = Path(__file__).resolve().parents[2] / "build" / "dicom3tools" / "root" / "usr" / "bin" / "dciodvfy"
    found = shutil.which("dciodvfy")
    return found if found is not None else (str(unpacked) if unpacked.is_file() else None)


def dciodvfy(path: Path) -> tuple[list[str], list[str]]:
    """Debian's dciodvfy's error and warning lines for one DICOM file ([], [] when dciodvfy is not installed)."""
    import subprocess

    exe = dciodvfy_path()
    if exe is None:
        return [], []
    proc = subprocess.run([exe, str(path)], capture_output=True, text=True, check=False)
    lines = (proc.stdout + proc.stderr).splitlines()
    return [x for x in lines if x.startswith("Error")], [x for x in lines if x.startswith("Warning")]
