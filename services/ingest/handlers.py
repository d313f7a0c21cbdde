"""Ingest's use cases: turn fetched store orders into ``order.*`` events, exactly once.

Every path that sees orders (webhooks, the poller, a backfill) ends in ``import_orders``: it
classifies each raw order with the pure rules of ``domain``, then, in one transaction, claims the
(store_id, order_id) rows and stages the events of the orders it claimed in the outbox. Nothing
here talks HTTP inside a transaction: orders are fetched first, written second.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import structlog

from services.ingest import domain
from services.ingest.adapters import postgres as db
from services.ingest.adapters.nuvemshop import (
    ApiUnavailable,
    CredentialsRevoked,
    NuvemshopClient,
    StoreSuspended,
)
from services.ingest.tokens import TokenCipher
from shared.consumer import BatchResult, Incoming, TransientError
from shared.contracts import IntegrationDisabled, OrderInvalid, WebhookReceived
from shared.db import Conn
from shared.logging import get_logger
from shared.messaging import Envelope, correlation, envelope
from shared.outbox import Staged, stage

log = get_logger(__name__)

SCHEMA = "ingest"
SUSPENDED_PAUSE = dt.timedelta(minutes=5)
FETCH_CONCURRENCY = 8


@dataclass
class ImportSummary:
    paid: int = 0
    cancelled: int = 0
    invalid: int = 0
    skipped: int = 0
    staged: list[Staged] = field(default_factory=list)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _events_for(
    store: db.StoreRecord, raw_orders: Iterable[Mapping[str, Any]], *, backfill: bool
) -> tuple[
    dict[int, tuple[int | None, Envelope]],
    dict[int, Envelope],
    dict[int, tuple[str, Envelope]],
    int,
]:
    """Classify raw orders into candidate paid / cancelled / invalid events (no I/O)."""
    paid: dict[int, tuple[int | None, Envelope]] = {}
    cancelled: dict[int, Envelope] = {}
    invalid: dict[int, tuple[str, Envelope]] = {}
    skipped = 0
    for raw in raw_orders:
        order_id = _order_id(raw)
        if order_id is None:
            log.warning("order without a readable id skipped", store_id=store.store_id)
            skipped += 1
            continue
        key = correlation(store.store_id, order_id)
        try:
            state = domain.order_state(raw)
            if state is domain.OrderState.PAID:
                if not backfill and not domain.is_importable(
                    raw.get("created_at"), store.activated_at
                ):
                    skipped += 1
                    continue
                event = domain.parse_order_paid(raw, activated_by=store.activated_by)
                env = envelope(event, message_id=f"order.paid:{key}", correlation_id=key)
                paid[order_id] = (event.order_number, env)
            elif state is domain.OrderState.CANCELLED:
                cancel = domain.parse_order_cancelled(raw, now=_now())
                cancelled[order_id] = envelope(
                    cancel, message_id=f"order.cancelled:{key}", correlation_id=key
                )
            else:
                skipped += 1
        except domain.MalformedOrder as exc:
            bad = OrderInvalid(store_id=store.store_id, order_id=order_id, detail=str(exc))
            invalid[order_id] = (
                str(exc),
                envelope(
                    bad, message_id=f"order.invalid:{key}:{_digest(str(exc))}", correlation_id=key
                ),
            )
    return paid, cancelled, invalid, skipped


async def import_orders(
    conn: Conn,
    store: db.StoreRecord,
    raw_orders: Iterable[Mapping[str, Any]],
    *,
    backfill: bool = False,
) -> ImportSummary:
    """Claim and stage the events of ``raw_orders`` in the caller's transaction."""
    paid, cancelled, invalid, skipped = _events_for(store, raw_orders, backfill=backfill)
    summary = ImportSummary(skipped=skipped)
    numbers = [(oid, number) for oid, (number, _) in paid.items()]
    claimed = await db.claim_paid(conn, store.store_id, numbers)
    summary.paid = len(claimed)
    to_stage = [paid[oid][1] for oid in sorted(claimed)]
    # A cancellation seen in the same batch as the payment is staged after it.
    gone = await db.claim_cancelled(conn, store.store_id, sorted(cancelled))
    summary.cancelled = len(gone)
    to_stage += [cancelled[oid] for oid in sorted(gone)]
    for order_id, (detail, env) in sorted(invalid.items()):
        if await db.claim_invalid(conn, store.store_id, order_id, detail):
            summary.invalid += 1
            to_stage.append(env)
    summary.staged = await stage(conn, SCHEMA, to_stage)
    for order_id in sorted(claimed):
        log.info("order paid announced", store_id=store.store_id, order_id=order_id)
    for order_id in sorted(gone):
        log.info("order cancellation announced", store_id=store.store_id, order_id=order_id)
    return summary


def _order_id(raw: Mapping[str, Any]) -> int | None:
    value = raw.get("id")
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


async def disable_store(conn: Conn, store_id: int, reason: str) -> list[Staged]:
    """Switch a store off with a reason and announce it (only when it was on)."""
    changed = await db.set_enabled(conn, store_id, enabled=False, reason=reason)
    if not changed:
        return []
    event = IntegrationDisabled.model_validate({"store_id": store_id, "reason": reason})
    stamp = int(_now().timestamp() * 1000)
    env = envelope(
        event, message_id=f"integration.disabled:{store_id}:{stamp}", correlation_id=None
    )
    log.warning("integration disabled", store_id=store_id, reason=reason)
    return await stage(conn, SCHEMA, [env])


class WebhookHandler:
    """Consumes ``ingest.webhooks``: fetch the orders the webhooks name, then import them."""

    def __init__(self, pool: asyncpg.Pool, client: NuvemshopClient, cipher: TokenCipher) -> None:
        self.pool = pool
        self.client = client
        self.cipher = cipher

    async def __call__(self, batch: list[Incoming]) -> BatchResult:
        by_store: dict[int, list[WebhookReceived]] = defaultdict(list)
        for incoming in batch:
            assert isinstance(incoming.message, WebhookReceived)
            by_store[incoming.message.store_id].append(incoming.message)
        stores = await db.load_stores(self.pool, list(by_store))
        staged: list[Staged] = []
        for store_id, hooks in by_store.items():
            store = stores.get(store_id)
            if store is None:
                log.warning(
                    "webhook for an unknown store ignored", store_id=store_id, count=len(hooks)
                )
                continue
            staged += await self._store_hooks(store, hooks)
        return BatchResult([None] * len(batch), staged)

    async def _store_hooks(
        self, store: db.StoreRecord, hooks: list[WebhookReceived]
    ) -> list[Staged]:
        events = {h.event for h in hooks}
        if domain.APP_UNINSTALLED in events:
            async with self.pool.acquire() as conn, conn.transaction():
                return await disable_store(conn, store.store_id, "app_uninstalled")
        for hook in hooks:
            if hook.event in domain.LGPD_EVENTS:
                log.info("LGPD webhook received", store_id=store.store_id, lgpd_event=hook.event)
        if not store.enabled:
            log.info(
                "webhooks for a disabled store ignored", store_id=store.store_id, count=len(hooks)
            )
            return []
        order_ids = sorted(
            {h.id for h in hooks if h.event in domain.ORDER_EVENTS and h.id is not None}
        )
        if not order_ids:
            return []
        try:
            raw_orders = await self.fetch(store, order_ids)
        except CredentialsRevoked:
            async with self.pool.acquire() as conn, conn.transaction():
                return await disable_store(conn, store.store_id, "credentials_revoked")
        except StoreSuspended:
            await db.pause(self.pool, store.store_id, _now() + SUSPENDED_PAUSE)
            log.warning(
                "store suspended (402): paused, the poller will catch up", store_id=store.store_id
            )
            return []
        except ApiUnavailable as exc:
            raise TransientError(f"Nuvemshop API unavailable for store {store.store_id}") from exc
        async with self.pool.acquire() as conn, conn.transaction():
            summary = await import_orders(conn, store, raw_orders)
            await db.mark_synced(conn, store.store_id, None)
        return summary.staged

    async def fetch(self, store: db.StoreRecord, order_ids: list[int]) -> list[dict[str, Any]]:
        """Fetch the named orders; a missing one (404) is logged and left out."""
        token = self.cipher.decrypt(store.access_token)
        limit = asyncio.Semaphore(FETCH_CONCURRENCY)

        async def one(order_id: int) -> dict[str, Any] | None:
            async with limit:
                found = await self.client.get_order(store.store_id, token, order_id)
            if found is None:
                structlog.get_logger(__name__).info(
                    "webhook for an order that does not exist",
                    store_id=store.store_id,
                    order_id=order_id,
                )
            return found

        results = await asyncio.gather(*(one(o) for o in order_ids))
        return [r for r in results if r is not None]
