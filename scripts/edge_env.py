"""The environments of ``scripts/edge_check.py``, built with apt and pip only and cached under ``build/``.

aarch64 (``build/arm/``), without root, a chroot or binfmt_misc:
- qemu-user from Debian (default ``bookworm-backports``: 10.0; ``bookworm``'s 7.2 crashes onnxruntime >= 1.28,
  see README "Runs on"), downloaded with ``apt-get download`` and unpacked with ``dpkg-deb -x`` (a static binary);
- Debian bookworm's arm64 ``python3.11`` and the libraries it needs (the ``Depends`` closure), unpacked the same way
  into ``build/arm/root``;
- aarch64 wheels (``pip download --only-binary=:all: --platform manylinux_2_28_aarch64 --python-version 3.11``, and
  every other manylinux tag glibc 2.36 runs)
  installed with ``pip install --target`` into one folder per onnxruntime version, with ``bin/python3.11`` and
  ``bin/medinfer`` wrappers that run under qemu (so ``sys.executable`` works for tests that start subprocesses).
apt runs with its own sources list, state and cache under ``build/arm/apt`` (the machine's apt configuration,
package lists and architectures stay untouched); the archive address and keyring are read from the machine's own
Debian sources.

Oldest versions (``build/min-venv``): a venv on this machine with every base dependency of pyproject.toml and the
[cpu] extra's onnxruntime pinned to its lower bound (``numpy>=1.26`` -> ``numpy==1.26``), plus the test tools.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARM = ROOT / "build" / "arm"
MIN_VENV = ROOT / "build" / "min-venv"
ARM_SUITE = "bookworm"
ARM_PYTHON = "3.11"
# Debian bookworm's glibc is 2.36: every manylinux tag up to it runs (onnxruntime's aarch64 wheels are
# manylinux_2_28, older numpy ones manylinux2014 only).
WHEEL_PLATFORMS = [f"manylinux_2_{minor}_aarch64" for minor in range(36, 16, -1)] + ["manylinux2014_aarch64"]
QEMU = {  # name -> (suite, package, binary inside the package)
    "backports": ("bookworm-backports", "qemu-user", "usr/bin/qemu-aarch64"),
    "bookworm": ("bookworm", "qemu-user-static", "usr/bin/qemu-aarch64-static"),
}
# The Depends closure of these, less what a Python process never runs (dpkg, perl, tar, mime tables).
ROOT_PACKAGES = ("python3.11", "libstdc++6")
NOT_NEEDED = {"dpkg", "perl", "perl-base", "perl-modules-5.36", "libperl5.36", "tar", "install-info", "mailcap",
              "mime-support", "media-types", "libgdbm-compat4"}
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
APT_SOURCES = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))
TEST_TOOLS = ("pytest", "hypothesis", "onnx")


def log(message: str) -> None:
    print(f"[edge] {message}", file=sys.stderr, flush=True)


def run(cmd: Sequence[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(list(map(str, cmd)), check=True, **kwargs)


def quiet(cmd: Sequence[str]) -> None:
    """Run ``cmd``; show its output only if it fails (building this checkout's wheel chatters on stderr)."""
    proc = subprocess.run(list(map(str, cmd)), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise subprocess.CalledProcessError(proc.returncode, cmd)


# -- can this machine do it? --------------------------------------------------------------------------------------
def arm_unable() -> str | None:
    """Why the emulated aarch64 run cannot happen here (None: it can)."""
    machine = platform.machine().lower()
    if platform.system() != "Linux":
        return f"needs Linux (qemu-user), this is {platform.system()}"
    if machine in ("aarch64", "arm64"):
        return "this machine is aarch64 itself: make test-device runs the device tests natively"
    if machine not in ("x86_64", "amd64"):
        return f"needs an x86-64 host for Debian's amd64 qemu-user, this is {machine}"
    if not Path("/etc/debian_version").exists():
        return "not a Debian system (no /etc/debian_version): the aarch64 Python comes from Debian's arm64 packages"
    missing = [t for t in ("apt-get", "apt-cache", "dpkg-deb") if shutil.which(t) is None]
    if missing:
        return f"{', '.join(missing)} not found: the emulated environment is built with apt"
    if not KEYRING.exists():
        return f"{KEYRING} is missing (package debian-archive-keyring): apt cannot check the arm64 packages"
    try:
        debian_sources()
    except LookupError as exc:
        return str(exc)
    return None


def debian_sources() -> tuple[str, str]:
    """The Debian archive and security archive addresses this machine's apt uses (deb822 or one-line sources)."""
    found: list[tuple[str, str]] = []  # (uri, suite)
    one_line, folder = APT_SOURCES
    for path in sorted(folder.glob("*.sources")) if folder.is_dir() else []:
        for stanza in path.read_text(errors="replace").split("\n\n"):
            fields = dict(re.findall(r"^([A-Za-z-]+):\s*(.*)$", stanza, re.M))
            if "deb" in fields.get("Types", "").split() and fields.get("Enabled", "yes") != "no":
                found += [(u, s) for u in fields.get("URIs", "").split() for s in fields.get("Suites", "").split()]
    for path in [one_line, *(sorted(folder.glob("*.list")) if folder.is_dir() else [])]:
        if path.is_file():
            for line in path.read_text(errors="replace").splitlines():
                m = re.match(r"^\s*deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+(\S+)", line)
                if m:
                    found.append((m.group(1), m.group(2)))
    archive = next((u for u, s in found if re.fullmatch(r"[a-z]+(-updates)?", s) and "security" not in u), None)
    security = next((u for u, s in found if s.endswith("-security")), None)
    if archive is None:
        raise LookupError("no Debian archive in this machine's apt sources (/etc/apt/sources.list*)")
    return archive.rstrip("/"), (security or archive.replace("/debian", "/debian-security")).rstrip("/")


# -- a private apt: own sources, lists and cache; the machine's apt configuration files still apply ---------------
class PrivateApt:
    def __init__(self, folder: Path, arch: str, suites: Sequence[tuple[str, str]]) -> None:
        self.folder = folder
        self.arch = arch
        for sub in ("lists/partial", "cache/archives/partial", "parts"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        (folder / "status").touch()
        (folder / "sources.list").write_text("".join(
            f"deb [arch={arch} signed-by={KEYRING}] {uri} {suite} main\n" for uri, suite in suites))

    def args(self) -> list[str]:
        f = self.folder
        opts = {"Dir::Etc::SourceList": f / "sources.list", "Dir::Etc::SourceParts": f / "parts",
                "Dir::State::Lists": f / "lists", "Dir::State::status": f / "status", "Dir::Cache": f / "cache",
                "APT::Architecture": self.arch, "APT::Architectures::": self.arch, "Debug::NoLocking": "1",
                "APT::Sandbox::User": "root" if os.geteuid() == 0 else os.environ.get("USER", "nobody")}
        return [a for k, v in opts.items() for a in ("-o", f"{k}={v}")]

    def update(self) -> None:
        run(["apt-get", *self.args(), "-qq", "update"])

    def closure(self, packages: Sequence[str], exclude: set[str]) -> list[str]:
        out = subprocess.run(["apt-cache", *self.args(), "depends", "--recurse", "--no-recommends", "--no-suggests",
                              "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances", *packages],
                             check=True, capture_output=True, text=True).stdout
        names = {line.strip() for line in out.splitlines() if line and not line.startswith((" ", "<"))}
        return sorted(n.split(":")[0] for n in names - exclude if n.split(":")[0] not in exclude)

    def download(self, packages: Sequence[str], dest: Path) -> list[Path]:
        dest.mkdir(parents=True, exist_ok=True)
        run(["apt-get", *self.args(), "-qq", "download", *packages], cwd=dest, stdout=subprocess.DEVNULL)
        return sorted(dest.glob("*.deb"))


def _done(folder: Path, recipe: dict) -> dict | None:
    stamp = folder / ".recipe.json"
    if stamp.exists():
        saved = json.loads(stamp.read_text())
        if saved.get("recipe") == recipe:
            return saved
    return None


def _stamp(folder: Path, recipe: dict, **facts) -> dict:
    saved = {"recipe": recipe, **facts}
    (folder / ".recipe.json").write_text(json.dumps(saved, indent=1) + "\n")
    return saved


def qemu(kind: str = "backports") -> tuple[Path, str]:
    """The qemu-user binary (static) and its version line, from Debian's package of ``kind``."""
    suite, package, binary = QEMU[kind]
    folder = ARM / f"qemu-{kind}"
    recipe = {"suite": suite, "package": package}
    saved = _done(folder, recipe)
    if saved is None:
        shutil.rmtree(folder, ignore_errors=True)
        archive, _ = debian_sources()
        apt = PrivateApt(ARM / "apt" / f"amd64-{suite}", "amd64", [(archive, suite)])
        apt.update()
        (folder / "tree").mkdir(parents=True)
        for deb in apt.download([package], folder / "debs"):  # only the aarch64 binary (the package has ~30)
            tar = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
            run(["tar", "-x", "-C", folder / "tree", f"./{binary}"], stdin=tar.stdout)
            if tar.wait() != 0:
                raise subprocess.CalledProcessError(tar.returncode, ["dpkg-deb", "--fsys-tarfile", str(deb)])
        version = subprocess.run([folder / "tree" / binary, "--version"], capture_output=True, text=True,
                                 check=True).stdout.splitlines()[0]
        saved = _stamp(folder, recipe, version=version)
        shutil.rmtree(folder / "debs")
        log(f"{package} from {suite}: {version}")
    return folder / "tree" / binary, saved["version"]


def arm_root() -> Path:
    """Debian's arm64 python3.11 and its libraries, unpacked (``build/arm/root``)."""
    folder = ARM / "root"
    recipe = {"suite": ARM_SUITE, "packages": list(ROOT_PACKAGES), "not_needed": sorted(NOT_NEEDED)}
    if _done(folder, recipe) is None:
        shutil.rmtree(folder, ignore_errors=True)
        archive, security = debian_sources()
        apt = PrivateApt(ARM / "apt" / f"arm64-{ARM_SUITE}", "arm64",
                         [(archive, ARM_SUITE), (archive, f"{ARM_SUITE}-updates"), (security, f"{ARM_SUITE}-security")])
        apt.update()
        packages = apt.closure(ROOT_PACKAGES, NOT_NEEDED)
        debs = apt.download(packages, ARM / "debs")
        for deb in debs:
            run(["dpkg-deb", "-x", deb, folder])
        _stamp(folder, recipe, debs=[d.name for d in debs])
        shutil.rmtree(ARM / "debs")
        log(f"arm64 python{ARM_PYTHON} and {len(debs) - 1} packages it needs unpacked into {folder}")
    return folder


def host_version(name: str) -> str:
    return metadata.version(name)


def release(version: str) -> tuple[int, ...]:
    """``"1.26"`` -> ``(1, 26, 0)``: numeric releases compare equal however many zeros they spell."""
    parts = [int(p) for p in re.findall(r"\d+", version)[:3]]
    return tuple(parts + [0] * (3 - len(parts)))


class ArmEnv:
    """One aarch64 site (the wheels for one onnxruntime version) with its qemu wrappers in ``bin/``."""

    def __init__(self, onnxruntime: str, qemu_kind: str = "backports") -> None:
        self.onnxruntime = onnxruntime
        old = tuple(int(p) for p in onnxruntime.split(".")[:2]) < (1, 19)
        self.numpy = "1.26.4" if old else host_version("numpy")  # onnxruntime < 1.19 was built against numpy 1
        # The two under test are pinned; the test tools are whatever resolves beside them for aarch64.
        self.wants = [f"onnxruntime=={onnxruntime}", f"numpy=={self.numpy}", *TEST_TOOLS]
        self.folder = ARM / f"env-ort{onnxruntime}-{qemu_kind}"
        self.qemu_kind = qemu_kind
        self.python = self.folder / "bin" / f"python{ARM_PYTHON}"
        self.medinfer = self.folder / "bin" / "medinfer"

    def _pip_platform(self) -> list[str]:
        return ["--only-binary=:all:", *(a for tag in WHEEL_PLATFORMS for a in ("--platform", tag)),
                "--python-version", ARM_PYTHON,
                "--implementation", "cp", "--abi", f"cp{ARM_PYTHON.replace('.', '')}"]

    def build(self) -> ArmEnv:
        binary, self.qemu_version = qemu(self.qemu_kind)
        root = arm_root()
        recipe = {"wants": self.wants, "platforms": WHEEL_PLATFORMS[0] + "..manylinux2014", "qemu": str(binary),
                  "root": str(root)}
        if _done(self.folder, recipe) is None:
            shutil.rmtree(self.folder, ignore_errors=True)
            wheels = ARM / "wheels"
            pip = [sys.executable, "-m", "pip", "--quiet", "--disable-pip-version-check"]
            run([*pip, "download", *self._pip_platform(), "-d", wheels, *self.wants])
            run([*pip, "install", "--no-warn-conflicts", *self._pip_platform(), "--no-index", "--find-links", wheels,
                 "--target", self.folder / "site", *self.wants])
            self._wrappers(binary, root)
            _stamp(self.folder, recipe)
            log(f"aarch64 site for onnxruntime {self.onnxruntime} ready in {self.folder}")
        return self

    def _wrappers(self, binary: Path, root: Path) -> None:
        bin_dir = self.folder / "bin"
        bin_dir.mkdir(parents=True, exist_ok=True)
        q = shlex.quote
        sites = f"{q(str(self.folder / 'medinfer-site'))}:{q(str(self.folder / 'site'))}"
        self.python.write_text(
            "#!/bin/sh\n# aarch64 Python under qemu-user (scripts/edge_env.py): argv[0] stays this file, so\n"
            "# sys.executable starts the same emulated Python for subprocesses.\n"
            f'PYTHONPATH={sites}"${{PYTHONPATH:+:$PYTHONPATH}}"\nexport PYTHONPATH\n'
            f"exec {q(str(binary))} -0 {q(str(self.python))} -L {q(str(root))} "
            f'{q(str(root / "usr" / "bin" / f"python{ARM_PYTHON}"))} "$@"\n')
        self.medinfer.write_text(f'#!/bin/sh\nexec {q(str(self.python))} -m medinfer "$@"\n')
        for path in (self.python, self.medinfer):
            path.chmod(0o755)

    def install_medinfer(self) -> None:
        """This checkout's medinfer (pure Python, no dependencies) into its own folder, fresh each run."""
        target = self.folder / "medinfer-site"
        shutil.rmtree(target, ignore_errors=True)
        quiet([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
               "--target", target, ROOT])
        shutil.rmtree(target / "bin", ignore_errors=True)  # its console script would start the host's Python


# -- the oldest versions pyproject.toml claims ---------------------------------------------------------------------
def min_unable() -> str | None:
    """Why the oldest-versions venv cannot be made here (None: it can)."""
    try:
        import ensurepip  # noqa: F401
        import venv  # noqa: F401
    except ImportError as exc:
        return f"this Python cannot make a venv ({exc}); on Debian: apt-get install python3-venv"
    return None


def lower_bounds() -> list[str]:
    """``name==floor`` for every base dependency of pyproject.toml and the [cpu] extra's onnxruntime (``numpy>=1.26``
    -> ``numpy==1.26``): the device install ``pip install 'medinfer[cpu]'`` at its oldest."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = [*project["dependencies"], *project["optional-dependencies"]["cpu"]]
    pins = []
    for dep in deps:
        m = re.fullmatch(r"\s*([A-Za-z0-9_.-]+)\s*>=\s*([0-9][0-9.]*)\s*", dep)
        if not m:
            raise SystemExit(f"pyproject.toml dependency {dep!r} has no plain '>=' lower bound to test")
        pins.append(f"{m.group(1)}=={m.group(2)}")
    return pins


def min_venv() -> Path:
    """``build/min-venv`` with the lower bounds (+ the test tools, whatever resolves beside them); its python."""
    python = MIN_VENV / "bin" / "python"
    recipe = {"pins": lower_bounds(), "tools": list(TEST_TOOLS), "python": platform.python_version()}
    if _done(MIN_VENV, recipe) is None:
        shutil.rmtree(MIN_VENV, ignore_errors=True)
        run([sys.executable, "-m", "venv", MIN_VENV])
        run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *recipe["pins"],
             *TEST_TOOLS])
        _stamp(MIN_VENV, recipe)
        log(f"{MIN_VENV} with {', '.join(recipe['pins'])}")
    quiet([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps", "--force-reinstall",
           ROOT])
    return python
