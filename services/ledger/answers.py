"""What the ledger answers, as envelopes: confirmations, refusals, cancellations.

Each answer has one message id per fact (``sale.confirmed:<sale>``, ``sale.cancelled:<sale>``,
``sale.confirmation_refused:<the ERP's message>``), so a repeat stages nothing new, and carries
the order's correlation id (a refusal of an unknown sale echoes the ERP's own). Pure: no I/O.
"""

from __future__ import annotations

import hashlib

import orjson

from services.ledger.ports import SaleRow
from shared.contracts import (
    Receivable,
    SaleCancelled,
    SaleConfirm,
    SaleConfirmationRefused,
    SaleConfirmed,
    SaleDiscard,
    StockMovement,
)
from shared.logging import get_logger
from shared.messaging import Envelope, correlation, envelope

log = get_logger(__name__)

ERP_KEYS = frozenset({SaleConfirm.routing_key, SaleDiscard.routing_key})


def refusal(
    sale: SaleRow | None,
    sale_id: str | None,
    code: str,
    detail: str,
    source_message_id: str,
    *,
    source_correlation: str | None = None,
) -> Envelope:
    message = SaleConfirmationRefused(
        sale_id=sale_id,
        reason=code,
        detail=detail,
        store_id=sale.store_id if sale else None,
        order_id=sale.order_id if sale else None,
    )
    log.warning("confirmation refused", sale_id=sale_id, reason=code, detail=detail)
    # An unknown sale has no order to name: the ERP's own correlation id is echoed instead.
    key = correlation(sale.store_id, sale.order_id) if sale else source_correlation
    return envelope(
        message, message_id=f"sale.confirmation_refused:{source_message_id}", correlation_id=key
    )


def unknown_sale(sale_id: str, source_message_id: str, source_correlation: str | None) -> Envelope:
    return refusal(
        None,
        sale_id,
        "unknown_sale",
        "no sale with this id",
        source_message_id,
        source_correlation=source_correlation,
    )


def confirmed(
    sale: SaleRow,
    seller: str | None,
    receivables: list[Receivable],
    movements: list[StockMovement],
) -> Envelope:
    message = SaleConfirmed(
        sale_id=sale.sale_id,
        store_id=sale.store_id,
        order_id=sale.order_id,
        seller_id=seller,
        receivables=receivables,
        stock_movements=movements,
    )
    key = correlation(sale.store_id, sale.order_id)
    return envelope(message, message_id=f"sale.confirmed:{sale.sale_id}", correlation_id=key)


def cancelled(
    sale: SaleRow, receivables: list[Receivable], movements_in: list[StockMovement]
) -> Envelope:
    message = SaleCancelled(
        sale_id=sale.sale_id,
        store_id=sale.store_id,
        order_id=sale.order_id,
        receivables=receivables,
        stock_movements=movements_in,
    )
    key = correlation(sale.store_id, sale.order_id)
    return envelope(message, message_id=f"sale.cancelled:{sale.sale_id}", correlation_id=key)


def malformed(routing_key: str, body: bytes, message_id: str | None, why: str) -> list[Envelope]:
    """A malformed ERP message is answered with ``sale.confirmation_refused`` (and dead-lettered)."""
    if routing_key not in ERP_KEYS:
        return []
    sale_id: str | None = None
    try:
        data = orjson.loads(body)
        if isinstance(data, dict) and isinstance(data.get("sale_id"), str):
            sale_id = data["sale_id"]
    except orjson.JSONDecodeError:
        pass
    source = message_id or hashlib.sha256(body).hexdigest()[:16]
    message = SaleConfirmationRefused(sale_id=sale_id, reason="malformed_message", detail=why)
    return [
        envelope(message, message_id=f"sale.confirmation_refused:{source}", correlation_id=None)
    ]
