"""Every time medinfer writes down, in ONE format: ISO 8601 in UTC with a ``Z`` (``2026-12-05T10:00:00Z``), with
a fraction of the second where a record needs it (``.123`` in the server's JSON log, ``.123456`` in the audit
trail). Build records (a bundle's ``created``, a training run's ``train.json``) honour ``SOURCE_DATE_EPOCH``
(the reproducible-builds convention). :func:`parse_utc` reads this format back, and the ``+00:00`` form that
bundles and audit events written before it used.
"""

from __future__ import annotations

import calendar
import os
import re
import time
from typing import Any

_FORMAT = "%Y-%m-%dT%H:%M:%S"
_PARSE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]00:?00)?$")


def utc_text(seconds: float | None = None, *, digits: int = 0) -> str:
    """``seconds`` since the epoch (default: now) as ``YYYY-MM-DDTHH:MM:SS[.f…]Z`` with ``digits`` of fraction
    (0, 3 or 6)."""
    now = time.time() if seconds is None else float(seconds)
    whole = int(now // 1)
    text = time.strftime(_FORMAT, time.gmtime(whole))
    if digits:
        text += f".{int((now - whole) * 10 ** digits):0{digits}d}"
    return text + "Z"


def build_time() -> str:
    """The time a build records: ``$SOURCE_DATE_EPOCH`` when set (whole seconds), else now (seconds)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    return utc_text(int(epoch) if epoch.isdigit() else None)


def parse_utc(text: str) -> float:
    """Seconds since the epoch of a time in this format (or ``+00:00`` instead of ``Z``; a missing zone is UTC).

    Raises:
        ValueError: not such a time.
    """
    match = _PARSE.match(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not an ISO 8601 UTC time such as 2026-12-05T10:00:00Z")
    whole = calendar.timegm(time.strptime(match.group(1), _FORMAT))
    return whole + (float(match.group(2)) if match.group(2) else 0.0)


def parse_time(text: str) -> float:
    """Seconds since the epoch of an ISO 8601 time with an explicit zone (``Z`` or any offset, e.g. a token's
    expiry a person typed as ``2027-01-31T00:00:00+01:00``).

    Raises:
        ValueError: not an ISO 8601 time, or one without a zone.
    """
    from datetime import datetime

    when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if when.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone (e.g. 2027-01-31T00:00:00Z)")
    return when.timestamp()


def utc_datetime(seconds: float | None = None) -> Any:
    """``seconds`` since the epoch (default: now) as a timezone-aware ``datetime`` in UTC, whole seconds: for the
    libraries whose API takes one (python-tuf's metadata expiry, X.509 validity)."""
    from datetime import datetime, timezone

    return datetime.fromtimestamp(int(time.time() if seconds is None else seconds), timezone.utc)


class UtcClock:
    """:func:`utc_text` with six digits for a writer that stamps many records a second (the audit trail): the
    seconds part is formatted once per second."""

    __slots__ = ("_second", "_text")

    def __init__(self) -> None:
        self._second, self._text = -1, ""

    def now(self) -> str:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second, self._text = second, utc_text(second)[:-1]
        return f"{self._text}.{int(now % 1 * 1e6):06d}Z"


_WALL = re.compile(r"^(\d{4}-\d\d-\d\d)[T ](\d\d:\d\d)(:\d\d)?(\.\d+)?(Z|[+-]\d\d:?\d\d)?$")


def parse_wall_clock(text: str) -> float:
    """A device's local date and time as written (ISO 8601, ``T`` or a space, seconds optional; a zone offset is
    accepted and the wall-clock time kept, since a CGM's time of day is the patient's) as seconds since the epoch of
    that wall-clock time read as UTC: differences are durations, ``% 86400`` is the time of day.

    Raises:
        ValueError: not such a time.
    """
    match = _WALL.match(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not an ISO 8601 date and time such as 2026-03-01T07:35:00")
    whole = calendar.timegm(time.strptime(f"{match.group(1)}T{match.group(2)}{match.group(3) or ':00'}", _FORMAT))
    return whole + (float(match.group(4)) if match.group(4) else 0.0)


def wall_clock_text(seconds: float) -> str:
    """:func:`parse_wall_clock`'s seconds back as ``YYYY-MM-DDTHH:MM`` (for messages)."""
    return time.strftime("%Y-%m-%dT%H:%M", time.gmtime(int(seconds)))
