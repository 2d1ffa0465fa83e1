"""onnxruntime session creation from a bundle's measured profile."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import BundleError, ManifestError, ProviderError, RuntimeTooOld, UsageError, check_choice
from .manifest import Manifest, SessionProfile
from .providers import import_onnxruntime

_OPT_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
               "all": "ORT_ENABLE_ALL"}


# The settings that onnxruntime_defaults=True leaves to onnxruntime.
PERFORMANCE_SETTINGS = ("intra_op_num_threads", "inter_op_num_threads", "allow_spinning", "graph_optimization_level",
                        "execution_mode")
DEFAULT_PROFILE = "default"
#: The settings ``session_profile={...}`` may override (the rest of a profile is the export's record).
OVERRIDABLE = tuple(sorted({f.name for f in dataclasses.fields(SessionProfile)} - {"measured", "large_batch",
                                                                                    "evidence"}))


def check_overrides(overrides: Mapping[str, Any]) -> None:
    """Refuse session-profile overrides with an unknown setting or a value of the wrong type.

    Raises:
        UnknownNameError: a setting that is not one of :data:`OVERRIDABLE` (a UsageError naming them).
        UsageError: a value of the wrong type (``intra_op_num_threads="two"``) or out of range.
    """
    for key in overrides:
        check_choice("session profile setting", key, OVERRIDABLE)
    from .schema import parse

    try:
        parse(SessionProfile, dict(overrides), doc="session_profile")
    except ManifestError as exc:
        raise UsageError(str(exc)) from None


def merge_profile(profile: SessionProfile, overrides: Mapping[str, Any] | None) -> SessionProfile:
    """The manifest's profile with the caller's overrides applied (unknown keys refused).

    Overriding a performance setting (threads, spinning, optimisation level, execution mode) of a profile that
    leaves them to onnxruntime (``onnxruntime_defaults``) applies it, unless the overrides say otherwise.
    """
    if not overrides:
        return profile
    check_overrides(overrides)
    values = dict(overrides)
    if "onnxruntime_defaults" not in values and any(k in values for k in PERFORMANCE_SETTINGS):
        values["onnxruntime_defaults"] = False
    return dataclasses.replace(profile, **values)


def profile_changes(base: SessionProfile, other: SessionProfile) -> dict[str, Any]:
    """The performance settings (``onnxruntime_defaults`` included) in which ``other`` differs from ``base``: the
    overrides that :func:`merge_profile` applies to ``base`` to run like ``other`` (a profile's ``large_batch``)."""
    keys = ("onnxruntime_defaults", *PERFORMANCE_SETTINGS)
    return {k: getattr(other, k) for k in keys if getattr(other, k) != getattr(base, k)}


def requested_profiles(manifest_profile: SessionProfile, session_profile: Mapping[str, Any] | str | None,
                       deterministic: bool = False) -> tuple[SessionProfile, SessionProfile | None]:
    """The profiles of the sessions ``load()`` creates: (the one for batches below ``large_batch_from``, the
    large-batch one or None).

    Args:
        manifest_profile: the bundle's measured profile.
        session_profile: None (the manifest's), ``"default"`` (onnxruntime's default SessionOptions for every
            batch size: no thread, spinning, optimisation-level or execution-mode setting; one session), or a
            mapping of overrides applied to both sessions.
        deterministic: fixed thread counts and onnxruntime's deterministic compute (applied last).

    Raises:
        UnknownNameError: a string other than ``"default"``, or an unknown setting among the overrides.
        UsageError: an override of the wrong type.
    """
    if isinstance(session_profile, str):
        check_choice("session profile", session_profile, (DEFAULT_PROFILE,),
                     "; or pass a mapping of settings, e.g. {'intra_op_num_threads': 1}")
        base = dataclasses.replace(manifest_profile, onnxruntime_defaults=True, large_batch_from=0, large_batch={})
        overrides: dict[str, Any] = {}
    else:
        base, overrides = manifest_profile, dict(session_profile or {})
    if deterministic:
        threads = overrides.get("intra_op_num_threads", base.intra_op_num_threads) or 1
        overrides.update(deterministic=True, intra_op_num_threads=threads, inter_op_num_threads=1,
                         execution_mode="sequential")
    profile = merge_profile(base, overrides)
    start = large_batch_from(profile)
    large = None
    if start is not None:  # the caller's overrides win over both profiles
        large = merge_profile(session_for_batch(profile, start).profile, overrides)
    return profile, large


def performance_settings(profile: SessionProfile) -> dict[str, Any]:
    """The settings of ``profile`` that decide its speed (threads, spinning, optimisation level, execution mode), or
    ``{"onnxruntime_defaults": True}`` for a profile that leaves them to onnxruntime. The one description of a
    profile in reports (the export's evidence, ``medinfer bench --check-profile``, the benchmark suite)."""
    if profile.onnxruntime_defaults:
        return {"onnxruntime_defaults": True}
    return {k: getattr(profile, k) for k in PERFORMANCE_SETTINGS}


def large_batch_from(profile: SessionProfile) -> int | None:
    """The batch size from which ``load()`` runs a batch on the large-batch session (None: one session)."""
    return profile.large_batch_from if profile.large_batch_from > 0 and profile.large_batch else None


@dataclass(frozen=True)
class BatchSession:
    """Which session a batch runs on: its profile, and whether it is the large-batch session."""

    profile: SessionProfile
    large: bool


def session_for_batch(profile: SessionProfile, batch: int) -> BatchSession:
    """THE rule of which session runs a batch of ``batch`` samples under ``profile`` (what ``load()`` builds and
    :class:`~medinfer.Model` follows): the large-batch session's settings from :func:`large_batch_from` on, else
    the profile's own. Tools that reproduce or report a session (the parity gate, export-triton, the benchmark
    suite, ``medinfer bench --check-profile``) ask this function instead of comparing sizes themselves."""
    start = large_batch_from(profile)
    if start is not None and batch >= start:
        return BatchSession(merge_profile(profile, profile.large_batch), True)
    return BatchSession(profile, False)


def release(version: str) -> tuple[int, int, int]:
    """``"1.21.0.dev20241101"`` / ``"1.18"`` -> ``(1, 21, 0)`` / ``(1, 18, 0)``: the numeric release, for ordering."""
    parts = [int(p) for p in re.findall(r"\d+", version.split("+")[0])[:3]]
    major, minor, patch = (parts + [0, 0, 0])[:3]
    return major, minor, patch


def check_runtime(manifest: Manifest, installed: str | None = None) -> None:
    """Refuse an onnxruntime older than the bundle's ``requires.onnxruntime``, before any session exists.

    Args:
        manifest: the bundle's manifest; one without ``requires`` (written before the field) is not checked.
        installed: the onnxruntime version to check (default: the imported module's).

    Raises:
        RuntimeTooOld: naming the required and the installed release, and how to fix it.
    """
    requires = manifest.requires
    if requires is None:
        return
    if installed is None:
        installed = str(import_onnxruntime().__version__)
    if release(installed) >= release(requires.onnxruntime):
        return
    uses = ", ".join(f"{domain} opset {v}" for domain, v in sorted(requires.opsets.items()))
    uses += f"{', ' if uses else ''}IR version {requires.ir_version}" if requires.ir_version else ""
    raise RuntimeTooOld(
        f"{manifest.name} needs onnxruntime >= {requires.onnxruntime}{f' (its graphs use {uses})' if uses else ''}, "
        f"but this environment has onnxruntime {installed}: upgrade the build installed here "
        f"(pip install --upgrade '{_installed_build()}>={requires.onnxruntime}'), or re-export the bundle for an "
        "older opset",
        installed=installed, required=requires.onnxruntime,
    )


def _installed_build() -> str:
    """The distribution name of the onnxruntime build installed here (upgrading it never adds a second one)."""
    from .providers import installed_builds

    return next((d.split("==")[0] for d in installed_builds() if not d.startswith("onnxruntime-training")),
                "onnxruntime")


def session_options(profile: SessionProfile, *, cpu_fallback: bool) -> Any:
    ort = import_onnxruntime()

    so = ort.SessionOptions()
    if not profile.onnxruntime_defaults:  # else onnxruntime decides threads, spinning, optimisation and mode
        so.intra_op_num_threads = profile.intra_op_num_threads
        so.inter_op_num_threads = profile.inter_op_num_threads
        spin = "1" if profile.allow_spinning else "0"
        so.add_session_config_entry("session.intra_op.allow_spinning", spin)
        so.add_session_config_entry("session.inter_op.allow_spinning", spin)
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel,
                                              _OPT_LEVELS[profile.graph_optimization_level])
        so.execution_mode = (ort.ExecutionMode.ORT_PARALLEL if profile.execution_mode == "parallel"
                             else ort.ExecutionMode.ORT_SEQUENTIAL)
    if profile.deterministic:
        so.use_deterministic_compute = True
    if not cpu_fallback:
        so.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    so.log_severity_level = 3
    return so


def create_session(
    model: bytes | str,
    profile: SessionProfile,
    providers: Sequence[tuple[str, dict[str, Any]]],
    config: Mapping[str, str] | None = None,
) -> Any:
    """Create an InferenceSession from the verified graph (bytes, or the path of a sealed verified copy, see
    :class:`~medinfer.files.SealedCopy`), with exactly the providers asked for; ``config``: more session config
    entries (``medinfer serve --workers``: ``session.disable_prepacking``, so that weights mapped from a shared file
    stay shared).

    The session never re-creates itself (onnxruntime's Python wrapper would re-read its model from the path after
    an accelerator failure, or from the bytes it otherwise keeps for the session's life): fallback is disabled and
    the wrapper forgets where the graph came from.
    """
    ort = import_onnxruntime()

    names = [n for n, _ in providers]
    so = session_options(profile, cpu_fallback="CPUExecutionProvider" in names)
    for key, value in (config or {}).items():
        so.add_session_config_entry(key, value)
    try:
        session = ort.InferenceSession(
            model,
            sess_options=so,
            providers=names,
            provider_options=[o for _, o in providers],
        )
    except Exception as exc:  # ORT raises its own Fail/RuntimeException types
        if any(n != "CPUExecutionProvider" for n in names):
            raise ProviderError(
                f"onnxruntime could not create a session on {names}: {exc}. CPU fallback is disabled unless "
                "'cpu' is in the provider list"
            ) from exc
        raise BundleError(f"onnxruntime cannot load this graph ({type(exc).__name__}: {str(exc)[:300]}); "
                          "re-export the bundle") from exc
    session.disable_fallback()
    if isinstance(model, str) and getattr(session, "_model_path", None) == model:
        session._model_path = None  # a closed /proc/self/fd/N could name another file later: never re-read it
    got = session.get_providers()
    unexpected = [p for p in got if p not in names]
    if unexpected:  # never run somewhere the caller did not ask for
        raise ProviderError(f"onnxruntime assigned providers {unexpected} that were not requested ({names})")
    return session


def cpu_session(model_bytes: bytes, profile: SessionProfile | None = None) -> Any:
    """A CPU session with ``profile``'s options, or with onnxruntime's own defaults when ``profile`` is None.

    For tools that compare settings (export's profile measurement, the benchmark suite, the parity gate); a
    device loads through :func:`medinfer.load`, which verifies the bytes first.
    """
    ort = import_onnxruntime()

    options = session_options(profile, cpu_fallback=True) if profile is not None else None
    return ort.InferenceSession(model_bytes, sess_options=options, providers=["CPUExecutionProvider"])
