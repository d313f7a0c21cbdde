"""``ingest.order_trace`` in PostgreSQL: noting what was seen of orders, reading an order's
rows for ``orders trace``, pruning the rows no longer touched.

A note runs in the caller's transaction (the work it records) and merges with the row already
there: repeats only count and move ``last_at``. The pure rules (what a sighting is, how repeats
merge, how the rows read as a timeline) are ``services.ingest.trace``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import asyncpg

from services.ingest.trace import Seen, merge, timeline
from shared.db import Executor
from shared.pruning import AgePruner


async def record(conn: Executor, store_id: int, seen: Iterable[Seen]) -> None:
    """Note what was seen (in the caller's transaction); a repeat counts and moves ``last_at``."""
    tallies = merge(seen)
    if not tallies:
        return
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
        [t.order_id for t in tallies],
        [t.what for t in tallies],
        [t.detail for t in tallies],
        [t.first_at for t in tallies],
        [t.last_at for t in tallies],
        [t.count for t in tallies],
    )


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
    return timeline(
        dict(store) if store is not None else None,
        [dict(r) for r in seen],
        dict(order) if order is not None else None,
    )


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
