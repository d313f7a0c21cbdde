"""A ledger replica's slot among the live replicas, over PostgreSQL (for ``ShardAssigner``).

Each replica holds a session advisory lock ``(LOCK_CLASS, slot)`` on the lowest free slot, on a
connection of its own: the lock goes the moment the process (or the connection) dies, so the
granted locks in ``pg_locks`` are the live replicas. A lost connection is opened again on the
next look, taking a slot afresh.
"""

from __future__ import annotations

import contextlib

import asyncpg

from shared.logging import get_logger

log = get_logger(__name__)

LOCK_CLASS = 0x1ED6  # advisory lock namespace of ledger replicas (first key of the two-key form)
MAX_SLOTS = 256


class ReplicaSlots:
    """This replica's slot (``slot``, None until taken) and the live ones, on its own connection."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.slot: int | None = None
        self._conn: asyncpg.Connection | None = None

    async def live(self) -> list[int] | None:
        """The slots held now, in order (this replica's among them once taken); None while the
        database cannot say (logged, and the connection is dropped to be opened again)."""
        try:
            if self._conn is None or self._conn.is_closed():
                self._conn = await asyncpg.connect(self.database_url, timeout=5)
                self.slot = await _take_slot(self._conn)
            rows = await self._conn.fetch(
                """
                SELECT objid FROM pg_locks WHERE locktype = 'advisory' AND classid = $1
                   AND objsubid = 2 AND granted
                   AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
                 ORDER BY objid
                """,
                LOCK_CLASS,
                timeout=5,
            )
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            log.warning("shard assignment unknown, keeping the current one", error=str(exc))
            await self.close()
            return None
        return [r["objid"] for r in rows]

    async def close(self) -> None:
        """Let the slot go (closing its connection); the next ``live`` takes one again."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()


async def _take_slot(conn: asyncpg.Connection) -> int:
    for slot in range(MAX_SLOTS):
        if await conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", LOCK_CLASS, slot):
            return slot
    raise RuntimeError(f"more than {MAX_SLOTS} ledger replicas on one database")
