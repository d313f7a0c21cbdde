"""Ingest's LGPD records in PostgreSQL and RabbitMQ: filing a request, its export, its redaction.

``ingest.privacy_requests`` holds one row per accepted LGPD webhook (no personal data); a data
request's row carries ingest's part of the export, what it knows of the named orders. A
redaction rewrites the invalid-order details of the named orders (or of the whole store), the
queued copies of events not relayed yet (the outbox) and the dead webhook records on the broker.
Whom a request names and how values read are the pure rules of ``services.ingest.privacy``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson

from services.ingest.privacy import concerns, person_of, plain
from shared.contracts import PrivacyRequest
from shared.db import Conn, Executor
from shared.outbox import rewrite_store_outbox
from shared.privacy import REDACTED, detail_scrubber, scrub_bytes
from shared.queues import rewrite_messages
from shared.topology import INGEST_WEBHOOKS

_INSERT = """
INSERT INTO ingest.privacy_requests
    (request_id, store_id, kind, data_request_id, customer_id, order_ids, received_at, export)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb)
ON CONFLICT (request_id) DO NOTHING
"""


async def record(
    conn: Conn, request: PrivacyRequest, *, data_request_id: int | None, at: dt.datetime
) -> None:
    """File the request; a data request gets ingest's part of the export with it."""
    export = await _export(conn, request) if request.kind == "data_request" else None
    await conn.execute(
        _INSERT,
        request.request_id,
        request.store_id,
        request.kind,
        data_request_id,
        request.customer.id if request.customer else None,
        request.order_ids,
        at,
        orjson.dumps(export).decode() if export is not None else None,
    )
    if request.kind != "data_request":
        await _redact(conn, request)


async def _export(conn: Conn, request: PrivacyRequest) -> dict[str, Any]:
    rows = await conn.fetch(
        """
        SELECT order_id, order_number, paid_announced_at, cancelled_announced_at,
               partially_refunded_announced_at, invalid_detail IS NOT NULL AS invalid
        FROM ingest.orders WHERE store_id = $1 AND order_id = ANY($2::bigint[])
        ORDER BY order_id
        """,
        request.store_id,
        request.order_ids,
    )
    return {"orders": [{k: plain(v) for k, v in r.items()} for r in rows]}


async def _redact(conn: Conn, request: PrivacyRequest) -> None:
    whole_store = request.kind == "store_redact"
    await conn.execute(
        """
        UPDATE ingest.orders SET invalid_detail = $3
        WHERE store_id = $1 AND invalid_detail IS NOT NULL AND ($4 OR order_id = ANY($2::bigint[]))
        """,
        request.store_id,
        request.order_ids,
        REDACTED,
        whole_store,
    )
    person = person_of(request)
    await rewrite_store_outbox(
        conn, "ingest", request.store_id, lambda body: scrub_bytes(body, person)
    )


async def redact_queues(url: str, request: PrivacyRequest) -> int:
    """The dead webhook records of the store (or naming the person): redacted in place."""
    if request.kind == "data_request":
        return 0
    person = person_of(request)
    return await rewrite_messages(
        url,
        INGEST_WEBHOOKS.dead_name,
        lambda message: concerns(request, person, message.body.decode(errors="replace")),
        lambda b: scrub_bytes(b, person),
        detail_scrubber(person),
    )


async def list_requests(conn: Executor, store_id: int | None) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """
        SELECT request_id, store_id, kind, data_request_id, customer_id, order_ids, received_at
        FROM ingest.privacy_requests WHERE $1::bigint IS NULL OR store_id = $1
        ORDER BY received_at, request_id
        """,
        store_id,
    )
    return [{k: plain(v) for k, v in r.items()} for r in rows]


async def request_record(conn: Executor, request_id: str) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        "SELECT * FROM ingest.privacy_requests WHERE request_id = $1", request_id
    )
    if row is None:
        return None
    out = {k: plain(v) for k, v in row.items() if k != "export"}
    out["ingest"] = orjson.loads(row["export"]) if row["export"] is not None else None
    return out
