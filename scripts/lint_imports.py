"""Check the import contracts of pyproject.toml ([tool.importlinter]) with import-linter.

The distribution maps three folders into one namespace (runtime/ -> medinfer, train/ -> medinfer.train,
export/ -> medinfer.export), which import-linter cannot see in the source tree. This lays the package out as it
is installed (symlinks in a temporary folder), then runs ``lint-imports`` there. Exit status: lint-imports'.

    python scripts/lint_imports.py
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYOUT = {"medinfer": "runtime", "medinfer/train": "train", "medinfer/export": "export", "benchmarks": "benchmarks"}


def link_tree(source: Path, target: Path) -> None:
    """Mirror ``source``'s .py files under ``target`` (folders created, files symlinked)."""
    for path in source.rglob("*.py"):
        if "__pycache__" in path.parts:
            continue
        dest = target / path.relative_to(source)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not dest.exists():
            dest.symlink_to(path)


def main(argv: list[str] | None = None) -> int:
    """``--root DIR``: check another checkout (the layout tests use a modified copy)."""
    args = list(sys.argv[1:] if argv is None else argv)
    root = Path(args[args.index("--root") + 1]).resolve() if "--root" in args else ROOT
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    if exe is None:
        print("lint-imports is not installed: pip install 'medinfer[dev]'", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="medinfer-layout-") as tmp:
        for package, folder in LAYOUT.items():
            link_tree(root / folder, Path(tmp) / package)
        shutil.copy(root / "pyproject.toml", Path(tmp) / "pyproject.toml")
        env = {**os.environ, "PYTHONPATH": tmp}
        return subprocess.run([exe, "pyproject.toml", "--no-cache"], cwd=tmp, env=env,
                              check=False).returncode


if __name__ == "__main__":
    raise SystemExit(main())
