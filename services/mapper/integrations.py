"""Which stores are switched off, as ingest announces it (SPEC §4).

An order of a store switched off while it was in flight is rejected with ``store_disabled``
(``handlers.OrderHandler``), never imported behind the operator's back; ``orders retry`` imports
it once ingest announces the store switched on again. The announcements come on their own queue
(``mapper.integrations``), so a switch-off is not stuck behind the orders it must stop.
"""

from __future__ import annotations

import asyncpg

from shared.consumer import BatchResult, Incoming
from shared.contracts import IntegrationDisabled, IntegrationEnabled
from shared.logging import get_logger
from shared.outbox import claim

log = get_logger(__name__)

SCHEMA = "mapper"


class IntegrationHandler:
    """Consumes ``mapper.integrations``: keeps ``mapper.store_status`` as ingest announces it."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def __call__(self, batch: list[Incoming]) -> BatchResult:
        async with self.pool.acquire() as conn, conn.transaction():
            fresh = await claim(conn, SCHEMA, [i.message_id for i in batch])
            for incoming in batch:
                message = incoming.message
                if incoming.message_id not in fresh:
                    continue
                fresh.discard(incoming.message_id)
                if not isinstance(message, IntegrationEnabled | IntegrationDisabled):
                    continue
                enabled = isinstance(message, IntegrationEnabled)
                reason = message.reason if isinstance(message, IntegrationDisabled) else None
                await conn.execute(
                    """
                    INSERT INTO mapper.store_status (store_id, enabled, reason)
                    VALUES ($1, $2, $3)
                    ON CONFLICT (store_id) DO UPDATE SET enabled = excluded.enabled,
                        reason = excluded.reason, changed_at = now()
                    """,
                    message.store_id,
                    enabled,
                    reason,
                )
                log.info("store status", store_id=message.store_id, enabled=enabled, reason=reason)
        return BatchResult([None] * len(batch), [])
