"""LGPD requests as the mapper acts on them: the customers it holds are anonymised or described.

A redacted customer keeps its id (sales still point at it) but loses name, document, e-mail,
phones and address, and its sales lose the billing and shipping addresses they carried; its match
key becomes its own id, so no later order can be matched to it. A data request
is answered in the log with what is held (field names and counts, never the values).
"""

from __future__ import annotations

from shared.contracts import PrivacyRequest
from shared.db import Conn
from shared.documents import normalize_document
from shared.logging import get_logger

log = get_logger(__name__)

_ANONYMISE = """
UPDATE mapper.customers SET name = 'redacted', name_key = 'redacted:' || id::text,
    document = NULL, document_key = id::text, email = NULL, mobile_phone = NULL, business_phone = NULL,
    address = NULL
WHERE store_id = $1 AND id = ANY($2::uuid[])
"""
_FORGET_ADDRESSES = """
UPDATE mapper.sales SET customer_address = NULL, shipping_address = NULL
WHERE store_id = $1 AND customer_id = ANY($2::uuid[])
    AND (customer_address IS NOT NULL OR shipping_address IS NOT NULL)
"""


async def _matching(conn: Conn, request: PrivacyRequest) -> list[str]:
    if request.kind == "store_redact":
        rows = await conn.fetch(
            "SELECT id::text FROM mapper.customers WHERE store_id = $1", request.store_id
        )
        return [r["id"] for r in rows]
    customer = request.customer
    document = (
        normalize_document(customer.identification)
        if customer and customer.identification
        else None
    )
    email = customer.email if customer else None
    rows = await conn.fetch(
        """
        SELECT id::text FROM mapper.customers
        WHERE store_id = $1 AND (($2::text IS NOT NULL AND document_key = $2)
                                 OR ($3::text IS NOT NULL AND email = $3))
        UNION
        SELECT customer_id::text FROM mapper.sales WHERE store_id = $1 AND order_id = ANY($4::bigint[])
        """,
        request.store_id,
        document,
        email,
        request.order_ids,
    )
    return [r["id"] for r in rows]


async def handle_privacy(conn: Conn, request: PrivacyRequest) -> None:
    ids = await _matching(conn, request)
    if request.kind == "data_request":
        log.info(
            "LGPD data request: personal data held",
            store_id=request.store_id,
            customers=len(ids),
            fields=["name", "document", "email", "mobile_phone", "business_phone", "address"],
        )
        return
    await conn.execute(_ANONYMISE, request.store_id, ids)
    await conn.execute(_FORGET_ADDRESSES, request.store_id, ids)
    log.info(
        "LGPD redaction applied", store_id=request.store_id, kind=request.kind, customers=len(ids)
    )
