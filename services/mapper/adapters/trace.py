"""The mapper's part of ``orders trace`` in PostgreSQL: ``mapper.rejection_history`` written as
batches reject orders, and an order's sale, rejection and history read back, made a timeline by
``services/mapper/trace.py``.
"""

from __future__ import annotations

from typing import Any

from services.mapper import trace
from shared.db import Executor


async def record_rejections(db: Executor, rejected: list[dict[str, Any]]) -> None:
    """Note ``sale.rejected`` bodies (store, order, reason, detail) in the order's history."""
    rows = trace.history_rows(rejected)
    if rows:
        await db.execute(
            "INSERT INTO mapper.rejection_history (store_id, order_id, what, detail)"
            " SELECT s, o, 'rejected', d FROM unnest($1::bigint[], $2::bigint[], $3::text[])"
            " AS t(s, o, d)",
            [r[0] for r in rows],
            [r[1] for r in rows],
            [r[2] for r in rows],
        )


async def order_trace(db: Executor, store_id: int, order_id: int) -> dict[str, Any]:
    """The mapper's part of an order's timeline (``trace.timeline``): ``state`` and ``events``."""
    sale = await db.fetchrow(
        "SELECT id::text AS sale_id, order_number, total, status,"
        " jsonb_array_length(warnings) AS warnings, created_at"
        " FROM mapper.sales WHERE store_id = $1 AND order_id = $2",
        store_id,
        order_id,
    )
    rejection = await db.fetchrow(
        "SELECT reason, detail, attempts, rejected_at, resolved_at, retried_at, retries"
        " FROM mapper.rejections WHERE store_id = $1 AND order_id = $2",
        store_id,
        order_id,
    )
    history = await db.fetch(
        "SELECT at, what, detail FROM mapper.rejection_history"
        " WHERE store_id = $1 AND order_id = $2 ORDER BY at",
        store_id,
        order_id,
    )
    return trace.timeline(
        dict(sale) if sale is not None else None,
        dict(rejection) if rejection is not None else None,
        [dict(h) for h in history],
    )
