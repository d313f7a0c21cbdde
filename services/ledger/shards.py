"""The sharded sales stream: where the ERP's decisions are handled, and which shards a replica
consumes.

The ERP's ``sale.confirm``/``sale.discard`` name only a sale. They wait in ``ledger.erp``: a
decision about a sale the ledger holds is handled there (its announcement was handled; the
sale's row lock orders the decision with whatever its shard does meanwhile). A decision about a
sale not known yet is sent on, once, to every shard (header ``ledger-probe: every``): each
shard's copy is queued behind the announcement it may be about, since the ERP decided only after
seeing that announcement, which the broker had queued before. The shard that owns the sale's
store acts on its copy; a sale no shard knows is refused by the shard that looks last.

Every ledger replica may consume every ``ledger.sales.<k>`` (single active consumer makes one of
them active per shard). RabbitMQ 3.10 gives a single-active-consumer queue to whichever consumer
came first, so left alone the first replica to start would hold every shard and the others would
only wait. ``ShardAssigner`` spreads them: each replica holds a PostgreSQL advisory lock on a slot
(on a connection of its own, released the moment the process dies), reads the live slots, and
consumes the shards ``k`` with ``k % replicas == its rank``; when replicas come or go, the
assignment follows within ``TICK_S``. A shard handed over is safe at every instant: the old
consumer finishes its batch and closes its channel (what it held goes back to the queue, first),
and the queue never has two active consumers.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import asyncpg

from shared.consumer import BatchConsumer, Incoming
from shared.db import Conn
from shared.logging import get_logger
from shared.messaging import Envelope
from shared.topology import PROBE_EVERY, PROBE_HEADER, SHARD_EXCHANGE, shard_of

log = get_logger(__name__)

LOCK_CLASS = 0x1ED6  # advisory lock namespace of ledger replicas (first key of the two-key form)
MAX_SLOTS = 256
TICK_S = 0.5
UNOWNED_RETENTION = "7 days"


def inbox_id(incoming: Incoming, erp_keys: frozenset[str], shard: int | None) -> str:
    """The inbox key of a delivery: a probe reaches every shard, each claims its own copy."""
    if shard is not None and incoming.routing_key in erp_keys:
        return f"{incoming.message_id}@shard{shard}"
    return incoming.message_id


async def known_or_probe(
    conn: Conn, todo: list[Incoming], erp_keys: frozenset[str], shards: int
) -> tuple[list[Incoming], list[Envelope]]:
    """In ``ledger.erp``: the messages to handle here, and a probe for each decision about a sale
    not known yet (staged in the outbox with the batch, so sent exactly once)."""
    erp = [i for i in todo if i.routing_key in erp_keys]
    if shards == 1 or not erp:
        return todo, []
    ids = list({_sale_id(i) for i in erp})
    rows = await conn.fetch("SELECT sale_id FROM ledger.sales WHERE sale_id = ANY($1::text[])", ids)
    known = {r["sale_id"] for r in rows}
    later = [i for i in erp if _sale_id(i) not in known]
    if later:
        log.info("decisions about sales not known yet sent to every shard", count=len(later))
    probes = [
        Envelope(
            exchange=SHARD_EXCHANGE,
            routing_key=i.routing_key,
            body=i.delivery.body,
            message_id=i.message_id,
            type=i.delivery.type or f"{i.routing_key}.v1",
            correlation_id=i.delivery.correlation_id,
            headers={PROBE_HEADER: PROBE_EVERY},
        )
        for i in later
    ]
    waiting = {i.message_id for i in later}
    return [i for i in todo if i.message_id not in waiting], probes


def _sale_id(incoming: Incoming) -> str:
    sale_id = getattr(incoming.message, "sale_id", None)
    assert isinstance(sale_id, str)
    return sale_id


async def mine(
    conn: Conn, erp: list[Incoming], sale_of: Callable[[Incoming], str], shard: int, shards: int
) -> set[str]:
    """The message ids among the ERP probes ``erp`` that this shard acts on.

    A known sale belongs to its store's shard. A sale no shard knows yet is either still announced
    in another shard's queue or unknown: each shard notes the copy, and the one that notes it last
    (all ``shards`` have then looked, each after everything enqueued before its copy) acts, which
    for an unknown sale means refusing it, exactly once.
    """
    if shards == 1 or not erp:
        return {i.message_id for i in erp}
    ids = list({sale_of(i) for i in erp})
    rows = await conn.fetch(
        "SELECT sale_id, store_id FROM ledger.sales WHERE sale_id = ANY($1::text[])", ids
    )
    owner = {r["sale_id"]: shard_of(r["store_id"], shards) for r in rows}
    acting = {i.message_id for i in erp if owner.get(sale_of(i)) == shard}
    unknown = [i.message_id for i in erp if sale_of(i) not in owner]
    if unknown:
        noted = await conn.fetch(
            """
            INSERT INTO ledger.unowned_erp_messages AS u (message_id, shards)
            SELECT m, ARRAY[$2::int] FROM unnest($1::text[]) AS m
            ON CONFLICT (message_id) DO UPDATE
                SET shards = ARRAY(SELECT DISTINCT unnest(u.shards || $2::int))
            RETURNING message_id, cardinality(shards) AS seen
            """,
            unknown,
            shard,
        )
        acting |= {r["message_id"] for r in noted if r["seen"] >= shards}
        await conn.execute(
            "DELETE FROM ledger.unowned_erp_messages"
            f" WHERE noted_at < now() - interval '{UNOWNED_RETENTION}'"
        )
    return acting


class ShardAssigner:
    """Runs one consumer per shard this replica is assigned (a supervised loop)."""

    def __init__(
        self, database_url: str, shards: int, consumer: Callable[[int], BatchConsumer]
    ) -> None:
        self.database_url = database_url
        self.shards = shards
        self.consumer = consumer
        self.running: dict[int, tuple[asyncio.Event, asyncio.Task[None]]] = {}
        self.slot: int | None = None
        self._conn: asyncpg.Connection | None = None

    @property
    def assigned(self) -> list[int]:
        return sorted(self.running)

    async def run(self, stopping: asyncio.Event) -> None:
        try:
            while not stopping.is_set():
                wanted = await self._wanted()
                if wanted is not None:
                    await self._apply(wanted)
                for k, (_, task) in list(self.running.items()):
                    if task.done():
                        del self.running[k]
                        task.result()  # a consumer that failed fails the loop (it restarts)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), timeout=TICK_S)
        finally:
            await self._apply(set())
            if self._conn is not None:
                with contextlib.suppress(Exception):
                    await self._conn.close()
                self._conn = None

    async def _wanted(self) -> set[int] | None:
        """The shards of this replica now; None while the database cannot say (keep what runs)."""
        try:
            if self._conn is None or self._conn.is_closed():
                self._conn = await asyncpg.connect(self.database_url, timeout=5)
                self.slot = await self._take_slot(self._conn)
            slots = [
                r["objid"]
                for r in await self._conn.fetch(
                    """
                    SELECT objid FROM pg_locks WHERE locktype = 'advisory' AND classid = $1
                       AND objsubid = 2 AND granted
                       AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
                     ORDER BY objid
                    """,
                    LOCK_CLASS,
                    timeout=5,
                )
            ]
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            log.warning("shard assignment unknown, keeping the current one", error=str(exc))
            if self._conn is not None:
                with contextlib.suppress(Exception):
                    await self._conn.close()
            self._conn = None
            return None
        if self.slot not in slots:
            return None
        rank, replicas = slots.index(self.slot), len(slots)
        return {k for k in range(self.shards) if k % replicas == rank}

    @staticmethod
    async def _take_slot(conn: asyncpg.Connection) -> int:
        for slot in range(MAX_SLOTS):
            if await conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", LOCK_CLASS, slot):
                return slot
        raise RuntimeError(f"more than {MAX_SLOTS} ledger replicas on one database")

    async def _apply(self, wanted: set[int]) -> None:
        before = set(self.running)
        for k in sorted(wanted - set(self.running)):
            stop = asyncio.Event()
            consumer = self.consumer(k)
            self.running[k] = (stop, asyncio.create_task(consumer.run(stop), name=consumer.name))
        leaving = [self.running.pop(k) for k in sorted(set(self.running) - wanted)]
        for stop, _ in leaving:
            stop.set()
        for _, task in leaving:
            with contextlib.suppress(Exception):
                await task
        if set(self.running) != before:
            log.info("ledger shards assigned", shards=self.assigned, slot=self.slot)
