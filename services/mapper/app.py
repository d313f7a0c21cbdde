"""Composition root of the mapper: its two consumers, as ``handlers`` declares them, the ops
routes and the outbox relay."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import asyncpg
from aiohttp import web

from services.mapper import opsapi
from services.mapper.adapters import postgres
from services.mapper.adapters.trace import record_rejections
from services.mapper.handlers import INTEGRATIONS, MAPPER, ORDERS, SCHEMA
from services.mapper.migrations import MIGRATIONS
from shared.consumer import BatchConsumer, BatchResult, Handler, Incoming
from shared.logging import get_logger
from shared.messaging import RECEIVED_HEADER, Envelope
from shared.metering import body_of, header_time, metered
from shared.metrics import ServiceMetrics
from shared.opsapi import add_ops_routes, ops_token
from shared.runtime import Service
from shared.unitofwork import UnitOfWorkHandler, consumer

log = get_logger(__name__)


def counter(metrics: ServiceMetrics) -> Callable[[list[Incoming], list[Envelope]], None]:
    """Imports, rejections by reason, and webhook-to-pending latency of a committed batch."""

    def count(batch: list[Incoming], staged: list[Envelope]) -> None:
        received = {
            i.delivery.correlation_id: at
            for i in batch
            if (at := header_time(i, RECEIVED_HEADER)) is not None
        }
        now = dt.datetime.now(dt.UTC)
        for env in staged:
            if env.routing_key == "sale.pending_review":
                metrics.orders_imported.inc()
                at = received.get(env.correlation_id)
                if at is not None:
                    metrics.webhook_to_pending.observe(max(0.0, (now - at).total_seconds()))
            elif env.routing_key == "sale.rejected":
                reason = body_of(env).get("reason")
                metrics.orders_rejected.labels(str(reason or "unknown")).inc()

    return count


def noting_rejections(handler: Handler, pool: asyncpg.Pool) -> Handler:
    """``handler``, then the rejections its committed batch staged noted for ``orders trace``.

    Noted just after the batch's transaction, as the handler leaves it: a crash in between
    loses the note (``mapper.rejections`` still holds the rejection), and a failure to note is
    only logged.
    """

    async def handle(batch: list[Incoming]) -> BatchResult:
        result = await handler(batch)
        rejected = [
            body_of(s.envelope) for s in result.staged if s.envelope.routing_key == "sale.rejected"
        ]
        if rejected:
            try:
                await record_rejections(pool, rejected)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("rejections not noted for orders trace", error=str(exc))
        return result

    return handle


class MapperService(Service):
    schema = SCHEMA
    migrations = MIGRATIONS

    def consumers(self) -> list[BatchConsumer]:
        ctx = self.ctx
        begin = postgres.begin(
            ctx.pool, default_timezone=ctx.settings.sale_timezone, amqp_url=ctx.settings.amqp_url
        )
        orders = metered(UnitOfWorkHandler(MAPPER.on(ORDERS), begin), counter(ctx.metrics))
        return [
            consumer(ctx, SCHEMA, ORDERS, MAPPER, noting_rejections(orders, ctx.pool)),
            consumer(
                ctx, SCHEMA, INTEGRATIONS, MAPPER, UnitOfWorkHandler(MAPPER.on(INTEGRATIONS), begin)
            ),
        ]

    def add_routes(self, app: web.Application) -> None:
        add_ops_routes(
            app,
            service="mapper",
            token=ops_token(self.ctx.settings),
            operations=opsapi.operations(self.ctx.pool, self.ctx.broker),
            metrics=self.ctx.metrics,
        )
