"""What ingest knows of one order, for ``orders trace``: its webhooks, fetches, skips, announcements.

Ingest records what it saw of each order in ``ingest.order_trace`` (webhooks received, fetches
by webhook, poll or backfill, skips with their reason), in the transaction of the work itself
where there is one; repeats only count (one row per order, what and detail). The announcements
are ingest's own durable record, ``ingest.orders``. Rows of the trace table are pruned
``TRACE_RETENTION_DAYS`` after they were last touched, in small batches.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import asyncpg

from shared.db import Executor
from shared.operations import iso
from shared.pruning import AgePruner

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


async def record(conn: Executor, store_id: int, seen: Iterable[Seen]) -> None:
    """Note what was seen (in the caller's transaction); a repeat counts and moves ``last_at``."""
    merged: dict[tuple[int, str, str], tuple[dt.datetime | None, dt.datetime | None, int]] = {}
    for s in seen:
        key = (s.order_id, s.what, s.detail)
        first, last, count = merged.get(key, (s.at, s.at, 0))
        merged[key] = (_least(first, s.at), _greatest(last, s.at), count + 1)
    if not merged:
        return
    keys = sorted(merged)
    await conn.execute(
        """
        INSERT INTO ingest.order_trace AS t
            (store_id, order_id, what, detail, first_at, last_at, count)
        SELECT $1, o, w, d, COALESCE(f, now()), COALESCE(l, now()), c
        FROM unnest($2::bigint[], $3::text[], $4::text[], $5::timestamptz[], $6::timestamptz[],
                    $7::int[]) AS t(o, w, d, f, l, c)
        ON CONFLICT (store_id, order_id, what, detail) DO UPDATE SET
            count = t.count + excluded.count,
            first_at = LEAST(t.first_at, excluded.first_at),
            last_at = GREATEST(t.last_at, excluded.last_at)
        """,
        store_id,
        [k[0] for k in keys],
        [k[1] for k in keys],
        [k[2] for k in keys],
        [merged[k][0] for k in keys],
        [merged[k][1] for k in keys],
        [merged[k][2] for k in keys],
    )


def _least(a: dt.datetime | None, b: dt.datetime | None) -> dt.datetime | None:
    return b if a is None else a if b is None else min(a, b)


def _greatest(a: dt.datetime | None, b: dt.datetime | None) -> dt.datetime | None:
    return b if a is None else a if b is None else max(a, b)


def _event(at: dt.datetime | None, what: str, detail: str) -> dict[str, Any]:
    return {"at": iso(at), "service": "ingest", "what": what, "detail": detail}


def _repeats(count: int, last_at: dt.datetime) -> str:
    return "" if count == 1 else f" ({count} times, the last at {iso(last_at)})"


async def order_trace(db: Executor, store_id: int, order_id: int) -> dict[str, Any]:
    """Ingest's part of an order's timeline: ``store`` (None when not connected), ``state``
    (``unknown``, ``received``, ``skipped``, ``announced`` or ``cancelled``) and ``events``."""
    store = await db.fetchrow(
        "SELECT enabled, disabled_reason, activated_at FROM ingest.stores WHERE store_id = $1",
        store_id,
    )
    seen = await db.fetch(
        "SELECT what, detail, first_at, last_at, count FROM ingest.order_trace"
        " WHERE store_id = $1 AND order_id = $2"
        " ORDER BY first_at, array_position(ARRAY['webhook', 'fetched', 'skipped'], what)",
        store_id,
        order_id,
    )
    order = await db.fetchrow(
        "SELECT order_number, paid_announced_at, cancelled_announced_at, invalid_detail,"
        " partially_refunded_announced_at, updated_at"
        " FROM ingest.orders WHERE store_id = $1 AND order_id = $2",
        store_id,
        order_id,
    )
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


def _seen_event(r: asyncpg.Record) -> dict[str, Any]:
    again = _repeats(r["count"], r["last_at"])
    if r["what"] == WEBHOOK:
        return _event(r["first_at"], "webhook received", f"{r['detail']}{again}")
    if r["what"] == FETCHED:
        return _event(r["first_at"], "fetched", f"from the Nuvemshop API by {r['detail']}{again}")
    reason = SKIP_TEXT.get(r["detail"], r["detail"])
    return _event(r["first_at"], "skipped", f"{r['detail']}: {reason}{again}")


def _order_events(order: asyncpg.Record) -> list[dict[str, Any]]:
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


class TracePruner(AgePruner):
    """Forgets trace rows not touched for ``retention_s``, in small batches (short locks)."""

    def __init__(
        self, pool: asyncpg.Pool, *, retention_s: float, interval_s: float, batch: int = 1000
    ) -> None:
        super().__init__(
            pool,
            "ingest.order_trace",
            key="ctid",
            age="last_at",
            retention_s=retention_s,
            interval_s=interval_s,
            batch=batch,
        )
