"""Consuming ``ingest.webhooks``: what each accepted webhook asks of ingest.

Per store in a batch: ``app/uninstalled`` disables the store; the LGPD events become
``privacy.request`` events for the services that hold personal data; order events are turned
into fetches (coalesced, see ``sync.OrderReader``) and imports. Unknown and disabled stores are
logged and acknowledged; a store that is off is caught up by the poller when switched back on.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import defaultdict
from typing import Any

import asyncpg

from services.ingest import domain, trace
from services.ingest.adapters import postgres as db
from services.ingest.adapters import privacy
from services.ingest.adapters import trace as trace_db
from services.ingest.adapters.nuvemshop import ApiUnavailable, CredentialsRevoked, StoreSuspended
from services.ingest.handlers import SCHEMA, count_import, disable_store, import_orders, now
from services.ingest.sync import SUSPENDED_PAUSE, OrderReader
from shared.consumer import TransientError
from shared.contracts import PrivacyRequest, WebhookReceived
from shared.logging import get_logger
from shared.messaging import envelope
from shared.metrics import ServiceMetrics
from shared.outbox import Staged, stage
from shared.subscribers import Received, Subscribers
from shared.topology import INGEST_WEBHOOKS

log = get_logger(__name__)

_PRIVACY_KINDS = {
    "store/redact": "store_redact",
    "customers/redact": "customers_redact",
    "customers/data_request": "data_request",
}


def privacy_request(hook: WebhookReceived, message_id: str) -> PrivacyRequest:
    payload: dict[str, Any] = hook.payload or {}
    customer = payload.get("customer") if isinstance(payload.get("customer"), dict) else None
    orders = payload.get("orders_to_redact") or payload.get("orders_requested") or []
    return PrivacyRequest.model_validate(
        {
            "store_id": hook.store_id,
            "kind": _PRIVACY_KINDS[hook.event],
            "customer": customer,
            "order_ids": [o for o in orders if isinstance(o, int)],
            # The accepted webhook's id (``webhook:<uuid>``) names the request everywhere.
            "request_id": message_id.removeprefix("webhook:"),
        }
    )


def _data_request_id(hook: WebhookReceived) -> int | None:
    request = (hook.payload or {}).get("data_request")
    value = request.get("id") if isinstance(request, dict) else None
    return value if isinstance(value, int) else None


def _receipts(hooks: list[WebhookReceived]) -> list[trace.Seen]:
    return [
        trace.Seen(h.id, trace.WEBHOOK, h.event, h.received_at)
        for h in hooks
        if h.event in domain.ORDER_EVENTS and h.id is not None
    ]


def _skips(hooks: list[WebhookReceived], reason: str) -> list[trace.Seen]:
    return [trace.Seen(s.order_id, trace.SKIPPED, reason) for s in _receipts(hooks)]


class Webhooks:
    """What the webhook handler is handed: the pool (it keeps its own transactions, since it
    talks to the store's API between reading and writing), the API reader and the metrics."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        reader: OrderReader,
        metrics: ServiceMetrics | None = None,
        *,
        amqp_url: str | None = None,
    ) -> None:
        self.pool = pool
        self.reader = reader
        self.metrics = metrics
        self.amqp_url = amqp_url  # where its dead queue is redacted (LGPD)

    async def handle(self, batch: list[Received[WebhookReceived]]) -> list[Staged]:
        by_store: dict[int, list[Received[WebhookReceived]]] = defaultdict(list)
        for received in batch:
            by_store[received.message.store_id].append(received)
        stores = await db.load_stores(self.pool, list(by_store))
        # Stores are independent (each has its own API bucket): one waiting for its rate limit
        # must not hold the others back.
        per_store = await asyncio.gather(
            *(
                self._one_store(store_id, stores.get(store_id), hooks)
                for store_id, hooks in by_store.items()
            )
        )
        return [s for staged in per_store for s in staged]

    async def _one_store(
        self, store_id: int, store: db.StoreRecord | None, hooks: list[Received[WebhookReceived]]
    ) -> list[Staged]:
        if store is None:
            log.warning(
                "webhooks for an unknown store acknowledged", store_id=store_id, count=len(hooks)
            )
            return []
        staged = await self._privacy(hooks)
        return staged + await self._store_hooks(store, [h.message for h in hooks])

    async def _privacy(self, hooks: list[Received[WebhookReceived]]) -> list[Staged]:
        found = []
        for received in hooks:
            hook = received.message
            if hook.event in domain.LGPD_EVENTS:
                log.info("LGPD request received", store_id=hook.store_id, lgpd_event=hook.event)
                found.append(
                    (received.message_id, hook, privacy_request(hook, received.message_id))
                )
        if not found:
            return []
        async with self.pool.acquire() as conn, conn.transaction():
            for _, hook, request in found:
                await privacy.record(
                    conn, request, data_request_id=_data_request_id(hook), at=hook.received_at
                )
            envs = [
                envelope(r, message_id=f"privacy.request:{m}", correlation_id=str(h.store_id))
                for m, h, r in found
            ]
            staged = await stage(conn, SCHEMA, envs)
        if self.amqp_url is not None:
            for _, _, request in found:
                await privacy.redact_queues(self.amqp_url, request)
        return staged

    async def _store_hooks(
        self, store: db.StoreRecord, hooks: list[WebhookReceived]
    ) -> list[Staged]:
        if any(h.event == domain.APP_UNINSTALLED for h in hooks):
            async with self.pool.acquire() as conn, conn.transaction():
                return await disable_store(conn, store.store_id, "app_uninstalled", self.metrics)
        if not store.enabled:
            log.info(
                "webhooks for a disabled store acknowledged",
                store_id=store.store_id,
                count=len(hooks),
            )
            skipped = _skips(hooks, "store_disabled")
            async with self.pool.acquire() as conn, conn.transaction():
                await trace_db.record(conn, store.store_id, _receipts(hooks) + skipped)
            if self.metrics is not None and skipped:
                self.metrics.orders_skipped.labels("store_disabled").inc(len(skipped))
            return []
        order_ids = await self._to_fetch(store.store_id, hooks)
        if not order_ids:
            await trace_db.record(self.pool, store.store_id, _receipts(hooks))
            return []
        try:
            raw_orders = await self.reader.for_webhooks(store, order_ids)
        except CredentialsRevoked:
            async with self.pool.acquire() as conn, conn.transaction():
                await trace_db.record(conn, store.store_id, _receipts(hooks))
                return await disable_store(
                    conn, store.store_id, "credentials_revoked", self.metrics
                )
        except StoreSuspended:
            await trace_db.record(self.pool, store.store_id, _receipts(hooks))
            await db.pause(self.pool, store.store_id, now() + SUSPENDED_PAUSE)
            log.warning(
                "store suspended (402): paused, the poller catches up", store_id=store.store_id
            )
            return []
        except ApiUnavailable as exc:
            raise TransientError(f"Nuvemshop API unavailable for store {store.store_id}") from exc
        received: dict[int, dt.datetime] = {}
        for hook in hooks:
            if hook.id is not None and hook.event in domain.ORDER_EVENTS:
                received[hook.id] = min(received.get(hook.id, hook.received_at), hook.received_at)
        async with self.pool.acquire() as conn, conn.transaction():
            await trace_db.record(conn, store.store_id, _receipts(hooks))
            summary = await import_orders(conn, store, raw_orders, via="webhook", received=received)
            await db.mark_synced(conn, store.store_id, None)
        count_import(self.metrics, summary, "webhook")
        return summary.staged

    async def _to_fetch(self, store_id: int, hooks: list[WebhookReceived]) -> list[int]:
        """Order ids worth a request: a payment already announced needs no second look."""
        events: dict[int, set[str]] = defaultdict(set)
        for hook in hooks:
            if hook.event in domain.ORDER_EVENTS and hook.id is not None:
                events[hook.id].add(hook.event)
        if not events:
            return []
        paid, cancelled = await db.announced(self.pool, store_id, list(events))
        needed = []
        for order_id, names in events.items():
            if order_id in cancelled:
                continue
            if order_id in paid and names == {"order/paid"}:
                continue
            needed.append(order_id)
        skipped = len(events) - len(needed)
        if skipped:
            log.info("webhooks for orders already announced", store_id=store_id, count=skipped)
        return sorted(needed)


INGEST = Subscribers[Webhooks]("ingest")


@INGEST.own(WebhookReceived, INGEST_WEBHOOKS.name)
async def handle_webhooks(
    webhooks: Webhooks, batch: list[Received[WebhookReceived]]
) -> list[Staged]:
    """``ingest.webhooks``: per store, what its accepted webhooks ask (no inbox: the orders'
    claims make a redelivered webhook harmless)."""
    return await webhooks.handle(batch)
