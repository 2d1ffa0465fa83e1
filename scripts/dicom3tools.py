"""Debian's dicom3tools (``dciodvfy``, the DICOM standard's own validator) for the tests, without root.

    python scripts/dicom3tools.py          # prints the folder holding dciodvfy (make test puts it on PATH)

The package is downloaded with ``apt-get download`` (the machine's package lists, else a private apt under
``build/dicom3tools/apt`` with its own lists, like scripts/edge_env.py does for the arm libraries) and unpacked with
``dpkg-deb -x`` into ``build/dicom3tools/root``; it needs only libc and libstdc++, which every Debian has. A
``dciodvfy`` already on PATH is used as it is.

A machine that cannot (not Debian, no apt) is an error, unless ``MEDINFER_SKIP_DCIODVFY=1`` says so explicitly: then
this prints why and exits 0, and tests/tools/test_dicom_out.py skips its dciodvfy test with that reason.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import edge_env  # noqa: E402

ROOT = edge_env.ROOT
FOLDER = ROOT / "build" / "dicom3tools"
BIN = FOLDER / "root" / "usr" / "bin"
PACKAGE = "dicom3tools"
SKIP_ENV = "MEDINFER_SKIP_DCIODVFY"


def unable() -> str | None:
    """Why dicom3tools cannot be unpacked here (None: it can)."""
    if platform.system() != "Linux" or not Path("/etc/debian_version").exists():
        return "not a Debian system (no /etc/debian_version): dicom3tools comes from Debian's package"
    missing = [t for t in ("apt-get", "dpkg-deb", "dpkg") if shutil.which(t) is None]
    if missing:
        return f"{', '.join(missing)} not found"
    return None


def _codename() -> str:
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("VERSION_CODENAME="):
            return line.split("=", 1)[1].strip().strip('"')
    raise LookupError("no VERSION_CODENAME in /etc/os-release")


def _download(dest: Path) -> Path:
    """The .deb, from the machine's package lists or else a private apt with fresh lists."""
    dest.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["apt-get", "-qq", "download", PACKAGE], cwd=dest, capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        edge_env.log(f"apt-get download {PACKAGE} with the machine's lists failed ({proc.stderr.strip()[:200]}); "
                     "trying a private apt with fresh lists")
        archive, _ = edge_env.debian_sources()
        arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                              check=True).stdout.strip()
        apt = edge_env.PrivateApt(FOLDER / "apt", arch, [(archive, _codename())])
        apt.update()
        apt.download([PACKAGE], dest)
    debs = sorted(dest.glob(f"{PACKAGE}_*.deb"))
    if not debs:
        raise FileNotFoundError(f"apt-get download {PACKAGE} gave no .deb in {dest}")
    return debs[-1]


def install() -> Path:
    """The folder holding a working ``dciodvfy`` (unpacked once, then reused)."""
    found = shutil.which("dciodvfy")
    if found:
        return Path(found).parent
    if not (BIN / "dciodvfy").is_file():
        shutil.rmtree(FOLDER / "root", ignore_errors=True)
        (FOLDER / "root").mkdir(parents=True)
        with tempfile.TemporaryDirectory() as tmp:
            deb = _download(Path(tmp))
            subprocess.run(["dpkg-deb", "-x", str(deb), str(FOLDER / "root")], check=True)
        edge_env.log(f"{deb.name} unpacked into {FOLDER / 'root'}")
    proc = subprocess.run([str(BIN / "dciodvfy"), "-"], capture_output=True, text=True, check=False,
                          stdin=subprocess.DEVNULL, timeout=60)
    if proc.returncode >= 126 or "error while loading shared libraries" in proc.stderr:
        raise RuntimeError(f"{BIN / 'dciodvfy'} does not run here: {(proc.stdout + proc.stderr)[:300]}")
    return BIN


def main() -> int:
    why = unable()
    if why is not None:
        if os.environ.get(SKIP_ENV):
            print(f"dicom3tools not installed ({SKIP_ENV}=1): {why}", file=sys.stderr)
            return 0
        print(f"dicom3tools cannot be installed: {why}. Install dciodvfy on PATH, or set {SKIP_ENV}=1 to skip its "
              "test explicitly", file=sys.stderr)
        return 1
    print(install())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
