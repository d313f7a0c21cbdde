"""The ledger's fast paths: runs of announcements, and of ordinary confirmations, set-based.

A run is a stretch of consecutive messages of one kind in a batch (order between kinds is kept:
an announcement is always handled before a confirmation that follows it). An ordinary
confirmation is one of a pending sale, of a store without the stock check, and the only one for
its sale in the run; anything else (repeats, refusals by status, stock checks) takes the
per-message path. The sales' rows are locked (in id order) before anything is posted, as the
per-message path does, so a concurrent cancellation still serialises with the confirmation.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from services.ledger import domain
from services.ledger.adapters import postgres as db
from shared.contracts import Receivable, SaleConfirm, SalePendingReview, StockMovement
from shared.db import Conn


async def keep_sales(conn: Conn, sales: list[SalePendingReview]) -> tuple[set[str], list[str]]:
    """Insert announced sales; returns (inserted ids, ids with a remembered cancellation)."""
    rows = await conn.fetch(
        """
        INSERT INTO ledger.sales (sale_id, store_id, order_id, order_number, status, seller_id,
            total, sale_date, announcement)
        SELECT s, st, o, n, 'pending_review', sel, t, d, a
        FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::text[],
                    $6::numeric[], $7::date[], $8::jsonb[]) AS x(s, st, o, n, sel, t, d, a)
        ON CONFLICT DO NOTHING
        RETURNING sale_id
        """,
        [s.sale_id for s in sales],
        [s.store_id for s in sales],
        [s.order_id for s in sales],
        [s.order_number for s in sales],
        [s.seller_id for s in sales],
        [s.total for s in sales],
        [s.sale_date for s in sales],
        [s.model_dump_json() for s in sales],
    )
    inserted = {r["sale_id"] for r in rows}
    kept = [s for s in sales if s.sale_id in inserted]
    lines = [(s.sale_id, n, item) for s in kept for n, item in enumerate(s.items, 1)]
    if lines:
        await conn.execute(
            """
            INSERT INTO ledger.sale_lines (sale_id, line_number, product_id, description, quantity)
            SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::text[], $5::int[])
            """,
            [sid for sid, _, _ in lines],
            [n for _, n, _ in lines],
            [item.product.id for _, _, item in lines],
            [item.description for _, _, item in lines],
            [item.quantity for _, _, item in lines],
        )
    early = await conn.fetch(
        """
        SELECT s.sale_id FROM ledger.early_cancellations e
        JOIN ledger.sales s ON s.store_id = e.store_id AND s.order_id = e.order_id
        WHERE s.sale_id = ANY($1::text[])
        """,
        [s.sale_id for s in kept],
    )
    return inserted, [r["sale_id"] for r in early]


@dataclass(frozen=True)
class Posting:
    sale: db.SaleRow
    request: SaleConfirm
    message_id: str
    installments: list[domain.PlannedInstallment]
    movements: list[domain.PlannedMovement]


async def lock_sales(conn: Conn, sale_ids: list[str]) -> dict[str, db.SaleRow]:
    rows = await conn.fetch(
        f"SELECT {db.SALE_COLUMNS} FROM ledger.sales WHERE sale_id = ANY($1::text[])"
        " ORDER BY sale_id FOR UPDATE",
        sale_ids,
    )
    return {r["sale_id"]: db.sale_row(r) for r in rows}


async def stock_checked(conn: Conn, store_ids: set[int]) -> set[int]:
    """The stores with the stock check on, read from the view the mapper exposes (mapper/0002)."""
    if not store_ids:
        return set()
    rows = await conn.fetch(
        "SELECT store_id FROM mapper.store_settings_view WHERE stock_check AND store_id = ANY($1::bigint[])",
        list(store_ids),
    )
    return {r["store_id"] for r in rows}


async def lines_of(conn: Conn, sale_ids: list[str]) -> dict[str, list[domain.SaleLine]]:
    rows = await conn.fetch(
        "SELECT sale_id, line_number, product_id, quantity, description FROM ledger.sale_lines"
        " WHERE sale_id = ANY($1::text[]) ORDER BY sale_id, line_number",
        sale_ids,
    )
    out: dict[str, list[domain.SaleLine]] = {}
    for r in rows:
        out.setdefault(r["sale_id"], []).append(
            domain.SaleLine(r["line_number"], r["product_id"], r["quantity"], r["description"])
        )
    return out


async def post(
    conn: Conn, postings: list[Posting]
) -> dict[str, tuple[list[Receivable], list[StockMovement]]]:
    """Receivables, movements out and status changes of every posting, three statements in all."""
    receivable_rows = await _insert_receivables(conn, postings)
    movement_rows = await _insert_movements(conn, postings)
    await _mark_confirmed(conn, postings)
    result: dict[str, tuple[list[Receivable], list[StockMovement]]] = {
        p.sale.sale_id: ([], []) for p in postings
    }
    for r in sorted(receivable_rows, key=lambda r: r["number"]):
        result[r["sale_id"]][0].append(db.receivable_of(r))
    for r in sorted(movement_rows, key=lambda r: r["line_number"]):
        result[r["sale_id"]][1].append(db.movement_of(r))
    return result


async def _insert_receivables(conn: Conn, postings: list[Posting]) -> list[asyncpg.Record]:
    recv = [(p, i) for p in postings for i in p.installments]
    return await conn.fetch(
        """
        INSERT INTO ledger.receivables (sale_id, store_id, number, amount, due_date, method)
        SELECT * FROM unnest($1::text[], $2::bigint[], $3::int[], $4::numeric[], $5::date[], $6::text[])
        RETURNING sale_id, id::text, number, amount, due_date, method, status
        """,
        [p.sale.sale_id for p, _ in recv],
        [p.sale.store_id for p, _ in recv],
        [i.number for _, i in recv],
        [i.amount for _, i in recv],
        [i.due_date for _, i in recv],
        [i.method for _, i in recv],
    )


async def _insert_movements(conn: Conn, postings: list[Posting]) -> list[asyncpg.Record]:
    moves = [(p, m) for p in postings for m in p.movements]
    return await conn.fetch(
        """
        INSERT INTO ledger.stock_movements
            (store_id, product_id, quantity, direction, reason, sale_id, line_number)
        SELECT st, p, q, 'out', 'sale', s, n
        FROM unnest($1::bigint[], $2::text[], $3::int[], $4::text[], $5::int[]) AS t(st, p, q, s, n)
        ON CONFLICT (sale_id, line_number, direction) DO NOTHING
        RETURNING sale_id, id::text, product_id, quantity, direction, line_number
        """,
        [p.sale.store_id for p, _ in moves],
        [m.product_id for _, m in moves],
        [m.quantity for _, m in moves],
        [p.sale.sale_id for p, _ in moves],
        [m.line_number for _, m in moves],
    )


async def _mark_confirmed(conn: Conn, postings: list[Posting]) -> None:
    await conn.execute(
        """
        UPDATE ledger.sales s SET status = 'confirmed', seller_id = t.seller, confirm_message_id = t.mid,
            confirmed_by = t.who, confirmed_at = now()
        FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS t(sid, seller, mid, who)
        WHERE s.sale_id = t.sid
        """,
        [p.sale.sale_id for p in postings],
        [p.request.seller_id or p.sale.seller_id for p in postings],
        [p.message_id for p in postings],
        [p.request.confirmed_by for p in postings],
    )
