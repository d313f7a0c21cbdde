"""The consumer of ``mapper.orders``: a batch's orders, in one transaction, through one SQL path.

One transaction per batch: the inbox claims its messages (a redelivered one is skipped whole; a
duplicate inside the batch runs once), the order messages go to the use case
(``imports.import_orders``) in runs between privacy requests, which act in their place in the
batch, and what they announce is staged in the outbox.

The one fallback: when the database refuses an order's data (``UNSTORABLE``: a text too long for
its index, a number too large for its column, a character PostgreSQL cannot hold), the set-based
statement fails for its whole batch, and the batch fails: the consumer replays it one message per
transaction (``shared.retrying``). An order alone goes through the same use case in a savepoint,
so the one at fault is rejected (SPEC §4) instead of dead-lettered.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
import structlog

from services.mapper import domain, imports, rules
from services.mapper.adapters.bulk import PostgresImports
from services.mapper.privacy import handle_privacy, redact_queues
from shared.consumer import BatchResult, Incoming
from shared.contracts import OrderInvalid, OrderPaid, PrivacyRequest, SaleRejected
from shared.db import Conn
from shared.logging import get_logger
from shared.messaging import Envelope
from shared.outbox import claim, stage

log = get_logger(__name__)

SCHEMA = "mapper"

# The database refuses the order's data itself: a text too long for its index, a number too
# large for its column, a character PostgreSQL cannot hold.
UNSTORABLE: tuple[type[Exception], ...] = (asyncpg.DataError, asyncpg.ProgramLimitExceededError)


class OrderHandler:
    """Consumes ``mapper.orders`` (``order.paid``, ``order.invalid``, ``privacy.request``)."""

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
            store = PostgresImports(conn)
            for run in _runs(todo):
                if isinstance(run, Incoming):
                    envs += await self._privacy(conn, run)
                elif len(run) == 1:
                    envs += await self._alone(conn, store, run[0])
                else:
                    envs += await imports.import_orders(store, run, self.default_timezone)
            staged = await stage(conn, SCHEMA, envs)
        return BatchResult([None] * len(batch), staged)

    async def _privacy(self, conn: Conn, incoming: Incoming) -> list[Envelope]:
        request = incoming.message
        assert isinstance(request, PrivacyRequest)
        person = await handle_privacy(conn, request)
        if self.amqp_url is not None:
            await redact_queues(self.amqp_url, request, person)
        return []

    async def _alone(
        self, conn: Conn, store: PostgresImports, received: imports.Received
    ) -> list[Envelope]:
        """An order alone, in a savepoint: rejected when the database refuses its data."""
        structlog.contextvars.bind_contextvars(message_id=received.message_id)
        try:
            async with conn.transaction():
                return await imports.import_orders(store, [received], self.default_timezone)
        except UNSTORABLE as exc:
            if not isinstance(received.message, OrderPaid):
                raise
            # SPEC §4: an order that cannot become a sale is recorded as rejected, with a
            # reason an operator understands, not lost among dead letters.
            async with conn.transaction():
                return await imports.reject(store, received, _unstorable(received.message, exc))
        finally:
            structlog.contextvars.clear_contextvars()


def _runs(todo: Sequence[Incoming]) -> list[Incoming | list[imports.Received]]:
    """The batch as runs of order messages, split where a privacy request acts."""
    runs: list[Incoming | list[imports.Received]] = []
    for incoming in todo:
        message = incoming.message
        if isinstance(message, OrderPaid | OrderInvalid):
            if not runs or isinstance(runs[-1], Incoming):
                runs.append([])
            run = runs[-1]
            assert isinstance(run, list)
            run.append(
                imports.Received(
                    message=message,
                    message_id=incoming.message_id,
                    routing_key=incoming.routing_key,
                    body=incoming.delivery.body,
                    type=incoming.delivery.type or "",
                )
            )
        else:
            runs.append(incoming)
    return runs


def _unstorable(order: OrderPaid, exc: Exception) -> SaleRejected:
    return SaleRejected(
        store_id=order.store_id,
        order_id=order.order_id,
        reason=domain.INVALID_ORDER,
        detail=f"the order's data cannot be stored: {exc}",
    )
