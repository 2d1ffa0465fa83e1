"""Run Debian's dciodvfy (dicom3tools) on DICOM files and fail on any error; warnings are listed, not fatal.

    python scripts/check_dicom_out.py DIR_OR_FILE ...      (make check-dicom-out)

A folder that does not exist is reported and skipped (the demo's outputs exist only after ``make demo``). Exit
status: 0 when every file passed with zero errors, 1 when one did not, 2 when dciodvfy is missing or no file
was checked at all.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path


def verify(exe: str, path: Path) -> tuple[list[str], list[str]]:
    """dciodvfy's (errors, warnings) for one file."""
    proc = subprocess.run([exe, str(path)], capture_output=True, text=True, check=False, timeout=120)
    lines = (proc.stdout + proc.stderr).splitlines()
    return [x for x in lines if x.startswith("Error")], [x for x in lines if x.startswith("Warning")]


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    exe = shutil.which("dciodvfy")
    if exe is None:
        print("dciodvfy is not installed: python scripts/dicom3tools.py unpacks it (make check-dicom-out does)",
              file=sys.stderr)
        return 2
    files: list[Path] = []
    for arg in args:
        path = Path(arg)
        if path.is_dir():
            files += sorted(path.rglob("*.dcm"))
        elif path.is_file():
            files.append(path)
        else:
            print(f"skip  {arg}: no such file or folder")
    failed = 0
    for path in files:
        errors, warnings = verify(exe, path)
        failed += bool(errors)
        print(f"{'FAIL' if errors else 'OK  '}  {path}: {len(errors)} errors, {len(warnings)} warnings")
        for line in errors + warnings:
            print(f"      {line}")
    if not files:
        print("no DICOM file was checked", file=sys.stderr)
        return 2
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
