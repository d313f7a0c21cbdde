"""The mapper's use case: an announced paid order becomes a pending sale, or a recorded rejection.

One transaction per batch; inside it one savepoint per order, so an order whose customer,
products and sale cannot all be created leaves none of them behind, and never disturbs its
batch-mates. The inbox skips redelivered messages whole; the (store, order) key of the sale
catches different messages about the same order.
"""

from __future__ import annotations

import datetime as dt
import uuid

import asyncpg
import structlog

from services.mapper import bulk, domain, rules
from services.mapper.adapters import postgres as db
from services.mapper.privacy import handle_privacy, redact_queues
from shared.consumer import BatchResult, Incoming
from shared.contracts import OrderInvalid, OrderPaid, PrivacyRequest, RejectedItem, SaleRejected
from shared.db import Conn
from shared.logging import get_logger
from shared.messaging import Envelope, correlation, envelope, error_headers
from shared.outbox import claim, stage
from shared.topology import MAPPER_PARKED

log = get_logger(__name__)

SCHEMA = "mapper"


def _new_product_ref(draft: domain.ProductDraft) -> domain.ProductRef:
    # A product the sale would create has no stock yet; its id is a placeholder for the check.
    return domain.ProductRef(
        id=f"new:{draft.description}", description=draft.description, created=True
    )


class OrderHandler:
    """Consumes ``mapper.orders`` (``order.paid`` and ``order.invalid``)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        sale_timezone: str = rules.DEFAULT_TIMEZONE,
        *,
        amqp_url: str | None = None,
    ) -> None:
        self.pool = pool
        # The installation's calendar; a store's own ``timezone`` setting overrides it.
        self.default_timezone = sale_timezone
        rules.parse_timezone(sale_timezone)
        self.amqp_url = amqp_url  # where its parked and dead queues are redacted (LGPD)

    async def __call__(self, batch: list[Incoming]) -> BatchResult:
        envs: list[Envelope] = []
        async with self.pool.acquire() as conn, conn.transaction():
            fresh = await claim(conn, SCHEMA, [i.message_id for i in batch])
            todo: list[Incoming] = []
            for incoming in batch:
                if incoming.message_id not in fresh:
                    log.info("redelivered message skipped", message_id=incoming.message_id)
                    continue
                fresh.discard(incoming.message_id)  # a duplicate inside the batch runs once
                todo.append(incoming)
            fast, slow, settings = await self._split(conn, todo)
            if fast:
                envs += await self._import_fast(conn, fast, settings)
            for incoming in slow:
                structlog.contextvars.bind_contextvars(message_id=incoming.message_id)
                try:
                    async with conn.transaction():
                        envs += await self._one(conn, incoming)
                except db.DuplicateSaleError:
                    log.info("sale already created by another worker")
                except UNSTORABLE as exc:
                    if not isinstance(incoming.message, OrderPaid):
                        raise
                    # SPEC §4: an order that cannot become a sale is recorded as rejected, with a
                    # reason an operator understands, not lost among dead letters.
                    async with conn.transaction():
                        envs += await self._reject(
                            conn, incoming, _unstorable(incoming.message, exc)
                        )
                finally:
                    structlog.contextvars.clear_contextvars()
            staged = await stage(conn, SCHEMA, envs)
        return BatchResult([None] * len(batch), staged)

    async def _split(
        self, conn: Conn, todo: list[Incoming]
    ) -> tuple[list[bulk.Candidate], list[Incoming], dict[int, rules.StoreRules]]:
        """Ordinary paid orders (the set-based path) apart from everything else (one by one)."""
        paid = [i for i in todo if isinstance(i.message, OrderPaid)]
        if len(paid) < 2:
            return [], todo, {}
        orders = [i.message for i in paid if isinstance(i.message, OrderPaid)]
        existing = await bulk.existing_sales(conn, orders)
        store_rules = await bulk.store_rules(conn, {o.store_id for o in orders})
        off = await bulk.disabled_stores(conn, {o.store_id for o in orders})
        fast: list[bulk.Candidate] = []
        slow: list[Incoming] = [i for i in todo if not isinstance(i.message, OrderPaid)]
        seen: set[tuple[int, int]] = set()
        for incoming in paid:
            order = incoming.message
            assert isinstance(order, OrderPaid)
            key = (order.store_id, order.order_id)
            ordinary = (
                key not in existing
                and key not in seen
                and not store_rules.get(order.store_id, rules.StoreRules()).stock_check
                and order.store_id not in off
                and rules.currency_rejection(order) is None
            )
            seen.add(key)
            customer = None
            if ordinary and not domain.validate_order(order):
                try:
                    customer = domain.customer_from_order(order)
                except domain.InvalidOrderError:
                    customer = None
            if customer is None:
                slow.append(incoming)
            else:
                fast.append(bulk.Candidate(order, customer, incoming.message_id))
        return fast, slow, store_rules

    async def _import_fast(
        self,
        conn: Conn,
        candidates: list[bulk.Candidate],
        store_rules: dict[int, rules.StoreRules],
    ) -> list[Envelope]:
        envs: list[Envelope] = []
        imported = await bulk.import_many(conn, candidates, store_rules, self.default_timezone)
        for sale_id, sale in imported:
            key = correlation(sale.store_id, sale.order_id)
            log.info(
                "pending sale created",
                store_id=sale.store_id,
                order_id=sale.order_id,
                sale_id=sale_id,
                total=str(sale.total),
                warnings=len(sale.warnings),
            )
            announced = domain.pending_review(sale, sale_id)
            envs.append(
                envelope(announced, message_id=f"sale.pending_review:{sale_id}", correlation_id=key)
            )
        return envs

    async def _one(self, conn: Conn, incoming: Incoming) -> list[Envelope]:
        message = incoming.message
        if isinstance(message, PrivacyRequest):
            person = await handle_privacy(conn, message)
            if self.amqp_url is not None:
                await redact_queues(self.amqp_url, message, person)
            return []
        if isinstance(message, OrderInvalid) and await db.sale_exists(
            conn, message.store_id, message.order_id
        ):
            # Arrived after the order was imported (reordered or re-sent): nothing to reject.
            log.info("order.invalid for an imported order ignored", order_id=message.order_id)
            return []
        if isinstance(message, OrderInvalid):
            structlog.contextvars.bind_contextvars(
                store_id=message.store_id, order_id=message.order_id
            )
            rejected = SaleRejected(
                store_id=message.store_id,
                order_id=message.order_id,
                reason=domain.INVALID_ORDER,
                detail=message.detail,
            )
            return await self._reject(conn, incoming, rejected)
        assert isinstance(message, OrderPaid)
        return await self.import_order(conn, incoming, message)

    async def import_order(
        self, conn: Conn, incoming: Incoming, order: OrderPaid
    ) -> list[Envelope]:
        structlog.contextvars.bind_contextvars(store_id=order.store_id, order_id=order.order_id)
        if await db.sale_exists(conn, order.store_id, order.order_id):
            log.info("order already imported")
            await db.resolve_rejection(conn, order.store_id, order.order_id)
            return []
        refused = await self._refused(conn, order)
        if refused is not None:
            return await self._reject(conn, incoming, refused)
        problems = domain.validate_order(order)
        try:
            customer_draft = domain.customer_from_order(order)
        except domain.InvalidOrderError as exc:
            problems += [p for p in exc.problems if p not in problems]
        if problems:
            return await self._reject(
                conn, incoming, domain.invalid_order_rejection(order, problems)
            )
        drafts = domain.product_drafts(order)
        store = await db.store_rules(conn, order.store_id)
        if store.stock_check:
            shortages = await self._shortages(conn, order, drafts, store.product_match)
            if shortages:
                rejected = domain.insufficient_stock_rejection(order, shortages)
                return await self._reject(conn, incoming, rejected)
        customer = await db.resolve_customer(conn, order.store_id, customer_draft)
        products = await db.resolve_products(conn, order.store_id, drafts, store.product_match)
        sale_date = rules.sale_day(order, store.zone(self.default_timezone))
        sale = domain.build_sale(order, customer, products, order.activated_by, sale_date)
        sale_id = str(uuid.uuid4())
        await db.insert_sale(conn, sale_id, sale)
        await db.resolve_rejection(conn, order.store_id, order.order_id)
        announced = domain.pending_review(sale, sale_id)
        key = correlation(order.store_id, order.order_id)
        log.info(
            "pending sale created",
            sale_id=sale_id,
            total=str(sale.total),
            warnings=len(sale.warnings),
        )
        return [
            envelope(announced, message_id=f"sale.pending_review:{sale_id}", correlation_id=key)
        ]

    async def _refused(self, conn: Conn, order: OrderPaid) -> SaleRejected | None:
        """Why the order is kept out before anything is created: its store is off, or its
        currency is not the real (SPEC §4, §8.4); None when neither."""
        reason = await db.disabled_reason(conn, order.store_id)
        if reason is not None:
            return rules.store_disabled_rejection(order, reason)
        return rules.currency_rejection(order)

    async def _shortages(
        self,
        conn: Conn,
        order: OrderPaid,
        drafts: list[domain.ProductDraft],
        match: rules.ProductMatch,
    ) -> list[domain.Shortage]:
        plan = await db.plan_products(conn, order.store_id, drafts, match)
        refs = rules.resolve_plan(plan, {d.description: _new_product_ref(d) for d in plan.create})
        lines = domain.build_sale(order, _placeholder_customer(), refs, None, dt.date.min).lines
        existing = sorted({ref.id for ref in plan.found.values()})
        available = await db.on_hand(conn, order.store_id, existing)
        return domain.check_stock(lines, available)

    async def _reject(
        self, conn: Conn, incoming: Incoming, rejected: SaleRejected
    ) -> list[Envelope]:
        if rejected.items is not None:
            # Products the sale would have created do not exist: no id to show.
            rejected = rejected.model_copy(
                update={"items": [_without_placeholder(item) for item in rejected.items]}
            )
        items = (
            [i.model_dump(mode="json") for i in rejected.items]
            if rejected.items is not None
            else None
        )
        attempts = await db.record_rejection(
            conn,
            store_id=rejected.store_id,
            order_id=rejected.order_id,
            reason=rejected.reason,
            detail=rejected.detail,
            items=items,
            message_id=incoming.message_id,
            routing_key=incoming.routing_key,
            body=incoming.delivery.body,
        )
        key = correlation(rejected.store_id, rejected.order_id)
        log.warning(
            "order rejected", reason=rejected.reason, detail=rejected.detail, attempts=attempts
        )
        parked = Envelope(
            exchange="",
            routing_key=MAPPER_PARKED.name,
            body=incoming.delivery.body,
            message_id=f"{incoming.message_id}:parked:{attempts}",
            type=incoming.delivery.type or "",
            correlation_id=key,
            headers=error_headers(rejected.reason, rejected.detail)
            | {
                "x-original-routing-key": incoming.routing_key,
                "x-original-message-id": incoming.message_id,
            },
        )
        announced = envelope(
            rejected, message_id=f"sale.rejected:{key}:{attempts}", correlation_id=key
        )
        return [announced, parked]


# The database refuses the order's data itself: a text too long for its index, a number too
# large for its column, a character PostgreSQL cannot hold.
UNSTORABLE: tuple[type[Exception], ...] = (asyncpg.DataError, asyncpg.ProgramLimitExceededError)


def _unstorable(order: OrderPaid, exc: Exception) -> SaleRejected:
    return SaleRejected(
        store_id=order.store_id,
        order_id=order.order_id,
        reason=domain.INVALID_ORDER,
        detail=f"the order's data cannot be stored: {exc}",
    )


def _without_placeholder(item: RejectedItem) -> RejectedItem:
    if item.product_id is not None and item.product_id.startswith("new:"):
        return item.model_copy(update={"product_id": None})
    return item


def _placeholder_customer() -> domain.CustomerRef:
    # Only the lines matter for the stock check; the customer is not created before it passes.
    return domain.CustomerRef(
        id="", name="", document=None, mobile_phone=None, business_phone=None, created=False
    )
