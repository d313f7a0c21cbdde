"""The ledger's unit of work over PostgreSQL, and its sales: what it keeps, locks and posts.

Exactly-once posting rests on keys, not on code paths: one receivable per (sale, installment
number), one movement per (sale, line, direction), and every status change made under the sale's
row lock (``SELECT ... FOR UPDATE``, sales locked in id order), so a confirmation and a
cancellation of one sale serialise. Every statement takes a set of rows (``unnest``): a batch of
any size, one included, costs the same few round trips. The other tables are in ``rows``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import asyncpg

from services.ledger.adapters.rows import (
    PgEarly,
    PgPrivacy,
    PgProbes,
    PgReceivables,
    PgStock,
    movement,
    receivable,
)
from services.ledger.domain import SaleLine
from services.ledger.ports import LedgerUnitOfWork, Posted, Posting, SaleRow
from shared.contracts import SalePendingReview
from shared.db import Conn
from shared.unitofwork import Begin, PostgresUnitOfWork, postgres

SCHEMA = "ledger"
SALE_COLUMNS = (
    "sale_id, store_id, order_id, status, seller_id, total, sale_date, confirm_message_id"
)


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


class PostgresLedger(PostgresUnitOfWork, LedgerUnitOfWork):
    """The repositories over the batch's connection; ``amqp_url`` and ``shard`` say which dead
    queues a redaction rewrites (None: none)."""

    def __init__(
        self, conn: Conn, *, amqp_url: str | None = None, shard: int | None = None
    ) -> None:
        super().__init__(conn, SCHEMA)
        self.sales = PgSales(conn)
        self.receivables = PgReceivables(conn)
        self.stock = PgStock(conn)
        self.early = PgEarly(conn)
        self.probes = PgProbes(conn)
        self.privacy = PgPrivacy(conn, amqp_url, shard)


def begin(
    pool: asyncpg.Pool, *, amqp_url: str | None = None, shard: int | None = None
) -> Begin[LedgerUnitOfWork]:
    return postgres(pool, lambda conn: PostgresLedger(conn, amqp_url=amqp_url, shard=shard))


class PgSales:
    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    async def add(self, sales: Sequence[SalePendingReview]) -> set[str]:
        rows = await self.conn.fetch(
            """
            INSERT INTO ledger.sales (sale_id, store_id, order_id, order_number, status,
                seller_id, total, sale_date, announcement)
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
            await self.conn.execute(
                """
                INSERT INTO ledger.sale_lines
                    (sale_id, line_number, product_id, description, quantity)
                SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::text[], $5::int[])
                """,
                [sid for sid, _, _ in lines],
                [n for _, n, _ in lines],
                [item.product.id for _, _, item in lines],
                [item.description for _, _, item in lines],
                [item.quantity for _, _, item in lines],
            )
        return inserted

    async def lock(self, sale_ids: Sequence[str]) -> dict[str, SaleRow]:
        rows = await self.conn.fetch(
            f"SELECT {SALE_COLUMNS} FROM ledger.sales WHERE sale_id = ANY($1::text[])"
            " ORDER BY sale_id FOR UPDATE",
            list(sale_ids),
        )
        return {r["sale_id"]: sale_row(r) for r in rows}

    async def lock_of_order(self, store_id: int, order_id: int) -> SaleRow | None:
        row = await self.conn.fetchrow(
            f"SELECT {SALE_COLUMNS} FROM ledger.sales WHERE store_id = $1 AND order_id = $2"
            " FOR UPDATE",
            store_id,
            order_id,
        )
        return sale_row(row) if row is not None else None

    async def owners(self, sale_ids: Sequence[str]) -> dict[str, int]:
        rows = await self.conn.fetch(
            "SELECT sale_id, store_id FROM ledger.sales WHERE sale_id = ANY($1::text[])",
            list(sale_ids),
        )
        return {r["sale_id"]: r["store_id"] for r in rows}

    async def lines(self, sale_ids: Sequence[str]) -> dict[str, list[SaleLine]]:
        if not sale_ids:
            return {}
        rows = await self.conn.fetch(
            "SELECT sale_id, line_number, product_id, quantity, description FROM ledger.sale_lines"
            " WHERE sale_id = ANY($1::text[]) ORDER BY sale_id, line_number",
            list(sale_ids),
        )
        out: dict[str, list[SaleLine]] = {}
        for r in rows:
            out.setdefault(r["sale_id"], []).append(
                SaleLine(r["line_number"], r["product_id"], r["quantity"], r["description"])
            )
        return out

    async def confirm(self, postings: Sequence[Posting]) -> dict[str, Posted]:
        """Receivables, movements out and status changes of every posting, three statements."""
        recv = [(p, i) for p in postings for i in p.installments]
        receivable_rows = await self.conn.fetch(
            """
            INSERT INTO ledger.receivables (sale_id, store_id, number, amount, due_date, method)
            SELECT * FROM unnest($1::text[], $2::bigint[], $3::int[], $4::numeric[], $5::date[],
                                 $6::text[])
            RETURNING sale_id, id::text, number, amount, due_date, method, status
            """,
            [p.sale.sale_id for p, _ in recv],
            [p.sale.store_id for p, _ in recv],
            [i.number for _, i in recv],
            [i.amount for _, i in recv],
            [i.due_date for _, i in recv],
            [i.method for _, i in recv],
        )
        moves = [(p, m) for p in postings for m in p.movements]
        movement_rows = await self.conn.fetch(
            """
            INSERT INTO ledger.stock_movements
                (store_id, product_id, quantity, direction, reason, sale_id, line_number)
            SELECT st, p, q, 'out', 'sale', s, n
            FROM unnest($1::bigint[], $2::text[], $3::int[], $4::text[], $5::int[])
                AS t(st, p, q, s, n)
            ON CONFLICT (sale_id, line_number, direction) DO NOTHING
            RETURNING sale_id, id::text, product_id, quantity, direction, line_number
            """,
            [p.sale.store_id for p, _ in moves],
            [m.product_id for _, m in moves],
            [m.quantity for _, m in moves],
            [p.sale.sale_id for p, _ in moves],
            [m.line_number for _, m in moves],
        )
        await self.conn.execute(
            """
            UPDATE ledger.sales s SET status = 'confirmed', seller_id = t.seller,
                confirm_message_id = t.mid, confirmed_by = t.who, confirmed_at = now()
            FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS t(sid, seller, mid, who)
            WHERE s.sale_id = t.sid
            """,
            [p.sale.sale_id for p in postings],
            [p.request.seller_id or p.sale.seller_id for p in postings],
            [p.message_id for p in postings],
            [p.request.confirmed_by for p in postings],
        )
        result: dict[str, Posted] = {p.sale.sale_id: ([], []) for p in postings}
        for r in sorted(receivable_rows, key=lambda r: r["number"]):
            result[r["sale_id"]][0].append(receivable(r))
        for r in sorted(movement_rows, key=lambda r: r["line_number"]):
            result[r["sale_id"]][1].append(movement(r))
        return result

    async def set_cancelled(self, sale_id: str, reason: str) -> None:
        await self.conn.execute(
            "UPDATE ledger.sales SET status = 'cancelled', cancelled_at = now(), cancel_reason = $2"
            " WHERE sale_id = $1",
            sale_id,
            reason,
        )

    async def note_refund(self, store_id: int, order_id: int, at: dt.datetime) -> str | None:
        return await self.conn.fetchval(  # type: ignore[no-any-return]
            """
            UPDATE ledger.sales SET partially_refunded_at = $3
            WHERE store_id = $1 AND order_id = $2 AND partially_refunded_at IS NULL
            RETURNING sale_id
            """,
            store_id,
            order_id,
            at,
        )

    async def known_order(self, store_id: int, order_id: int) -> bool:
        found = await self.conn.fetchval(
            "SELECT 1 FROM ledger.sales WHERE store_id = $1 AND order_id = $2", store_id, order_id
        )
        return found is not None
