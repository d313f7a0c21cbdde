"""What ingest knows of one order, for ``orders trace``: its webhooks, fetches, skips, announcements.

Ingest records what it saw of each order in ``ingest.order_trace`` (webhooks received, fetches
by webhook, poll or backfill, skips with their reason), in the transaction of the work itself
where there is one; repeats only count (one row per order, what and detail). The announcements
are ingest's own durable record, ``ingest.orders``. Rows of the trace table are pruned
``TRACE_RETENTION_DAYS`` after they were last touched, in small batches.

This module owns the pure part: what a sighting is (``Seen``), how repeats merge into one row
(``merge``) and how the rows read as a timeline (``timeline``). The writes, the reads and the
pruning run in ``adapters/trace.py``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shared.operations import iso

WEBHOOK = "webhook"
FETCHED = "fetched"
SKIPPED = "skipped"

SKIP_TEXT = {
    "not_paid": "not paid (nothing to import yet)",
    "before_activation": "created before the store's activation date",
    "store_disabled": "the store's integration is switched off",
}


@dataclass(frozen=True)
class Seen:
    """One thing ingest saw of an order."""

    order_id: int
    what: str  # WEBHOOK, FETCHED or SKIPPED
    detail: str  # the webhook's event, how it was fetched, why it was skipped
    at: dt.datetime | None = None  # None: the recording transaction's time (PostgreSQL now())


@dataclass(frozen=True)
class Tally:
    """The repeats of one sighting (order, what, detail) merged: how often, first and last."""

    order_id: int
    what: str
    detail: str
    first_at: dt.datetime | None  # None: the recording transaction's time
    last_at: dt.datetime | None
    count: int


def merge(seen: Iterable[Seen]) -> list[Tally]:
    """One tally per (order, what, detail), in that order: a repeat counts and widens the span."""
    merged: dict[tuple[int, str, str], tuple[dt.datetime | None, dt.datetime | None, int]] = {}
    for s in seen:
        key = (s.order_id, s.what, s.detail)
        first, last, count = merged.get(key, (s.at, s.at, 0))
        merged[key] = (_least(first, s.at), _greatest(last, s.at), count + 1)
    return [Tally(*key, *merged[key]) for key in sorted(merged)]


def _least(a: dt.datetime | None, b: dt.datetime | None) -> dt.datetime | None:
    return b if a is None else a if b is None else min(a, b)


def _greatest(a: dt.datetime | None, b: dt.datetime | None) -> dt.datetime | None:
    return b if a is None else a if b is None else max(a, b)


def _event(at: dt.datetime | None, what: str, detail: str) -> dict[str, Any]:
    return {"at": iso(at), "service": "ingest", "what": what, "detail": detail}


def _repeats(count: int, last_at: dt.datetime) -> str:
    return "" if count == 1 else f" ({count} times, the last at {iso(last_at)})"


def timeline(
    store: Mapping[str, Any] | None,
    seen: Sequence[Mapping[str, Any]],
    order: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """Ingest's part of an order's timeline from its rows: the store's (``enabled``,
    ``disabled_reason``, ``activated_at``; None when not connected), the order's trace rows in
    time order and its ``ingest.orders`` row (None when never announced). Returns ``store``,
    ``state`` (``unknown``, ``received``, ``skipped``, ``announced`` or ``cancelled``) and
    ``events``."""
    events = [_seen_event(r) for r in seen]
    state = "unknown"
    if any(r["what"] == WEBHOOK for r in seen):
        state = "received"
    if any(r["what"] == SKIPPED for r in seen):
        state = "skipped"
    if order is not None:
        events += _order_events(order)
        if order["paid_announced_at"] is not None or order["invalid_detail"] is not None:
            state = "announced"
        if order["cancelled_announced_at"] is not None:
            state = "cancelled"
    described = None
    if store is not None:
        described = {
            "enabled": store["enabled"],
            "disabled_reason": store["disabled_reason"],
            "activated_at": iso(store["activated_at"]),
        }
    return {"store": described, "state": state, "events": events}


def _seen_event(r: Mapping[str, Any]) -> dict[str, Any]:
    again = _repeats(r["count"], r["last_at"])
    if r["what"] == WEBHOOK:
        return _event(r["first_at"], "webhook received", f"{r['detail']}{again}")
    if r["what"] == FETCHED:
        return _event(r["first_at"], "fetched", f"from the Nuvemshop API by {r['detail']}{again}")
    reason = SKIP_TEXT.get(r["detail"], r["detail"])
    return _event(r["first_at"], "skipped", f"{r['detail']}: {reason}{again}")


def _order_events(order: Mapping[str, Any]) -> list[dict[str, Any]]:
    events = []
    number = f" #{order['order_number']}" if order["order_number"] is not None else ""
    if order["invalid_detail"] is not None and order["paid_announced_at"] is None:
        events.append(
            _event(
                order["updated_at"],
                "announced order.invalid",
                f"the order cannot be read: {order['invalid_detail']}",
            )
        )
    if order["paid_announced_at"] is not None:
        events.append(
            _event(order["paid_announced_at"], "announced order.paid", f"paid order{number}")
        )
    if order["partially_refunded_announced_at"] is not None:
        events.append(
            _event(
                order["partially_refunded_announced_at"],
                "announced order.partially_refunded",
                "partly refunded at the store",
            )
        )
    if order["cancelled_announced_at"] is not None:
        events.append(
            _event(
                order["cancelled_announced_at"],
                "announced order.cancelled",
                "cancelled, voided or refunded at the store",
            )
        )
    return events
