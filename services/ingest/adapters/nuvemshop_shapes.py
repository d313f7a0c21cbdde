"""What the Nuvemshop client speaks in, without I/O: its errors, the token grant, the order
filters and the query parameters they become, timestamps as the API compares them, JSON bodies
(numbers as ``Decimal``), and a listing as pages that follow the ``Link`` header.

``services.ingest.adapters.nuvemshop`` (the client) re-exports the public names.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Final, TypedDict

from yarl import URL

from services.ingest.adapters.ratelimit import Reply

MAX_PER_PAGE: Final = 200
MAX_REACH: Final = 10_000
# What every order read asks to be aggregated: the fulfillment orders, where 2025-03 keeps shipping.
ORDER_AGGREGATES: Final = "fulfillment_orders"
BODY_EXCERPT: Final = 2000


class NuvemshopError(Exception):
    """Base of every error this client raises."""


class ApiUnavailable(NuvemshopError):  # noqa: N818 -- the name ingest catches
    """Transient: retries ran out (429, 5xx, connection errors, timeouts). Try again later."""


class CredentialsRevoked(NuvemshopError):  # noqa: N818 -- the name ingest catches
    """401: the store's access token was revoked (uninstall or reinstall)."""

    def __init__(self, store_id: int) -> None:
        super().__init__(f"store {store_id}: access token refused (401)")
        self.store_id = store_id


class StoreSuspended(NuvemshopError):  # noqa: N818 -- the name ingest catches
    """402: the store or the app is suspended; every call answers 402 until it is lifted."""

    def __init__(self, store_id: int) -> None:
        super().__init__(f"store {store_id}: store or app suspended (402)")
        self.store_id = store_id


class ApiError(NuvemshopError):
    """Any other refusal (400, 404 outside a single order, 415, 422, ...), with its body."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"Nuvemshop answered {status}: {body[:BODY_EXCERPT]}")
        self.status = status
        self.body = body


class TokenExchangeError(NuvemshopError):
    """The authorization code was refused; the text is the API's, with our secrets blanked out."""


@dataclass(frozen=True, slots=True)
class TokenGrant:
    """The outcome of an install: the token (kept out of ``repr``), the store and the scopes."""

    access_token: str = field(repr=False)
    store_id: int
    scope: tuple[str, ...]


class WindowFilters(TypedDict, total=False):
    """Order filters other than the ``updated_at`` window (which the windowed listing owns)."""

    payment_status: str | None
    status: str | None
    created_at_min: datetime | None
    created_at_max: datetime | None
    since_id: int | None
    fields: str | Sequence[str] | None
    aggregates: str | Sequence[str] | None
    per_page: int


class OrderQuery(WindowFilters, total=False):
    """Every ``GET /orders`` filter."""

    updated_at_min: datetime | None
    updated_at_max: datetime | None


def format_timestamp(value: datetime, *, round_up: bool = False) -> str:
    """UTC ISO 8601 with an explicit offset and whole seconds (``2024-05-01T12:00:00+00:00``).

    Naive datetimes are refused: guessing local time is how incremental pulls miss orders. The
    API compares whole seconds, so a lower bound rounds down and an upper bound (``round_up``)
    rounds up, never narrowing the range asked for.
    """
    require_aware(value)
    moment = value.astimezone(UTC)
    if round_up and moment.microsecond:
        moment += timedelta(seconds=1)
    return moment.replace(microsecond=0).isoformat()


def require_aware(value: datetime) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("naive datetime: pass an aware one (UTC)")


def comma_list(value: str | Sequence[str]) -> str:
    return value if isinstance(value, str) else ",".join(value)


def order_params(per_page: int, filters: Mapping[str, object]) -> dict[str, str]:
    if not 1 <= per_page <= MAX_PER_PAGE:
        raise ValueError(f"per_page must be within 1..{MAX_PER_PAGE}")
    # Always sent: the API's default page is 30, which would waste most of the rate limit.
    params = {"per_page": str(per_page)}
    for name, value in filters.items():
        if value is None:
            continue
        if isinstance(value, datetime):
            params[name] = format_timestamp(value, round_up=name.endswith("_max"))
        elif isinstance(value, str | int):
            params[name] = str(value)
        elif isinstance(value, Sequence):
            params[name] = ",".join(str(part) for part in value)
    return params


def midpoint(start: datetime, end: datetime) -> datetime:
    # Whole seconds, so that both halves send exactly the same boundary string.
    return (start + (end - start) / 2).astimezone(UTC).replace(microsecond=0)


def parse_store_id(value: object) -> int:
    # Seen both as "789" and 789; a bool is an int to Python but never a store id.
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    raise TokenExchangeError("token response without a usable user_id")


def parse_scopes(value: object) -> tuple[str, ...]:
    if not isinstance(value, str):
        return ()
    return tuple(part for part in value.replace(",", " ").split() if part)


_SURROGATE_ESCAPE: Final = re.compile(rb"\\u[dD][89a-fA-F]")


def _unicode(value: Any) -> Any:
    """``value`` with lone surrogates (``"\\ud800"`` escapes, which no UTF-8 text can hold and
    every message writer refuses) replaced by U+FFFD, as bad UTF-8 bytes would be."""
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError:
            return "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in value)
        return value
    if isinstance(value, dict):
        return {_unicode(k): _unicode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unicode(v) for v in value]
    return value


def json_body(reply: Reply) -> Any:
    try:
        payload = json.loads(reply.body, parse_float=Decimal)
        # Found by the order fuzz test: a lone surrogate crashed the consumer at publish time.
        return _unicode(payload) if _SURROGATE_ESCAPE.search(reply.body) else payload
    except ValueError:
        raise ApiError(reply.status, f"not JSON: {reply.text}") from None
    except RecursionError:
        # Nested past the parser's depth (about a thousand levels): as unreadable as a
        # maintenance page, and answered the same way (found by the order fuzz test).
        raise ApiError(reply.status, "not JSON: nested too deeply") from None


def total_count_of(reply: Reply) -> int | None:
    raw = reply.headers.get("x-total-count", "").strip()
    return int(raw) if raw.isdigit() else None


@dataclass(frozen=True, slots=True)
class Page:
    items: list[dict[str, Any]]
    next_url: URL | None
    total_count: int | None


class Pages:
    """The pages of one listing, as an async iterator of lists of objects.

    ``total_count`` is the first page's ``x-total-count`` (None until that page has arrived, or
    when the server did not send it).
    """

    def __init__(self, fetch: Callable[[URL], Awaitable[Page]], first_url: URL) -> None:
        self.total_count: int | None = None
        self._fetch = fetch
        self._next: URL | None = first_url
        self._started = False

    def __aiter__(self) -> Pages:
        return self

    async def __anext__(self) -> list[dict[str, Any]]:
        if self._next is None:
            raise StopAsyncIteration
        current = self._next
        page = await self._fetch(current)
        if not self._started:
            self._started = True
            self.total_count = page.total_count
        # A link back to the same page would loop forever; an empty page means we are past the end.
        self._next = page.next_url if page.items and page.next_url != current else None
        if not page.items:
            raise StopAsyncIteration
        return page.items


def refusal_text(reply: Reply, payload: Any) -> str:
    if isinstance(payload, dict):
        parts = [
            str(payload[key])
            for key in ("error", "error_description", "message", "description")
            if payload.get(key)
        ]
        if parts:
            return ": ".join(parts)
    return reply.text[:BODY_EXCERPT] or "no detail"
