"""Operator commands: integrations, catalog, settings, rejected orders, sales and receivables.

The CLI is the one place allowed to touch several services' schemas: it is the operator's and
the tests' view of the whole system. Each function takes a pool (and a broker where something
must be published) and returns plain data; ``services.cli`` renders it.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import asyncpg

from services.cliutil import CommandError, iso
from services.deadletters import drop_parked
from services.ingest.adapters import postgres as ingest_db
from services.ingest.handlers import SCHEMA as INGEST_SCHEMA
from services.ingest.handlers import disable_store
from services.mapper.adapters import postgres as mapper_db
from services.mapper.domain import customer_key, normalize_name
from shared.documents import classify_document
from shared.messaging import Broker, Envelope
from shared.outbox import publish_staged

# --- integrations ------------------------------------------------------------------------------


async def integration_rows(pool: asyncpg.Pool, store_id: int | None = None) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        """
        SELECT s.store_id, s.enabled, s.disabled_reason, s.disabled_at, s.activated_at,
               s.activated_by, s.last_synced_at, s.poll_cursor, s.paused_until,
               (SELECT count(*) FROM ingest.orders o
                 WHERE o.store_id = s.store_id AND o.paid_announced_at IS NOT NULL) AS announced,
               (SELECT count(*) FROM mapper.sales m WHERE m.store_id = s.store_id) AS imported,
               (SELECT count(*) FROM mapper.rejections r
                 WHERE r.store_id = s.store_id AND r.resolved_at IS NULL) AS rejected
        FROM ingest.stores s
        WHERE $1::bigint IS NULL OR s.store_id = $1
        ORDER BY s.store_id
        """,
        store_id,
    )
    return [
        {
            "store_id": r["store_id"],
            "enabled": r["enabled"],
            "disabled_reason": r["disabled_reason"],
            "disabled_at": iso(r["disabled_at"]),
            "activated_at": iso(r["activated_at"]),
            "activated_by": r["activated_by"],
            "last_synced_at": iso(r["last_synced_at"]),
            "poll_cursor": iso(r["poll_cursor"]),
            "paused_until": iso(r["paused_until"]),
            "imported": r["imported"],
            "rejected": r["rejected"],
            "pending": max(0, r["announced"] - r["imported"] - r["rejected"]),
        }
        for r in rows
    ]


async def integration_show(pool: asyncpg.Pool, store_id: int) -> dict[str, Any]:
    rows = await integration_rows(pool, store_id)
    if not rows:
        raise CommandError(f"store {store_id} is not connected")
    return rows[0]


async def integration_toggle(
    pool: asyncpg.Pool, broker: Broker, store_id: int, *, enabled: bool
) -> dict[str, Any]:
    async with pool.acquire() as conn, conn.transaction():
        if enabled:
            changed = await ingest_db.set_enabled(conn, store_id, enabled=True, reason=None)
            staged = []
        else:
            known = await ingest_db.load_stores(conn, [store_id])
            changed = None if store_id not in known else known[store_id].enabled
            staged = await disable_store(conn, store_id, "switched_off") if changed else []
    if changed is None:
        raise CommandError(f"store {store_id} is not connected")
    await publish_staged(pool, INGEST_SCHEMA, broker, staged)
    result = await integration_show(pool, store_id)
    return result | {"changed": bool(changed)}


# --- catalog -----------------------------------------------------------------------------------


async def add_product(
    pool: asyncpg.Pool,
    *,
    store_id: int,
    description: str,
    price: Decimal,
    sku: str | None,
    stock: int,
) -> dict[str, Any]:
    if not description:
        raise CommandError("--description must not be empty")
    if stock < 0:
        raise CommandError("--stock must not be negative")
    async with pool.acquire() as conn, conn.transaction():
        product_id = await conn.fetchval(
            "INSERT INTO mapper.products (store_id, description, sku, price) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (store_id, description) DO NOTHING RETURNING id::text",
            store_id,
            description,
            sku,
            price,
        )
        if product_id is None:
            existing = await mapper_db.find_products(conn, store_id, [description])
            raise CommandError(
                f"store {store_id} already has a product described {description!r} "
                f"(id {existing.get(description)})"
            )
        if stock:
            await conn.execute(
                "INSERT INTO ledger.stock_movements (store_id, product_id, quantity, direction, reason)"
                " VALUES ($1, $2, $3, 'in', 'initial')",
                store_id,
                product_id,
                stock,
            )
    return {
        "id": product_id,
        "store_id": store_id,
        "description": description,
        "sku": sku,
        "price": price,
        "stock": stock,
    }


async def add_customer(
    pool: asyncpg.Pool,
    *,
    store_id: int,
    name: str,
    document: str | None,
    mobile_phone: str | None,
    business_phone: str | None,
) -> dict[str, Any]:
    clean_name = normalize_name(name)
    if not clean_name:
        raise CommandError("--name must not be empty")
    normalized = None
    if document:
        check = classify_document(document)
        if not check.is_valid:
            raise CommandError(f"--document is not a valid CPF or CNPJ ({check.reason})")
        normalized = check.normalized
    name_key, document_key = customer_key(clean_name, normalized)
    row = await pool.fetchrow(
        """
        WITH ins AS (
            INSERT INTO mapper.customers
                (store_id, name, name_key, document, document_key, mobile_phone, business_phone)
            VALUES ($1, $2, $3, $4, $5, $6, $7)
            ON CONFLICT (store_id, name_key, document_key) DO NOTHING
            RETURNING id::text, true AS created
        )
        SELECT id, created FROM ins
        UNION ALL
        SELECT id::text, false FROM mapper.customers
        WHERE store_id = $1 AND name_key = $3 AND document_key = $5 AND NOT EXISTS (SELECT 1 FROM ins)
        """,
        store_id,
        clean_name,
        name_key,
        normalized,
        document_key,
        mobile_phone,
        business_phone,
    )
    assert row is not None
    return {
        "id": row["id"],
        "store_id": store_id,
        "name": clean_name,
        "document": normalized,
        "mobile_phone": mobile_phone,
        "business_phone": business_phone,
        "created": row["created"],
    }


async def set_stock_check(pool: asyncpg.Pool, store_id: int, *, on: bool) -> dict[str, Any]:
    await pool.execute(
        """
        INSERT INTO ledger.store_settings (store_id, stock_check) VALUES ($1, $2)
        ON CONFLICT (store_id) DO UPDATE SET stock_check = excluded.stock_check, updated_at = now()
        """,
        store_id,
        on,
    )
    return {"store_id": store_id, "stock_check": on}


# --- rejected orders ---------------------------------------------------------------------------


def rejection_dict(r: mapper_db.Rejection) -> dict[str, Any]:
    return {
        "store_id": r.store_id,
        "order_id": r.order_id,
        "reason": r.reason,
        "detail": r.detail,
        "items": r.items,
        "attempts": r.attempts,
    }


async def rejected_orders(pool: asyncpg.Pool, store_id: int | None) -> list[dict[str, Any]]:
    return [rejection_dict(r) for r in await mapper_db.open_rejections(pool, store_id)]


async def retry_orders(
    pool: asyncpg.Pool, broker: Broker, *, store_id: int, order_id: int | None
) -> list[dict[str, Any]]:
    """Send rejected orders to the mapper again, as if they had just arrived."""
    rejections = await mapper_db.open_rejections(pool, store_id, order_id)
    if order_id is not None and not rejections:
        raise CommandError(f"order {order_id} of store {store_id} is not rejected")
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%f")
    envs = [
        Envelope(
            exchange="ingest.events",
            routing_key=r.routing_key,
            body=r.body,
            # A new id: the mapper's inbox has seen the original and would skip it.
            message_id=f"{r.message_id}:retry:{stamp}",
            type=f"{r.routing_key}.v1",
            correlation_id=f"{r.store_id}:{r.order_id}",
            headers={"x-retry-of": r.message_id},
        )
        for r in rejections
    ]
    await broker.publish_many(envs)
    # The retried orders leave the parking queue; one still short of its cause is parked again.
    await drop_parked(broker.url, {f"{r.store_id}:{r.order_id}" for r in rejections})
    return [rejection_dict(r) for r in rejections]


# --- sales and receivables ---------------------------------------------------------------------


async def sale_show(pool: asyncpg.Pool, store_id: int, order_id: int) -> dict[str, Any]:
    sale = await pool.fetchrow(
        "SELECT sale_id, store_id, order_id, order_number, status, seller_id, total, sale_date,"
        " confirmed_by, confirmed_at, cancelled_at, cancel_reason"
        " FROM ledger.sales WHERE store_id = $1 AND order_id = $2",
        store_id,
        order_id,
    )
    if sale is None:
        raise CommandError(f"no sale for order {order_id} of store {store_id}")
    receivables = await pool.fetch(
        "SELECT id::text, number, amount, due_date, method, status FROM ledger.receivables"
        " WHERE sale_id = $1 ORDER BY number",
        sale["sale_id"],
    )
    movements = await pool.fetch(
        "SELECT id::text, product_id, quantity, direction, reason, line_number"
        " FROM ledger.stock_movements WHERE sale_id = $1 ORDER BY created_at, line_number",
        sale["sale_id"],
    )
    return dict(sale) | {
        "receivables": [dict(r) for r in receivables],
        "stock_movements": [dict(m) for m in movements],
    }


async def receivables(
    pool: asyncpg.Pool, store_id: int, status: str | None
) -> list[dict[str, Any]]:
    rows = await pool.fetch(
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
