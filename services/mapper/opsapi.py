"""The mapper's operator HTTP API: rejected orders and their retry (``orders rejected|retry``)."""

from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp import web

from services.mapper import ops
from shared.messaging import Broker
from shared.opsapi import ID_SCHEMA, Operation, path_id, query_id

REJECTION: dict[str, Any] = {
    "type": "object",
    "required": ["store_id", "order_id", "reason", "detail", "items", "attempts"],
    "properties": {
        "store_id": ID_SCHEMA,
        "order_id": ID_SCHEMA,
        "reason": {"type": "string"},
        "detail": {"type": "string"},
        "items": {"type": "array", "nullable": True, "items": {"type": "object"}},
        "attempts": {"type": "integer", "minimum": 1},
    },
}
REJECTIONS: dict[str, Any] = {"type": "array", "items": REJECTION}


def operations(pool: asyncpg.Pool, broker: Broker) -> list[Operation]:
    async def rejected(request: web.Request) -> Any:
        return await ops.rejected_orders(pool, query_id(request, "store_id"))

    async def retry(request: web.Request) -> Any:
        store_id = path_id(request, "store_id")
        order_id = path_id(request, "order_id")
        return await ops.retry_orders(pool, broker, store_id=store_id, order_id=order_id)

    return [
        Operation(
            "GET",
            "/ops/rejected",
            "listRejected",
            "orders that could not become sales, with the reason (orders rejected --json)",
            rejected,
            REJECTIONS,
            query={"store_id": ID_SCHEMA},
        ),
        Operation(
            "POST",
            "/ops/rejected/{store_id}/{order_id}/retry",
            "retryRejected",
            "send a rejected order to the mapper again (orders retry --order-id O --json)",
            retry,
            REJECTIONS,
            not_found="the order is not rejected",
        ),
    ]
