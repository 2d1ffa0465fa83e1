"""``medinfer export-triton``: a Triton Inference Server model repository from verified bundles.

    medinfer export-triton bundles/drug_activity_rf bundles/glucose_lstm --out triton_repo
    medinfer export-triton bundles/lung_nodule_cnn --out triton_repo --instance-kind gpu --count 2
    medinfer export-triton bundles/clinical_notes_tfidf --out triton_repo --backend python

Layout per model (``backend onnxruntime``, the default)::

    REPO/<name>/config.pbtxt      inputs/outputs/dims from the manifest, max_batch_size + dynamic batching,
                                  instance groups (CPU or GPU), ORT threads/execution mode/graph level from the
                                  session profile (its large-batch settings when dynamic batching reaches them),
                                  the decision threshold and labels as parameters, model_warmup
    REPO/<name>/1/model.onnx      the variant's graph (int8 when the bundle ships it, on CPU) with the decision rule
                                  appended: outputs ``labels`` and ``scores`` mean what serve's do (checked on the
                                  golden input); ``--decision none`` writes the bundle's graph byte for byte
    REPO/<name>/warmup/golden_<input>  the golden input's first sample (Triton's model_warmup data)
    REPO/<name>/manifest.json     the bundle's contract and card, alongside (Triton ignores them)
    REPO/<name>/model_card.md

``backend python`` (for the tritonserver that PyTriton's wheel ships, which has only the Python backend) writes
``REPO/<name>/1/model.py`` (from :mod:`medinfer.fleet.triton.backend`) and the whole bundle into
``REPO/<name>/1/bundle/``:
Triton then runs it through ``medinfer.load`` (sha256 of every file, golden self-test) and ``Model.predict``,
and answers ``labels``/``scores``/raw score output like ``medinfer serve`` (a GPU instance loads it on CUDA).

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

from ...errors import UnknownNameError, UsageError
from ...integrity import sha256_bytes
from ...manifest import MANIFEST_NAME, SIGNATURE_NAME, Manifest, SessionProfile, TensorSpec
from ...session import large_batch_from, session_for_batch

log = logging.getLogger(__name__)

BACKENDS = ("onnxruntime", "python")
KINDS = ("cpu", "gpu")
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
    instance_kind: str = "cpu"  # "cpu" or "gpu" (Triton's KIND_CPU / KIND_GPU)
    gpus: tuple[int, ...] = ()  # KIND_GPU: which devices (empty: every visible GPU gets `instances` instances)
    warmup: bool = True  # model_warmup from the bundle's golden input
    decision: bool = True  # onnxruntime backend: append the decision rule's `labels` and `scores` to the graph

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise UnknownNameError("Triton backend", self.backend, BACKENDS)
        if self.instance_kind not in KINDS:
            raise UnknownNameError("instance kind", self.instance_kind, KINDS)
        for option, value, low in (("--count", self.instances, 1), ("--max-batch-size", self.max_batch_size, 0),
                                   ("--max-queue-delay-us", self.max_queue_delay_us, 0)):
            if not isinstance(value, int) or value < low:
                raise UsageError(f"{option} {value!r}: expected an integer >= {low}")
        if self.gpus and self.instance_kind != "gpu":
            raise UsageError("--gpus names devices for --instance-kind gpu only")


def _dims(shape: Sequence[int | str], batched: bool) -> tuple[list[int], bool]:
    """Triton dims (batch axis dropped when batching) and whether an empty dims list needs ``reshape: []``.

    A per-sample scalar (shape (N,)) is declared as dims [1] with an empty reshape, Triton's idiom: the model
    sees (N,), clients see (N, 1).
    """
    dims = [d if isinstance(d, int) else -1 for d in (shape[1:] if batched else shape)]
    return (dims, False) if dims else ([1], True)


def _tensor_json(name: str, data_type: str, shape: Sequence[int | str], batched: bool) -> dict[str, Any]:
    dims, reshape = _dims(shape, batched)
    doc: dict[str, Any] = {"name": name, "data_type": data_type, "dims": dims}
    if reshape:
        doc["reshape"] = {"shape": []}
    return doc


def _batchable(specs: Sequence[TensorSpec]) -> bool:
    return all(s.shape and isinstance(s.shape[0], str) for s in specs)


def model_config(manifest: Manifest, options: TritonOptions, *, outputs: Sequence[Any] | None = None,
                 profile: SessionProfile | None = None, variant: str = "default") -> dict[str, Any]:
    """Triton's model configuration of one bundle, as the JSON that ``GET /v2/models/{name}/config`` answers.

    Args:
        manifest: the bundle's manifest (inputs, outputs, profile, decision).
        options: backend and scheduling.
        outputs: the :class:`~medinfer.fleet.protocol.TensorMeta` list served (python backend: labels, scores,
            raw score output); default: the graph's outputs (plus ``labels``/``scores`` with ``options.decision``).
        profile: the session profile to translate (default: the manifest's).
        variant: the variant exported (named in the parameters).
    """
    return _build(manifest, options, outputs, profile, variant)[0]


def _build(manifest: Manifest, options: TritonOptions, outputs: Sequence[Any] | None, profile: SessionProfile | None,
           variant: str) -> tuple[dict[str, Any], list[str]]:
    """The config and the notes that go into config.pbtxt as comments."""
    profile = profile or manifest.profile
    notes: list[str] = []
    if outputs is None:
        out_specs = [(o.name, _TYPES[o.dtype], tuple(o.shape)) for o in manifest.outputs]
        if options.backend == "onnxruntime" and options.decision:
            out_specs = [*_decision_specs(manifest), *out_specs]
    else:
        out_specs = [(t.name, _PROTOCOL_TYPES.get(t.datatype, "TYPE_" + t.datatype), tuple(t.shape)) for t in outputs]
    batched = options.max_batch_size > 0 and _batchable(manifest.inputs) and \
        all(s and (not isinstance(s[0], int) or s[0] == -1) for _, _, s in out_specs)
    doc: dict[str, Any] = {
        "name": manifest.name, "backend": options.backend,
        "max_batch_size": options.max_batch_size if batched else 0,
        "input": [_tensor_json(t.name, _TYPES[t.dtype], t.shape, batched) for t in manifest.inputs],
        "output": [_tensor_json(name, dtype, shape, batched) for name, dtype, shape in out_specs],
    }
    if batched:
        doc["dynamic_batching"] = {"max_queue_delay_microseconds": options.max_queue_delay_us}
    group: dict[str, Any] = {"kind": f"KIND_{options.instance_kind.upper()}", "count": options.instances}
    if options.gpus:
        group["gpus"] = list(options.gpus)
    doc["instance_group"] = [group]
    params: dict[str, str] = {}
    if manifest.decision.threshold is not None:
        params["decision_threshold"] = f"{manifest.decision.threshold:g}"
    if manifest.labels:
        params["labels"] = ",".join(manifest.labels)
    if manifest.domain is not None:  # the applicability-domain rule: in_domain = domain score <= this
        params["domain_threshold"] = repr(float(manifest.domain.threshold))
        params["domain_output"] = manifest.domain.output
    params["variant"] = variant
    if options.backend == "onnxruntime":
        # one instance serves every batch size: the session medinfer runs the largest dynamic batch with (a model
        # without a batch axis has one session, as in load())
        large = batched and session_for_batch(profile, options.max_batch_size).large
        threads = session_for_batch(profile, options.max_batch_size).profile if large else profile
        if large:
            notes.append(f"threads from the bundle's large-batch profile (batches >= {large_batch_from(profile)}; "
                         f"dynamic batching reaches {options.max_batch_size}): batch 1 alone would use intra_op "
                         f"{profile.intra_op_num_threads}, inter_op {profile.inter_op_num_threads}")
        if threads.graph_optimization_level in _GRAPH_LEVEL:
            doc["optimization"] = {"graph": {"level": _GRAPH_LEVEL[threads.graph_optimization_level]}}
        params.update(intra_op_thread_count=str(threads.intra_op_num_threads),
                      inter_op_thread_count=str(threads.inter_op_num_threads),
                      execution_mode="1" if threads.execution_mode == "parallel" else "0")
        if not threads.allow_spinning:
            notes.append("the profile turns thread spinning off; onnxruntime_backend has no parameter for it")
        if manifest.decision.evidence is not None:
            notes.append(f"no-information check ('{manifest.decision.evidence.output}' >= "
                         f"{manifest.decision.evidence.minimum:g}) runs only in medinfer (serve, --backend python): "
                         "this backend answers every input")
    else:
        if options.deadline_ms is not None:
            params["deadline_ms"] = f"{options.deadline_ms:g}"
        if options.site_packages:
            params["medinfer_site_packages"] = options.site_packages
    doc["parameters"] = {k: {"string_value": v} for k, v in params.items()}
    if options.warmup:
        doc["model_warmup"] = [{"name": "golden", "batch_size": 1, "inputs": {
            t.name: {"data_type": _TYPES[t.dtype], "dims": _warmup_dims(t.shape, batched),
                     "input_data_file": f"golden_{t.name}"} for t in manifest.inputs}}]
    return doc, notes


def _warmup_dims(shape: Sequence[int | str], batched: bool) -> list[int]:
    dims = list(shape[1:] if batched else shape)
    return [d if isinstance(d, int) else 1 for d in dims] or [1]


def _decision_specs(manifest: Manifest) -> list[tuple[str, str, tuple[Any, ...]]]:
    score = next(o for o in manifest.outputs if o.name == manifest.decision.score_output)
    flat = manifest.task == "binary_classification" or len(score.shape) < 2 or \
        (manifest.task == "regression" and score.shape[1] == 1)
    specs = [("scores", _TYPES[score.dtype], ("N",) if flat else tuple(score.shape))]
    if manifest.labels:
        specs.insert(0, ("labels", "TYPE_STRING", ("N",)))
    if manifest.domain is not None and any(o.name == manifest.domain.output for o in manifest.outputs):
        specs.append(("in_domain", "TYPE_BOOL", ("N",)))  # the guard's flag at the bundle's threshold
    return specs


def _pbtxt_tensor(doc: dict[str, Any]) -> str:
    dims = ", ".join(map(str, doc["dims"]))
    text = f'    name: "{doc["name"]}"\n    data_type: {doc["data_type"]}\n    dims: [ {dims} ]'
    if "reshape" in doc:
        text += "\n    reshape: { shape: [ ] }"
    return "  {\n" + text + "\n  }"


def _pbtxt_warmup(warm: dict[str, Any]) -> str:
    inputs = "\n".join(
        f'    inputs {{ key: "{name}" value: {{ data_type: {t["data_type"]} dims: [ {", ".join(map(str, t["dims"]))} ] '
        f'input_data_file: "{t["input_data_file"]}" }} }}' for name, t in warm["inputs"].items())
    return f'  {{\n    name: "{warm["name"]}"\n    batch_size: {warm["batch_size"]}\n{inputs}\n  }}'


def config_pbtxt(manifest: Manifest, options: TritonOptions, *, model_sha256: str, manifest_sha256: str,
                 outputs: Sequence[Any] | None = None, profile: SessionProfile | None = None,
                 variant: str = "default", exported_sha256: str | None = None) -> str:
    """The ``config.pbtxt`` text of one model (:func:`model_config` in Triton's text format).

    Args:
        manifest, options, outputs, profile, variant: as :func:`model_config`.
        model_sha256, manifest_sha256: provenance, written as a comment heading the file.
        exported_sha256: the written graph's sha256 when it is not the bundle's (decision outputs appended).
    """
    doc, notes = _build(manifest, options, outputs, profile, variant)
    lines = [
        f"# medinfer bundle {manifest.name} {manifest.version} ({manifest.task}); backend {options.backend}",
        f"# model sha256 {model_sha256}",
        f"# manifest sha256 {manifest_sha256}",
    ]
    if exported_sha256 is not None:
        lines.append(f"# exported graph sha256 {exported_sha256}: the bundle's graph + the decision rule "
                     "(outputs labels, scores)")
    lines += [f'name: "{doc["name"]}"', f'backend: "{doc["backend"]}"', f"max_batch_size: {doc['max_batch_size']}",
              "input [", ",\n".join(_pbtxt_tensor(t) for t in doc["input"]), "]",
              "output [", ",\n".join(_pbtxt_tensor(t) for t in doc["output"]), "]"]
    if "dynamic_batching" in doc:
        lines.append(f"dynamic_batching {{ max_queue_delay_microseconds: "
                     f"{doc['dynamic_batching']['max_queue_delay_microseconds']} }}")
    group = doc["instance_group"][0]
    gpus = f" gpus: [ {', '.join(map(str, group['gpus']))} ]" if "gpus" in group else ""
    lines.append(f"instance_group [ {{ kind: {group['kind']} count: {group['count']}{gpus} }} ]")
    if "optimization" in doc:
        lines.append(f"optimization {{ graph {{ level: {doc['optimization']['graph']['level']} }} }}")
    lines += [f'parameters {{ key: "{k}" value: {{ string_value: "{v["string_value"]}" }} }}'
              for k, v in doc["parameters"].items()]
    if "model_warmup" in doc:
        lines += ["model_warmup [", ",\n".join(_pbtxt_warmup(w) for w in doc["model_warmup"]), "]"]
    lines += [f"# {note}" for note in notes]
    return "\n".join(lines) + "\n"


def default_variant(manifest: Manifest, options: TritonOptions) -> str:
    """The variant export-triton writes when none is named: int8 when the bundle ships one (it passed the export's
    accuracy budget) and the model runs on CPU instances; else the default graph."""
    return "int8" if "int8" in manifest.variants and options.instance_kind == "cpu" else "default"


def write_warmup(folder: Path, inputs: dict[str, Any], manifest: Manifest, batched: bool) -> None:
    """``folder/warmup/golden_<input>``: the golden input's first sample as raw bytes (BYTES: 4-byte length + data)."""
    import struct

    import numpy as np

    (folder / "warmup").mkdir()
    for spec in manifest.inputs:
        arr = np.asarray(inputs[spec.name])
        sample = arr[:1] if batched else arr
        if spec.dtype == "string":
            items = [v if isinstance(v, bytes) else str(v).encode() for v in sample.reshape(-1).tolist()]
            raw = b"".join(struct.pack("<I", len(b)) + b for b in items)
        else:
            raw = np.ascontiguousarray(sample, dtype=np.dtype(spec.dtype).newbyteorder("<")).tobytes()
        (folder / "warmup" / f"golden_{spec.name}").write_bytes(raw)


def export_model(bundle: str | Path, out: str | Path, options: TritonOptions, *, variant: str | None = None,
                 force: bool = False) -> Path:
    """Verify one bundle and write its model folder into the repository ``out``; returns the folder.

    Args:
        variant: the graph to export (default: :func:`default_variant`, int8 on CPU when the bundle ships it).

    Raises:
        IntegrityError / SelfTestError / ManifestError: the bundle does not verify (nothing is written).
        ParityError: the graph with the decision outputs does not reproduce ``Model.predict`` (nothing written).
        MedinferError: the folder exists (without ``force``) or the backend is unknown.
    """
    from ...loader import load
    from ...manifest import load_manifest
    from ..protocol import output_metadata

    bundle = Path(bundle)
    variant = variant or default_variant(load_manifest(bundle), options)
    model = load(bundle, variant=variant)  # sha256 of every file + golden self-test, or raise
    manifest = model.manifest
    outputs = output_metadata(model) if options.backend == "python" else None
    graph: bytes | None = None
    exported_sha256 = None
    if options.backend == "onnxruntime":
        graph = model.graph_bytes()  # the pinned bytes, or IntegrityError (changed since load)
        if options.decision:
            from .decision import check_decision, with_decision

            graph = with_decision(graph, manifest)
            check_decision(graph, model)
            exported_sha256 = sha256_bytes(graph)
    text = config_pbtxt(manifest, options, model_sha256=model.model_sha256, manifest_sha256=model.manifest_sha256,
                        outputs=outputs, variant=model.variant, exported_sha256=exported_sha256)
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
        if options.warmup:
            batched = "max_batch_size: 0" not in text
            write_warmup(staging, model.golden()[0], manifest, batched)
        if graph is not None:
            (version / "model.onnx").write_bytes(graph)
        else:
            _copy_bundle(bundle, manifest, version / "bundle")
            load(version / "bundle", variant=model.variant)  # the copy verifies and self-tests like the original
            source = Path(__file__).with_name("backend.py")
            shutil.copyfile(source, version / "model.py")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("exported %s %s [%s] to %s (backend %s)", manifest.name, manifest.version, model.variant, target,
             options.backend)
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
