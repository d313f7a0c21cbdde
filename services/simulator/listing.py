"""`GET /orders` semantics: filters, paging and presentation. Results are sorted by `created_at`
then `id`, ascending; `*_min`/`*_max` bounds are inclusive and compared at whole seconds (what the
API shows). `per_page` defaults to 30 and is clamped to 200 (the reference gives the maximum but not
what happens past it); a non-integer or non-positive `page`/`per_page` answers 400. One query reaches
only its first 10,000 results: a page starting at or beyond offset 10,000 answers 400 and `last`
points at the last reachable page, while `x-total-count` keeps the true total. A page past the last
one is an empty list (or, with `strict_last_page`, the 404 "Last page is N" some integrations
report). A malformed filter value answers 422 `{"<param>": ["..."]}`.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from yarl import URL

from services.simulator.model import OrderRecord
from services.simulator.timefmt import parse_ts

DEFAULT_PER_PAGE = 30
MAX_PER_PAGE = 200
MAX_REACH = 10_000
STATUSES = ("any", "open", "closed", "cancelled")
PAYMENT_STATUSES = ("any", "pending", "authorized", "paid", "abandoned", "refunded", "voided")
AGGREGATES = ("fulfillment_orders",)


class QueryError(Exception):
    """A refused query: HTTP status and JSON body."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(status, body)
        self.status = status
        self.body = body


@dataclass
class Page:
    """One page of results and where it sits."""

    items: list[OrderRecord]
    total: int
    page: int
    per_page: int
    last_page: int


def _positive_int(params: Mapping[str, str], name: str, default: int) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise QueryError(400, {"error": f"{name} must be an integer"}) from None
    if value < 1:
        raise QueryError(400, {"error": f"{name} must be 1 or more"})
    return value


def _time(params: Mapping[str, str], name: str) -> dt.datetime | None:
    raw = params.get(name)
    if not raw:
        return None
    try:
        return parse_ts(raw)
    except ValueError:
        raise QueryError(422, {name: ["is not a valid ISO 8601 date"]}) from None


def _choice(params: Mapping[str, str], name: str, allowed: tuple[str, ...]) -> str:
    value = params.get(name) or "any"
    if value not in allowed:
        raise QueryError(422, {name: [f"must be one of {', '.join(allowed)}"]})
    return value


def _since_id(params: Mapping[str, str]) -> int | None:
    raw = params.get("since_id")
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise QueryError(422, {"since_id": ["must be an integer"]}) from None


def _within(moment: dt.datetime, low: dt.datetime | None, high: dt.datetime | None) -> bool:
    return (low is None or moment >= low) and (high is None or moment <= high)


def select(records: list[OrderRecord], params: Mapping[str, str]) -> list[OrderRecord]:
    """The records matching every filter of the query, in API order."""
    since_id = _since_id(params)
    created_min, created_max = _time(params, "created_at_min"), _time(params, "created_at_max")
    updated_min, updated_max = _time(params, "updated_at_min"), _time(params, "updated_at_max")
    status = _choice(params, "status", STATUSES)
    payment = _choice(params, "payment_status", PAYMENT_STATUSES)
    out = []
    for record in records:
        body = record.body
        if since_id is not None and record.id <= since_id:
            continue
        if not _within(record.created, created_min, created_max):
            continue
        if not _within(record.updated, updated_min, updated_max):
            continue
        if status != "any" and body.get("status") != status:
            continue
        if payment != "any" and body.get("payment_status") != payment:
            continue
        out.append(record)
    return out


def paginate(
    records: list[OrderRecord], params: Mapping[str, str], *, strict_last_page: bool = False
) -> Page:
    """Apply the filters and cut the requested page; raises QueryError."""
    per_page = min(_positive_int(params, "per_page", DEFAULT_PER_PAGE), MAX_PER_PAGE)
    page = _positive_int(params, "page", 1)
    offset = (page - 1) * per_page
    if offset >= MAX_REACH:
        raise QueryError(
            400,
            {"error": f"page out of reach: a query returns at most its first {MAX_REACH} "
             "results; narrow it with created_at_min/created_at_max"},
        )  # fmt: skip
    matched = select(records, params)
    reachable = min(len(matched), MAX_REACH)
    last_page = max(1, math.ceil(reachable / per_page))
    if strict_last_page and page > last_page:
        raise QueryError(
            404,
            {"code": 404, "message": "Not Found", "description": f"Last page is {last_page}"},
        )
    items = matched[offset : min(offset + per_page, reachable)]
    return Page(items, len(matched), page, per_page, last_page)


def link_header(url: URL, page: Page) -> str | None:
    """`Link` with next/last (when further pages exist) and first/prev (past the first)."""
    links = []

    def at(number: int) -> str:
        return str(url.update_query({"page": str(number), "per_page": str(page.per_page)}))

    if page.page < page.last_page:
        links.append(f'<{at(page.page + 1)}>; rel="next"')
        links.append(f'<{at(page.last_page)}>; rel="last"')
    if page.page > 1:
        links.append(f'<{at(1)}>; rel="first"')
        links.append(f'<{at(page.page - 1)}>; rel="prev"')
    return ", ".join(links) or None


def wanted_fields(params: Mapping[str, str]) -> frozenset[str] | None:
    """The `fields` selection, or None for every field."""
    raw = params.get("fields")
    if not raw:
        return None
    return frozenset(part.strip() for part in raw.split(",") if part.strip())


def wants_fulfillment(params: Mapping[str, str]) -> bool:
    """Whether `aggregates` asks for `fulfillment_orders`."""
    raw = params.get("aggregates") or ""
    return "fulfillment_orders" in {part.strip() for part in raw.split(",")}


MISSING: Final = object()  # a hostile override that leaves the field out


def with_hostile(body: dict[str, Any], overrides: dict[str, Any] | None) -> dict[str, Any]:
    """The order as served with a test's hostile fields (``Store.hostile``)."""
    if not overrides:
        return body
    served = {k: v for k, v in body.items() if overrides.get(k, None) is not MISSING}
    served.update({k: v for k, v in overrides.items() if v is not MISSING})
    return served


def present(
    record: OrderRecord,
    *,
    fields: frozenset[str] | None,
    fulfillment: bool,
    with_customer: bool,
) -> dict[str, Any]:
    """The order as served: field selection, customer scope, fulfillment aggregate.

    A 2025-03 order lists its fulfillment order ids in `fulfillments`; the aggregate puts the
    full objects there instead. A legacy (v1) order has no fulfillment orders to aggregate.
    """
    body = record.body
    detailed = fulfillment and record.shape != "v1"
    if fields is None and not detailed and with_customer:
        return body
    out = {
        key: value
        for key, value in body.items()
        if (fields is None or key in fields) and (with_customer or key != "customer")
    }
    if detailed and "fulfillments" in out:
        out["fulfillments"] = record.fulfillment_orders()
    return out
