"""The mapper's tables: customers, products, sales and rejections of each store.

Uniqueness lives in the database: (store, name key, document key) for customers, (store,
description) for products and (store, order) for sales. Every insert is ``ON CONFLICT DO
NOTHING`` followed by a read of the winner, so concurrent imports of one new customer or
product converge on a single row instead of racing a check-then-insert.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import BaseModel

from services.mapper import rules
from services.mapper.domain import CustomerDraft, CustomerRef, ProductDraft, ProductRef, SaleDraft
from shared.db import Conn, Executor


class DuplicateSaleError(Exception):
    """Another transaction created the sale of this order first."""


def as_json(part: BaseModel | None) -> str | None:
    """A fact of the order (an address, the store payment) as a jsonb parameter, or NULL."""
    return part.model_dump_json() if part is not None else None


async def store_rules(conn: Executor, store_id: int) -> rules.StoreRules:
    # The mapper owns store settings (services/mapper/settings.py).
    row = await conn.fetchrow(
        "SELECT stock_check, product_match, timezone FROM mapper.store_settings"
        " WHERE store_id = $1",
        store_id,
    )
    if row is None:
        return rules.StoreRules()
    return rules.StoreRules(row["stock_check"], row["product_match"], row["timezone"])


async def disabled_reason(conn: Executor, store_id: int) -> str | None:
    """Why the store is switched off (``switched_off``, ...), or None while it is on."""
    row = await conn.fetchrow(
        "SELECT enabled, reason FROM mapper.store_status WHERE store_id = $1", store_id
    )
    if row is None or row["enabled"]:
        return None
    return str(row["reason"] or "switched_off")


async def on_hand(conn: Conn, store_id: int, product_ids: list[str]) -> dict[str, int]:
    # Stock belongs to the ledger, which exposes its levels as this view (ledger/0001).
    rows = await conn.fetch(
        "SELECT product_id, on_hand FROM ledger.stock_on_hand"
        " WHERE store_id = $1 AND product_id = ANY($2::text[])",
        store_id,
        product_ids,
    )
    return {r["product_id"]: int(r["on_hand"]) for r in rows}


async def sale_exists(conn: Conn, store_id: int, order_id: int) -> bool:
    found = await conn.fetchval(
        "SELECT 1 FROM mapper.sales WHERE store_id = $1 AND order_id = $2", store_id, order_id
    )
    return found is not None


async def find_products(conn: Conn, store_id: int, descriptions: list[str]) -> dict[str, str]:
    """Exact-description matches: description → product id."""
    rows = await conn.fetch(
        "SELECT id::text, description FROM mapper.products"
        " WHERE store_id = $1 AND description = ANY($2::text[])",
        store_id,
        descriptions,
    )
    return {r["description"]: r["id"] for r in rows}


async def resolve_customer(conn: Conn, store_id: int, draft: CustomerDraft) -> CustomerRef:
    name_key, document_key = draft.key
    created_id = await conn.fetchval(
        """
        INSERT INTO mapper.customers
            (store_id, name, name_key, document, document_key, email, mobile_phone, business_phone,
             address)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb)
        ON CONFLICT (store_id, name_key, document_key) DO NOTHING
        RETURNING id::text
        """,
        store_id,
        draft.name,
        name_key,
        draft.document,
        document_key,
        draft.email,
        draft.mobile_phone,
        draft.business_phone,
        as_json(draft.address),
    )
    if created_id is not None:
        return CustomerRef.new(draft, created_id)
    row = await conn.fetchrow(
        "SELECT id::text, name, document, mobile_phone, business_phone FROM mapper.customers"
        " WHERE store_id = $1 AND name_key = $2 AND document_key = $3",
        store_id,
        name_key,
        document_key,
    )
    assert row is not None
    return CustomerRef(
        id=row["id"],
        name=row["name"],
        document=row["document"],
        mobile_phone=row["mobile_phone"],
        business_phone=row["business_phone"],
        created=False,
    )


async def find_by_sku(conn: Conn, store_id: int, skus: list[str]) -> dict[str, ProductRef]:
    """SKU → the store's oldest product with that SKU."""
    rows = await conn.fetch(
        "SELECT DISTINCT ON (sku) id::text, description, sku FROM mapper.products"
        " WHERE store_id = $1 AND sku = ANY($2::text[]) ORDER BY sku, created_at, id",
        store_id,
        skus,
    )
    return {r["sku"]: ProductRef(r["id"], r["description"], created=False) for r in rows}


async def plan_products(
    conn: Conn, store_id: int, drafts: Sequence[ProductDraft], match: rules.ProductMatch
) -> rules.ProductPlan:
    """Which lines find an existing product and which create one (``rules.plan_products``)."""
    skus = sorted({d.sku for d in drafts if d.sku}) if match == rules.BY_SKU else []
    by_sku = await find_by_sku(conn, store_id, skus) if skus else {}
    described = await find_products(conn, store_id, [d.description for d in drafts])
    by_description = {d: ProductRef(i, d, created=False) for d, i in described.items()}
    return rules.plan_products(drafts, match, by_sku, by_description)


async def resolve_products(
    conn: Conn,
    store_id: int,
    drafts: Sequence[ProductDraft],
    match: rules.ProductMatch = rules.BY_DESCRIPTION,
) -> dict[str, ProductRef]:
    """Every line's product: found by the store's rule, or created keeping the line's SKU."""
    if not drafts:
        return {}
    plan = await plan_products(conn, store_id, drafts, match)
    created: dict[str, ProductRef] = {}
    if plan.create:
        rows = await conn.fetch(
            """
            INSERT INTO mapper.products (store_id, description, sku, price)
            SELECT $1, d, s, p FROM unnest($2::text[], $3::text[], $4::numeric[]) AS t(d, s, p)
            ON CONFLICT (store_id, description) DO NOTHING
            RETURNING id::text, description
            """,
            store_id,
            [d.description for d in plan.create],
            [d.sku for d in plan.create],
            [d.unit_price for d in plan.create],
        )
        created = {r["description"]: ProductRef(r["id"], r["description"], True) for r in rows}
        # Created by a concurrent import between the lookup and the insert: theirs is reused.
        missing = [d.description for d in plan.create if d.description not in created]
        if missing:
            for description, product_id in (await find_products(conn, store_id, missing)).items():
                created[description] = ProductRef(product_id, description, created=False)
    return rules.resolve_plan(plan, created)


async def insert_sale(conn: Conn, sale_id: str, sale: SaleDraft) -> None:
    inserted = await conn.fetchval(
        """
        INSERT INTO mapper.sales (id, store_id, order_id, order_number, customer_id, seller_id,
            subtotal, shipping, discount, total, sale_date, warnings, store_payment,
            customer_address, shipping_address)
        VALUES ($1::uuid, $2, $3, $4, $5::uuid, $6, $7, $8, $9, $10, $11, $12::jsonb, $13::jsonb,
            $14::jsonb, $15::jsonb)
        ON CONFLICT (store_id, order_id) DO NOTHING
        RETURNING id
        """,
        sale_id,
        sale.store_id,
        sale.order_id,
        sale.order_number,
        sale.customer.id,
        sale.seller_id,
        sale.subtotal,
        sale.shipping,
        sale.discount,
        sale.total,
        sale.sale_date,
        json.dumps(list(sale.warnings)),
        as_json(sale.store_payment),
        as_json(sale.customer_address),
        as_json(sale.shipping_address),
    )
    if inserted is None:
        raise DuplicateSaleError(f"{sale.store_id}:{sale.order_id}")
    await conn.execute(
        """
        INSERT INTO mapper.sale_items
            (sale_id, line_number, product_id, description, quantity, unit_price, total)
        SELECT $1::uuid, n, p::uuid, d, q, u, t
        FROM unnest($2::int[], $3::text[], $4::text[], $5::int[], $6::numeric[], $7::numeric[])
            AS x(n, p, d, q, u, t)
        """,
        sale_id,
        list(range(1, len(sale.lines) + 1)),
        [line.product.id for line in sale.lines],
        [line.description for line in sale.lines],
        [line.quantity for line in sale.lines],
        [line.unit_price for line in sale.lines],
        [line.total for line in sale.lines],
    )


@dataclass(frozen=True)
class Rejection:
    store_id: int
    order_id: int
    reason: str
    detail: str
    items: list[dict[str, object]] | None
    message_id: str
    routing_key: str
    body: bytes
    attempts: int


async def record_rejection(
    conn: Conn,
    *,
    store_id: int,
    order_id: int,
    reason: str,
    detail: str,
    items: list[dict[str, object]] | None,
    message_id: str,
    routing_key: str,
    body: bytes,
) -> int:
    """Record (or refresh) an order's rejection; returns how many times it has been rejected."""
    attempts = await conn.fetchval(
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
        store_id,
        order_id,
        reason,
        detail,
        json.dumps(items) if items is not None else None,
        message_id,
        routing_key,
        body,
    )
    return int(attempts)


async def resolve_rejection(conn: Conn, store_id: int, order_id: int) -> None:
    await conn.execute(
        "UPDATE mapper.rejections SET resolved_at = now()"
        " WHERE store_id = $1 AND order_id = $2 AND resolved_at IS NULL",
        store_id,
        order_id,
    )


async def open_rejections(
    conn: Executor,
    store_id: int | None = None,
    order_id: int | None = None,
) -> list[Rejection]:
    rows = await conn.fetch(
        """
        SELECT store_id, order_id, reason, detail, items, message_id, routing_key, body, attempts
        FROM mapper.rejections
        WHERE resolved_at IS NULL AND ($1::bigint IS NULL OR store_id = $1)
          AND ($2::bigint IS NULL OR order_id = $2)
        ORDER BY store_id, order_id
        """,
        store_id,
        order_id,
    )
    return [
        Rejection(
            store_id=r["store_id"],
            order_id=r["order_id"],
            reason=r["reason"],
            detail=r["detail"],
            items=json.loads(r["items"]) if r["items"] is not None else None,
            message_id=r["message_id"],
            routing_key=r["routing_key"],
            body=bytes(r["body"]),
            attempts=r["attempts"],
        )
        for r in rows
    ]
