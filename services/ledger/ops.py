"""The ledger's operator actions: opening stock, and sales and receivables as the ledger holds them.

The ledger owns sales after review, receivables and stock (``ledger.stock_movements``; others
read levels through the view ``ledger.stock_on_hand``); these are the only functions through
which an operator changes or reads them. Entering a product's opening stock publishes nothing:
no service keeps a copy of stock levels, the mapper reads the view when it checks stock.
"""

from __future__ import annotations

import json
from typing import Any

from shared.db import Conn, Executor
from shared.operations import OperatorError


async def record_initial_stock(conn: Conn, *, store_id: int, product_id: str, quantity: int) -> int:
    """Enter a product's opening stock (a movement in); returns the quantity entered."""
    if quantity < 0:
        raise OperatorError("--stock must not be negative")
    if quantity:
        await conn.execute(
            "INSERT INTO ledger.stock_movements (store_id, product_id, quantity, direction, reason)"
            " VALUES ($1, $2, $3, 'in', 'initial')",
            store_id,
            product_id,
            quantity,
        )
    return quantity


async def sale(db: Executor, store_id: int, order_id: int) -> dict[str, Any]:
    """The sale of a store order with its receivables and stock movements, and the order's facts
    it was announced with (SPEC §8: the store payment, the addresses, a partial refund)."""
    found = await db.fetchrow(
        "SELECT sale_id, store_id, order_id, order_number, status, seller_id, total, sale_date,"
        " confirmed_by, confirmed_at, cancelled_at, cancel_reason, partially_refunded_at,"
        " announcement->'store_payment' AS store_payment,"
        " announcement->'shipping_address' AS shipping_address,"
        " announcement->'customer' AS customer"
        " FROM ledger.sales WHERE store_id = $1 AND order_id = $2",
        store_id,
        order_id,
    )
    if found is None:
        raise OperatorError(f"no sale for order {order_id} of store {store_id}")
    receivables = await db.fetch(
        "SELECT id::text, number, amount, due_date, method, status FROM ledger.receivables"
        " WHERE sale_id = $1 ORDER BY number",
        found["sale_id"],
    )
    movements = await db.fetch(
        "SELECT id::text, product_id, quantity, direction, reason, line_number"
        " FROM ledger.stock_movements WHERE sale_id = $1 ORDER BY created_at, line_number",
        found["sale_id"],
    )
    facts = {key: _json(found[key]) for key in ("store_payment", "shipping_address", "customer")}
    return (
        dict(found)
        | facts
        | {
            "receivables": [dict(r) for r in receivables],
            "stock_movements": [dict(m) for m in movements],
        }
    )


async def receivables(db: Executor, store_id: int, status: str | None) -> list[dict[str, Any]]:
    """A store's receivables by due date, optionally of one status."""
    rows = await db.fetch(
        """
        SELECT r.id::text, r.sale_id, s.order_id, r.number, r.amount, r.due_date, r.method, r.status
        FROM ledger.receivables r JOIN ledger.sales s USING (sale_id)
        WHERE r.store_id = $1 AND ($2::text IS NULL OR r.status = $2)
        ORDER BY r.due_date, s.order_id, r.number
        """,
        store_id,
        status,
    )
    return [dict(r) for r in rows]


def _json(value: str | None) -> Any:
    # jsonb comes back as its text; an announcement without the field gives SQL NULL.
    return json.loads(value) if value is not None else None
