"""Composition root of the mapper: the order consumer and the outbox relay."""

from __future__ import annotations

from services.mapper.handlers import SCHEMA, OrderHandler
from services.mapper.integrations import IntegrationHandler
from services.mapper.migrations import MIGRATIONS
from shared.consumer import BatchConsumer
from shared.contracts import (
    IntegrationDisabled,
    IntegrationEnabled,
    Message,
    OrderInvalid,
    OrderPaid,
    PrivacyRequest,
)
from shared.runtime import Service
from shared.topology import MAPPER_INTEGRATIONS, MAPPER_ORDERS

MODELS: tuple[type[Message], ...] = (OrderPaid, OrderInvalid, PrivacyRequest)
STATUS_MODELS: tuple[type[Message], ...] = (IntegrationDisabled, IntegrationEnabled)


class MapperService(Service):
    schema = SCHEMA
    migrations = MIGRATIONS

    def consumers(self) -> list[BatchConsumer]:
        ctx = self.ctx
        return [
            BatchConsumer(
                broker=ctx.broker,
                pool=ctx.pool,
                schema=SCHEMA,
                queue=MAPPER_ORDERS.name,
                models={m.routing_key: m for m in MODELS},
                handler=OrderHandler(ctx.pool, ctx.settings.sale_timezone),
                metrics=ctx.metrics,
                publisher=ctx.publisher,
                batch_size=ctx.settings.batch_size,
                batch_wait_ms=ctx.settings.batch_wait_ms,
                max_retries=ctx.settings.max_retries,
            ),
            BatchConsumer(
                broker=ctx.broker,
                pool=ctx.pool,
                schema=SCHEMA,
                queue=MAPPER_INTEGRATIONS.name,
                models={m.routing_key: m for m in STATUS_MODELS},
                handler=IntegrationHandler(ctx.pool),
                metrics=ctx.metrics,
                publisher=ctx.publisher,
                batch_size=ctx.settings.batch_size,
                batch_wait_ms=ctx.settings.batch_wait_ms,
                max_retries=ctx.settings.max_retries,
            ),
        ]
