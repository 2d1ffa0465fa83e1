"""Run the device runtime in a fresh process where TensorFlow, scikit-learn, onnx and every export tool are
blocked from importing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BLOCKER = r"""
import sys, importlib.abc
BLOCKED = {"tensorflow", "keras", "sklearn", "skl2onnx", "tf2onnx", "onnx", "rdkit", "nltk", "joblib", "scipy",
           "pandas", "pydicom", "matplotlib", "tqdm", "medinfer.train", "medinfer.export"}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name in BLOCKED or any(name.startswith(b + ".") for b in BLOCKED):
            raise ImportError(f"blocked in the isolation test: {name}")
sys.meta_path.insert(0, Block())
"""

SCRIPT = BLOCKER + r"""
import json, numpy as np
import medinfer
out = {}
for path in sys.argv[1:]:
    model = medinfer.load(path)
    inputs, expected = model.golden()
    x = next(iter(inputs.values()))
    pred = model.predict(x)
    out[model.name] = {"scores": np.asarray(pred.scores).tolist(), "self_test": model.self_test().status}
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {"tensorflow", "sklearn", "onnx", "scipy"})
print(json.dumps({"results": out, "heavy": heavy}))
"""


def run_isolated(paths: list[Path]) -> dict:
    proc = subprocess.run([sys.executable, "-c", SCRIPT, *map(str, paths)], capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])
