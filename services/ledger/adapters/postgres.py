"""The ledger's tables: sales it can post, receivables, stock movements, early cancellations,
and the stock check it reads through the mapper's view (``mapper.store_settings_view``).

Exactly-once posting rests on keys, not on code paths: one receivable per (sale, installment
number), one movement per (sale, line, direction), and every status change made under the sale's
row lock (``SELECT ... FOR UPDATE``), so a confirmation and a cancellation of one sale serialise.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

import asyncpg

from services.ledger.domain import PlannedInstallment, PlannedMovement, SaleLine
from shared.contracts import Receivable, SalePendingReview, StockMovement
from shared.db import Conn


@dataclass(frozen=True)
class SaleRow:
    sale_id: str
    store_id: int
    order_id: int
    status: str
    seller_id: str | None
    total: Decimal
    sale_date: dt.date
    confirm_message_id: str | None


def sale_row(row: asyncpg.Record) -> SaleRow:
    return SaleRow(
        sale_id=row["sale_id"],
        store_id=row["store_id"],
        order_id=row["order_id"],
        status=row["status"],
        seller_id=row["seller_id"],
        total=row["total"],
        sale_date=row["sale_date"],
        confirm_message_id=row["confirm_message_id"],
    )


SALE_COLUMNS = (
    "sale_id, store_id, order_id, status, seller_id, total, sale_date, confirm_message_id"
)


async def insert_sale(conn: Conn, sale: SalePendingReview) -> bool:
    """Keep an announced sale; False when it was already known."""
    inserted = await conn.fetchval(
        """
        INSERT INTO ledger.sales (sale_id, store_id, order_id, order_number, status, seller_id,
            total, sale_date, announcement)
        VALUES ($1, $2, $3, $4, 'pending_review', $5, $6, $7, $8::jsonb)
        ON CONFLICT DO NOTHING
        RETURNING 1
        """,
        sale.sale_id,
        sale.store_id,
        sale.order_id,
        sale.order_number,
        sale.seller_id,
        sale.total,
        sale.sale_date,
        sale.model_dump_json(),
    )
    if inserted is None:
        return False
    await conn.execute(
        """
        INSERT INTO ledger.sale_lines (sale_id, line_number, product_id, description, quantity)
        SELECT $1, n, p, d, q FROM unnest($2::int[], $3::text[], $4::text[], $5::int[]) AS t(n, p, d, q)
        """,
        sale.sale_id,
        list(range(1, len(sale.items) + 1)),
        [item.product.id for item in sale.items],
        [item.description for item in sale.items],
        [item.quantity for item in sale.items],
    )
    return True


async def lock_sale(conn: Conn, sale_id: str) -> SaleRow | None:
    row = await conn.fetchrow(
        f"SELECT {SALE_COLUMNS} FROM ledger.sales WHERE sale_id = $1 FOR UPDATE", sale_id
    )
    return sale_row(row) if row is not None else None


async def lock_sale_of_order(conn: Conn, store_id: int, order_id: int) -> SaleRow | None:
    row = await conn.fetchrow(
        f"SELECT {SALE_COLUMNS} FROM ledger.sales WHERE store_id = $1 AND order_id = $2 FOR UPDATE",
        store_id,
        order_id,
    )
    return sale_row(row) if row is not None else None


async def sale_lines(conn: Conn, sale_id: str) -> list[SaleLine]:
    rows = await conn.fetch(
        "SELECT line_number, product_id, quantity, description FROM ledger.sale_lines"
        " WHERE sale_id = $1 ORDER BY line_number",
        sale_id,
    )
    return [
        SaleLine(r["line_number"], r["product_id"], r["quantity"], r["description"]) for r in rows
    ]


async def stock_check_enabled(conn: Conn, store_id: int) -> bool:
    # The mapper owns store settings and exposes them as this view (mapper/0002).
    value = await conn.fetchval(
        "SELECT stock_check FROM mapper.store_settings_view WHERE store_id = $1", store_id
    )
    return bool(value)


async def lock_products_and_count(
    conn: Conn, store_id: int, product_ids: list[str]
) -> dict[str, int]:
    """Serialise stock checks per product (advisory locks in a fixed order), then read on-hand."""
    for product_id in sorted(set(product_ids)):
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, $2))", product_id, store_id
        )
    rows = await conn.fetch(
        "SELECT product_id, on_hand FROM ledger.stock_on_hand WHERE store_id = $1 AND product_id = ANY($2::text[])",
        store_id,
        product_ids,
    )
    return {r["product_id"]: int(r["on_hand"]) for r in rows}


async def post_receivables(
    conn: Conn, sale: SaleRow, plan: list[PlannedInstallment]
) -> list[Receivable]:
    rows = await conn.fetch(
        """
        INSERT INTO ledger.receivables (sale_id, store_id, number, amount, due_date, method)
        SELECT $1, $2, n, a, d, m FROM unnest($3::int[], $4::numeric[], $5::date[], $6::text[]) AS t(n, a, d, m)
        RETURNING id::text, number, amount, due_date, method, status
        """,
        sale.sale_id,
        sale.store_id,
        [p.number for p in plan],
        [p.amount for p in plan],
        [p.due_date for p in plan],
        [p.method for p in plan],
    )
    return sorted((receivable_of(r) for r in rows), key=lambda r: r.number)


async def post_movements(
    conn: Conn, sale: SaleRow, plan: list[PlannedMovement], *, reason: str
) -> list[StockMovement]:
    rows = await conn.fetch(
        """
        INSERT INTO ledger.stock_movements
            (store_id, product_id, quantity, direction, reason, sale_id, line_number)
        SELECT $1, p, q, d, $2, $3, n FROM unnest($4::int[], $5::text[], $6::int[], $7::text[]) AS t(n, p, q, d)
        ON CONFLICT (sale_id, line_number, direction) DO NOTHING
        RETURNING id::text, product_id, quantity, direction, line_number
        """,
        sale.store_id,
        reason,
        sale.sale_id,
        [m.line_number for m in plan],
        [m.product_id for m in plan],
        [m.quantity for m in plan],
        [m.direction for m in plan],
    )
    return [movement_of(r) for r in sorted(rows, key=lambda r: r["line_number"])]


async def receivables_of(conn: Conn, sale_id: str) -> list[Receivable]:
    rows = await conn.fetch(
        "SELECT id::text, number, amount, due_date, method, status FROM ledger.receivables"
        " WHERE sale_id = $1 ORDER BY number",
        sale_id,
    )
    return [receivable_of(r) for r in rows]


async def movements_of(conn: Conn, sale_id: str, direction: str) -> list[tuple[int, StockMovement]]:
    rows = await conn.fetch(
        "SELECT id::text, product_id, quantity, direction, line_number FROM ledger.stock_movements"
        " WHERE sale_id = $1 AND direction = $2 ORDER BY line_number",
        sale_id,
        direction,
    )
    return [(r["line_number"], movement_of(r)) for r in rows]


async def cancel_open_receivables(conn: Conn, sale_id: str) -> list[Receivable]:
    rows = await conn.fetch(
        "UPDATE ledger.receivables SET status = 'cancelled' WHERE sale_id = $1 AND status = 'open'"
        " RETURNING id::text, number, amount, due_date, method, status",
        sale_id,
    )
    return sorted((receivable_of(r) for r in rows), key=lambda r: r.number)


async def set_confirmed(
    conn: Conn,
    sale_id: str,
    *,
    seller_id: str | None,
    message_id: str,
    confirmed_by: str,
) -> None:
    await conn.execute(
        """
        UPDATE ledger.sales SET status = 'confirmed', seller_id = $2, confirm_message_id = $3,
            confirmed_by = $4, confirmed_at = now()
        WHERE sale_id = $1
        """,
        sale_id,
        seller_id,
        message_id,
        confirmed_by,
    )


async def set_cancelled(conn: Conn, sale_id: str, reason: str) -> None:
    await conn.execute(
        "UPDATE ledger.sales SET status = 'cancelled', cancelled_at = now(), cancel_reason = $2"
        " WHERE sale_id = $1",
        sale_id,
        reason,
    )


async def remember_cancellation(
    conn: Conn, store_id: int, order_id: int, cancelled_at: dt.datetime, reason: str
) -> None:
    await conn.execute(
        "INSERT INTO ledger.early_cancellations (store_id, order_id, cancelled_at, reason)"
        " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        store_id,
        order_id,
        cancelled_at,
        reason,
    )


async def take_early_cancellation(conn: Conn, store_id: int, order_id: int) -> str | None:
    return await conn.fetchval(  # type: ignore[no-any-return]
        "DELETE FROM ledger.early_cancellations WHERE store_id = $1 AND order_id = $2 RETURNING reason",
        store_id,
        order_id,
    )


def receivable_of(row: asyncpg.Record) -> Receivable:
    """A ``ledger.receivables`` row as the messages carry it."""
    return Receivable(
        id=row["id"],
        number=row["number"],
        amount=row["amount"],
        due_date=row["due_date"],
        method=row["method"],
        status=row["status"],
    )


def movement_of(row: asyncpg.Record) -> StockMovement:
    """A ``ledger.stock_movements`` row as the messages carry it."""
    return StockMovement(
        id=row["id"],
        product_id=row["product_id"],
        quantity=row["quantity"],
        direction=row["direction"],
    )
