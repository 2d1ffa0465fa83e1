"""Why the CNN's held-out AUC differs between CPU classes: train lung_nodule_cnn on its test sample three times in
fresh processes (twice as this CPU runs it, once with oneDNN limited to AVX2 via ONEDNN_MAX_CPU_ISA) and compare
the weights. Same instruction set: bit-identical weights (fixed seeds and TensorFlow's op determinism); another
instruction set: float32 sums in another order, different weights, which a full training amplifies. Needs [train].

    .venv/bin/python scripts/isa_check.py            # about a minute per training on 2 cores
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

TRAIN = """
import json, sys
import numpy as np
from pathlib import Path
from medinfer.integrity import sha256_bytes
from medinfer.train import artifact, registry
spec = registry.get("lung_nodule_cnn")
artifact.train("lung_nodule_cnn", Path(sys.argv[1]), sample=spec.test_sample, **spec.test_options)
import keras
model = keras.models.load_model(Path(sys.argv[1]) / "lung_nodule_cnn" / "model.keras")
np.savez(Path(sys.argv[1]) / "weights.npz", *model.get_weights())
digest = sha256_bytes(b"".join(w.tobytes() for w in model.get_weights()))
print(json.dumps({"weights_sha256": digest}))
"""


def main() -> int:
    import numpy as np

    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, isa in (("native", None), ("native again", None), ("AVX2 only", "AVX2")):
            env = {**os.environ, **({"ONEDNN_MAX_CPU_ISA": isa} if isa else {}), "TF_CPP_MIN_LOG_LEVEL": "2"}
            out = os.path.join(tmp, label.replace(" ", "_"))
            proc = subprocess.run([sys.executable, "-c", TRAIN, out], capture_output=True, text=True, env=env,
                                  check=True)
            runs[label] = (json.loads(proc.stdout.strip().splitlines()[-1])["weights_sha256"],
                           np.load(os.path.join(out, "weights.npz")))
        first = runs["native"][1]
        for label, (digest, weights) in runs.items():
            diff = max(float(np.abs(weights[k] - first[k]).max()) for k in first.files)
            print(f"{label:<14} weights sha256 {digest[:16]}  max |w - native| {diff:.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
