"""The ledger's other tables over PostgreSQL: receivables, stock, what came early, probes.

Receivables and movements are read and written by sets of sales; stock checks are serialised
per (store, product) with transaction-scoped advisory locks taken in one fixed order, so two
confirmations needing the same last units cannot both take them. The privacy repository hands
over to ``services.ledger.adapters.privacy`` (its export and redaction).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import asyncpg

from services.ledger.adapters.privacy import handle_privacy, redact_queues
from services.ledger.domain import PlannedMovement
from services.ledger.ports import NotedRefund, SaleRow, StockKey
from shared.contracts import PrivacyRequest, Receivable, StockMovement
from shared.db import Conn
from shared.privacy import Person

UNOWNED_RETENTION = "7 days"

RECEIVABLE_COLUMNS = "id::text, number, amount, due_date, method, status"


def receivable(row: asyncpg.Record) -> Receivable:
    return Receivable(
        id=row["id"],
        number=row["number"],
        amount=row["amount"],
        due_date=row["due_date"],
        method=row["method"],
        status=row["status"],
    )


def movement(row: asyncpg.Record) -> StockMovement:
    return StockMovement(
        id=row["id"],
        product_id=row["product_id"],
        quantity=row["quantity"],
        direction=row["direction"],
    )


class PgReceivables:
    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    async def of(self, sale_ids: Sequence[str]) -> dict[str, list[Receivable]]:
        rows = await self.conn.fetch(
            f"SELECT sale_id, {RECEIVABLE_COLUMNS} FROM ledger.receivables"
            " WHERE sale_id = ANY($1::text[]) ORDER BY sale_id, number",
            list(sale_ids),
        )
        out: dict[str, list[Receivable]] = {}
        for r in rows:
            out.setdefault(r["sale_id"], []).append(receivable(r))
        return out

    async def cancel_open(self, sale_id: str) -> list[Receivable]:
        rows = await self.conn.fetch(
            "UPDATE ledger.receivables SET status = 'cancelled'"
            f" WHERE sale_id = $1 AND status = 'open' RETURNING {RECEIVABLE_COLUMNS}",
            sale_id,
        )
        return sorted((receivable(r) for r in rows), key=lambda r: r.number)


class PgStock:
    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    async def checked_stores(self, store_ids: set[int]) -> set[int]:
        """Read from the view the mapper exposes (mapper/0002): the mapper owns store settings."""
        if not store_ids:
            return set()
        rows = await self.conn.fetch(
            "SELECT store_id FROM mapper.store_settings_view"
            " WHERE stock_check AND store_id = ANY($1::bigint[])",
            list(store_ids),
        )
        return {r["store_id"] for r in rows}

    async def lock_and_count(self, keys: Sequence[StockKey]) -> dict[StockKey, int]:
        ordered = sorted(set(keys))
        stores, products = [s for s, _ in ordered], [p for _, p in ordered]
        # unnest yields the rows in array order: the locks are taken in (store, product) order.
        await self.conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(p, s))"
            " FROM unnest($1::text[], $2::bigint[]) AS t(p, s)",
            products,
            stores,
        )
        # Conditions on the view's grouping columns reach the index under it (a join would not).
        rows = await self.conn.fetch(
            "SELECT store_id, product_id, on_hand FROM ledger.stock_on_hand"
            " WHERE store_id = ANY($1::bigint[]) AND product_id = ANY($2::text[])",
            sorted(set(stores)),
            sorted(set(products)),
        )
        wanted = set(ordered)
        found = {(r["store_id"], r["product_id"]): int(r["on_hand"]) for r in rows}
        return {key: count for key, count in found.items() if key in wanted}

    async def movements(
        self, sale_ids: Sequence[str], direction: str
    ) -> dict[str, list[tuple[int, StockMovement]]]:
        rows = await self.conn.fetch(
            "SELECT sale_id, id::text, product_id, quantity, direction, line_number"
            " FROM ledger.stock_movements WHERE sale_id = ANY($1::text[]) AND direction = $2"
            " ORDER BY sale_id, line_number",
            list(sale_ids),
            direction,
        )
        out: dict[str, list[tuple[int, StockMovement]]] = {}
        for r in rows:
            out.setdefault(r["sale_id"], []).append((r["line_number"], movement(r)))
        return out

    async def post(
        self, sale: SaleRow, plan: Sequence[PlannedMovement], reason: str
    ) -> list[StockMovement]:
        rows = await self.conn.fetch(
            """
            INSERT INTO ledger.stock_movements
                (store_id, product_id, quantity, direction, reason, sale_id, line_number)
            SELECT $1, p, q, d, $2, $3, n
            FROM unnest($4::int[], $5::text[], $6::int[], $7::text[]) AS t(n, p, q, d)
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
        return [movement(r) for r in sorted(rows, key=lambda r: r["line_number"])]


class PgEarly:
    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    async def remember_cancellation(
        self, store_id: int, order_id: int, at: dt.datetime, reason: str
    ) -> None:
        await self.conn.execute(
            "INSERT INTO ledger.early_cancellations (store_id, order_id, cancelled_at, reason)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            store_id,
            order_id,
            at,
            reason,
        )

    async def take_cancellations(self, sale_ids: Sequence[str]) -> dict[str, str]:
        rows = await self.conn.fetch(
            """
            DELETE FROM ledger.early_cancellations e USING ledger.sales s
            WHERE s.store_id = e.store_id AND s.order_id = e.order_id
              AND s.sale_id = ANY($1::text[])
            RETURNING s.sale_id, e.reason
            """,
            list(sale_ids),
        )
        return {r["sale_id"]: r["reason"] for r in rows}

    async def remember_refund(self, store_id: int, order_id: int, at: dt.datetime) -> None:
        await self.conn.execute(
            "INSERT INTO ledger.early_partial_refunds (store_id, order_id, noted_at)"
            " VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            store_id,
            order_id,
            at,
        )

    async def take_refunds(self, sale_ids: Sequence[str]) -> list[NotedRefund]:
        rows = await self.conn.fetch(
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
            list(sale_ids),
        )
        return [
            NotedRefund(r["sale_id"], r["store_id"], r["order_id"], r["partially_refunded_at"])
            for r in rows
        ]


class PgProbes:
    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    async def note(self, message_ids: Sequence[str], shard: int) -> dict[str, int]:
        rows = await self.conn.fetch(
            """
            INSERT INTO ledger.unowned_erp_messages AS u (message_id, shards)
            SELECT m, ARRAY[$2::int] FROM unnest($1::text[]) AS m
            ON CONFLICT (message_id) DO UPDATE
                SET shards = ARRAY(SELECT DISTINCT unnest(u.shards || $2::int))
            RETURNING message_id, cardinality(shards) AS seen
            """,
            list(message_ids),
            shard,
        )
        await self.conn.execute(
            "DELETE FROM ledger.unowned_erp_messages"
            f" WHERE noted_at < now() - interval '{UNOWNED_RETENTION}'"
        )
        return {r["message_id"]: r["seen"] for r in rows}


class PgPrivacy:
    def __init__(self, conn: Conn, amqp_url: str | None, shard: int | None) -> None:
        self.conn = conn
        self.amqp_url = amqp_url
        self.shard = shard

    async def apply(self, request: PrivacyRequest) -> Person | None:
        return await handle_privacy(self.conn, request)

    async def redact_dead_letters(self, request: PrivacyRequest, person: Person | None) -> None:
        if self.amqp_url is not None:
            await redact_queues(self.amqp_url, request, person, self.shard)
