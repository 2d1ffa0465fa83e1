"""``medinfer.load`` and the loaded :class:`Model`: verify, then run, then say what ran."""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._version import __version__
from .errors import InferenceError, IntegrityError, MedinferError, SelfTestError
from .integrity import contract_digest, outputs_digest, sha256_bytes, verify_files
from .manifest import Manifest, decode_manifest, read_manifest_bytes
from .prediction import Prediction, PredictionMeta
from .providers import ProviderRequest, resolve
from .session import create_session, merge_profile
from .validation import Validator

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SelfTestReport:
    """Outcome of running the golden input: ``bit_exact`` or ``within_tolerance`` (else SelfTestError)."""

    status: str
    max_abs_diff: float
    digest: str
    expected_digest: str
    seconds: float


class Model:
    """A verified bundle with a live onnxruntime session. Create it with :func:`medinfer.load`."""

    def __init__(
        self,
        path: Path,
        manifest: Manifest,
        manifest_sha256: str,
        session: Any,
        variant: str,
        model_sha256: str,
        golden: bytes,
        casting: str,
    ) -> None:
        self.path = path
        self.manifest = manifest
        self.manifest_sha256 = manifest_sha256
        self.session = session
        self.variant = variant
        self.model_sha256 = model_sha256
        self._golden = golden
        self._validate = Validator(manifest, casting)
        self.providers: tuple[str, ...] = tuple(session.get_providers())
        self._meta = PredictionMeta.build(manifest, variant, model_sha256, manifest_sha256, self.providers[0])
        self._fetch = list(self._meta.fetch)
        # The C++ session's run, without InferenceSession.run's Python-side re-check of feed names (the
        # validator has already checked them): ~0.7 µs of a ~7 µs call on small models. Public API fallback.
        inner = getattr(session, "_sess", None)
        if inner is not None and hasattr(inner, "run"):
            self._run = inner.run
        else:
            self._run = lambda fetch, feeds, _options: session.run(fetch, feeds)
        self._check1 = self._validate.checks[0] if len(self._validate.checks) == 1 else None

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def input_names(self) -> tuple[str, ...]:
        return self._validate.names

    def __repr__(self) -> str:
        return (f"Model({self.name!r}, version={self.version!r}, variant={self.variant!r}, "
                f"providers={list(self.providers)})")

    def predict(self, x: Any) -> Prediction:
        """Validate ``x`` against the manifest, run the graph, and return a typed :class:`Prediction`.

        Args:
            x: one sample or a batch, as a numpy array (or nested lists); text models take a string or a list
                of strings; feature-named models also take a mapping of column name -> values; multi-input
                models take a mapping of input name -> array.

        Returns:
            Prediction with labels (classification), scores, raw outputs and provenance.

        Raises:
            InputError / InputTypeError: the input does not match the contract (message says how to fix it).
            InferenceError: onnxruntime failed on a validated input.
        """
        check = self._check1
        if check is not None and type(x) is np.ndarray:  # hot path: one array for a one-input model
            arr, single = check(x)
            feeds = {check.name: arr}
        else:
            feeds, single = self._validate(x)
        try:
            outs = self._run(self._fetch, feeds, None)
        except Exception as exc:
            raise InferenceError(f"onnxruntime failed running {self.name}: {exc}") from exc
        return Prediction(self._meta, outs, single)

    def run_raw(self, feeds: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None) -> list[np.ndarray]:
        """Run the session on already-validated feeds (no checks). For benchmarks and tools."""
        names = list(outputs) if outputs is not None else [o.name for o in self.session.get_outputs()]
        return self._run(names, dict(feeds), None)

    def golden(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """The golden inputs and expected outputs stored in the bundle."""
        with np.load(io.BytesIO(self._golden), allow_pickle=False) as data:
            inputs = {k[3:]: data[k] for k in data.files if k.startswith("in.")}
            outputs = {k[4:]: data[k] for k in data.files if k.startswith("out.")}
        return inputs, outputs

    def self_test(self) -> SelfTestReport:
        """Run the golden input and compare with the golden output (readiness check).

        Returns:
            A report whose ``status`` is ``bit_exact`` (digest matches) or ``within_tolerance``.

        Raises:
            SelfTestError: outputs differ beyond the manifest's tolerance, or labels differ.
        """
        golden = self.manifest.golden
        inputs, expected = self.golden()
        start = time.perf_counter()
        feeds, _ = self._validate(inputs if len(inputs) > 1 else next(iter(inputs.values())))
        names = list(golden.outputs or expected)
        got = dict(zip(names, self._run(names, feeds, None)))
        seconds = time.perf_counter() - start
        digest = outputs_digest(got, tuple(names))
        if digest == golden.output_digest:
            return SelfTestReport("bit_exact", 0.0, digest, golden.output_digest, seconds)
        worst = 0.0
        for name in names:
            a, b = got[name], expected[name]
            if a.shape != b.shape or a.dtype.kind != b.dtype.kind:
                raise SelfTestError(
                    f"{self.name} self-test: output '{name}' has shape {a.shape} {a.dtype}, expected "
                    f"{b.shape} {b.dtype}"
                )
            if a.dtype.kind in "fc":
                diff = float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)), initial=0.0))
                worst = max(worst, diff)
                if not np.allclose(a, b, atol=golden.atol, rtol=golden.rtol, equal_nan=False):
                    raise SelfTestError(
                        f"{self.name} self-test failed on {list(self.providers)}: output '{name}' differs from the "
                        f"golden output by {diff:.3g} (tolerance atol={golden.atol:g}, rtol={golden.rtol:g}); "
                        "this machine or provider does not reproduce the validated model"
                    )
            elif not np.array_equal(a, b):
                raise SelfTestError(f"{self.name} self-test failed: output '{name}' (labels) differs from golden")
        return SelfTestReport("within_tolerance", worst, digest, golden.output_digest, seconds)

    def describe(self) -> dict[str, Any]:
        """A JSON-ready summary: identity, provenance, providers, I/O contract."""
        m = self.manifest
        return {
            "name": m.name,
            "version": m.version,
            "task": m.task,
            "variant": self.variant,
            "path": str(self.path),
            "providers": list(self.providers),
            "model_sha256": self.model_sha256,
            "manifest_sha256": self.manifest_sha256,
            "inputs": [_tensor_json(t) for t in m.inputs],
            "outputs": [_tensor_json(t) for t in m.outputs],
            "labels": list(m.labels) if m.labels else None,
            "threshold": m.decision.threshold,
            "variants": {k: v.precision for k, v in m.variants.items()},
            "medinfer": __version__,
        }


def _tensor_json(t: Any) -> dict[str, Any]:
    out = {"name": t.name, "dtype": t.dtype, "shape": list(t.shape)}
    if t.range is not None:
        out["range"] = list(t.range)
    if t.units:
        out["units"] = t.units
    if t.names is not None:
        out["n_names"] = len(t.names)
    return out


def load(
    path: str | Path,
    providers: Sequence[ProviderRequest] | ProviderRequest | None = None,
    *,
    variant: str | None = None,
    session_profile: Mapping[str, Any] | None = None,
    cast: str = "safe",
    self_test: bool = True,
) -> Model:
    """Verify a bundle and create its session.

    Every file is checked against the manifest's sha256 BEFORE a session exists; the session is then built from
    the very bytes that were hashed.

    Args:
        path: the bundle folder (``bundles/<name>``).
        providers: ``None`` for CPU, or an ordered preference list of short/full provider names (optionally
            ``(name, options)`` pairs). Only listed providers are ever used.
        variant: which graph to run (``"default"``, ``"int8"``, ...); default is the manifest's ``default``.
        session_profile: overrides of the manifest's measured session profile (e.g. ``{"intra_op_num_threads": 1}``).
        cast: input dtype casting policy, ``"safe"`` (default) or ``"same_kind"`` (allows float64 -> float32).
        self_test: run the golden input once after loading (default True) and refuse a bundle that fails it.

    Returns:
        A ready :class:`Model`.

    Raises:
        ManifestError, IntegrityError, ProviderError, SelfTestError.
    """
    bundle = Path(path)
    if not bundle.is_dir():
        if bundle.is_file() and bundle.name == "manifest.json":
            bundle = bundle.parent
        else:
            raise IntegrityError(f"{bundle} is not a bundle folder (expected a folder holding manifest.json)")
    raw = read_manifest_bytes(bundle)
    manifest = decode_manifest(raw, str(bundle / "manifest.json"))
    manifest_sha256 = sha256_bytes(raw)
    key = variant or "default"
    if key not in manifest.variants:
        raise MedinferError(
            f"{manifest.name} has no variant {key!r}; it has: {', '.join(manifest.variants)}"
        )
    model_file = manifest.variants[key].file
    kept = verify_files(bundle, manifest, keep=(model_file, manifest.golden.file))
    resolved = resolve(providers, profile_options=manifest.profile.measured.get("provider_options"))
    profile = merge_profile(manifest.profile, session_profile)
    session = create_session(kept[model_file], profile, resolved)
    _check_metadata(session, manifest, bundle, model_file)
    model = Model(bundle, manifest, manifest_sha256, session, key, manifest.files[model_file].sha256,
                  kept[manifest.golden.file], cast)
    if self_test:
        report = model.self_test()
        log.info("%s self-test %s (max diff %.3g)", manifest.name, report.status, report.max_abs_diff)
    return model


def _check_metadata(session: Any, manifest: Manifest, bundle: Path, model_file: str) -> None:
    meta = session.get_modelmeta().custom_metadata_map
    expected = {
        "medinfer.name": manifest.name,
        "medinfer.version": manifest.version,
        "medinfer.contract_sha256": contract_digest(manifest.to_json()),
    }
    for key, value in expected.items():
        if meta.get(key) != value:
            raise IntegrityError(
                f"{bundle}: '{model_file}' carries {key}={meta.get(key)!r} but the manifest says {value!r}: "
                "the graph belongs to another model or contract; re-export the bundle"
            )
