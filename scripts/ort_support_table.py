"""Measure which ONNX IR version and opsets each onnxruntime release accepts -> export/ort_support.json.

onnxruntime refuses, at session creation, a graph stamped with an IR version or an opset (per domain) above the
ones its build implements. This script finds those ceilings for each release by loading one-node graphs
(``Identity`` for ai.onnx, ``Normalizer`` for ai.onnx.ml) stamped with rising versions, each release in its own
``pip install --target`` folder (x86-64 wheels from the registry; numpy 1.26.4 beside releases built against
numpy 1). The exporter reads the result to write a bundle's minimum onnxruntime (``requires`` in the manifest).

    .venv/bin/python scripts/ort_support_table.py                  # the releases listed in RELEASES
    .venv/bin/python scripts/ort_support_table.py 1.18.0 1.32.0    # only these (merged into the file)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "export" / "ort_support.json"
CACHE = ROOT / "build" / "ort-support"
# The first release of each minor line from the oldest the project claims (pyproject: onnxruntime>=1.18).
RELEASES = ["1.18.0", "1.19.0", "1.20.0", "1.21.0", "1.22.0", "1.23.0", "1.24.1", "1.25.0", "1.26.0", "1.27.0",
            "1.28.0", "1.29.0", "1.30.0", "1.31.0", "1.32.0"]
RANGES = {"ir_version": range(3, 21), "ai.onnx": range(7, 41), "ai.onnx.ml": range(1, 11)}

PROBE = r"""
import json, sys, onnxruntime as ort
ok = {}
for kind, paths in json.loads(sys.argv[1]).items():
    best = None
    for version, path in paths:
        try:
            ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        except Exception:
            break
        best = version
    ok[kind] = best
print(json.dumps({"onnxruntime": ort.__version__, "max": ok}))
"""


def _graphs(folder: Path) -> dict[str, list[tuple[int, str]]]:
    """One file per (kind, version): the probe walks each list upward and stops at the first refusal."""
    import onnx
    from onnx import TensorProto, helper

    def write(name: str, node: onnx.NodeProto, opsets: dict[str, int], ir: int) -> str:
        graph = helper.make_graph([node], "probe", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()])
        model.ir_version = ir
        path = folder / f"{name}.onnx"
        path.write_bytes(model.SerializeToString())
        return str(path)

    identity = helper.make_node("Identity", ["x"], ["y"])
    normalizer = helper.make_node("Normalizer", ["x"], ["y"], domain="ai.onnx.ml", norm="L2")
    return {
        "ir_version": [(v, write(f"ir{v}", identity, {"": 7}, v)) for v in RANGES["ir_version"]],
        "ai.onnx": [(v, write(f"onnx{v}", identity, {"": v}, 8)) for v in RANGES["ai.onnx"]],
        "ai.onnx.ml": [(v, write(f"ml{v}", normalizer, {"": 7, "ai.onnx.ml": v}, 8)) for v in RANGES["ai.onnx.ml"]],
    }


def _install(version: str) -> Path:
    target = CACHE / version
    if not (target / ".done").exists():
        wants = [f"onnxruntime=={version}"]
        if tuple(int(p) for p in version.split(".")[:2]) < (1, 19):
            wants.append("numpy==1.26.4")  # built against numpy 1: does not import beside numpy 2
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--only-binary=:all:",
                        "--target", str(target), *wants], check=True)
        (target / ".done").touch()
    return target


def measure(versions: list[str]) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        graphs = _graphs(Path(tmp))
        for version in versions:
            site = _install(version)
            env = {**os.environ, "PYTHONPATH": str(site)}
            proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(graphs)], capture_output=True, text=True,
                                  env=env, check=False)
            if proc.returncode != 0:
                raise SystemExit(f"onnxruntime {version}: the probe failed:\n{proc.stderr[-2000:]}")
            got = json.loads(proc.stdout.strip().splitlines()[-1])
            if got["onnxruntime"] != version:
                raise SystemExit(f"asked for onnxruntime {version}, the probe imported {got['onnxruntime']}")
            row = {"onnxruntime": version, **{k: v for k, v in got["max"].items()}}
            print(f"onnxruntime {version}: IR <= {row['ir_version']}, ai.onnx <= {row['ai.onnx']}, "
                  f"ai.onnx.ml <= {row['ai.onnx.ml']}", file=sys.stderr)
            rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("versions", nargs="*", default=RELEASES)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    old = json.loads(args.out.read_text()) if args.out.exists() else {"releases": []}
    rows = {r["onnxruntime"]: r for r in old["releases"]}
    rows.update({r["onnxruntime"]: r for r in measure(args.versions)})
    doc = {
        "description": "Highest ONNX IR version and opset per domain that each onnxruntime release (x86-64 CPU "
                       "wheel) accepts at session creation; a higher stamp is refused. Measured, not copied.",
        "command": "python scripts/ort_support_table.py " + " ".join(sorted(rows, key=_key)),
        "python": sys.version.split()[0],
        "releases": [rows[v] for v in sorted(rows, key=_key)],
    }
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}", file=sys.stderr)
    return 0


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


if __name__ == "__main__":
    raise SystemExit(main())
