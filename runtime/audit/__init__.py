"""The audit trail (see :mod:`.writer` for the trail, :mod:`.record` for the record format and the verifier)."""

from __future__ import annotations

from .writer import (
    GENESIS,
    HEAD_SUFFIX,
    KEYED,
    AuditBinding,
    AuditError,
    AuditLog,
    AuditReport,
    _chain_hash,
    input_digest,
    read_key,
    verify_log,
)

__all__ = ["GENESIS", "HEAD_SUFFIX", "KEYED", "AuditBinding", "AuditError", "AuditLog", "AuditReport", "_chain_hash",
           "input_digest", "read_key", "verify_log"]
