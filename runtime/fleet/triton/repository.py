"""``medinfer export-triton``: a Triton Inference Server model repository from verified bundles.

    medinfer export-triton bundles/drug_activity_rf bundles/glucose_lstm --out triton_repo
    medinfer export-triton bundles/clinical_notes_tfidf --out triton_repo --backend python

Layout per model (``backend onnxruntime``, the default)::

    REPO/<name>/config.pbtxt      inputs/outputs/dims from the manifest, max_batch_size + dynamic batching,
                                  instance groups, ORT threads/execution mode/graph level from the session profile
    REPO/<name>/1/model.onnx      the variant's graph, byte-identical to the bundle's (sha256 checked after copying)
    REPO/<name>/manifest.json     the bundle's contract and card, alongside (Triton ignores them)
    REPO/<name>/model_card.md

``backend python`` (for the tritonserver that PyTriton's wheel ships, which has only the Python backend) writes
``REPO/<name>/1/model.py`` (from :mod:`medinfer.fleet.triton.backend`) and the whole bundle into
``REPO/<name>/1/bundle/``:
Triton then runs it through ``medinfer.load`` (sha256 of every file, golden self-test) and ``Model.predict``,
and answers ``labels``/``scores``/raw score output like ``medinfer serve``.

Every bundle is loaded and self-tested BEFORE anything is written (fail-closed), and each model folder appears
whole or not at all (written to a staging folder, then renamed).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import IntegrityError, UnknownNameError, UsageError
from ...integrity import sha256_file
from ...manifest import MANIFEST_NAME, SIGNATURE_NAME, Manifest, SessionProfile, TensorSpec

log = logging.getLogger(__name__)

BACKENDS = ("onnxruntime", "python")
_TYPES = {
    "float32": "TYPE_FP32", "float64": "TYPE_FP64", "float16": "TYPE_FP16", "int64": "TYPE_INT64",
    "int32": "TYPE_INT32", "int16": "TYPE_INT16", "int8": "TYPE_INT8", "uint8": "TYPE_UINT8", "bool": "TYPE_BOOL",
    "string": "TYPE_STRING",
}
_PROTOCOL_TYPES = {"BYTES": "TYPE_STRING", "BOOL": "TYPE_BOOL"}
# onnxruntime_backend's `optimization { graph { level } }`: -1 basic, 1 extended, 2 disabled, absent = all.
_GRAPH_LEVEL = {"basic": -1, "extended": 1, "disable": 2}


@dataclass(frozen=True)
class TritonOptions:
    """Scheduling knobs of the generated config (the rest comes from the manifest)."""

    backend: str = "onnxruntime"
    max_batch_size: int = 64
    instances: int = 1
    max_queue_delay_us: int = 100
    deadline_ms: float | None = None  # python backend: medinfer's per-call deadline
    site_packages: str | None = None  # python backend: where medinfer + onnxruntime live, if not in the stub's Python


def _dims(shape: Sequence[int | str], batched: bool) -> tuple[list[int], bool]:
    """Triton dims (batch axis dropped when batching) and whether an empty dims list needs ``reshape: []``.

    A per-sample scalar (shape (N,)) is declared as dims [1] with an empty reshape, Triton's idiom: the model
    sees (N,), clients see (N, 1).
    """
    dims = [d if isinstance(d, int) else -1 for d in (shape[1:] if batched else shape)]
    return (dims, False) if dims else ([1], True)


def _tensor(name: str, data_type: str, dims: list[int], reshape: bool) -> str:
    text = f'    name: "{name}"\n    data_type: {data_type}\n    dims: [ {", ".join(map(str, dims))} ]'
    if reshape:
        text += "\n    reshape: { shape: [ ] }"
    return "  {\n" + text + "\n  }"


def _batchable(specs: Sequence[TensorSpec]) -> bool:
    return all(s.shape and isinstance(s.shape[0], str) for s in specs)


def _param(key: str, value: Any) -> str:
    return f'parameters {{ key: "{key}" value: {{ string_value: "{value}" }} }}'


def config_pbtxt(manifest: Manifest, options: TritonOptions, *, model_sha256: str, manifest_sha256: str,
                 outputs: Sequence[Any] | None = None, profile: SessionProfile | None = None) -> str:
    """The ``config.pbtxt`` text of one model.

    Args:
        manifest: the bundle's manifest (inputs, outputs, profile).
        options: backend and scheduling.
        model_sha256, manifest_sha256: provenance, written as a comment heading the file.
        outputs: for the python backend, the :class:`~medinfer.fleet.protocol.TensorMeta` list that
            ``medinfer serve`` answers (labels, scores, raw score output); default: the graph's outputs.
        profile: the session profile to translate (default: the manifest's).
    """
    if options.backend not in BACKENDS:
        raise UnknownNameError("Triton backend", options.backend, BACKENDS)
    profile = profile or manifest.profile
    out_specs = [(o.name, _TYPES[o.dtype], tuple(o.shape)) for o in manifest.outputs] if outputs is None else \
        [(t.name, _PROTOCOL_TYPES.get(t.datatype, "TYPE_" + t.datatype), tuple(t.shape)) for t in outputs]
    batched = options.max_batch_size > 0 and _batchable(manifest.inputs) and \
        all(s and (not isinstance(s[0], int) or s[0] == -1) for _, _, s in out_specs)
    lines = [
        f"# medinfer bundle {manifest.name} {manifest.version} ({manifest.task}); backend {options.backend}",
        f"# model sha256 {model_sha256}",
        f"# manifest sha256 {manifest_sha256}",
        f'name: "{manifest.name}"',
        f'backend: "{options.backend}"',
        f"max_batch_size: {options.max_batch_size if batched else 0}",
        "input [",
        ",\n".join(_tensor(t.name, _TYPES[t.dtype], *_dims(t.shape, batched)) for t in manifest.inputs),
        "]",
        "output [",
        ",\n".join(_tensor(name, dtype, *_dims(shape, batched)) for name, dtype, shape in out_specs),
        "]",
    ]
    if batched:
        lines.append(f"dynamic_batching {{ max_queue_delay_microseconds: {options.max_queue_delay_us} }}")
    lines.append(f"instance_group [ {{ kind: KIND_CPU count: {options.instances} }} ]")
    if options.backend == "onnxruntime":
        if profile.graph_optimization_level in _GRAPH_LEVEL:
            lines.append(f"optimization {{ graph {{ level: {_GRAPH_LEVEL[profile.graph_optimization_level]} }} }}")
        lines += [
            _param("intra_op_thread_count", profile.intra_op_num_threads),
            _param("inter_op_thread_count", profile.inter_op_num_threads),
            _param("execution_mode", 1 if profile.execution_mode == "parallel" else 0),
        ]
        if not profile.allow_spinning:
            lines.append("# the profile turns thread spinning off; onnxruntime_backend has no parameter for it")
    else:
        if options.deadline_ms is not None:
            lines.append(_param("deadline_ms", f"{options.deadline_ms:g}"))
        if options.site_packages:
            lines.append(_param("medinfer_site_packages", options.site_packages))
    return "\n".join(lines) + "\n"



def export_model(bundle: str | Path, out: str | Path, options: TritonOptions, *, variant: str | None = None,
                 force: bool = False) -> Path:
    """Verify one bundle and write its model folder into the repository ``out``; returns the folder.

    Raises:
        IntegrityError / SelfTestError / ManifestError: the bundle does not verify (nothing is written).
        MedinferError: the folder exists (without ``force``) or the backend is unknown.
    """
    from ...loader import load
    from ..protocol import output_metadata

    if options.backend not in BACKENDS:
        raise UnknownNameError("Triton backend", options.backend, BACKENDS)
    bundle = Path(bundle)
    model = load(bundle, variant=variant)  # sha256 of every file + golden self-test, or raise
    manifest = model.manifest
    outputs = output_metadata(model) if options.backend == "python" else None
    text = config_pbtxt(manifest, options, model_sha256=model.model_sha256, manifest_sha256=model.manifest_sha256,
                        outputs=outputs)
    repo = Path(out)
    target = repo / manifest.name
    if target.exists() and not force:
        raise UsageError(f"{target} exists; pass --force to replace it")
    repo.mkdir(parents=True, exist_ok=True)
    staging = repo / f".{manifest.name}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        version = staging / "1"
        version.mkdir(parents=True)
        (staging / "config.pbtxt").write_text(text, encoding="utf-8")
        for name in (MANIFEST_NAME, "model_card.md"):
            if (bundle / name).is_file():
                shutil.copyfile(bundle / name, staging / name)
        if options.backend == "onnxruntime":
            model_file = manifest.variants[model.variant].file
            shutil.copyfile(bundle / model_file, version / "model.onnx")
            if sha256_file(version / "model.onnx") != model.model_sha256:
                raise IntegrityError(f"{bundle / model_file} changed while it was exported; export again")
        else:
            _copy_bundle(bundle, manifest, version / "bundle")
            load(version / "bundle", variant=variant)  # the copy verifies and self-tests like the original
            source = Path(__file__).with_name("backend.py")
            shutil.copyfile(source, version / "model.py")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("exported %s %s to %s (backend %s)", manifest.name, manifest.version, target, options.backend)
    return target


def _copy_bundle(bundle: Path, manifest: Manifest, dest: Path) -> None:
    dest.mkdir(parents=True)
    for name in [*manifest.files, MANIFEST_NAME, SIGNATURE_NAME]:
        source = bundle / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, dest / name)


def export_repository(bundles: Sequence[str | Path], out: str | Path, options: TritonOptions, *,
                      variant: str | None = None, force: bool = False) -> list[Path]:
    """Export several bundles into one repository (each verified first). Returns the model folders."""
    if not bundles:
        raise UsageError("export-triton needs at least one bundle")
    return [export_model(b, out, options, variant=variant, force=force) for b in bundles]
