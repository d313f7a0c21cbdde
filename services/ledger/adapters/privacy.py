"""LGPD requests in the ledger over PostgreSQL and the broker: its part of an export, or the
person removed from what it keeps.

Whose: the sales of the request's orders, or whose announced customer has the request's document
(``store/redact``: every sale of the store); the person is ``services.ledger.privacy.person_of``.

- A **data request** files the ledger's part in ``ledger.privacy_exports``: those sales (status,
  amounts, the announcement as kept) with their receivables.
- A **redaction** rewrites those announcements without the person (``shared.privacy``: the
  customer keeps its id, addresses go, and the person's values leave every other string), then
  scrubs queued events not relayed yet, earlier exports and the dead-lettered messages.
  Amounts, lines, receivables and stock movements stay.
"""

from __future__ import annotations

from typing import Any

import orjson

from services.ledger.privacy import clean_export, person_of
from shared.contracts import PrivacyRequest
from shared.db import Conn, Executor
from shared.documents import normalize_document
from shared.logging import get_logger
from shared.privacy import (
    Person,
    detail_scrubber,
    scrub,
    scrub_bytes,
    scrub_outbox_and_exports,
)
from shared.queues import rewrite_messages
from shared.topology import LEDGER_ERP, ledger_shard

log = get_logger(__name__)


async def _sales(conn: Conn, request: PrivacyRequest) -> list[dict[str, Any]]:
    customer = request.customer
    document = (
        normalize_document(customer.identification)
        if customer and customer.identification
        else None
    )
    rows = await conn.fetch(
        """
        SELECT sale_id, order_id, order_number, status, total::text AS total, sale_date::text AS
               sale_date, announcement::text AS announcement,
               (SELECT coalesce(json_agg(json_build_object('number', r.number, 'amount',
                        r.amount::text, 'due_date', r.due_date, 'method', r.method,
                        'status', r.status) ORDER BY r.number), '[]')::text
                FROM ledger.receivables r WHERE r.sale_id = s.sale_id) AS receivables
        FROM ledger.sales s
        WHERE store_id = $1 AND ($2 OR order_id = ANY($3::bigint[])
              OR ($4::text IS NOT NULL AND announcement->'customer'->>'document' = $4))
        ORDER BY order_id
        """,
        request.store_id,
        request.kind == "store_redact",
        request.order_ids,
        document,
    )
    out = []
    for r in rows:
        sale = dict(r)
        sale["announcement"] = orjson.loads(r["announcement"])
        sale["receivables"] = orjson.loads(r["receivables"])
        out.append(sale)
    return out


async def handle_privacy(conn: Conn, request: PrivacyRequest) -> Person | None:
    """Export or redact; the person's values (None: the whole store), for ``redact_queues``."""
    sales = await _sales(conn, request)
    person = person_of(request, sales)
    if request.kind == "data_request":
        await conn.execute(
            """
            INSERT INTO ledger.privacy_exports (request_id, store_id, part)
            VALUES ($1, $2, $3::jsonb) ON CONFLICT (request_id) DO NOTHING
            """,
            request.request_id or f"unnamed:{request.store_id}",
            request.store_id,
            orjson.dumps({"sales": sales}).decode(),
        )
        log.info(
            "LGPD data request: ledger part filed", store_id=request.store_id, sales=len(sales)
        )
        return person
    for sale in sales:
        await conn.execute(
            "UPDATE ledger.sales SET announcement = $2::jsonb WHERE sale_id = $1",
            sale["sale_id"],
            orjson.dumps(scrub(sale["announcement"], person)).decode(),
        )
    await scrub_outbox_and_exports(
        conn,
        "ledger",
        request.store_id,
        person,
        lambda part, text: clean_export(part, text, person),
    )
    log.info(
        "LGPD redaction applied", store_id=request.store_id, kind=request.kind, sales=len(sales)
    )
    return person


async def redact_queues(
    url: str, request: PrivacyRequest, person: Person | None, shard: int | None
) -> int:
    """The store's (or the person's) dead-lettered messages, rewritten without the person: in
    the dead queue of the store's shard (``shard``, where the request arrived) and of the ERP's
    decisions."""
    if request.kind == "data_request":
        return 0
    prefix = f"{request.store_id}:"

    def concerns(message: Any) -> bool:
        body = message.body.decode(errors="replace")
        if not (message.correlation_id or "").startswith(prefix) and (
            f'"store_id":{request.store_id}' not in body.replace(" ", "")
        ):
            return False
        return person is None or person.concerns(body)

    queues = [LEDGER_ERP.dead_name]
    if shard is not None:
        queues.insert(0, ledger_shard(shard).dead_name)
    rewritten = 0
    for queue in queues:
        rewritten += await rewrite_messages(
            url, queue, concerns, lambda b: scrub_bytes(b, person), detail_scrubber(person)
        )
    return rewritten


async def export_part(conn: Executor, request_id: str) -> dict[str, Any] | None:
    """The ledger's part of a data request's export, None while it has not filed one."""
    part = await conn.fetchval(
        "SELECT part::text FROM ledger.privacy_exports WHERE request_id = $1", request_id
    )
    return orjson.loads(part) if part is not None else None
