"""The ledger's operator HTTP API: a sale with its receivables and stock movements
(``sales show --json``)."""

from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp import web

from services.ledger import ops
from shared.opsapi import ID_SCHEMA, Operation, path_id

_TEXT = {"type": "string", "nullable": True}
_WHEN = {"type": "string", "format": "date-time", "nullable": True}
_MONEY = {"type": "string", "pattern": r"^-?\d+(\.\d+)?$"}

SALE: dict[str, Any] = {
    "type": "object",
    "required": ["sale_id", "store_id", "order_id", "status", "total", "receivables"],
    "properties": {
        "sale_id": {"type": "string"},
        "store_id": ID_SCHEMA,
        "order_id": ID_SCHEMA,
        "order_number": {"type": "integer", "nullable": True},
        "status": {"type": "string"},
        "seller_id": _TEXT,
        "total": _MONEY,
        "sale_date": {"type": "string", "format": "date"},
        "confirmed_by": _TEXT,
        "confirmed_at": _WHEN,
        "cancelled_at": _WHEN,
        "cancel_reason": _TEXT,
        "receivables": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "number", "amount", "due_date", "method", "status"],
                "properties": {
                    "id": {"type": "string"},
                    "number": {"type": "integer"},
                    "amount": _MONEY,
                    "due_date": {"type": "string", "format": "date"},
                    "method": {"type": "string"},
                    "status": {"type": "string"},
                },
            },
        },
        "stock_movements": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "product_id", "quantity", "direction"],
                "properties": {
                    "id": {"type": "string"},
                    "product_id": {"type": "string"},
                    "quantity": {"type": "integer"},
                    "direction": {"type": "string", "enum": ["in", "out"]},
                },
            },
        },
    },
}


def operations(pool: asyncpg.Pool) -> list[Operation]:
    async def sale(request: web.Request) -> Any:
        store_id = path_id(request, "store_id")
        return await ops.sale(pool, store_id, path_id(request, "order_id"))

    return [
        Operation(
            "GET",
            "/ops/sales/{store_id}/{order_id}",
            "showSale",
            "the sale of a store order, with receivables and stock movements (sales show --json)",
            sale,
            SALE,
            not_found="no sale for the order",
        )
    ]
