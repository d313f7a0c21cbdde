"""The mapper's tables as its operator actions read them: products by description, and the
open rejections (``orders rejected`` / ``orders retry``); ``as_json`` for jsonb parameters.

Imports write these tables through ``adapters/bulk.py`` only, the one SQL path of an import.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from pydantic import BaseModel

from shared.db import Conn, Executor


def as_json(part: BaseModel | None) -> str | None:
    """A fact of the order (an address, the store payment) as a jsonb parameter, or NULL."""
    return part.model_dump_json() if part is not None else None


async def find_products(conn: Conn, store_id: int, descriptions: list[str]) -> dict[str, str]:
    """Exact-description matches: description → product id."""
    rows = await conn.fetch(
        "SELECT id::text, description FROM mapper.products"
        " WHERE store_id = $1 AND description = ANY($2::text[])",
        store_id,
        descriptions,
    )
    return {r["description"]: r["id"] for r in rows}


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
