"""The serve benchmark's bare-engine contenders: the same graph, the same session options as medinfer's.

tritonserver runs :mod:`benchmarks.triton_bare_model` in Triton's Python backend: a bare onnxruntime
``InferenceSession`` of the bundle's default graph (no medinfer: no validation, decision rule or audit), with the
options medinfer's own rule gives the session it serves batch 1 with (``medinfer.session.requested_profiles`` +
``session_options``) at the run's explicit thread count. MLServer's runtime (:mod:`benchmarks.mlserver_runtime`)
gets the very same description. :func:`repository` writes the Triton model folder; :func:`bare_options` is the
description, so a test can compare it with the session medinfer itself creates.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from medinfer.integrity import sha256_file

HERE = Path(__file__).parent
MODEL = HERE / "triton_bare_model.py"
SESSION = HERE / "bare_session.py"


def bare_options(manifest: Any, threads: int) -> dict[str, Any]:
    """The session options medinfer serves batch 1 with, at ``threads`` intra-op threads, as a plain description
    (:func:`benchmarks.bare_session.describe`)."""
    from medinfer.session import requested_profiles, session_options

    from .bare_session import describe
    from .contenders import overrides

    small, _ = requested_profiles(manifest.profile, overrides(threads))
    return describe(session_options(small, cpu_fallback=True))


def graph_of(bundle: Path, manifest: Any) -> Path:
    """The bundle's default graph file, checked against the manifest's sha256 (the bytes medinfer would load).

    Raises:
        medinfer.IntegrityError: the file is not the one the manifest names.
    """
    from medinfer.errors import IntegrityError

    name = manifest.variants["default"].file
    path = bundle / name
    if sha256_file(path) != manifest.files[name].sha256:
        raise IntegrityError(f"{path} does not match its manifest's sha256: not the graph medinfer would run")
    return path


def repository(bundle: Path, out: Path, threads: int) -> Path:
    """Write ``out/<name>/`` (config.pbtxt, 1/model.py, 1/bare_session.py, 1/model.onnx) for tritonserver;
    returns the model folder. The config is medinfer's Python-backend config of the bundle (inputs, raw graph
    outputs, dynamic batching) plus the ``session_options`` parameter."""
    import medinfer
    from medinfer.fleet.triton.repository import TritonOptions, config_pbtxt

    manifest = medinfer.load_manifest(bundle)
    graph = graph_of(bundle, manifest)
    spec = bare_options(manifest, threads)
    text = config_pbtxt(manifest, TritonOptions(backend="python", warmup=False),
                        model_sha256=manifest.files[manifest.variants["default"].file].sha256,
                        manifest_sha256=sha256_file(bundle / "manifest.json"))
    value = json.dumps(spec, sort_keys=True).replace("\\", "\\\\").replace('"', '\\"')
    text += f'parameters {{ key: "session_options" value: {{ string_value: "{value}" }} }}\n'
    text += "# a bare onnxruntime session (benchmarks/triton_bare_model.py), not medinfer\n"
    folder = out / manifest.name
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "1").mkdir(parents=True)
    (folder / "config.pbtxt").write_text(text, encoding="utf-8")
    shutil.copyfile(MODEL, folder / "1" / "model.py")
    shutil.copyfile(SESSION, folder / "1" / "bare_session.py")
    shutil.copyfile(graph, folder / "1" / "model.onnx")
    return folder


def session_options_of(config: str) -> dict[str, Any]:
    """The ``session_options`` parameter of a written config.pbtxt (what the Triton model reads)."""
    import re

    found = re.search(r'key: "session_options" value: \{ string_value: "((?:[^"\\]|\\.)*)" \}', config)
    if found is None:
        raise ValueError("config.pbtxt has no session_options parameter")
    return dict(json.loads(found.group(1).replace('\\"', '"').replace("\\\\", "\\")))
