"""Composition root of the ledger: the sales consumer and the outbox relay."""

from __future__ import annotations

from services.ledger.handlers import SCHEMA, SaleHandler, refuse_malformed
from services.ledger.migrations import MIGRATIONS
from shared.consumer import BatchConsumer
from shared.contracts import (
    Message,
    OrderCancelled,
    OrderPartiallyRefunded,
    PrivacyRequest,
    SaleConfirm,
    SaleDiscard,
    SalePendingReview,
)
from shared.runtime import Service
from shared.topology import LEDGER_SALES


class LedgerService(Service):
    schema = SCHEMA
    migrations = MIGRATIONS

    def consumers(self) -> list[BatchConsumer]:
        ctx = self.ctx
        kinds: tuple[type[Message], ...] = (
            SalePendingReview,
            SaleConfirm,
            SaleDiscard,
            OrderCancelled,
            OrderPartiallyRefunded,
            PrivacyRequest,
        )
        models = {m.routing_key: m for m in kinds}
        return [
            BatchConsumer(
                broker=ctx.broker,
                pool=ctx.pool,
                schema=SCHEMA,
                queue=LEDGER_SALES.name,
                models=models,
                handler=SaleHandler(ctx.pool),
                metrics=ctx.metrics,
                publisher=ctx.publisher,
                batch_size=ctx.settings.batch_size,
                batch_wait_ms=ctx.settings.batch_wait_ms,
                max_retries=ctx.settings.max_retries,
                on_dead_letter=refuse_malformed,
            )
        ]
