"""The mapper's operator actions: its catalog (products, customers), store settings, rejected orders.

The mapper owns the ERP's customers and products of each store, the pending sales, the rejected
orders and the store settings (``services/mapper/settings.py`` says why); these are the only
functions through which an operator changes them. A product's opening stock is the ledger's
(``services.ledger.ops.record_initial_stock``): the CLI calls both in one transaction.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from services.mapper.adapters import postgres as db
from services.mapper.adapters import settings
from services.mapper.orders import customer_key, normalize_name
from services.mapper.settings import StoreSettings
from shared.db import Conn, Executor
from shared.documents import classify_document
from shared.messaging import RETRY_OF, Broker, Envelope, retry_ids
from shared.operations import OperatorError
from shared.queues import opened, take
from shared.topology import MAPPER_PARKED


async def add_product(
    conn: Conn, *, store_id: int, description: str, price: Decimal, sku: str | None
) -> str:
    """Catalogue a new product; its id. A description the store already has is refused."""
    if not description:
        raise OperatorError("--description must not be empty")
    product_id: str | None = await conn.fetchval(
        "INSERT INTO mapper.products (store_id, description, sku, price) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (store_id, description) DO NOTHING RETURNING id::text",
        store_id,
        description,
        sku,
        price,
    )
    if product_id is None:
        existing = await db.find_products(conn, store_id, [description])
        raise OperatorError(
            f"store {store_id} already has a product described {description!r} "
            f"(id {existing.get(description)})"
        )
    return product_id


async def add_customer(
    conn: Executor,
    *,
    store_id: int,
    name: str,
    document: str | None,
    mobile_phone: str | None,
    business_phone: str | None,
) -> dict[str, Any]:
    """Catalogue a customer, or find the one with the same name and document (SPEC §3)."""
    clean_name = normalize_name(name)
    if not clean_name:
        raise OperatorError("--name must not be empty")
    normalized = None
    if document:
        check = classify_document(document)
        if not check.is_valid:
            raise OperatorError(f"--document is not a valid CPF or CNPJ ({check.reason})")
        normalized = check.normalized
    name_key, document_key = customer_key(clean_name, normalized)
    row = await conn.fetchrow(
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
    assert row is not None  # one of the two halves always answers
    return {
        "id": row["id"],
        "store_id": store_id,
        "name": clean_name,
        "document": normalized,
        "mobile_phone": mobile_phone,
        "business_phone": business_phone,
        "created": row["created"],
    }


def _settings(done: StoreSettings, default_timezone: str | None) -> dict[str, Any]:
    return {
        "store_id": done.store_id,
        "stock_check": done.stock_check,
        "product_match": done.product_match,
        "timezone": done.timezone or default_timezone,
        "timezone_is_default": done.timezone is None,
    }


async def set_stock_check(
    conn: Executor, store_id: int, *, on: bool, default_timezone: str | None = None
) -> dict[str, Any]:
    done = await settings.set_stock_check(conn, store_id, on=on)
    return _settings(done, default_timezone)


async def set_setting(
    conn: Executor, store_id: int, name: str, value: str, *, default_timezone: str
) -> dict[str, Any]:
    """``settings set``: ``stock-check on|off``, ``product-match description|sku``,
    ``timezone <IANA zone>``; a bad value is refused with one line."""
    if name == "stock-check":
        if value not in ("on", "off"):
            raise OperatorError("stock-check must be on or off")
        done = await settings.set_stock_check(conn, store_id, on=value == "on")
    elif name == "product-match":
        done = await settings.set_product_match(conn, store_id, value)
    elif name == "timezone":
        done = await settings.set_timezone(conn, store_id, value)
    else:
        raise OperatorError(f"unknown setting {name!r}")
    return _settings(done, default_timezone)


async def show_settings(conn: Executor, store_id: int, *, default_timezone: str) -> dict[str, Any]:
    """``settings show``: every setting of the store, defaults included."""
    return _settings(await settings.read(conn, store_id), default_timezone)


def _rejection(r: db.Rejection) -> dict[str, Any]:
    return {
        "store_id": r.store_id,
        "order_id": r.order_id,
        "reason": r.reason,
        "detail": r.detail,
        "items": r.items,
        "attempts": r.attempts,
    }


async def rejected_orders(conn: Executor, store_id: int | None) -> list[dict[str, Any]]:
    """Every order that could not become a sale and is still waiting, with its reason."""
    return [_rejection(r) for r in await db.open_rejections(conn, store_id)]


async def retry_orders(
    conn: Executor, broker: Broker, *, store_id: int, order_id: int | None
) -> list[dict[str, Any]]:
    """Send rejected orders to the mapper again, as if they had just arrived.

    Each goes out with a new message id (the mapper's inbox has seen the original) and
    ``x-retry-of``; its parked copy leaves the parking queue (one still short of its cause is
    rejected and parked again).
    """
    rejections = await db.open_rejections(conn, store_id, order_id)
    if order_id is not None and not rejections:
        raise OperatorError(f"order {order_id} of store {store_id} is not rejected")
    # Noted before the publish: a retry handled at once (and rejected again) comes after it.
    await conn.execute(
        """
        WITH retried AS (
            UPDATE mapper.rejections SET retried_at = now(), retries = retries + 1
            FROM unnest($1::bigint[], $2::bigint[]) AS t(store_id, order_id)
            WHERE rejections.store_id = t.store_id AND rejections.order_id = t.order_id
            RETURNING rejections.store_id, rejections.order_id, rejections.retries
        )
        INSERT INTO mapper.rejection_history (store_id, order_id, what, detail)
        SELECT store_id, order_id, 'retried', 'retry number ' || retries FROM retried
        """,
        [r.store_id for r in rejections],
        [r.order_id for r in rejections],
    )
    await broker.publish_many([_retry(r) for r in rejections])
    await drop_parked(broker.url, {f"{r.store_id}:{r.order_id}" for r in rejections})
    return [_rejection(r) for r in rejections]


def _retry(r: db.Rejection) -> Envelope:
    new_id, original = retry_ids(r.message_id)
    return Envelope(
        exchange="ingest.events",
        routing_key=r.routing_key,
        body=r.body,
        message_id=new_id,
        type=f"{r.routing_key}.v1",
        correlation_id=f"{r.store_id}:{r.order_id}",
        headers={RETRY_OF: original},
    )


async def drop_parked(url: str, correlation_ids: set[str]) -> int:
    """Remove the parked copies of the given orders (``<store>:<order>``); the rest stay parked."""
    if not correlation_ids:
        return 0
    dropped = 0
    async with opened(url, MAPPER_PARKED.name) as queue:
        for message in await take(queue):
            if message.correlation_id in correlation_ids:
                await message.ack()
                dropped += 1
            else:
                await message.nack(requeue=True)
    return dropped
