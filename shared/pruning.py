"""Forgetting rows past their retention, in small batches: the one pruner every service runs
for its inbox (consumed message ids, ``INBOX_RETENTION_DAYS``) and ingest runs for its order
trace (``TRACE_RETENTION_DAYS``).

Each round deletes ``batch`` rows at a time (``FOR UPDATE SKIP LOCKED``: short locks, never
waiting on a consumer's transaction) until a batch comes back short, with a pause between
batches to let the consumers' transactions in. A round that fails on the database is logged and
retried at the next interval.
"""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg

from shared.logging import get_logger

log = get_logger(__name__)


class AgePruner:
    """Deletes the rows of ``table`` whose ``age`` column is older than ``retention_s``, every
    ``interval_s``; ``key`` identifies a row (a primary key, or ``ctid``)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        table: str,
        *,
        key: str,
        age: str,
        retention_s: float,
        interval_s: float,
        batch: int = 1000,
    ) -> None:
        self.pool = pool
        self.table = table
        self.retention_s = retention_s
        self.interval_s = interval_s
        self.batch = batch
        self._sql = f"""
            DELETE FROM {table} WHERE {key} IN (
                SELECT {key} FROM {table}
                WHERE {age} < now() - make_interval(secs => $1)
                LIMIT $2 FOR UPDATE SKIP LOCKED)
            """

    async def prune_once(self) -> int:
        """One round: every row past the retention, batch by batch; returns how many went."""
        pruned = 0
        while True:
            status = await self.pool.execute(self._sql, self.retention_s, self.batch)
            deleted = int(status.split()[-1])
            pruned += deleted
            if deleted < self.batch:
                return pruned
            await asyncio.sleep(0.01)  # let the consumers' transactions in between batches

    async def run(self, stopping: asyncio.Event) -> None:
        """A round every ``interval_s`` until ``stopping`` is set (a supervised loop)."""
        while not stopping.is_set():
            try:
                pruned = await self.prune_once()
                if pruned:
                    log.info("rows pruned", table=self.table, count=pruned)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("pruning failed", table=self.table, error=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=self.interval_s)


def inbox_pruner(
    pool: asyncpg.Pool, schema: str, *, retention_s: float, interval_s: float = 60.0
) -> AgePruner:
    """The pruner of ``schema``'s inbox.

    The retention must outlast any redelivery: a message redelivered after its id was forgotten
    would be processed again, and only the domain's unique keys would stop a second effect.
    """
    return AgePruner(
        pool,
        f"{schema}.inbox",
        key="message_id",
        age="processed_at",
        retention_s=retention_s,
        interval_s=interval_s,
    )
