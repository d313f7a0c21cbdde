"""LGPD requests in PostgreSQL and RabbitMQ: the mapper's tables and queues read and rewritten by
the rules of ``services/mapper/privacy.py`` (who the person is, what an export holds, what stays).

``handle_privacy`` files a data request's export in ``mapper.privacy_exports`` or redacts: the
customers anonymised in place (every text column the schema has now, but the ids and the match
keys, which become the customer's own id), their sales' address columns cleared, the rejections
rewritten, the outbox and earlier exports scrubbed. ``redact_queues`` drops the parked copies and
rewrites the dead-lettered ones; ``export_part`` reads a filed export back for the CLI.
"""

from __future__ import annotations

from typing import Any

import orjson

from services.mapper import privacy
from shared.contracts import PrivacyRequest
from shared.db import Conn, Executor
from shared.documents import normalize_document
from shared.logging import get_logger
from shared.privacy import (
    REDACTED,
    Person,
    detail_scrubber,
    scrub_bytes,
    scrub_outbox_and_exports,
)
from shared.queues import rewrite_messages
from shared.topology import MAPPER_ORDERS, MAPPER_PARKED

log = get_logger(__name__)

# The keys a redacted customer gets instead (SQL expressions over its row).
_KEYS = {
    "name": f"'{REDACTED}'",
    "name_key": f"'{REDACTED}:' || id::text",
    "document_key": "id::text",
}


async def _columns(conn: Executor, table: str) -> list[tuple[str, str, bool]]:
    """(name, type, nullable) of the table's text and JSON columns, as the schema is now."""
    rows = await conn.fetch(
        """
        SELECT column_name, data_type, is_nullable = 'YES' AS nullable
        FROM information_schema.columns
        WHERE table_schema = 'mapper' AND table_name = $1
          AND data_type IN ('text', 'character varying', 'json', 'jsonb')
        ORDER BY ordinal_position
        """,
        table,
    )
    return [(r["column_name"], r["data_type"], r["nullable"]) for r in rows]


async def _customers(conn: Conn, request: PrivacyRequest) -> list[dict[str, Any]]:
    args: list[object]
    if request.kind == "store_redact":
        where, args = "store_id = $1", [request.store_id]
    else:
        customer = request.customer
        document = (
            normalize_document(customer.identification)
            if customer and customer.identification
            else None
        )
        email = customer.email if customer else None
        where = """store_id = $1 AND (($2::text IS NOT NULL AND document_key = $2)
            OR ($3::text IS NOT NULL AND lower(email) = lower($3))
            OR id IN (SELECT customer_id FROM mapper.sales
                      WHERE store_id = $1 AND order_id = ANY($4::bigint[])))"""
        args = [request.store_id, document, email, request.order_ids]
    rows = await conn.fetch(
        f"SELECT row_to_json(c)::text AS j FROM mapper.customers c WHERE {where}", *args
    )
    return [orjson.loads(r["j"]) for r in rows]


async def _rejections(
    conn: Conn, request: PrivacyRequest, person: Person | None
) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """
        SELECT order_id, reason, detail, items::text AS items, message_id, body, resolved_at
        FROM mapper.rejections
        WHERE store_id = $1 AND ($2 OR order_id = ANY($3::bigint[])
              OR convert_from(body, 'UTF8') ILIKE ANY($4::text[]))
        ORDER BY order_id
        """,
        request.store_id,
        person is None,
        request.order_ids,
        person.sql_patterns() if person else [],
    )
    return [dict(r) for r in rows]


async def handle_privacy(conn: Conn, request: PrivacyRequest) -> Person | None:
    """Export or redact; the person's values (None: the whole store), for ``redact_queues``."""
    customers = await _customers(conn, request)
    person = privacy.person_of(request, customers)
    rejections = await _rejections(conn, request, person)
    person = privacy.widened(request, customers, person, rejections)
    if request.kind == "data_request":
        await _export(conn, request, customers, rejections)
        log.info(
            "LGPD data request: mapper part filed",
            store_id=request.store_id,
            customers=len(customers),
            rejections=len(rejections),
        )
        return person
    await _anonymise(conn, request.store_id, [c["id"] for c in customers])
    await _scrub_rejections(conn, request.store_id, rejections, person)
    await scrub_outbox_and_exports(
        conn, "mapper", request.store_id, person, lambda part, _: privacy.scrub_export(part, person)
    )
    log.info(
        "LGPD redaction applied",
        store_id=request.store_id,
        kind=request.kind,
        customers=len(customers),
        rejections=len(rejections),
    )
    return person


async def _export(
    conn: Conn,
    request: PrivacyRequest,
    customers: list[dict[str, Any]],
    rejections: list[dict[str, Any]],
) -> None:
    ids = [c["id"] for c in customers]
    sales = await conn.fetch(
        """
        SELECT row_to_json(s)::text AS sale,
               (SELECT coalesce(json_agg(i ORDER BY i.line_number), '[]')::text
                FROM mapper.sale_items i WHERE i.sale_id = s.id) AS items
        FROM mapper.sales s WHERE store_id = $1 AND customer_id = ANY($2::uuid[])
        ORDER BY order_id
        """,
        request.store_id,
        ids,
    )
    part = privacy.export_of(customers, [dict(s) for s in sales], rejections)
    await conn.execute(
        """
        INSERT INTO mapper.privacy_exports (request_id, store_id, part) VALUES ($1, $2, $3::jsonb)
        ON CONFLICT (request_id) DO NOTHING
        """,
        request.request_id or f"unnamed:{request.store_id}",
        request.store_id,
        orjson.dumps(part).decode(),
    )


async def _anonymise(conn: Conn, store_id: int, ids: list[str]) -> None:
    if not ids:
        return
    sets = []
    for name, kind, nullable in await _columns(conn, "customers"):
        if name in _KEYS:
            sets.append(f"{name} = {_KEYS[name]}")
        elif name not in privacy.KEEP:
            empty = "NULL" if nullable else ("'{}'" if kind.startswith("json") else f"'{REDACTED}'")
            sets.append(f"{name} = {empty}")
    await conn.execute(
        f"UPDATE mapper.customers SET {', '.join(sets)} WHERE store_id = $1 AND id = ANY($2::uuid[])",
        store_id,
        ids,
    )
    # Addresses a sale keeps of its own (delivery, buyer): cleared; amounts and lines stay.
    address = [(n, null) for n, _, null in await _columns(conn, "sales") if "address" in n]
    if address:
        sets = [f"{n} = NULL" if null else f"{n} = '{{}}'" for n, null in address]
        await conn.execute(
            f"UPDATE mapper.sales SET {', '.join(sets)}"
            " WHERE store_id = $1 AND customer_id = ANY($2::uuid[])",
            store_id,
            ids,
        )


async def _scrub_rejections(
    conn: Conn, store_id: int, rejections: list[dict[str, Any]], person: Person | None
) -> None:
    for r in rejections:
        body, detail, items = privacy.scrubbed_rejection(r, person)
        await conn.execute(
            """
            UPDATE mapper.rejections SET body = $3, detail = $4, items = $5::jsonb
            WHERE store_id = $1 AND order_id = $2
            """,
            store_id,
            r["order_id"],
            body,
            detail,
            items,
        )


async def redact_queues(url: str, request: PrivacyRequest, person: Person | None) -> int:
    """Parked copies of the person's orders dropped (their rejection row, redacted, stays for
    ``orders retry``); dead-lettered ones rewritten without the person."""
    if request.kind == "data_request":
        return 0
    concerns = privacy.concerns(request, person)
    dropped = await rewrite_messages(url, MAPPER_PARKED.name, concerns, None)
    rewritten = 0
    for queue in (MAPPER_ORDERS.dead_name, MAPPER_PARKED.dead_name):
        rewritten += await rewrite_messages(
            url, queue, concerns, lambda b: scrub_bytes(b, person), detail_scrubber(person)
        )
    return dropped + rewritten


async def export_part(conn: Executor, request_id: str) -> dict[str, Any] | None:
    """The mapper's part of a data request's export, None while it has not filed one."""
    part = await conn.fetchval(
        "SELECT part::text FROM mapper.privacy_exports WHERE request_id = $1", request_id
    )
    return orjson.loads(part) if part is not None else None
