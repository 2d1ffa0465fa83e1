"""``medinfer.load``: verify a bundle (digests, signature), create its session, self-test, configure safety."""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, overload

from .audit import AuditLog
from .cpu_class import chosen_variant
from .errors import BundleError, IntegrityError, MedinferError, UnknownNameError
from .failsafe import UnavailableModel
from .files import SealedCopy
from .integrity import expected_contract, sha256_bytes, variant_contract_digest, verify_files
from .manifest import Manifest, decode_manifest, read_manifest_bytes
from .model import Model
from .options import LoadOptions
from .providers import ProviderRequest, resolve
from .session import check_runtime, create_session, large_batch_from, requested_profiles

log = logging.getLogger(__name__)


@overload
def load(path: str | Path, providers: Sequence[ProviderRequest] | ProviderRequest | None = ..., *,
         variant: str | None = ..., session_profile: Mapping[str, Any] | str | None = ..., cast: str = ...,
         self_test: bool = ..., deterministic: bool = ..., require_signature: bool = ...,
         trusted_keys: Sequence[str | Path | bytes] = ..., audit: AuditLog | str | Path | None = ...,
         on_error: Literal["raise"] = ..., deadline_ms: float | None = ...,
         out_of_domain: str = ...) -> Model: ...


@overload
def load(path: str | Path, providers: Sequence[ProviderRequest] | ProviderRequest | None = ..., *,
         variant: str | None = ..., session_profile: Mapping[str, Any] | str | None = ..., cast: str = ...,
         self_test: bool = ..., deterministic: bool = ..., require_signature: bool = ...,
         trusted_keys: Sequence[str | Path | bytes] = ..., audit: AuditLog | str | Path | None = ...,
         on_error: str = ..., deadline_ms: float | None = ...,
         out_of_domain: str = ...) -> Model | UnavailableModel: ...


def load(
    path: str | Path,
    providers: Sequence[ProviderRequest] | ProviderRequest | None = None,
    *,
    variant: str | None = None,
    session_profile: Mapping[str, Any] | str | None = None,
    cast: str = "safe",
    self_test: bool = True,
    deterministic: bool = False,
    require_signature: bool = False,
    trusted_keys: Sequence[str | Path | bytes] = (),
    audit: AuditLog | str | Path | None = None,
    on_error: str = "raise",
    deadline_ms: float | None = None,
    out_of_domain: str = "flag",
) -> Model | UnavailableModel:
    """Verify a bundle and create its session.

    Every file is checked against the manifest's sha256 BEFORE a session exists; the session is then built from
    the very bytes that were hashed.

    Args:
        path: the bundle folder (``bundles/<name>``).
        providers: ``None`` for CPU, or an ordered preference list of short/full provider names (optionally
            ``(name, options)`` pairs). Only listed providers are ever used.
        variant: which graph to run (``"default"``, ``"int8"``, ...); default is the manifest's ``default``;
            ``"auto"``: the one the manifest's ``profile.variant_by_cpu`` names for this CPU's class
            (:mod:`medinfer.cpu_class`), else ``default``.
        session_profile: overrides of the manifest's measured session profile (e.g. ``{"intra_op_num_threads": 1}``),
            or ``"default"``: onnxruntime's default SessionOptions (no thread, spinning, optimisation-level or
            execution-mode setting) for every batch size, the batch-1 and large-batch sessions alike (one session).
        cast: input dtype casting policy, ``"safe"`` (default) or ``"same_kind"`` (allows float64 -> float32).
        self_test: run the golden input once after loading (default True) and refuse a bundle that fails it.
        deterministic: onnxruntime's deterministic compute with fixed thread counts (bit-identical repeats).
        require_signature: refuse a bundle whose manifest.sig is missing or not made by one of ``trusted_keys``.
        trusted_keys: Ed25519 public keys (PEM paths or bytes); a present signature is checked against them.
        audit: an :class:`~medinfer.audit.AuditLog` (or a path to open one) that gets one record per predict;
            its options (key, anchoring, rotation, retention) are the AuditLog's, e.g.
            ``AuditLog.shared(path, key="audit.key", head=True, rotate_mb=64, retain_days=183)``.
        on_error: ``"raise"`` (default) or ``"no_result"``: a bundle that cannot be loaded then gives an
            :class:`UnavailableModel` whose ``try_predict`` answers NO_RESULT with the load error's reason code
            (and whose ``predict`` raises that error). Per call, ``Model.try_predict`` never raises.
        deadline_ms: default per-call deadline for predict / try_predict.
        out_of_domain: what a sample outside the bundle's applicability domain gets: ``"flag"`` (an answer, flagged
            in ``Prediction.in_domain``; the default) or ``"no_result"`` / ``"raise"`` (no answer:
            OutOfDomainError from ``predict``, ``NoResult(reason="out_of_domain")`` from ``try_predict``).

    Returns:
        A ready :class:`Model` (or an UnavailableModel, see ``on_error``).

    Raises:
        UsageError: an argument that is not one of its choices (a typo), whatever ``on_error`` says: every
            argument is checked (:class:`~medinfer.options.LoadOptions`) before any file is read.
        ProviderError: none of the providers asked for is available here (also checked before any file is read).
        ManifestError, IntegrityError, SignatureError, RuntimeTooOld, SelfTestError (with on_error="raise").
    """
    options = LoadOptions(providers, variant=variant, session_profile=session_profile, cast=cast,
                          self_test=self_test, deterministic=deterministic, require_signature=require_signature,
                          trusted_keys=trusted_keys, audit=audit, on_error=on_error, deadline_ms=deadline_ms,
                          out_of_domain=out_of_domain)  # every argument checked before any file is read
    try:
        try:
            model = _load(path, options)
        except MedinferError:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever a broken bundle provokes becomes a typed refusal
            raise BundleError(f"{path}: the bundle cannot be loaded ({type(exc).__name__}: {str(exc)[:300]})") \
                from exc
        log_ = AuditLog.shared(audit) if isinstance(audit, (str, Path)) else audit
    except MedinferError as exc:
        if on_error == "no_result":
            log.error("bundle %s unavailable: %s", path, exc)
            return UnavailableModel(str(path), exc)
        raise
    return model.configure(audit=log_, deadline_ms=deadline_ms, out_of_domain=out_of_domain)


@functools.lru_cache(maxsize=1)
def _warn_if_several_onnxruntime_builds() -> None:
    """Two onnxruntime builds in one environment overwrite each other's files: say so once per process."""
    from .providers import installed_builds, several_builds, several_builds_message

    found = installed_builds()
    if several_builds(found):
        log.warning("%s", several_builds_message(found))


def _load(path: str | Path, options: LoadOptions) -> Model:
    bundle = Path(path)
    if bundle.is_file() and bundle.name == "manifest.json":
        bundle = bundle.parent
    raw = read_manifest_bytes(bundle)  # "not a bundle" (a file, a folder without a manifest): ManifestError, exit 4
    manifest = decode_manifest(raw, str(bundle / "manifest.json"))
    manifest_sha256 = sha256_bytes(raw)
    from .signing import verify_signature

    signature = verify_signature(bundle, raw, options.trusted_keys, options.require_signature)
    # "auto": the variant the manifest prefers for this CPU's class (medinfer.cpu_class), else the fp32 graph
    key = chosen_variant(options.variant, manifest.profile.variant_by_cpu)
    if key not in manifest.variants:
        raise UnknownNameError("variant", key, manifest.variants, of=manifest.name)
    model_file = manifest.variants[key].file
    # The graph is hashed while it is copied where nothing can change it (a sealed memfd on Linux); onnxruntime
    # reads that copy, which is released as soon as the sessions exist: one copy of the weights stays (ORT's).
    kept = verify_files(bundle, manifest, keep=(manifest.golden.file,), seal=(model_file,))
    with kept[model_file] as graph:  # released on every path out, a refusal below included
        check_runtime(manifest)  # a too-old onnxruntime is refused by name, not by its own session error
        if options.providers is not None:
            _warn_if_several_onnxruntime_builds()
        resolved = resolve(options.providers, profile_options=manifest.profile.provider_options)
        profile, large_profile = requested_profiles(manifest.profile, options.session_profile, options.deterministic)
        session = _session(graph, profile, resolved)
        _check_metadata(session, manifest, bundle, model_file, key)
        contract = manifest.for_variant(key)  # a whole-slice variant brings its own inputs and outputs
        model = Model(bundle, contract, manifest_sha256, session, key, manifest.files[model_file].sha256,
                      kept[manifest.golden.file], options.cast)
        model.signature = signature
        model.signed_by = signature.key_id if signature.state == "trusted" else None
        batched = isinstance(contract.inputs[0].shape[0], str) if contract.inputs[0].shape else False
        start = large_batch_from(profile)
        if large_profile is not None and start is not None and batched:  # the overrides win over both profiles
            model.use_large_batch_session(_session(graph, large_profile, resolved), start)
    if options.self_test:
        report = model.self_test()
        log.info("%s self-test %s (max diff %.3g)", manifest.name, report.status, report.max_abs_diff)
    return model


def _session(graph: SealedCopy, profile: Any, providers: Any) -> Any:
    """A session from the sealed verified copy; where onnxruntime cannot open its path (a sandbox without /proc),
    from the same sealed bytes read back."""
    try:
        return create_session(graph.source, profile, providers)
    except BundleError:
        if not isinstance(graph.source, str):
            raise
    session = create_session(graph.read(), profile, providers)  # a broken graph fails here again, with its reason
    log.warning("onnxruntime could not read the sealed copy %s but its bytes loaded (is /proc restricted?)",
                graph.source)
    return session


def _check_metadata(session: Any, manifest: Manifest, bundle: Path, model_file: str, key: str = "default") -> None:
    meta = session.get_modelmeta().custom_metadata_map
    expected = {
        "medinfer.name": manifest.name,
        "medinfer.version": manifest.version,
        # in the scheme the graph names: "2" also covers the domain guard's settings and the memory bounds
        "medinfer.contract_sha256": expected_contract(manifest.to_json(), meta, f"{bundle}: '{model_file}'"),
    }
    if manifest.variants[key].inputs is not None:  # a variant with its own contract carries its digest too
        expected["medinfer.variant_contract_sha256"] = variant_contract_digest(manifest.variants[key])
    for key, value in expected.items():
        if meta.get(key) != value:
            raise IntegrityError(
                f"{bundle}: '{model_file}' carries {key}={meta.get(key)!r} but the manifest says {value!r}: "
                "the graph belongs to another model or contract; re-export the bundle"
            )
