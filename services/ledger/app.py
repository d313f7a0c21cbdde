"""Composition root of the ledger: the ERP decisions' consumer, the sales shards' consumers
(shared between the replicas), the ops routes and the outbox relay."""

from __future__ import annotations

from collections.abc import Callable

import asyncpg
from aiohttp import web

from services.ledger import opsapi
from services.ledger.adapters import postgres
from services.ledger.adapters.slots import ReplicaSlots
from services.ledger.adapters.trace import record_refusals
from services.ledger.handlers import LEDGER, SCHEMA, refuse_malformed, sales_handler
from services.ledger.migrations import MIGRATIONS
from services.ledger.shards import ShardAssigner
from shared.consumer import BatchConsumer, BatchResult, Handler, Incoming
from shared.logging import get_logger
from shared.messaging import Envelope
from shared.metering import body_of, metered, metered_dead_letters
from shared.metrics import ServiceMetrics
from shared.opsapi import add_ops_routes, ops_token
from shared.runtime import Context, Service
from shared.supervisor import Loop
from shared.topology import LEDGER_ERP, ledger_shard, shard_count
from shared.unitofwork import consumer

log = get_logger(__name__)


def counter(metrics: ServiceMetrics) -> Callable[[list[Incoming], list[Envelope]], None]:
    """Confirmed sales and refused ERP messages (by reason) of a committed batch."""

    def count(_: list[Incoming], staged: list[Envelope]) -> None:
        for env in staged:
            if env.routing_key == "sale.confirmed":
                metrics.sales_confirmed.inc()
            elif env.routing_key == "sale.confirmation_refused":
                reason = body_of(env).get("reason")
                metrics.confirmations_refused.labels(str(reason or "unknown")).inc()

    return count


def noting_refusals(handler: Handler, pool: asyncpg.Pool) -> Handler:
    """``handler``, then the refusals its committed batch staged noted for ``orders trace``.

    Noted just after the batch's transaction, as the handler leaves it: a crash in between
    loses the note (the ERP still got its answer), and a failure to note is only logged.
    """

    async def handle(batch: list[Incoming]) -> BatchResult:
        result = await handler(batch)
        refused = [
            body_of(s.envelope)
            for s in result.staged
            if s.envelope.routing_key == "sale.confirmation_refused"
        ]
        if refused:
            try:
                await record_refusals(pool, refused)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("refusals not noted for orders trace", error=str(exc))
        return result

    return handle


class LedgerService(Service):
    schema = SCHEMA
    migrations = MIGRATIONS

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.shards = shard_count()
        self.assigner = ShardAssigner(
            ReplicaSlots(self.ctx.settings.database_url), self.shards, self.shard_consumer
        )

    def consumers(self) -> list[BatchConsumer]:
        # The ERP's decisions: one active consumer among the replicas keeps their order.
        return [self._consumer(LEDGER_ERP.name, None)]

    def shard_consumer(self, k: int) -> BatchConsumer:
        return self._consumer(ledger_shard(k).name, k)

    def _consumer(self, queue: str, shard: int | None) -> BatchConsumer:
        ctx, count = self.ctx, counter(self.ctx.metrics)
        begin = postgres.begin(ctx.pool, amqp_url=ctx.settings.amqp_url, shard=shard)
        handler = metered(sales_handler(begin, shard, self.shards), count)
        return consumer(
            ctx,
            SCHEMA,
            queue,
            LEDGER,
            noting_refusals(handler, ctx.pool),
            on_dead_letter=metered_dead_letters(refuse_malformed, count),
        )

    def loops(self) -> dict[str, Loop]:
        return super().loops() | {"ledger-shards": self.assigner.run}

    def add_routes(self, app: web.Application) -> None:
        add_ops_routes(
            app,
            service="ledger",
            token=ops_token(self.ctx.settings),
            operations=opsapi.operations(self.ctx.pool),
            metrics=self.ctx.metrics,
        )
