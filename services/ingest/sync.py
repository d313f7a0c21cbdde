"""Reading orders from a store within its rate limit: webhook bursts, the poller, backfills.

A webhook names one order; a store paid for by 100 buyers a second sends 100 of them, and its
API allows 2 requests a second. So webhooks are coalesced: orders already announced are not
fetched again, a few are fetched one by one, and a burst is read as one listing of the orders
created since the burst's oldest id (pages of 200), with single fetches only for what the
listing did not hold. The poller reads every order updated since the store's cursor (minus an
overlap, in windows the API can reach) and moves the cursor only after what it covered was
committed to the outbox and published. A backfill reads an explicit range of creation dates.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from services.ingest.adapters import postgres as db
from services.ingest.adapters.nuvemshop import (
    ApiUnavailable,
    CredentialsRevoked,
    NuvemshopClient,
    StoreSuspended,
)
from services.ingest.handlers import (
    SCHEMA,
    ImportSummary,
    count_import,
    disable_store,
    import_orders,
    now,
    order_id_of,
)
from services.ingest.schedule import poll_slot_delay
from services.ingest.tokens import TokenCipher
from shared.logging import get_logger
from shared.messaging import Broker
from shared.metrics import ServiceMetrics
from shared.outbox import OutboxPublisher, Staged, publish_staged

log = get_logger(__name__)

SINGLE_FETCH_LIMIT = 3  # more orders than this in one batch are read as a listing
MAX_LISTING_PAGES = 25
POLL_OVERLAP = dt.timedelta(minutes=10)
SUSPENDED_PAUSE = dt.timedelta(minutes=5)
POLL_CONCURRENCY = 4


class OrderReader:
    """Fetches a store's orders for a set of webhooks, spending as few requests as it can."""

    def __init__(self, client: NuvemshopClient, cipher: TokenCipher) -> None:
        self.client = client
        self.cipher = cipher

    async def for_webhooks(
        self, store: db.StoreRecord, order_ids: Sequence[int]
    ) -> list[dict[str, Any]]:
        token = self.cipher.decrypt(store.access_token)
        wanted = set(order_ids)
        found: dict[int, dict[str, Any]] = {}
        if len(wanted) > SINGLE_FETCH_LIMIT:
            found = await self._listing(store.store_id, token, wanted)
        missing = sorted(wanted - found.keys())
        singles = await asyncio.gather(
            *(self.client.get_order(store.store_id, token, o) for o in missing)
        )
        for order_id, raw in zip(missing, singles, strict=True):
            if raw is None:
                log.info(
                    "webhook for an order that does not exist",
                    store_id=store.store_id,
                    order_id=order_id,
                )
            else:
                found[order_id] = raw
        return list(found.values())

    async def _listing(
        self, store_id: int, token: str, wanted: set[int]
    ) -> dict[int, dict[str, Any]]:
        found: dict[int, dict[str, Any]] = {}
        pages = self.client.iter_orders(
            store_id, token, since_id=min(wanted) - 1, aggregates="fulfillment_orders"
        )
        read = 0
        async for page in pages:
            read += 1
            for raw in page:
                order_id = order_id_of(raw)
                if order_id is not None:
                    # Orders of the listing that no webhook named yet are imported as well: their
                    # own webhooks then find them announced and cost no request.
                    found[order_id] = raw
            if wanted <= found.keys() or read >= MAX_LISTING_PAGES:
                break
        return found


@dataclass
class SyncResult:
    store_id: int
    pages: int = 0
    orders_seen: int = 0
    paid: int = 0
    cancelled: int = 0
    invalid: int = 0
    published: bool = True
    outcome: str = "ok"  # ok | revoked | suspended | unavailable | locked | disabled
    error: str | None = None


async def commit_page(
    pool: asyncpg.Pool,
    broker: Broker,
    store: db.StoreRecord,
    page: list[dict[str, Any]],
    *,
    backfill: bool,
    publisher: OutboxPublisher | None = None,
    metrics: ServiceMetrics | None = None,
) -> tuple[ImportSummary, bool]:
    """Claim and stage one page in a transaction, then publish what it staged.

    With a running ``publisher`` (the service's) the page is handed over and the next page is
    read at once; the caller flushes the publisher before it moves a cursor.
    """
    via = "backfill" if backfill else "poll"
    async with pool.acquire() as conn, conn.transaction():
        summary = await import_orders(conn, store, page, backfill=backfill, via=via)
    count_import(metrics, summary, via)
    if publisher is not None:
        await publisher.submit(summary.staged)
        return summary, True
    published = await publish_staged(pool, SCHEMA, broker, summary.staged)
    return summary, published


async def read_pages(
    pool: asyncpg.Pool,
    broker: Broker,
    store: db.StoreRecord,
    pages: AsyncIterator[list[dict[str, Any]]],
    *,
    backfill: bool = False,
    progress: Callable[[SyncResult], None] | None = None,
    publisher: OutboxPublisher | None = None,
    metrics: ServiceMetrics | None = None,
) -> SyncResult:
    """Import every page; API failures become the result's outcome (the store is handled)."""
    result = SyncResult(store.store_id)
    try:
        async for page in pages:
            summary, published = await commit_page(
                pool, broker, store, page, backfill=backfill, publisher=publisher, metrics=metrics
            )
            result.pages += 1
            result.orders_seen += len(page)
            result.paid += summary.paid
            result.cancelled += summary.cancelled
            result.invalid += summary.invalid
            result.published = result.published and published
            if progress is not None:
                progress(result)
    except CredentialsRevoked:
        result.outcome = "revoked"
        staged: list[Staged] = []
        async with pool.acquire() as conn, conn.transaction():
            staged = await disable_store(conn, store.store_id, "credentials_revoked", metrics)
        await publish_staged(pool, SCHEMA, broker, staged)
    except StoreSuspended:
        result.outcome = "suspended"
        await db.pause(pool, store.store_id, now() + SUSPENDED_PAUSE)
        log.warning("store suspended (402): paused", store_id=store.store_id)
    except ApiUnavailable as exc:
        result.outcome = "unavailable"
        result.error = f"Nuvemshop API unavailable: {exc}"
        log.warning(
            "Nuvemshop API unavailable, will retry", store_id=store.store_id, error=str(exc)
        )
    return result


class Poller:
    """Every ``interval_s`` per enabled store: all orders updated since the cursor minus an overlap."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        broker: Broker,
        client: NuvemshopClient,
        cipher: TokenCipher,
        *,
        interval_s: float,
        publisher: OutboxPublisher | None = None,
        tick_s: float = 1.0,
        overlap: dt.timedelta = POLL_OVERLAP,
        metrics: ServiceMetrics | None = None,
    ) -> None:
        self.pool = pool
        self.broker = broker
        self.client = client
        self.cipher = cipher
        self.interval_s = interval_s
        self.tick_s = tick_s
        self.overlap = overlap
        self.publisher = publisher
        self.metrics = metrics

    async def run(self, stopping: asyncio.Event) -> None:
        limit = asyncio.Semaphore(POLL_CONCURRENCY)

        async def one(store: db.StoreRecord) -> None:
            async with limit:
                if not stopping.is_set():
                    await self.poll_isolated(store)

        while not stopping.is_set():
            try:
                await asyncio.gather(*(one(s) for s in await db.due_stores(self.pool)))
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("poller pass failed", error=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=self.tick_s)

    async def poll_isolated(self, store: db.StoreRecord) -> SyncResult | None:
        """Poll one store; whatever its API answers, the other stores' polling goes on.

        An unexpected answer (403 missing scope, 5xx after retries, invalid JSON, missing
        headers) or an unreadable token is recorded on the store (``integration show``:
        ``last_error``, ``last_error_at``) and the store backs off. Only the database failing
        fails the pass (it fails for every store alike). Each finished poll counts in
        ``nuvem_ledger_polls_total`` by outcome, once what it read was published.
        """
        try:
            result = await self.poll_store(store)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            raise
        except Exception as exc:  # one store's surprise must not stop the others
            await self._failed(store.store_id, f"{type(exc).__name__}: {exc}")
            self._count("failed")
            return None
        if result.outcome == "unavailable":
            await self._failed(store.store_id, result.error or "Nuvemshop API unavailable")
        self._count(result.outcome)
        return result

    def _count(self, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.polls.labels(outcome).inc()

    async def _failed(self, store_id: int, error: str) -> None:
        pause = await db.record_store_error(self.pool, store_id, error[:500], self.interval_s)
        log.warning("store not polled", store_id=store_id, error=error[:500], retry_in_s=pause)

    async def poll_store(self, store: db.StoreRecord) -> SyncResult:
        async with db.poll_lock(self.pool, store.store_id) as taken:
            if not taken:
                return SyncResult(store.store_id, outcome="locked")
            return await self._poll_locked(store)

    async def _poll_locked(self, store: db.StoreRecord) -> SyncResult:
        # Reload under the lock: another replica may have just moved the cursor or disabled it.
        fresh = (await db.load_stores(self.pool, [store.store_id])).get(store.store_id)
        if fresh is None or not fresh.enabled:
            return SyncResult(store.store_id, outcome="disabled")
        end = now()
        start = (fresh.poll_cursor or fresh.activated_at) - self.overlap
        token = self.cipher.decrypt(fresh.access_token)
        pages = self.client.iter_orders_windowed(
            fresh.store_id, token, start=start, end=end, aggregates="fulfillment_orders"
        )
        result = await read_pages(
            self.pool, self.broker, fresh, pages, publisher=self.publisher, metrics=self.metrics
        )
        if self.publisher is not None:
            # The cursor moves only past what was published (or is safe in the outbox).
            await self.publisher.flush()
        if result.outcome == "ok" and result.published:
            await db.mark_synced(self.pool, fresh.store_id, end)
            delay = poll_slot_delay(fresh.store_id, self.interval_s, time.time())
            await db.schedule_poll(self.pool, fresh.store_id, delay)
        elif result.outcome == "ok":
            await db.schedule_poll(self.pool, fresh.store_id, min(self.interval_s, 30.0))
        log.info(
            "store polled",
            store_id=fresh.store_id,
            outcome=result.outcome,
            pages=result.pages,
            orders=result.orders_seen,
            paid=result.paid,
            cancelled=result.cancelled,
        )
        return result


async def backfill(
    pool: asyncpg.Pool,
    broker: Broker,
    client: NuvemshopClient,
    cipher: TokenCipher,
    store: db.StoreRecord,
    *,
    since: dt.datetime,
    until: dt.datetime,
    progress: Callable[[SyncResult, int], None] | None = None,
) -> tuple[SyncResult, int]:
    """Import the paid orders created in [since, until], even before the activation date."""
    token = cipher.decrypt(store.access_token)
    total = await client.count_orders(
        store.store_id, token, payment_status="paid", created_at_min=since, created_at_max=until
    )
    # Orders created in the range were updated at or after their creation: windows over the
    # update date (which the API can split) with the creation range as a filter reach them all.
    pages = client.iter_orders_windowed(
        store.store_id,
        token,
        start=since,
        end=now(),
        payment_status="paid",
        created_at_min=since,
        created_at_max=until,
        aggregates="fulfillment_orders",
    )
    report = (lambda r: progress(r, total)) if progress is not None else None
    result = await read_pages(pool, broker, store, pages, backfill=True, progress=report)
    return result, total
