"""The ledger's records of an order over PostgreSQL, for ``orders trace``: the rows read, and the
refusals noted.

``order_trace`` reads the order's ``ledger.sales`` row, a cancellation held in
``ledger.early_cancellations``, its refusals (``ledger.refusals``) and, when there is a sale,
its receivables and stock movements; ``services.ledger.trace.timeline`` makes them a timeline.
``record_refusals`` notes the refused ERP messages a batch staged (``services.ledger.app``).
"""

from __future__ import annotations

from typing import Any

from services.ledger.trace import Row, refusal_rows, timeline
from shared.db import Executor


async def record_refusals(db: Executor, refused: list[dict[str, Any]]) -> None:
    """Note refusals of known sales (``sale.confirmation_refused`` bodies naming an order)."""
    rows = refusal_rows(refused)
    if not rows:
        return
    await db.execute(
        """
        INSERT INTO ledger.refusals AS r (store_id, order_id, reason, detail)
        SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[])
        ON CONFLICT (store_id, order_id, reason) DO UPDATE SET
            detail = excluded.detail, last_at = now(), count = r.count + 1
        """,
        [r[0] for r in rows],
        [r[1] for r in rows],
        [r[2] for r in rows],
        [r[3] for r in rows],
    )


async def order_trace(db: Executor, store_id: int, order_id: int) -> dict[str, Any]:
    """The ledger's part of an order's timeline: ``state`` (None, ``pending_review``,
    ``confirmed`` or ``cancelled``) and ``events``."""
    sale = await db.fetchrow(
        "SELECT sale_id, status, total, created_at, confirmed_by, confirmed_at, cancelled_at,"
        " cancel_reason FROM ledger.sales WHERE store_id = $1 AND order_id = $2",
        store_id,
        order_id,
    )
    early = await db.fetchrow(
        "SELECT cancelled_at, reason FROM ledger.early_cancellations"
        " WHERE store_id = $1 AND order_id = $2",
        store_id,
        order_id,
    )
    refusals = await db.fetch(
        "SELECT reason, detail, last_at, count FROM ledger.refusals"
        " WHERE store_id = $1 AND order_id = $2",
        store_id,
        order_id,
    )
    receivables: list[Row] = []
    movements: list[Row] = []
    if sale is not None:
        receivables = [
            dict(r)
            for r in await db.fetch(
                "SELECT number, amount, due_date, method, status FROM ledger.receivables"
                " WHERE sale_id = $1 ORDER BY number",
                sale["sale_id"],
            )
        ]
        movements = [
            dict(r)
            for r in await db.fetch(
                "SELECT product_id, quantity, direction FROM ledger.stock_movements"
                " WHERE sale_id = $1 ORDER BY direction DESC, line_number",
                sale["sale_id"],
            )
        ]
    return timeline(
        dict(sale) if sale is not None else None,
        dict(early) if early is not None else None,
        [dict(r) for r in refusals],
        receivables,
        movements,
    )
