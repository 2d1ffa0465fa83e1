"""An audit writer bound to one model: the record of an inference encoded with the model's part done once."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .record import input_digest, json_string, number_text, output_text

if TYPE_CHECKING:
    from .writer import AuditLog


class AuditBinding:
    """An :class:`AuditLog` bound to one model (from :meth:`AuditLog.bind`): the model's JSON is encoded once."""

    __slots__ = ("log", "model", "version", "model_sha256", "_middle", "_end")

    def __init__(self, log: AuditLog, model: str, version: str, model_sha256: str) -> None:
        self.log, self.model, self.version, self.model_sha256 = log, model, version, model_sha256
        self._middle = f',"model":{json_string(model)},"model_sha256":{json_string(model_sha256)}'
        self._end = f',"version":{json_string(version)}}}'

    def record(self, feeds: dict[str, Any] | None, status: str, latency_us: float,
               output: dict[str, Any] | None = None, request_id: str | None = None, reason: str | None = None) -> str:
        """Append one inference record of the bound model; returns its request id (see :meth:`AuditLog.record`).

        Raises:
            AuditError: the record could not be written (the caller must not return the result).
        """
        log = self.log
        if feeds is None:
            return log.record(model=self.model, version=self.version, model_sha256=self.model_sha256, feeds=None,
                              status=status, latency_us=latency_us, output=output, request_id=request_id,
                              reason=reason)
        rid = request_id or f"{log._id_prefix}{next(log._ids):016x}"
        latency = round(latency_us, 1)
        # The canonical text in sorted key order, in three parts: "prev" and "seq" are filled in under the lock.
        log._append_locked((
            f'{log._chain}"input_sha256":"{input_digest(feeds)}","latency_us":{number_text(latency)}{self._middle}'
            + ("" if output is None else ',"output":' + output_text(output)),
            ("" if reason is None else ',"reason":' + json_string(reason)) + f',"request_id":{json_string(rid)}',
            f',"status":{json_string(status)},"time":"{log._now()}"{self._end}'))
        return rid
