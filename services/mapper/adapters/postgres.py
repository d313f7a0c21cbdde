"""The mapper's unit of work over PostgreSQL, and its tables as the operator actions read them.

``PostgresMapper`` is what the consumers open around a batch (``begin``): the imports'
set-based statements (``adapters/bulk.py``, the one SQL path of an import), the stores'
status as ingest announces it, and the LGPD requests (``adapters/privacy.py``, by the rules of
``services/mapper/privacy.py``). The operator actions read products by description and the open
rejections (``orders rejected`` / ``orders retry``) here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import asyncpg

from services.mapper.adapters import privacy
from services.mapper.adapters.bulk import PostgresImports
from services.mapper.ports import MapperUnitOfWork
from shared.contracts import PrivacyRequest
from shared.db import Conn, Executor
from shared.privacy import Person
from shared.unitofwork import Begin, PostgresUnitOfWork, postgres

SCHEMA = "mapper"


class PgStoreStatus:
    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    async def set(self, store_id: int, *, enabled: bool, reason: str | None) -> None:
        await self.conn.execute(
            """
            INSERT INTO mapper.store_status (store_id, enabled, reason) VALUES ($1, $2, $3)
            ON CONFLICT (store_id) DO UPDATE SET enabled = excluded.enabled,
                reason = excluded.reason, changed_at = now()
            """,
            store_id,
            enabled,
            reason,
        )


class PgPrivacy:
    def __init__(self, conn: Conn, amqp_url: str | None) -> None:
        self.conn = conn
        self.amqp_url = amqp_url  # where the parked and dead queues are redacted

    async def apply(self, request: PrivacyRequest) -> Person | None:
        return await privacy.handle_privacy(self.conn, request)

    async def redact_queues(self, request: PrivacyRequest, person: Person | None) -> None:
        if self.amqp_url is not None:
            await privacy.redact_queues(self.amqp_url, request, person)


class PostgresMapper(PostgresUnitOfWork, MapperUnitOfWork):
    def __init__(self, conn: Conn, *, default_timezone: str, amqp_url: str | None) -> None:
        super().__init__(conn, SCHEMA)
        self.imports = PostgresImports(conn)
        self.stores = PgStoreStatus(conn)
        self.privacy = PgPrivacy(conn, amqp_url)
        self.default_timezone = default_timezone


def begin(
    pool: asyncpg.Pool, *, default_timezone: str, amqp_url: str | None = None
) -> Begin[MapperUnitOfWork]:
    """A batch's unit of work: a pooled connection, its transaction, the mapper over it."""
    return postgres(
        pool,
        lambda conn: PostgresMapper(conn, default_timezone=default_timezone, amqp_url=amqp_url),
    )


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
