"""LGPD redaction in the ledger: the customer inside each kept sale announcement is anonymised,
and the addresses it carried (the customer's billing address, the shipping address) dropped."""

from __future__ import annotations

from shared.contracts import PrivacyRequest
from shared.db import Conn
from shared.documents import normalize_document
from shared.logging import get_logger

log = get_logger(__name__)

_SCRUB = """
UPDATE ledger.sales SET announcement = announcement || jsonb_build_object('customer',
    jsonb_build_object('id', announcement->'customer'->'id', 'name', 'redacted', 'document', NULL,
                       'business_phone', NULL, 'mobile_phone', NULL,
                       'created', announcement->'customer'->'created', 'address', NULL),
    'shipping_address', NULL)
WHERE store_id = $1 AND ($2 OR order_id = ANY($3::bigint[])
                         OR ($4::text IS NOT NULL AND announcement->'customer'->>'document' = $4))
"""


async def handle_privacy(conn: Conn, request: PrivacyRequest) -> None:
    if request.kind == "data_request":
        held = await conn.fetchval(
            "SELECT count(*) FROM ledger.sales WHERE store_id = $1", request.store_id
        )
        log.info(
            "LGPD data request: sale announcements held", store_id=request.store_id, sales=held
        )
        return
    customer = request.customer
    document = (
        normalize_document(customer.identification)
        if customer and customer.identification
        else None
    )
    status = await conn.execute(
        _SCRUB, request.store_id, request.kind == "store_redact", request.order_ids, document
    )
    log.info("LGPD redaction applied", store_id=request.store_id, kind=request.kind, result=status)
