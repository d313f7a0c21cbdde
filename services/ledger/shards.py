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
(on a connection of its own, released the moment the process dies: ``adapters.slots``), reads
the live slots, and consumes the shards ``k`` with ``k % replicas == its rank`` (``assignment``);
when replicas come or go, the assignment follows within ``TICK_S``. A shard handed over is safe at every instant: the old
consumer finishes its batch and closes its channel (what it held goes back to the queue, first),
and the queue never has two active consumers.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Protocol

from services.ledger.answers import ERP_KEYS
from services.ledger.ports import LedgerUnitOfWork
from shared.consumer import BatchConsumer
from shared.contracts import Message, SalePendingReview
from shared.logging import get_logger
from shared.messaging import Envelope
from shared.subscribers import Received
from shared.topology import PROBE_EVERY, PROBE_HEADER, SHARD_EXCHANGE, shard_of
from shared.unitofwork import Admit, InboxId

log = get_logger(__name__)

TICK_S = 0.5


def inbox_id(shard: int | None) -> InboxId:
    """The inbox key of a delivery: a probe reaches every shard, each claims its own copy."""

    def key(received: Received[Message]) -> str:
        if shard is not None and received.routing_key in ERP_KEYS:
            return f"{received.message_id}@shard{shard}"
        return received.message_id

    return key


def admit(shard: int | None, shards: int) -> Admit[LedgerUnitOfWork]:
    """What a consumer acts on after its inbox: in ``ledger.erp`` the decisions about known
    sales (the others are probed); in a shard, the probes it owns."""

    async def erp(
        uow: LedgerUnitOfWork, todo: list[Received[Message]]
    ) -> tuple[list[Received[Message]], list[Envelope]]:
        return await known_or_probe(uow, todo, shards)

    if shard is None:
        return erp
    mine_k = shard

    async def owned(
        uow: LedgerUnitOfWork, todo: list[Received[Message]]
    ) -> tuple[list[Received[Message]], list[Envelope]]:
        return await _owned(uow, todo, mine_k, shards), []

    return owned


async def known_or_probe(
    uow: LedgerUnitOfWork, todo: list[Received[Message]], shards: int
) -> tuple[list[Received[Message]], list[Envelope]]:
    """In ``ledger.erp``: the messages to handle here, and a probe for each decision about a sale
    not known yet (staged in the outbox with the batch, so sent exactly once)."""
    erp = [r for r in todo if r.routing_key in ERP_KEYS]
    if shards == 1 or not erp:
        return todo, []
    known = await uow.sales.owners(list({_sale_of(r) for r in erp}))
    later = [r for r in erp if _sale_of(r) not in known]
    if later:
        log.info("decisions about sales not known yet sent to every shard", count=len(later))
    probes = [
        Envelope(
            exchange=SHARD_EXCHANGE,
            routing_key=r.routing_key,
            body=r.body,
            message_id=r.message_id,
            type=r.type or f"{r.routing_key}.v1",
            correlation_id=r.correlation_id,
            headers={PROBE_HEADER: PROBE_EVERY},
        )
        for r in later
    ]
    waiting = {r.message_id for r in later}
    return [r for r in todo if r.message_id not in waiting], probes


async def _owned(
    uow: LedgerUnitOfWork, todo: list[Received[Message]], shard: int, shards: int
) -> list[Received[Message]]:
    """Drop the ERP probes that another shard acts on."""
    erp = [r for r in todo if r.routing_key in ERP_KEYS]
    if not erp or shards == 1:
        return todo
    # A sale announced in this very batch is this shard's (its store is routed here).
    here = {_sale_of(r) for r in todo if r.routing_key == SalePendingReview.routing_key}
    unsure = [r for r in erp if _sale_of(r) not in here]
    acting = await mine(uow, unsure, shard, shards)
    acting |= {r.message_id for r in erp if _sale_of(r) in here}
    return [r for r in todo if r.routing_key not in ERP_KEYS or r.message_id in acting]


def _sale_of(received: Received[Message]) -> str:
    """The sale an ERP decision (or an announcement) names."""
    return str(getattr(received.message, "sale_id", ""))


async def mine(
    uow: LedgerUnitOfWork, erp: list[Received[Message]], shard: int, shards: int
) -> set[str]:
    """The message ids among the ERP probes ``erp`` that this shard acts on.

    A known sale belongs to its store's shard. A sale no shard knows yet is either still announced
    in another shard's queue or unknown: each shard notes the copy, and the one that notes it last
    (all ``shards`` have then looked, each after everything enqueued before its copy) acts, which
    for an unknown sale means refusing it, exactly once.
    """
    if shards == 1 or not erp:
        return {r.message_id for r in erp}
    stores = await uow.sales.owners(list({_sale_of(r) for r in erp}))
    owner = {sale_id: shard_of(store, shards) for sale_id, store in stores.items()}
    acting = {r.message_id for r in erp if owner.get(_sale_of(r)) == shard}
    unknown = [r.message_id for r in erp if _sale_of(r) not in owner]
    if unknown:
        seen = await uow.probes.note(unknown, shard)
        acting |= {message_id for message_id, count in seen.items() if count >= shards}
    return acting


class Slots(Protocol):
    """A replica's slot among the live ones (``adapters.slots.ReplicaSlots``)."""

    slot: int | None

    async def live(self) -> list[int] | None: ...

    async def close(self) -> None: ...


def assignment(slot: int | None, live: list[int], shards: int) -> set[int] | None:
    """The shards of the replica holding ``slot`` among the ``live`` slots (in order): those
    ``k`` with ``k % replicas == rank``; None while its slot is not among them."""
    if slot not in live:
        return None
    rank, replicas = live.index(slot), len(live)
    return {k for k in range(shards) if k % replicas == rank}


class ShardAssigner:
    """Runs one consumer per shard this replica is assigned (a supervised loop)."""

    def __init__(self, slots: Slots, shards: int, consumer: Callable[[int], BatchConsumer]) -> None:
        self.slots = slots
        self.shards = shards
        self.consumer = consumer
        self.running: dict[int, tuple[asyncio.Event, asyncio.Task[None]]] = {}

    @property
    def assigned(self) -> list[int]:
        return sorted(self.running)

    @property
    def slot(self) -> int | None:
        return self.slots.slot

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
            await self.slots.close()

    async def _wanted(self) -> set[int] | None:
        """The shards of this replica now; None while the database cannot say (keep what runs)."""
        live = await self.slots.live()
        return None if live is None else assignment(self.slots.slot, live, self.shards)

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
