"""Transactional outbox: what a handler will publish is written in the handler's own transaction.

Why an outbox rather than "publish after commit, republish on redelivery": a redelivered or
duplicated message then finds its facts already stored and stages nothing, so it publishes
nothing new, and a crash between commit and publish loses nothing, because the staged rows
survive and the relay sends them. The consumer publishes staged rows right after the commit
(the fast path) and deletes them once confirmed; the relay only sweeps rows left behind by a
crash or a broker outage. The rare overlap of the two sends a message twice with the same
``message_id``, which every consumer of ours tolerates.

Each service schema has its own ``outbox`` table (created by its first migration), and an
``inbox`` of the message ids it has processed, so a redelivered message is recognised and skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg

from shared.db import Conn, Executor
from shared.logging import get_logger
from shared.messaging import Broker, Envelope, PublishError

log = get_logger(__name__)


@dataclass(frozen=True)
class Staged:
    id: int
    envelope: Envelope


async def stage(conn: Conn, schema: str, envs: list[Envelope]) -> list[Staged]:
    """Insert envelopes into the outbox in the caller's transaction; duplicates are skipped."""
    if not envs:
        return []
    rows = await conn.fetch(
        f"""
        INSERT INTO {schema}.outbox
            (message_id, exchange, routing_key, type, correlation_id, headers, body)
        SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                             $6::jsonb[], $7::bytea[])
        ON CONFLICT (message_id) DO NOTHING
        RETURNING id, message_id
        """,
        [e.message_id for e in envs],
        [e.exchange for e in envs],
        [e.routing_key for e in envs],
        [e.type for e in envs],
        [e.correlation_id for e in envs],
        [json.dumps(e.headers) for e in envs],
        [e.body for e in envs],
    )
    by_id = {e.message_id: e for e in envs}
    return [Staged(r["id"], by_id[r["message_id"]]) for r in rows]


async def publish_staged(
    pool: asyncpg.Pool, schema: str, broker: Broker, staged: list[Staged]
) -> bool:
    """The fast path after a commit: publish, then forget the rows. False leaves them to the relay."""
    if not staged:
        return True
    try:
        await broker.publish_many([s.envelope for s in staged])
    except PublishError as exc:
        log.warning("publish failed, kept in the outbox", error=str(exc), count=len(staged))
        return False
    try:
        await forget(pool, schema, [s.id for s in staged])
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        # Published all the same: at worst the relay sends these once more, with their ids.
        log.warning("published rows not forgotten; the relay may send them again", error=str(exc))
    return True


async def forget(pool: asyncpg.Pool, schema: str, ids: list[int]) -> None:
    """Delete published rows. Asynchronous commit: a delete lost in a crash only means the relay
    publishes that message once more (with its same id), so it need not wait for an fsync."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL synchronous_commit = off")
        await conn.execute(f"DELETE FROM {schema}.outbox WHERE id = ANY($1::bigint[])", ids)


class OutboxPublisher:
    """Publishes committed outbox rows in the background, in commit order.

    Consumers commit, hand the staged rows here and acknowledge at once: the rows are durable, so
    the broker's confirm no longer sits on the consumer's critical path. One FIFO keeps messages
    in the order they were committed; its bound (``max_pending`` batches) holds consumers back
    when the broker is slower than the database. Published rows are deleted in groups.
    """

    def __init__(
        self, pool: asyncpg.Pool, schema: str, broker: Broker, *, max_pending: int = 8
    ) -> None:
        self.pool = pool
        self.schema = schema
        self.broker = broker
        self._queue: asyncio.Queue[list[Staged]] = asyncio.Queue(max_pending)
        self.draining = asyncio.Event()
        self.retrying = False  # rows in hand wait for the broker: the relay leaves them alone

    async def submit(self, staged: list[Staged]) -> None:
        if staged:
            await self._queue.put(staged)

    async def flush(self) -> None:
        """Wait until everything submitted so far was published (or left to the relay)."""
        await self._queue.join()

    async def run(self, _: asyncio.Event) -> None:
        """Publish until ``draining`` is set and nothing is left (set after consumers stopped)."""
        while not (self.draining.is_set() and self._queue.empty()):
            try:
                staged = await asyncio.wait_for(self._queue.get(), timeout=0.2)
            except TimeoutError:
                continue
            try:
                # Whatever is already waiting goes out in the same round of confirms.
                while not self._queue.empty() and len(staged) < 2000:
                    staged = staged + self._queue.get_nowait()
                    self._queue.task_done()
                await self._publish(staged)
            finally:
                self._queue.task_done()

    async def _publish(self, staged: list[Staged]) -> None:
        """Publish, waiting for the broker as long as it takes, so commit order is kept.

        Only when the service stops during an outage are the rows left to the relay (of the
        next start): they are committed, so nothing is lost.
        """
        pause = 0.2
        try:
            while not await publish_staged(self.pool, self.schema, self.broker, staged):
                self.retrying = True
                if self.draining.is_set():
                    return
                if self.broker.is_connected:
                    # Refused with the link up (a nack, an unroutable message): never spin.
                    await asyncio.sleep(pause)
                else:
                    await self.broker.wait_up(within=pause)
                pause = min(pause * 2, 5.0)
        finally:
            self.retrying = False


class OutboxRelay:
    """Sweeps rows older than ``grace_s`` (left by a crash or an outage) and publishes them."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        schema: str,
        broker: Broker,
        *,
        interval_s: float = 1.0,
        grace_s: float = 5.0,
        publisher: OutboxPublisher | None = None,
    ) -> None:
        self.pool = pool
        self.schema = schema
        self.broker = broker
        self.interval_s = interval_s
        self.grace_s = grace_s
        self.publisher = publisher

    async def sweep_once(self, limit: int = 500) -> int:
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                f"""
                SELECT id, message_id, exchange, routing_key, type, correlation_id, headers, body
                FROM {self.schema}.outbox
                WHERE created_at < clock_timestamp() - make_interval(secs => $1)
                ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED
                """,
                self.grace_s,
                limit,
            )
            if not rows:
                return 0
            envs = [
                Envelope(
                    exchange=r["exchange"],
                    routing_key=r["routing_key"],
                    body=bytes(r["body"]),
                    message_id=r["message_id"],
                    type=r["type"],
                    correlation_id=r["correlation_id"],
                    headers=json.loads(r["headers"]),
                )
                for r in rows
            ]
            await self.broker.publish_many(envs)
            await conn.execute(
                f"DELETE FROM {self.schema}.outbox WHERE id = ANY($1::bigint[])",
                [r["id"] for r in rows],
            )
        log.info("outbox relay published leftovers", schema=self.schema, count=len(rows))
        return len(rows)

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            # While the broker is away, or the publisher still holds rows for it, a sweep would
            # only fail or send those rows twice.
            if self.broker.is_connected and not (self.publisher and self.publisher.retrying):
                try:
                    await self.sweep_once()
                except (
                    PublishError,
                    OSError,
                    asyncpg.PostgresError,
                    asyncpg.InterfaceError,
                ) as exc:
                    log.warning("outbox relay sweep failed", schema=self.schema, error=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=self.interval_s)


async def backlog(conn: Executor, schema: str) -> tuple[int, float]:
    """Rows waiting in the outbox and the age in seconds of the oldest (0 when empty)."""
    row = await conn.fetchrow(
        f"SELECT count(*) AS n, COALESCE(EXTRACT(EPOCH FROM clock_timestamp() - min(created_at)),"
        f" 0)::float8 AS age FROM {schema}.outbox"
    )
    assert row is not None
    return int(row["n"]), float(row["age"])


# Above this estimated size the inbox is not counted row by row at each scrape: the planner's
# estimate (kept by autovacuum's analyze) is close enough for a gauge and costs nothing.
EXACT_COUNT_LIMIT = 100_000


async def inbox_size(conn: Executor, schema: str) -> int:
    """Consumed message ids remembered: exact when small, else PostgreSQL's estimate."""
    estimate = await conn.fetchval(
        "SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass($1)", f"{schema}.inbox"
    )
    if estimate is not None and estimate > EXACT_COUNT_LIMIT:
        return int(estimate)
    return int(await conn.fetchval(f"SELECT count(*) FROM {schema}.inbox"))


async def claim(conn: Conn, schema: str, message_ids: list[str]) -> set[str]:
    """Record message ids as processed in the caller's transaction; returns those seen first now.

    A redelivery (same ``message_id``) is then skipped whole: it changes nothing and publishes
    nothing. Different messages about the same fact are caught by the domain's unique keys.
    """
    rows = await conn.fetch(
        f"INSERT INTO {schema}.inbox (message_id) SELECT unnest($1::text[])"
        " ON CONFLICT DO NOTHING RETURNING message_id",
        message_ids,
    )
    return {r["message_id"] for r in rows}


async def rewrite_store_outbox(
    conn: Conn, schema: str, store_id: int, rewrite: Callable[[bytes], bytes]
) -> int:
    """Rewrites the bodies of ``schema``'s unpublished messages about ``store_id`` (LGPD
    redaction: ``rewrite`` drops the person); returns how many changed."""
    rows = await conn.fetch(
        f"SELECT id, body FROM {schema}.outbox WHERE correlation_id = $1 OR correlation_id LIKE $2",
        str(store_id),
        f"{store_id}:%",
    )
    changed = 0
    for row in rows:
        body = rewrite(row["body"])
        if body != row["body"]:
            await conn.execute(
                f"UPDATE {schema}.outbox SET body = $2 WHERE id = $1", row["id"], body
            )
            changed += 1
    return changed
