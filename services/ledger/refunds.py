"""Partial refunds (SPEC §8.6): noted on the sale and announced, never reversed automatically.

``order.partially_refunded`` comes straight from ingest while the sale comes through the mapper,
so it may arrive first: it is then remembered (``ledger.early_partial_refunds``) and noted when
the sale is announced. A sale is noted once, whatever the number of notices; the announcement
``sale.partially_refunded`` has one message id per sale.
"""

from __future__ import annotations

import datetime as dt

from shared.contracts import OrderPartiallyRefunded, SalePartiallyRefunded
from shared.db import Conn
from shared.logging import get_logger
from shared.messaging import Envelope, correlation, envelope

log = get_logger(__name__)


def announcement(sale_id: str, store_id: int, order_id: int, noted_at: dt.datetime) -> Envelope:
    message = SalePartiallyRefunded(
        sale_id=sale_id, store_id=store_id, order_id=order_id, noted_at=noted_at
    )
    return envelope(
        message,
        message_id=f"sale.partially_refunded:{sale_id}",
        correlation_id=correlation(store_id, order_id),
    )


async def note(conn: Conn, notice: OrderPartiallyRefunded) -> list[Envelope]:
    """Note the refund on the order's sale and announce it, or remember it until the sale comes."""
    row = await conn.fetchrow(
        """
        UPDATE ledger.sales SET partially_refunded_at = $3
        WHERE store_id = $1 AND order_id = $2 AND partially_refunded_at IS NULL
        RETURNING sale_id
        """,
        notice.store_id,
        notice.order_id,
        notice.noted_at,
    )
    if row is not None:
        log.info("sale partially refunded: noted, nothing reversed", sale_id=row["sale_id"])
        return [announcement(row["sale_id"], notice.store_id, notice.order_id, notice.noted_at)]
    known = await conn.fetchval(
        "SELECT 1 FROM ledger.sales WHERE store_id = $1 AND order_id = $2",
        notice.store_id,
        notice.order_id,
    )
    if known is None:
        await conn.execute(
            "INSERT INTO ledger.early_partial_refunds (store_id, order_id, noted_at)"
            " VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            notice.store_id,
            notice.order_id,
            notice.noted_at,
        )
        log.info("partial refund remembered until its sale arrives")
    return []


async def note_early(conn: Conn, sale_ids: list[str]) -> list[Envelope]:
    """Note the refunds remembered for sales just announced; their announcements."""
    rows = await conn.fetch(
        """
        WITH taken AS (
            DELETE FROM ledger.early_partial_refunds e
            USING ledger.sales s
            WHERE s.store_id = e.store_id AND s.order_id = e.order_id
              AND s.sale_id = ANY($1::text[])
            RETURNING e.store_id, e.order_id, e.noted_at
        )
        UPDATE ledger.sales s SET partially_refunded_at = t.noted_at
        FROM taken t
        WHERE s.store_id = t.store_id AND s.order_id = t.order_id
          AND s.partially_refunded_at IS NULL
        RETURNING s.sale_id, s.store_id, s.order_id, s.partially_refunded_at
        """,
        sale_ids,
    )
    return [
        announcement(r["sale_id"], r["store_id"], r["order_id"], r["partially_refunded_at"])
        for r in rows
    ]
