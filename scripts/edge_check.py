"""Edge evidence: the device tests and the bundles on aarch64 (emulated) and on the oldest claimed versions.

    python scripts/edge_check.py arm  [--onnxruntime V] [--qemu backports|bookworm] [--tests full|runtime|core|none]
    python scripts/edge_check.py min  [--tests full|runtime|core|none]
    python scripts/edge_check.py table [--write-readme]
    python scripts/edge_check.py publish

``arm`` (make test-arm) builds the emulated aarch64 environment (scripts/edge_env.py, cached under build/arm),
installs this checkout's medinfer into it, and runs (a) the device-only tests, (b) ``medinfer verify`` of the test
bundles (and of ./bundles/* when that folder exists), and (c) every output of every bundle variant compared with
the x86-64 result, written first by this machine's own environment (scripts/edge_compare.py), within each
manifest's tolerance. ``min`` (make test-min) does the same on x86-64 in build/min-venv, which holds the lower
bounds of pyproject.toml's dependencies. Each run writes its row (raw data, the command, and the commit, clean
flag and date captured when it started) to build/edge/; with ``--record`` (make runs-on; refused on a tree with
uncommitted changes) it keeps that row for ``publish``, which puts the kept rows into
benchmarks/results/runs_on.json (scripts/runs_on.py), from which ``table`` renders README's "Runs on" table.
``--if-able`` turns "this machine cannot" into one printed line and exit 0 (make test), never into silence.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import edge_env  # noqa: E402
import runs_on  # noqa: E402

from benchmarks import provenance  # noqa: E402

ROOT = edge_env.ROOT
EDGE = ROOT / "build" / "edge"
RESULTS = ROOT / "benchmarks" / "results" / "runs_on.json"
README = ROOT / "README.md"
DEVICE_MARKERS = "not train and not triton and not scale"  # make test-device's selection
TIMING = "not timing"  # wall-clock bounds measured natively: not asserted under emulation (correctness, not speed)
TESTS = {"full": ["tests/runtime", "tests/tools", "tests/cli", "tests/fleet"],
         "runtime": ["tests/runtime", "tests/tools", "tests/cli"], "core": ["tests/runtime"], "none": []}
SUMMARY = re.compile(r"(\d+) (passed|failed|skipped|deselected|errors?|xfailed|xpassed)\b")
START, END = "<!-- runs-on:start (python scripts/edge_check.py table --write-readme) -->", "<!-- runs-on:end -->"


def prepare_bundles(extra: Path | None = None) -> tuple[list[Path], str, Path, dict[str, Any]]:
    """The tiny test bundles (built fresh by this environment) plus ./bundles/* (or ``extra``/*), and the x86-64
    reference file."""
    sys.path.insert(0, str(ROOT))
    import edge_compare

    folder = EDGE / "bundles"
    if folder.exists():
        import shutil

        shutil.rmtree(folder)
    # the tiny test bundles come from the test helpers, in a process of their own: scripts do not import tests
    made = subprocess.run([sys.executable, "-m", "tests.helpers.tiny", str(folder)], cwd=ROOT, capture_output=True,
                          text=True, check=True)
    built = [Path(line) for line in made.stdout.splitlines() if line.strip()]
    real = sorted(p for p in (extra or ROOT / "bundles").glob("*") if (p / "manifest.json").is_file())
    kind = "real" if extra is None else f"from {_shown(extra)}"
    label = f"{len(built)} test" + (f" + {len(real)} {kind}" if real else "")
    ref = EDGE / "reference.npz"
    meta = edge_compare.reference(built + real, ref)
    edge_env.log(f"x86-64 reference: {len(meta['runs'])} bundle variants, onnxruntime {meta['onnxruntime']} -> {ref}")
    return built + real, label, ref, meta


def _shown(path: Path) -> Path:
    path = path.resolve()
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def run_logged(cmd: list[str], log_path: Path, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run ``cmd`` from the repository root, echoing its output and keeping it in ``log_path``."""
    import os

    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen(list(map(str, cmd)), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
        lines = []
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            log.write(line)
            lines.append(line)
        return proc.wait(), "".join(lines)


def pytest_counts(output: str) -> dict[str, int]:
    """``{"passed": 120, "skipped": 7, ...}`` from pytest's closing line."""
    last = next((ln for ln in reversed(output.strip().splitlines()) if SUMMARY.search(ln)), "")
    counts = {kind.rstrip("s") if kind.startswith("error") else kind: int(n) for n, kind in SUMMARY.findall(last)}
    return {k: counts.get(k, 0) for k in ("passed", "failed", "error", "skipped", "deselected")}


def run_checks(name: str, python: Path, medinfer: Path, markers: str, tests: str,
               extra: Path | None = None) -> tuple[dict, dict, list[str]]:
    """The device tests, ``medinfer verify`` and the comparison with x86-64, in the environment of ``python``."""
    failures: list[str] = []
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    probe = subprocess.run([python, "-c", "import json, platform, numpy, onnxruntime; print(json.dumps({"
                            "'machine': platform.machine(), 'python': platform.python_version(), "
                            "'numpy': numpy.__version__, 'onnxruntime': onnxruntime.__version__}))"],
                           capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        signal = -probe.returncode if probe.returncode < 0 else probe.returncode - 128
        why = "crashed: SIGSEGV" if signal == 11 else f"exit status {probe.returncode}"
        print(probe.stderr[-2000:], file=sys.stderr)
        bare = subprocess.run([python, "-c", "import platform; print(platform.python_version())"],
                              capture_output=True, text=True, check=False).stdout.strip()
        return {"facts": None, "python": bare, "tests": None, "bundles": None}, timings, [f"import onnxruntime {why}"]
    facts = json.loads(probe.stdout.strip().splitlines()[-1])
    timings["import_s"] = time.perf_counter() - t0

    record: dict[str, Any] = {"facts": facts, "tests": None}
    if TESTS[tests]:
        t0 = time.perf_counter()
        cmd = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--durations=10", "-m", markers, *TESTS[tests]]
        rc, out = run_logged(cmd, EDGE / f"{name}-pytest.log", {"MEDINFER_DEVICE_ONLY": "1"})
        counts = pytest_counts(out)
        record["tests"] = {"selection": f"-m '{markers}' {' '.join(TESTS[tests])}", **counts}
        if rc != 0 or counts["failed"] or counts["error"] or not counts["passed"]:
            failures.append(f"device tests: {counts['failed']} failed, {counts['error']} errors (exit {rc})")
        timings["tests_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    bundles, label, ref, meta = prepare_bundles(extra)
    verify = subprocess.run([medinfer, "verify", "--json", *bundles], cwd=ROOT, capture_output=True, text=True,
                            check=False)
    sys.stderr.write(verify.stderr)
    try:
        verified = json.loads(verify.stdout)
        verified = verified if isinstance(verified, list) else [verified]
        print("\n".join(f"medinfer verify {Path(v['bundle']).name}: "
                        + (f"OK, self-test {v['self_test']}" if v["ok"] else f"{v['error']}: {v['message']}")
                        for v in verified))
    except json.JSONDecodeError:
        print(verify.stdout)
        verified = []
    if verify.returncode != 0 or not verified:
        failures.append(f"medinfer verify exit {verify.returncode}")
    compare_json = EDGE / f"{name}-compare.json"
    compare_json.unlink(missing_ok=True)
    rc, _ = run_logged([python, ROOT / "scripts" / "edge_compare.py", "compare", "--reference", ref,
                        "--json", compare_json, *bundles], EDGE / f"{name}-compare.log")
    compared = json.loads(compare_json.read_text())["results"] if compare_json.exists() else []
    if rc != 0 or not compared:
        failures.append("outputs differ from x86-64 beyond the manifest tolerance" if compared else
                        f"the comparison did not run (exit {rc})")
    timings["bundles_s"] = time.perf_counter() - t0
    record["bundles"] = {
        "set": label,
        "verify": {Path(v["bundle"]).name: v.get("self_test") or v.get("error") for v in verified},
        "runs": [{k: r.get(k) for k in ("run", "ok", "bit_exact", "max_abs_diff", "outputs_compared")}
                 for r in compared],
        "reference": {"arch": meta["machine"], "onnxruntime": meta["onnxruntime"], "numpy": meta["numpy"]},
    }
    record["reference_row"] = {
        "key": f"reference|{meta['machine']}|{meta['onnxruntime']}|{label}", "check": "reference",
        "arch": meta["machine"], "how": "native: the environment that writes the reference",
        "python": platform.python_version(), "numpy": meta["numpy"], "onnxruntime": meta["onnxruntime"],
        "tests": None, "bundles": {"set": label, "runs": [{"run": k} for k in meta["runs"]]},
        "result": "pass", "command": "make test (its pytest run); the reference half of any edge_check.py run"}
    return record, timings, failures


STARTED: dict[str, Any] = {}  # this run's provenance, captured in main() before anything runs


def finish(name: str, row: dict[str, Any], record: dict[str, Any], timings: dict[str, float], failures: list[str],
           keep: bool) -> int:
    """Print the outcome; write the row to build/edge, and with ``keep`` (--record) keep it for ``publish``."""
    row["result"] = "pass" if not failures else "fail: " + "; ".join(failures)
    row["provenance"] = STARTED
    (EDGE / f"{name}-row.json").write_text(json.dumps(row, indent=1) + "\n")
    (EDGE / f"{name}-timings.json").write_text(json.dumps(timings, indent=1) + "\n")
    if keep:
        runs_on.keep(row)
        if record.get("reference_row"):
            runs_on.keep({**record["reference_row"], "provenance": STARTED})
    spent = ", ".join(f"{k[:-2]} {v:.0f} s" for k, v in timings.items())
    where = (f"kept in {runs_on.RECORDED.relative_to(ROOT)} for `python scripts/edge_check.py publish`" if keep
             else f"{EDGE.relative_to(ROOT)}/{name}-row.json")
    print(f"\nmake test-{name}: {'PASS' if not failures else row['result']} ({spent}); {where}")
    return 0 if not failures else 1


def cmd_arm(args: argparse.Namespace) -> int:
    reason = edge_env.arm_unable()
    if reason:
        print(f"make test-arm: SKIPPED — {reason}")
        return 0 if args.if_able else 3
    t0 = time.perf_counter()
    ort = args.onnxruntime or edge_env.host_version("onnxruntime")
    try:
        env = edge_env.ArmEnv(ort, args.qemu).build()
        env.install_medinfer()
    except subprocess.CalledProcessError as exc:
        return _setup_failed("arm", exc)
    timings = {"setup_s": time.perf_counter() - t0}
    record, more, failures = run_checks("arm", env.python, env.medinfer, f"{DEVICE_MARKERS} and {TIMING}", args.tests,
                                        args.bundles)
    qemu_line = env.qemu_version.replace("qemu-aarch64 version ", "qemu-user ")
    facts = record["facts"] or {"machine": "aarch64", "python": record.get("python") or edge_env.ARM_PYTHON,
                                "numpy": env.numpy, "onnxruntime": ort}
    bundles = record["bundles"]
    row = {"key": f"arm|{qemu_line.split(' (')[0]}|{facts['onnxruntime']}|{bundles['set'] if bundles else '-'}",
           "check": "arm", "arch": facts["machine"], "how": f"emulated: {qemu_line}", **_versions(facts),
           "tests": record["tests"], "bundles": bundles,
           "command": f"python scripts/edge_check.py arm --onnxruntime {ort} --qemu {args.qemu} --tests {args.tests}"
                      + (f" --bundles {args.bundles}" if args.bundles else "")}
    return finish("arm", row, record, {**timings, **more}, failures, args.record)


def cmd_min(args: argparse.Namespace) -> int:
    reason = edge_env.min_unable()
    if reason:
        print(f"make test-min: SKIPPED — {reason}")
        return 0 if args.if_able else 3
    t0 = time.perf_counter()
    try:
        python = edge_env.min_venv()
    except subprocess.CalledProcessError as exc:
        return _setup_failed("min", exc)
    timings = {"setup_s": time.perf_counter() - t0}
    record, more, failures = run_checks("min", python, python.parent / "medinfer", DEVICE_MARKERS, args.tests,
                                        args.bundles)
    facts = record["facts"]
    row = {"key": f"min|{facts['machine']}|{facts['onnxruntime']}|{record['bundles']['set']}", "check": "min",
           "arch": facts["machine"], "how": "native, oldest claimed: " + ", ".join(edge_env.lower_bounds()),
           **_versions(facts), "tests": record["tests"], "bundles": record["bundles"],
           "command": f"python scripts/edge_check.py min --tests {args.tests}"
                      + (f" --bundles {args.bundles}" if args.bundles else "")}
    return finish("min", row, record, {**timings, **more}, failures, args.record)


def _setup_failed(name: str, exc: subprocess.CalledProcessError) -> int:
    cmd = " ".join(map(str, exc.cmd)) if isinstance(exc.cmd, (list, tuple)) else str(exc.cmd)
    print(f"make test-{name}: FAILED to set up its environment: `{cmd}` exited {exc.returncode} (its output is "
          "above; the package registries must be reachable for the first run, later runs use build/)")
    return 1


def _versions(facts: dict[str, str]) -> dict[str, str]:
    return {"python": facts["python"], "numpy": facts["numpy"], "onnxruntime": facts["onnxruntime"]}


# -- README's table ---------------------------------------------------------------------------------------------
def render_table(doc: dict[str, Any]) -> str:
    """The "Runs on" table of README.md, from benchmarks/results/runs_on.json."""
    lines = ["| architecture | run as | python | numpy | onnxruntime | device tests | bundles (test, real, from a "
             "folder): every output vs x86-64 | result | commit | date |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(doc["rows"], key=_order):
        tests_cell = _tests_cell(r)
        b = r.get("bundles")
        if r["check"] == "reference":
            bundles_cell = f"{b['set']}; {len(b['runs'])} graphs: writes the reference (golden self-test passed)"
        elif b:
            worst = max((x["max_abs_diff"] or 0.0 for x in b["runs"]), default=0.0)
            exact = all(x["bit_exact"] for x in b["runs"])
            bundles_cell = (f"{b['set']}; {len(b['runs'])} graphs: "
                            + ("bit-exact" if exact else f"max abs diff {worst:.1e}")
                            + ("" if all(x["ok"] for x in b["runs"]) else ", OUT OF TOLERANCE"))
        else:
            bundles_cell = "—"
        result = r["result"] if r["result"] == "pass" else "**" + r["result"] + "**"
        arch = {"x86_64": "x86-64"}.get(r["arch"], r["arch"])
        prov = r.get("provenance") or {}
        commit = f"`{prov['commit'][:10]}`" if prov.get("commit") else "— (not recorded)"
        date = str(prov.get("started") or "—")[:10]
        lines.append(f"| {arch} | {r['how']} | {r['python']} | {r['numpy']} | {r['onnxruntime']} | {tests_cell} | "
                     f"{bundles_cell} | {result} | {commit} | {date} |")
    return "\n".join(lines)


def _order(row: dict[str, Any]) -> tuple:
    """x86-64 reference, then the oldest versions, then aarch64: newest emulator and onnxruntime first."""
    qemu = re.search(r"qemu-user ([\d.]+)", row["how"])
    newest_first = [-n for n in edge_env.release(qemu.group(1) if qemu else "0") + edge_env.release(row["onnxruntime"])]
    return ({"reference": 0, "min": 1}.get(row["check"], 2), *newest_first, row["key"])


def _tests_cell(row: dict[str, Any]) -> str:
    tests = row.get("tests")
    if not tests:
        return "the whole `make test`" if row["check"] == "reference" else "—"
    bad = tests["failed"] + tests["error"]
    return f"{bad} failed" if bad else "pass"


def readme_table(text: str) -> str:
    if START not in text or END not in text:
        raise SystemExit(f"README.md has no '{START}' ... '{END}' block")
    return text.split(START, 1)[1].split(END, 1)[0].strip()


def write_readme_table() -> None:
    table = render_table(json.loads(RESULTS.read_text()))
    text = README.read_text(encoding="utf-8")
    readme_table(text)
    head, rest = text.split(START, 1)
    README.write_text(f"{head}{START}\n{table}\n{END}{rest.split(END, 1)[1]}", encoding="utf-8")
    print(f"README.md: 'Runs on' table rewritten from {RESULTS.relative_to(ROOT)}")


def cmd_publish(args: argparse.Namespace) -> int:
    try:
        keys = runs_on.publish()
    except (provenance.UnpublishableRun, ValueError) as exc:
        print(f"edge_check publish: {exc}", file=sys.stderr)
        return 2
    write_readme_table()  # README's table and the results file never disagree (tests/runtime/test_runs_on.py)
    print(f"published {len(keys)} row(s) into {RESULTS.relative_to(ROOT)}: {', '.join(keys)}")
    return 0


def cmd_table(args: argparse.Namespace) -> int:
    if args.write_readme:
        write_readme_table()
    else:
        print(render_table(json.loads(RESULTS.read_text())))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("arm", help="the device tests and bundles on emulated aarch64 (make test-arm)")
    p.add_argument("--onnxruntime", default=None, help="aarch64 onnxruntime release (default: this environment's)")
    p.add_argument("--qemu", choices=sorted(edge_env.QEMU), default="backports")
    p.add_argument("--tests", choices=sorted(TESTS), default="full")
    p.add_argument("--if-able", action="store_true", help="print why and exit 0 when this machine cannot")
    p.add_argument("--record", action="store_true",
                   help="keep this run's row for `publish` (refused on a tree with uncommitted changes)")
    p.add_argument("--bundles", type=Path, default=None, help="DIR/* besides the test bundles (default ./bundles)")
    p.set_defaults(func=cmd_arm)
    p = sub.add_parser("min", help="the device tests and bundles on the oldest claimed versions (make test-min)")
    p.add_argument("--tests", choices=sorted(TESTS), default="full")
    p.add_argument("--if-able", action="store_true")
    p.add_argument("--record", action="store_true")
    p.add_argument("--bundles", type=Path, default=None)
    p.set_defaults(func=cmd_min)
    p = sub.add_parser("table", help="README's 'Runs on' table from benchmarks/results/runs_on.json")
    p.add_argument("--write-readme", action="store_true")
    p.set_defaults(func=cmd_table)
    p = sub.add_parser("publish", help="the rows kept by --record runs -> runs_on.json and README's table")
    p.set_defaults(func=cmd_publish)
    args = parser.parse_args(argv)
    EDGE.mkdir(parents=True, exist_ok=True)
    if getattr(args, "record", False):
        try:  # before anything runs: a recorded row names the commit it measured
            STARTED.update(provenance.require_clean(what=f"edge_check.py {args.command} --record"))
        except provenance.UnpublishableRun as exc:
            print(f"edge_check {args.command}: {exc}", file=sys.stderr)
            return 2
    elif args.command in ("arm", "min"):
        STARTED.update(provenance.capture())
    print(f"[edge] {args.command} on {platform.machine()} from {ROOT}", file=sys.stderr)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
