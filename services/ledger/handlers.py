"""The ledger's use cases and their declarations: keep announced sales, post confirmations,
reverse cancellations, note partial refunds, apply privacy requests.

The consumer of each queue (``ledger.erp``, ``ledger.sales.<k>``) opens the unit of work around
a batch, claims the inbox, keeps what this consumer acts on (``shards.admit``), hands each run
of one message type to the handler declared for it here, and stages what the handlers return
(``shared.unitofwork``). Announcements and confirmations are set-based (``confirming``), a run
of one included; everything about one sale happens under its row lock, and a refusal posts
nothing. When a batch fails, it is replayed one message per transaction, which isolates the
failing message (``shared.retrying``). Redelivered messages are skipped by the inbox; a new
confirmation of an already confirmed sale with the same terms re-announces what was posted.
"""

from __future__ import annotations

import structlog
from aio_pika.abc import AbstractIncomingMessage

from services.ledger import answers, confirming, domain, refunds, shards
from services.ledger.ports import LedgerUnitOfWork, SaleRow
from shared.contracts import (
    OrderCancelled,
    OrderPartiallyRefunded,
    PrivacyRequest,
    Receivable,
    SaleConfirm,
    SaleDiscard,
    SalePendingReview,
    StockMovement,
)
from shared.logging import get_logger
from shared.messaging import Envelope
from shared.subscribers import Received, Subscribers
from shared.topology import LEDGER_ERP, ledger_shard
from shared.unitofwork import Begin, UnitOfWorkHandler

log = get_logger(__name__)

SCHEMA = "ledger"
ERP = LEDGER_ERP.name
SHARDS = "ledger.sales.<k>"  # every shard of the sales stream (shared/topology.py)

LEDGER = Subscribers[LedgerUnitOfWork]("ledger")

LEDGER.batch(SaleConfirm, ERP, SHARDS)(confirming.confirm)
LEDGER.each(OrderPartiallyRefunded, SHARDS)(refunds.note)


def sales_handler(
    begin: Begin[LedgerUnitOfWork], shard: int | None = None, shards_count: int = 1
) -> UnitOfWorkHandler[LedgerUnitOfWork]:
    """The handler of a sales shard ``ledger.sales.<shard>`` (announcements, cancellations,
    privacy requests, and the ERP decisions sent on to every shard), or, with ``shard`` None,
    of the ERP's decisions in ``ledger.erp`` (``services/ledger/shards.py``)."""
    queue = ERP if shard is None else ledger_shard(shard).name
    return UnitOfWorkHandler(
        LEDGER.on(queue),
        begin,
        inbox_id=shards.inbox_id(shard),
        admit=shards.admit(shard, shards_count),
    )


@LEDGER.batch(SalePendingReview, SHARDS)
async def keep_sales(
    uow: LedgerUnitOfWork, run: list[Received[SalePendingReview]]
) -> list[Envelope]:
    """Keep announced sales; note what arrived before them (refunds, cancellations)."""
    sales: dict[str, SalePendingReview] = {}
    for received in run:
        sales.setdefault(received.message.sale_id, received.message)
    inserted = await uow.sales.add(list(sales.values()))
    for sale in sales.values():
        if sale.sale_id in inserted:
            log.info(
                "sale pending review kept",
                sale_id=sale.sale_id,
                store_id=sale.store_id,
                order_id=sale.order_id,
            )
        else:
            log.info("sale already known", sale_id=sale.sale_id)
    kept = sorted(inserted)
    envs = await refunds.note_early(uow, kept)
    early = await uow.early.take_cancellations(kept) if kept else {}
    locked = await uow.sales.lock(sorted(early)) if early else {}
    for sale_id, row in locked.items():
        envs += await cancel(uow, row, f"order {early[sale_id]}")
    return envs


@LEDGER.each(SaleDiscard, ERP, SHARDS)
async def discard(uow: LedgerUnitOfWork, received: Received[SaleDiscard]) -> list[Envelope]:
    request = received.message
    sale = (await uow.sales.lock([request.sale_id])).get(request.sale_id)
    if sale is None:
        return [answers.unknown_sale(request.sale_id, received.message_id, received.correlation_id)]
    return await cancel(uow, sale, f"discarded by {request.discarded_by}")


@LEDGER.each(OrderCancelled, SHARDS)
async def order_cancelled(
    uow: LedgerUnitOfWork, received: Received[OrderCancelled]
) -> list[Envelope]:
    order = received.message
    structlog.contextvars.bind_contextvars(store_id=order.store_id, order_id=order.order_id)
    sale = await uow.sales.lock_of_order(order.store_id, order.order_id)
    if sale is None:
        await uow.early.remember_cancellation(
            order.store_id, order.order_id, order.cancelled_at, order.reason
        )
        log.info("cancellation remembered until its sale arrives")
        return []
    return await cancel(uow, sale, f"order {order.reason}")


@LEDGER.each(PrivacyRequest, SHARDS)
async def privacy(uow: LedgerUnitOfWork, received: Received[PrivacyRequest]) -> list[Envelope]:
    person = await uow.privacy.apply(received.message)
    await uow.privacy.redact_dead_letters(received.message, person)
    return []


async def cancel(uow: LedgerUnitOfWork, sale: SaleRow, reason: str) -> list[Envelope]:
    """Cancel a locked sale: a confirmed one gives back its stock and cancels what is open."""
    if sale.status == domain.CANCELLED:
        log.info("sale already cancelled", sale_id=sale.sale_id)
        return []
    receivables: list[Receivable] = []
    movements_in: list[StockMovement] = []
    if sale.status == domain.CONFIRMED:
        receivables = await uow.receivables.cancel_open(sale.sale_id)
        outs = (await uow.stock.movements([sale.sale_id], "out")).get(sale.sale_id, [])
        plan = [domain.PlannedMovement(n, m.product_id, m.quantity, "in") for n, m in outs]
        movements_in = await uow.stock.post(sale, plan, "sale_reversal")
    await uow.sales.set_cancelled(sale.sale_id, reason)
    log.info("sale cancelled", sale_id=sale.sale_id, reason=reason, reversed=len(movements_in))
    return [answers.cancelled(sale, receivables, movements_in)]


async def refuse_malformed(
    delivery: AbstractIncomingMessage, reason: str, detail: str
) -> list[Envelope]:
    """A malformed ERP message is answered with ``sale.confirmation_refused`` (and dead-lettered)."""
    return answers.malformed(
        delivery.routing_key or "", delivery.body, delivery.message_id, f"{reason}: {detail}"
    )
