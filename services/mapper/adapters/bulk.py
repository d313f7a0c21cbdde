"""The mapper's imports in PostgreSQL, set-based: the one SQL path of ``imports.import_orders``.

A batch costs a fixed handful of statements whatever its size, a batch of one included: one read
of what the batch depends on (its orders' sales, its stores' settings and status), one of the
products its lines could match, the stock of those when a store checks it, an insert of the new
customers (and a read of the ones that existed), one of the new products (likewise), and one
statement storing the sales, their lines and resolving the orders' open rejections. Rejections are
recorded one by one (their attempt counter is per order). When PostgreSQL refuses an order's
data itself (``asyncpg.DataError``, ``ProgramLimitExceededError``), the statement raises
``ports.UnstorableError`` with PostgreSQL's message.

Uniqueness lives in the database: (store, name key, document key) for customers, (store,
description) for products and (store, order) for sales. Every insert is ``ON CONFLICT DO
NOTHING`` followed by a read of the winner, so concurrent imports of one new customer or product
converge on a single row instead of racing a check-then-insert; a sale a concurrent worker
stored first is skipped. Rows are inserted in key order, so two workers never wait on each other
in opposite orders.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Collection, Iterator, Sequence

import asyncpg
from pydantic import BaseModel

from services.mapper import domain, rules
from services.mapper.ports import (
    CustomerKey,
    OrderKey,
    OrderMessage,
    ProductKey,
    SkuKey,
    Snapshot,
    UnstorableError,
)
from shared.contracts import SaleRejected
from shared.db import Conn

_SNAPSHOT = """
    SELECT 'sale' AS kind, s.store_id, s.order_id,
           NULL::boolean AS stock_check, NULL::text AS product_match, NULL::text AS timezone,
           NULL::text AS reason
    FROM mapper.sales s
    JOIN unnest($1::bigint[], $2::bigint[]) AS t(store_id, order_id)
      ON s.store_id = t.store_id AND s.order_id = t.order_id
    UNION ALL
    SELECT 'settings', store_id, NULL, stock_check, product_match, timezone, NULL
    FROM mapper.store_settings WHERE store_id = ANY($3::bigint[])
    UNION ALL
    SELECT 'off', store_id, NULL, NULL, NULL, NULL, coalesce(nullif(reason, ''), 'switched_off')
    FROM mapper.store_status WHERE NOT enabled AND store_id = ANY($3::bigint[])
"""

_PRODUCTS = """
    SELECT 'description' AS kind, p.id::text, p.store_id, p.description, p.sku
    FROM mapper.products p
    JOIN unnest($1::bigint[], $2::text[]) AS t(store_id, description)
      ON p.store_id = t.store_id AND p.description = t.description
    UNION ALL
    SELECT * FROM (
        SELECT DISTINCT ON (p.store_id, p.sku) 'sku', p.id::text, p.store_id, p.description, p.sku
        FROM mapper.products p
        JOIN unnest($3::bigint[], $4::text[]) AS t(store_id, sku)
          ON p.store_id = t.store_id AND p.sku = t.sku
        ORDER BY p.store_id, p.sku, p.created_at, p.id
    ) AS oldest
"""

_SALES = """
    WITH sale AS (
        INSERT INTO mapper.sales (id, store_id, order_id, order_number, customer_id, seller_id,
            subtotal, shipping, discount, total, sale_date, warnings, store_payment,
            customer_address, shipping_address)
        SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::bigint[], $4::bigint[], $5::uuid[],
            $6::text[], $7::numeric[], $8::numeric[], $9::numeric[], $10::numeric[], $11::date[],
            $12::jsonb[], $13::jsonb[], $14::jsonb[], $15::jsonb[])
        ON CONFLICT (store_id, order_id) DO NOTHING
        RETURNING id, store_id, order_id
    ), line AS (
        INSERT INTO mapper.sale_items
            (sale_id, line_number, product_id, description, quantity, unit_price, total)
        SELECT t.* FROM unnest($16::uuid[], $17::int[], $18::uuid[], $19::text[], $20::int[],
                               $21::numeric[], $22::numeric[])
            AS t(sale_id, line_number, product_id, description, quantity, unit_price, total)
        JOIN sale ON sale.id = t.sale_id
    ), resolved AS (
        UPDATE mapper.rejections r SET resolved_at = now()
        FROM (SELECT store_id, order_id FROM sale
              UNION SELECT * FROM unnest($23::bigint[], $24::bigint[])) AS t(store_id, order_id)
        WHERE r.store_id = t.store_id AND r.order_id = t.order_id AND r.resolved_at IS NULL
    )
    SELECT id::text FROM sale
"""


def as_json(part: BaseModel | None) -> str | None:
    """A fact of the order (an address, the store payment) as a jsonb parameter, or NULL."""
    return part.model_dump_json() if part is not None else None


@contextlib.contextmanager
def _storable() -> Iterator[None]:
    try:
        yield
    except (asyncpg.DataError, asyncpg.ProgramLimitExceededError) as exc:
        raise UnstorableError(str(exc)) from exc


class PostgresImports:
    """``ports.Imports`` on a connection, inside the caller's transaction."""

    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    async def _fetch(self, query: str, *args: object) -> list[asyncpg.Record]:
        with _storable():
            return await self.conn.fetch(query, *args)

    async def snapshot(self, orders: Collection[OrderKey]) -> Snapshot:
        keys = sorted(orders)
        rows = await self._fetch(
            _SNAPSHOT,
            [k[0] for k in keys],
            [k[1] for k in keys],
            sorted({k[0] for k in keys}),
        )
        found = Snapshot(sales=set(), settings={}, disabled={})
        for r in rows:
            if r["kind"] == "sale":
                found.sales.add((r["store_id"], r["order_id"]))
            elif r["kind"] == "settings":
                found.settings[r["store_id"]] = rules.StoreRules(
                    r["stock_check"], r["product_match"], r["timezone"]
                )
            else:
                found.disabled[r["store_id"]] = r["reason"]
        return found

    async def products(
        self, descriptions: Collection[ProductKey], skus: Collection[SkuKey]
    ) -> tuple[dict[ProductKey, domain.ProductRef], dict[SkuKey, domain.ProductRef]]:
        described, by_sku = sorted(descriptions), sorted(skus)
        rows = await self._fetch(
            _PRODUCTS,
            [k[0] for k in described],
            [k[1] for k in described],
            [k[0] for k in by_sku],
            [k[1] for k in by_sku],
        )
        found: dict[ProductKey, domain.ProductRef] = {}
        oldest: dict[SkuKey, domain.ProductRef] = {}
        for r in rows:
            ref = domain.ProductRef(r["id"], r["description"], created=False)
            if r["kind"] == "description":
                found[(r["store_id"], r["description"])] = ref
            else:
                oldest[(r["store_id"], r["sku"])] = ref
        return found, oldest

    async def on_hand(self, products: Collection[tuple[int, str]]) -> dict[tuple[int, str], int]:
        # Stock belongs to the ledger, which exposes its levels as this view (ledger/0001).
        # Filtered on its grouping columns, so the aggregate reads only these stores' products.
        rows = await self._fetch(
            "SELECT store_id, product_id, on_hand FROM ledger.stock_on_hand"
            " WHERE store_id = ANY($1::bigint[]) AND product_id = ANY($2::text[])",
            sorted({s for s, _ in products}),
            sorted({p for _, p in products}),
        )
        wanted = set(products)
        return {
            (r["store_id"], r["product_id"]): int(r["on_hand"])
            for r in rows
            if (r["store_id"], r["product_id"]) in wanted
        }

    async def customers(
        self, drafts: Sequence[tuple[int, domain.CustomerDraft]]
    ) -> dict[CustomerKey, domain.CustomerRef]:
        by_key = {(store, *d.key): d for store, d in drafts}
        keys = sorted(by_key)
        values = [by_key[k] for k in keys]
        created = await self._fetch(
            """
            INSERT INTO mapper.customers (store_id, name, name_key, document, document_key,
                email, mobile_phone, business_phone, address)
            SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[],
                                 $6::text[], $7::text[], $8::text[], $9::jsonb[])
            ON CONFLICT (store_id, name_key, document_key) DO NOTHING
            RETURNING id::text, store_id, name_key, document_key
            """,
            [k[0] for k in keys],
            [d.name for d in values],
            [k[1] for k in keys],
            [d.document for d in values],
            [k[2] for k in keys],
            [d.email for d in values],
            [d.mobile_phone for d in values],
            [d.business_phone for d in values],
            [as_json(d.address) for d in values],
        )
        refs: dict[CustomerKey, domain.CustomerRef] = {}
        for r in created:
            key = (r["store_id"], r["name_key"], r["document_key"])
            refs[key] = domain.CustomerRef.new(by_key[key], r["id"])
        missing = [k for k in keys if k not in refs]
        if missing:
            refs |= await self._stored_customers(missing)
        return refs

    async def _stored_customers(
        self, keys: list[CustomerKey]
    ) -> dict[CustomerKey, domain.CustomerRef]:
        rows = await self._fetch(
            """
            SELECT c.id::text, c.store_id, c.name_key, c.document_key, c.name, c.document,
                   c.mobile_phone, c.business_phone
            FROM mapper.customers c
            JOIN unnest($1::bigint[], $2::text[], $3::text[]) AS t(store_id, name_key, document_key)
              ON c.store_id = t.store_id AND c.name_key = t.name_key
             AND c.document_key = t.document_key
            """,
            [k[0] for k in keys],
            [k[1] for k in keys],
            [k[2] for k in keys],
        )
        return {
            (r["store_id"], r["name_key"], r["document_key"]): domain.CustomerRef(
                id=r["id"],
                name=r["name"],
                document=r["document"],
                mobile_phone=r["mobile_phone"],
                business_phone=r["business_phone"],
                created=False,
            )
            for r in rows
        }

    async def create_products(
        self, drafts: Sequence[tuple[int, domain.ProductDraft]]
    ) -> dict[ProductKey, domain.ProductRef]:
        ordered = sorted(drafts, key=lambda sd: (sd[0], sd[1].description))
        rows = await self._fetch(
            """
            INSERT INTO mapper.products (store_id, description, sku, price)
            SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::numeric[])
            ON CONFLICT (store_id, description) DO NOTHING
            RETURNING id::text, store_id, description
            """,
            [s for s, _ in ordered],
            [d.description for _, d in ordered],
            [d.sku for _, d in ordered],
            [d.unit_price for _, d in ordered],
        )
        refs = {
            (r["store_id"], r["description"]): domain.ProductRef(
                r["id"], r["description"], created=True
            )
            for r in rows
        }
        # Created by a concurrent import between the lookup and the insert: theirs is reused.
        missing = {(s, d.description) for s, d in ordered} - set(refs)
        if missing:
            stored, _ = await self.products(missing, ())
            refs |= stored
        return refs

    async def add_sales(
        self, sales: Sequence[tuple[str, domain.SaleDraft]], resolved: Collection[OrderKey]
    ) -> set[str]:
        ordered = sorted(sales, key=lambda x: (x[1].store_id, x[1].order_id))
        lines = [(sid, n, line) for sid, s in ordered for n, line in enumerate(s.lines, start=1)]
        rows = await self._fetch(
            _SALES,
            [sid for sid, _ in ordered],
            [s.store_id for _, s in ordered],
            [s.order_id for _, s in ordered],
            [s.order_number for _, s in ordered],
            [s.customer.id for _, s in ordered],
            [s.seller_id for _, s in ordered],
            [s.subtotal for _, s in ordered],
            [s.shipping for _, s in ordered],
            [s.discount for _, s in ordered],
            [s.total for _, s in ordered],
            [s.sale_date for _, s in ordered],
            [json.dumps(list(s.warnings)) for _, s in ordered],
            [as_json(s.store_payment) for _, s in ordered],
            [as_json(s.customer_address) for _, s in ordered],
            [as_json(s.shipping_address) for _, s in ordered],
            [sid for sid, _, _ in lines],
            [n for _, n, _ in lines],
            [line.product.id for _, _, line in lines],
            [line.description for _, _, line in lines],
            [line.quantity for _, _, line in lines],
            [line.unit_price for _, _, line in lines],
            [line.total for _, _, line in lines],
            [k[0] for k in sorted(resolved)],
            [k[1] for k in sorted(resolved)],
        )
        return {r["id"] for r in rows}

    async def reject(self, rejected: SaleRejected, received: OrderMessage) -> int:
        items = (
            [i.model_dump(mode="json") for i in rejected.items]
            if rejected.items is not None
            else None
        )
        with _storable():
            attempts = await self.conn.fetchval(
                """
            INSERT INTO mapper.rejections AS r
                (store_id, order_id, reason, detail, items, message_id, routing_key, body)
            VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8)
            ON CONFLICT (store_id, order_id) DO UPDATE SET reason = excluded.reason,
                detail = excluded.detail, items = excluded.items, body = excluded.body,
                message_id = excluded.message_id, routing_key = excluded.routing_key,
                attempts = r.attempts + 1, rejected_at = now(), resolved_at = NULL
            RETURNING attempts
            """,
                rejected.store_id,
                rejected.order_id,
                rejected.reason,
                rejected.detail,
                json.dumps(items) if items is not None else None,
                received.message_id,
                received.routing_key,
                received.body,
            )
        return int(attempts)
