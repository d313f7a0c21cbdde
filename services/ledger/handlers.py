"""The ledger's use cases: keep announced sales, post confirmations, reverse cancellations.

Everything for one sale happens under its row lock, inside a savepoint of the batch's
transaction: the confirmation's receivables, stock movements and status change commit together
or not at all, and a refusal posts nothing. Redelivered messages are skipped by the inbox; a new
confirmation of an already confirmed sale with the same terms re-announces what was posted.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from itertools import groupby

import asyncpg
import orjson
import structlog
from aio_pika.abc import AbstractIncomingMessage

from services.ledger import bulk, domain, refunds, shards
from services.ledger.adapters import postgres as db
from services.ledger.privacy import handle_privacy, redact_queues
from shared.consumer import BatchResult, Incoming
from shared.contracts import (
    OrderCancelled,
    OrderPartiallyRefunded,
    PrivacyRequest,
    Receivable,
    SaleCancelled,
    SaleConfirm,
    SaleConfirmationRefused,
    SaleConfirmed,
    SaleDiscard,
    SalePendingReview,
    StockMovement,
)
from shared.db import Conn
from shared.logging import get_logger
from shared.messaging import Envelope, correlation, envelope
from shared.outbox import claim, stage

log = get_logger(__name__)

SCHEMA = "ledger"
ERP_KEYS = frozenset({SaleConfirm.routing_key, SaleDiscard.routing_key})


def refusal(
    sale: db.SaleRow | None,
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


class SaleHandler:
    """Consumes a sales shard ``ledger.sales.<shard>`` (announcements, cancellations, privacy
    requests, and the ERP decisions sent on to every shard), or, with ``shard`` None, the ERP's
    decisions in ``ledger.erp`` (``services/ledger/shards.py``)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        shard: int | None = None,
        shards: int = 1,
        *,
        amqp_url: str | None = None,
    ) -> None:
        self.pool = pool
        self.shard = shard
        self.shards = shards
        self.amqp_url = amqp_url  # where its dead queues are redacted (LGPD)

    async def __call__(self, batch: list[Incoming]) -> BatchResult:
        envs: list[Envelope] = []
        async with self.pool.acquire() as conn, conn.transaction():
            ids = [shards.inbox_id(i, ERP_KEYS, self.shard) for i in batch]
            fresh = await claim(conn, SCHEMA, ids)
            todo: list[Incoming] = []
            for incoming, key in zip(batch, ids, strict=True):
                if key not in fresh:
                    log.info("redelivered message skipped", message_id=incoming.message_id)
                    continue
                fresh.discard(key)
                todo.append(incoming)
            if self.shard is None:
                todo, probes = await shards.known_or_probe(conn, todo, ERP_KEYS, self.shards)
                envs += probes
            else:
                todo = await self._owned(conn, todo, self.shard)
            for kind, run in groupby(todo, key=lambda i: type(i.message)):
                envs += await self._run(conn, kind, list(run))
            staged = await stage(conn, SCHEMA, envs)
        return BatchResult([None] * len(batch), staged)

    async def _owned(self, conn: Conn, todo: list[Incoming], shard: int) -> list[Incoming]:
        """Drop the ERP probes that another shard acts on (``services/ledger/shards.py``)."""
        erp = [i for i in todo if i.routing_key in ERP_KEYS]
        if not erp or self.shards == 1:
            return todo
        # A sale announced in this very batch is this shard's (its store is routed here).
        here = {i.message.sale_id for i in todo if isinstance(i.message, SalePendingReview)}
        unsure = [i for i in erp if _sale_of(i) not in here]
        acting = await shards.mine(conn, unsure, _sale_of, shard, self.shards)
        acting |= {i.message_id for i in erp if _sale_of(i) in here}
        return [i for i in todo if i.routing_key not in ERP_KEYS or i.message_id in acting]

    async def _run(self, conn: Conn, kind: type, run: list[Incoming]) -> list[Envelope]:
        """A stretch of one kind of message: set-based when it pays, else one by one."""
        if len(run) > 1 and kind is SalePendingReview:
            return await self._keep_many(conn, run)
        if len(run) > 1 and kind is SaleConfirm:
            return await self._confirm_many(conn, run)
        return await self._one_by_one(conn, run)

    async def _one_by_one(self, conn: Conn, run: list[Incoming]) -> list[Envelope]:
        envs: list[Envelope] = []
        for incoming in run:
            structlog.contextvars.bind_contextvars(message_id=incoming.message_id)
            try:
                async with conn.transaction():
                    envs += await self._one(conn, incoming)
            finally:
                structlog.contextvars.clear_contextvars()
        return envs

    async def _keep_many(self, conn: Conn, run: list[Incoming]) -> list[Envelope]:
        sales = [i.message for i in run if isinstance(i.message, SalePendingReview)]
        inserted, early = await bulk.keep_sales(conn, sales)
        for sale in sales:
            if sale.sale_id in inserted:
                log.info(
                    "sale pending review kept",
                    sale_id=sale.sale_id,
                    store_id=sale.store_id,
                    order_id=sale.order_id,
                )
        envs = await refunds.note_early(conn, sorted(inserted))
        for sale_id in early:
            row = await db.lock_sale(conn, sale_id)
            assert row is not None
            reason = await db.take_early_cancellation(conn, row.store_id, row.order_id)
            envs += await self.cancel(conn, row, f"order {reason}")
        return envs

    async def _confirm_many(self, conn: Conn, run: list[Incoming]) -> list[Envelope]:
        requests = [(i, i.message) for i in run if isinstance(i.message, SaleConfirm)]
        repeats = Counter(r.sale_id for _, r in requests)
        locked = await bulk.lock_sales(conn, sorted(repeats))
        checked = await bulk.stock_checked(conn, {s.store_id for s in locked.values()})
        ordinary: list[tuple[Incoming, SaleConfirm, db.SaleRow]] = []
        others: list[Incoming] = []
        for incoming, request in requests:
            sale = locked.get(request.sale_id)
            if (
                sale is None
                or repeats[request.sale_id] > 1
                or sale.status != domain.PENDING_REVIEW
                or sale.store_id in checked
            ):
                others.append(incoming)
            else:
                ordinary.append((incoming, request, sale))
        lines = await bulk.lines_of(conn, [sale.sale_id for _, _, sale in ordinary])
        envs: list[Envelope] = []
        postings: list[bulk.Posting] = []
        for incoming, request, sale in ordinary:
            try:
                plan = domain.plan_installments(sale.total, sale.sale_date, request.payment)
                moves = domain.plan_stock_out(lines.get(sale.sale_id, []))
            except domain.Refusal as refused:
                envs.append(
                    refusal(sale, sale.sale_id, refused.code, refused.detail, incoming.message_id)
                )
                continue
            postings.append(bulk.Posting(sale, request, incoming.message_id, plan, moves))
        if postings:
            posted = await bulk.post(conn, postings)
            for p in postings:
                receivables, movements = posted[p.sale.sale_id]
                seller = p.request.seller_id or p.sale.seller_id
                log.info(
                    "sale confirmed",
                    sale_id=p.sale.sale_id,
                    store_id=p.sale.store_id,
                    order_id=p.sale.order_id,
                    receivables=len(receivables),
                    movements=len(movements),
                )
                envs.append(self._confirmed(p.sale, seller, receivables, movements))
        return envs + await self._one_by_one(conn, others)

    async def _one(self, conn: Conn, incoming: Incoming) -> list[Envelope]:
        message = incoming.message
        if isinstance(message, PrivacyRequest):
            person = await handle_privacy(conn, message)
            if self.amqp_url is not None:
                await redact_queues(self.amqp_url, message, person, self.shard)
            return []
        if isinstance(message, OrderPartiallyRefunded):
            structlog.contextvars.bind_contextvars(
                store_id=message.store_id, order_id=message.order_id
            )
            return await refunds.note(conn, message)
        if isinstance(message, SalePendingReview):
            return await self.keep_sale(conn, message)
        if isinstance(message, SaleConfirm):
            return await self.confirm(
                conn, message, incoming.message_id, incoming.delivery.correlation_id
            )
        if isinstance(message, SaleDiscard):
            sale = await db.lock_sale(conn, message.sale_id)
            if sale is None:
                return [
                    refusal(
                        None,
                        message.sale_id,
                        "unknown_sale",
                        "no sale with this id",
                        incoming.message_id,
                        source_correlation=incoming.delivery.correlation_id,
                    )
                ]
            return await self.cancel(conn, sale, f"discarded by {message.discarded_by}")
        assert isinstance(message, OrderCancelled)
        structlog.contextvars.bind_contextvars(store_id=message.store_id, order_id=message.order_id)
        sale = await db.lock_sale_of_order(conn, message.store_id, message.order_id)
        if sale is None:
            await db.remember_cancellation(
                conn, message.store_id, message.order_id, message.cancelled_at, message.reason
            )
            log.info("cancellation remembered until its sale arrives")
            return []
        return await self.cancel(conn, sale, f"order {message.reason}")

    async def keep_sale(self, conn: Conn, sale: SalePendingReview) -> list[Envelope]:
        structlog.contextvars.bind_contextvars(store_id=sale.store_id, order_id=sale.order_id)
        if not await db.insert_sale(conn, sale):
            log.info("sale already known", sale_id=sale.sale_id)
            return []
        log.info("sale pending review kept", sale_id=sale.sale_id)
        noted = await refunds.note_early(conn, [sale.sale_id])
        reason = await db.take_early_cancellation(conn, sale.store_id, sale.order_id)
        if reason is None:
            return noted
        row = await db.lock_sale(conn, sale.sale_id)
        assert row is not None
        return noted + await self.cancel(conn, row, f"order {reason}")

    async def confirm(
        self,
        conn: Conn,
        request: SaleConfirm,
        message_id: str,
        source_correlation: str | None = None,
    ) -> list[Envelope]:
        sale = await db.lock_sale(conn, request.sale_id)
        if sale is None:
            detail = "no sale with this id"
            return [
                refusal(
                    None,
                    request.sale_id,
                    "unknown_sale",
                    detail,
                    message_id,
                    source_correlation=source_correlation,
                )
            ]
        structlog.contextvars.bind_contextvars(store_id=sale.store_id, order_id=sale.order_id)
        if sale.status == domain.CONFIRMED:
            return await self._repeat(conn, sale, request, message_id)
        try:
            domain.transition(sale.status, "confirm")  # type: ignore[arg-type]
            plan = domain.plan_installments(sale.total, sale.sale_date, request.payment)
            lines = await db.sale_lines(conn, sale.sale_id)
            moves = domain.plan_stock_out(lines)
            if await db.stock_check_enabled(conn, sale.store_id):
                on_hand = await db.lock_products_and_count(
                    conn, sale.store_id, [m.product_id for m in moves]
                )
                short = domain.stock_shortages(lines, on_hand)
                if short:
                    detail = "; ".join(
                        f"{s.description or s.product_id}: requested {s.requested}, available {s.available}"
                        for s in short
                    )
                    raise domain.Refusal("insufficient_stock", f"insufficient stock: {detail}")
        except domain.Refusal as refused:
            return [refusal(sale, sale.sale_id, refused.code, refused.detail, message_id)]
        receivables = await db.post_receivables(conn, sale, plan)
        movements = await db.post_movements(conn, sale, moves, reason="sale")
        seller = request.seller_id or sale.seller_id
        await db.set_confirmed(
            conn,
            sale.sale_id,
            seller_id=seller,
            message_id=message_id,
            confirmed_by=request.confirmed_by,
        )
        log.info(
            "sale confirmed",
            sale_id=sale.sale_id,
            receivables=len(receivables),
            movements=len(movements),
        )
        return [self._confirmed(sale, seller, receivables, movements)]

    async def _repeat(
        self, conn: Conn, sale: db.SaleRow, request: SaleConfirm, message_id: str
    ) -> list[Envelope]:
        receivables = await db.receivables_of(conn, sale.sale_id)
        if not domain.same_terms(sale.seller_id, receivables, request):
            detail = "the sale is already confirmed with different terms"
            return [refusal(sale, sale.sale_id, "already_confirmed", detail, message_id)]
        movements = [m for _, m in await db.movements_of(conn, sale.sale_id, "out")]
        log.info("repeated confirmation: re-announcing", sale_id=sale.sale_id)
        return [self._confirmed(sale, sale.seller_id, receivables, movements)]

    def _confirmed(
        self,
        sale: db.SaleRow,
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

    async def cancel(self, conn: Conn, sale: db.SaleRow, reason: str) -> list[Envelope]:
        if sale.status == domain.CANCELLED:
            log.info("sale already cancelled", sale_id=sale.sale_id)
            return []
        receivables: list[Receivable] = []
        movements_in: list[StockMovement] = []
        if sale.status == domain.CONFIRMED:
            receivables = await db.cancel_open_receivables(conn, sale.sale_id)
            outs = await db.movements_of(conn, sale.sale_id, "out")
            plan = [domain.PlannedMovement(n, m.product_id, m.quantity, "in") for n, m in outs]
            movements_in = await db.post_movements(conn, sale, plan, reason="sale_reversal")
        await db.set_cancelled(conn, sale.sale_id, reason)
        log.info("sale cancelled", sale_id=sale.sale_id, reason=reason, reversed=len(movements_in))
        message = SaleCancelled(
            sale_id=sale.sale_id,
            store_id=sale.store_id,
            order_id=sale.order_id,
            receivables=receivables,
            stock_movements=movements_in,
        )
        key = correlation(sale.store_id, sale.order_id)
        return [envelope(message, message_id=f"sale.cancelled:{sale.sale_id}", correlation_id=key)]


def _sale_of(incoming: Incoming) -> str:
    message = incoming.message
    assert isinstance(message, SaleConfirm | SaleDiscard)
    return message.sale_id


async def refuse_malformed(
    delivery: AbstractIncomingMessage, reason: str, detail: str
) -> list[Envelope]:
    """A malformed ERP message is answered with ``sale.confirmation_refused`` (and dead-lettered)."""
    if (delivery.routing_key or "") not in ERP_KEYS:
        return []
    sale_id: str | None = None
    try:
        data = orjson.loads(delivery.body)
        if isinstance(data, dict) and isinstance(data.get("sale_id"), str):
            sale_id = data["sale_id"]
    except orjson.JSONDecodeError:
        pass
    source = delivery.message_id or hashlib.sha256(delivery.body).hexdigest()[:16]
    message = SaleConfirmationRefused(
        sale_id=sale_id, reason="malformed_message", detail=f"{reason}: {detail}"
    )
    return [
        envelope(message, message_id=f"sale.confirmation_refused:{source}", correlation_id=None)
    ]
