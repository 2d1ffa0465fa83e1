"""Run a converter in a fresh child process with a fixed string-hash seed (``PYTHONHASHSEED=0``).

Some converters (tf2onnx) iterate Python sets of names while they rewrite a graph, so their output depends on the
converting process's hash seed and on what that process did before (framework name counters). A fresh child
that loads the model as the spec saves it gives the same bytes for the same model, in ``medinfer build``,
``medinfer export`` and a test alike.

    python -m medinfer.export.isolated JOB.json     # what convert_in_child runs
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..train.spec import ModelSpec

TIMEOUT_S = 1800


def _resolve(target: str) -> Any:
    module, _, qualname = target.partition(":")
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def convert_in_child(spec: ModelSpec, model: Any, function: str, job: dict[str, Any]) -> Any:
    """Save ``model`` with ``spec.save_native``, run ``function(model, input TensorSpec, output TensorSpecs, opset)``
    (``"module:name"``) on it in a child with ``PYTHONHASHSEED=0``, and return the ``onnx.ModelProto`` it made.

    Args:
        job: ``{"input": TensorSpec JSON, "outputs": [TensorSpec JSON, ...], "opset": int}``.

    Raises:
        RuntimeError: the child failed (its last lines of stderr in the message).
    """
    import onnx

    with tempfile.TemporaryDirectory(prefix="medinfer-convert-") as tmp:
        folder = Path(tmp)
        spec.save_native(model, folder)
        cls = type(spec)
        doc = {**job, "spec": f"{cls.__module__}:{cls.__qualname__}", "options": spec.option_values(),
               "function": function, "folder": str(folder), "out": str(folder / "converted.onnx")}
        (folder / "job.json").write_text(json.dumps(doc))
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        proc = subprocess.run([sys.executable, "-m", "medinfer.export.isolated", str(folder / "job.json")], env=env,
                              capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
        if proc.returncode != 0:
            tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
            raise RuntimeError(f"converting {spec.name} in a child process failed (exit {proc.returncode}):\n{tail}")
        return onnx.load_from_string((folder / "converted.onnx").read_bytes())


def main(job_path: str) -> None:
    """The child: load the spec and its saved model, convert, write the ONNX bytes."""
    from medinfer.manifest import TensorSpec
    from medinfer.schema import parse

    job = json.loads(Path(job_path).read_text())
    spec = _resolve(job["spec"])().configure(**job["options"])
    model = spec.load_native(Path(job["folder"]))
    tin = parse(TensorSpec, job["input"], doc="job")
    outputs = tuple(parse(TensorSpec, o, doc="job") for o in job["outputs"])
    onx = _resolve(job["function"])(model, tin, outputs, int(job["opset"]))
    Path(job["out"]).write_bytes(onx.SerializeToString())


if __name__ == "__main__":
    main(sys.argv[1])
