"""Partial refunds (SPEC §8.6): noted on the sale and announced, never reversed automatically.

``order.partially_refunded`` comes straight from ingest while the sale comes through the mapper,
so it may arrive first: it is then remembered (``early``) and noted when the sale is announced.
A sale is noted once, whatever the number of notices; the announcement
``sale.partially_refunded`` has one message id per sale.
"""

from __future__ import annotations

import datetime as dt

import structlog

from services.ledger.ports import LedgerUnitOfWork
from shared.contracts import OrderPartiallyRefunded, SalePartiallyRefunded
from shared.logging import get_logger
from shared.messaging import Envelope, correlation, envelope
from shared.subscribers import Received

log = get_logger(__name__)


def announcement(sale_id: str, store_id: int, order_id: int, noted_at: dt.datetime) -> Envelope:
    message = SalePartiallyRefunded(
        sale_id=sale_id, store_id=store_id, order_id=order_id, noted_at=noted_at
    )
    return envelope(
        message,
        message_id=f"sale.partially_refunded:{sale_id}",
        correlation_id=correlation(store_id, order_id),
    )


async def note(uow: LedgerUnitOfWork, received: Received[OrderPartiallyRefunded]) -> list[Envelope]:
    """Note the refund on the order's sale and announce it, or remember it until the sale comes."""
    notice = received.message
    structlog.contextvars.bind_contextvars(store_id=notice.store_id, order_id=notice.order_id)
    sale_id = await uow.sales.note_refund(notice.store_id, notice.order_id, notice.noted_at)
    if sale_id is not None:
        log.info("sale partially refunded: noted, nothing reversed", sale_id=sale_id)
        return [announcement(sale_id, notice.store_id, notice.order_id, notice.noted_at)]
    if not await uow.sales.known_order(notice.store_id, notice.order_id):
        await uow.early.remember_refund(notice.store_id, notice.order_id, notice.noted_at)
        log.info("partial refund remembered until its sale arrives")
    return []


async def note_early(uow: LedgerUnitOfWork, sale_ids: list[str]) -> list[Envelope]:
    """Note the refunds remembered for sales just announced; their announcements."""
    noted = await uow.early.take_refunds(sale_ids)
    return [announcement(n.sale_id, n.store_id, n.order_id, n.noted_at) for n in noted]
