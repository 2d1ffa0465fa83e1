"""medinfer: run verified medical-model bundles with onnxruntime (numpy + onnxruntime only).

    import medinfer
    model = medinfer.load("bundles/drug_activity_rf")
    prediction = model.predict(x)
    prediction.labels, prediction.scores, prediction.model_sha256
"""

from __future__ import annotations

from ._version import __version__
from .audit import AuditLog, verify_log
from .errors import (
    AuditError,
    BundleError,
    DataFetchError,
    DatasetError,
    DeadlineExceeded,
    InferenceError,
    InputError,
    InputTypeError,
    IntegrityError,
    ManifestError,
    MedinferError,
    MissingExtraError,
    NoInformationError,
    OutOfDomainError,
    OutputError,
    ParityError,
    ProviderError,
    RuntimeTooOld,
    SelfTestError,
    SignatureError,
    UnknownNameError,
    UsageError,
)
from .explain import Explanation
from .failsafe import NoResult, UnavailableModel
from .items import ItemResults
from .loader import load
from .manifest import Manifest, load_manifest
from .model import Model
from .options import LoadOptions
from .prediction import Prediction
from .readiness import SelfTestReport
from .request_groups import predict_grouped

__all__ = [
    "AuditError",
    "AuditLog",
    "BundleError",
    "DataFetchError",
    "DatasetError",
    "NoResult",
    "UnavailableModel",
    "verify_log",
    "DeadlineExceeded",
    "Explanation",
    "InferenceError",
    "InputError",
    "InputTypeError",
    "IntegrityError",
    "ItemResults",
    "LoadOptions",
    "Manifest",
    "ManifestError",
    "MedinferError",
    "MissingExtraError",
    "Model",
    "NoInformationError",
    "OutOfDomainError",
    "OutputError",
    "ParityError",
    "Prediction",
    "ProviderError",
    "RuntimeTooOld",
    "SelfTestError",
    "SelfTestReport",
    "SignatureError",
    "UnknownNameError",
    "UsageError",
    "__version__",
    "load",
    "load_manifest",
    "predict_grouped",
]
