"""Timestamps the way Nuvemshop writes and reads them: orders carry `2022-11-15T19:36:59+0000`
(UTC, whole seconds, no colon in the offset) and the `*_min`/`*_max` filters accept ISO 8601 with a
`+0000`, `+00:00` or `Z` offset, a bare date (midnight UTC) or a naive time (taken as UTC); a `+`
that arrived as a space because the client did not percent-encode the query is put back.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any

UTC = dt.UTC
Clock = Callable[[], dt.datetime]

_SPACE_OFFSET = re.compile(r"^(.*\d) (\d{2}:?\d{2})$")


def utc_now() -> dt.datetime:
    """The default clock: the current time, aware, in UTC."""
    return dt.datetime.now(UTC)


def to_utc_second(value: dt.datetime) -> dt.datetime:
    """Normalise an aware datetime to UTC with whole seconds (what the API can show)."""
    if value.tzinfo is None:
        raise ValueError("naive datetimes are not accepted; pass an aware one")
    return value.astimezone(UTC).replace(microsecond=0)


def format_ts(value: dt.datetime) -> str:
    """Render like the API: `2022-11-15T19:36:59+0000`."""
    return to_utc_second(value).strftime("%Y-%m-%dT%H:%M:%S+0000")


def completed_at(value: dt.datetime) -> dict[str, Any]:
    """The PHP-flavoured `completed_at` object seen in real orders."""
    moment = to_utc_second(value)
    return {
        "date": moment.strftime("%Y-%m-%d %H:%M:%S.000000"),
        "timezone_type": 3,
        "timezone": "UTC",
    }


def parse_ts(text: str) -> dt.datetime:
    """Parse a filter value; raises ValueError when it is not ISO 8601."""
    cleaned = text.strip()
    match = _SPACE_OFFSET.match(cleaned)
    if match and "T" in match.group(1):
        cleaned = f"{match.group(1)}+{match.group(2)}"
    parsed = dt.datetime.fromisoformat(cleaned)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)
