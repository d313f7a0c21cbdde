"""The RabbitMQ topology of CONTRACT.md, as data: exchanges, queues, bindings, dead-letter queues.

Every queue is a durable quorum queue named ``<consuming service>.<what>`` with a dead-letter
queue ``<queue>.dead``. RabbitMQ itself dead-letters a message that keeps crashing its consumer
(``x-delivery-limit``); messages that fail validation are dead-lettered by our consumer with the
reason in ``x-error-reason``/``x-error-detail`` headers. Changing a queue's arguments makes
RabbitMQ refuse the redeclaration, so these are part of the contract with running brokers.
"""

from __future__ import annotations

import functools
import os
import zlib
from dataclasses import dataclass, field
from typing import Any

from shared.contracts import EXCHANGES

DELIVERY_LIMIT = 20  # a message that crashed its consumer this many times is dead-lettered


@dataclass(frozen=True)
class QueueSpec:
    name: str
    bindings: tuple[tuple[str, str], ...] = field(default_factory=tuple)  # (exchange, key)
    dead_letter: bool = True
    # One consumer at a time, in queue order, however many replicas run (the others stand by).
    single_active: bool = False
    # None for queues operators browse (listing hands messages back, which counts as a delivery).
    delivery_limit: int | None = DELIVERY_LIMIT
    # A ledger shard: also bound to ``SHARD_EXCHANGE`` for messages whose ``SHARD_HEADER`` is this.
    shard: int | None = None

    @property
    def dead_name(self) -> str:
        return f"{self.name}.dead"

    def arguments(self) -> dict[str, Any]:
        args: dict[str, Any] = {"x-queue-type": "quorum"}
        if self.single_active:
            args["x-single-active-consumer"] = True
        if self.dead_letter:
            args |= {
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": self.dead_name,
            }
            if self.delivery_limit is not None:
                args["x-delivery-limit"] = self.delivery_limit
        return args


INGEST_WEBHOOKS = QueueSpec("ingest.webhooks", (("ingest.events", "webhook.received"),))
MAPPER_ORDERS = QueueSpec(
    "mapper.orders",
    (
        ("ingest.events", "order.paid"),
        ("ingest.events", "order.invalid"),
        ("ingest.events", "privacy.request"),
    ),
)
# Stores switched off and on again (SPEC §4), apart from the orders so that a switch-off overtakes
# the orders still queued; one consumer at a time keeps off and on in the order they happened.
MAPPER_INTEGRATIONS = QueueSpec(
    "mapper.integrations",
    (
        ("ingest.events", "integration.disabled"),
        ("ingest.events", "integration.enabled"),
    ),
    single_active=True,
)
# Parked orders wait for an operator; like every queue of ours it has its ``.dead`` queue.
MAPPER_PARKED = QueueSpec("mapper.orders.parked", delivery_limit=None)
# The sales stream is sharded by store: ``ledger.sales.<k>`` for k in 0..LEDGER_SHARDS-1, each with
# a single active consumer. Everything that changes a sale's state keeps cause before effect:
# - a store's announcements, cancellations, partial refunds and privacy requests carry the header
#   ``ledger-shard: <k>`` (set by ``shared.messaging.envelope`` from the store id) and reach
#   exactly one shard through the headers exchange ``ledger.shards``, bound to our exchanges by
#   routing key (exchange-to-exchange bindings), so one store's messages keep their order in one
#   queue, consumed by one replica at a time;
# - the ERP's ``sale.confirm``/``sale.discard`` carry only a sale id: they wait in
#   ``ledger.erp`` (single active consumer: the ERP's decisions keep their order). A decision
#   about a sale the ledger already holds is handled there (the sale's row lock orders it with
#   the shard's work); one about a sale not yet known is sent on to every shard, behind the
#   announcement it may be about (services/ledger/shards.py).
# Changing the number of shards: drain, then switch (docs/performance.md, "Adding a shard").
SHARD_EXCHANGE = "ledger.shards"
# Not "x-...": a headers exchange ignores binding arguments named x-* when it matches.
SHARD_HEADER = "ledger-shard"
# A message with ``ledger-probe: every`` reaches every shard (a decision about a sale not yet known).
PROBE_HEADER = "ledger-probe"
PROBE_EVERY = "every"
SHARD_ROUTES: tuple[tuple[str, str], ...] = (
    ("mapper.events", "sale.pending_review"),
    ("ingest.events", "order.cancelled"),
    ("ingest.events", "order.partially_refunded"),
    ("ingest.events", "privacy.request"),
)
ERP_ROUTES: tuple[tuple[str, str], ...] = (
    ("erp.events", "sale.confirm"),
    ("erp.events", "sale.discard"),
)
DEFAULT_SHARDS = 4


@functools.cache
def shard_count() -> int:
    """``LEDGER_SHARDS`` (the same for every service: publishers pick the shard, the ledger owns it)."""
    count = int(os.environ.get("LEDGER_SHARDS", DEFAULT_SHARDS))
    if not 1 <= count <= 64:
        raise ValueError(f"LEDGER_SHARDS must be between 1 and 64, not {count}")
    return count


def shard_of(store_id: int, shards: int | None = None) -> int:
    """The shard of a store: a stable hash, so that consecutive store ids spread evenly."""
    return zlib.crc32(str(store_id).encode()) % (shards or shard_count())


def ledger_shard(k: int) -> QueueSpec:
    return QueueSpec(f"ledger.sales.{k}", single_active=True, shard=k)


def shard_binding(k: int) -> dict[str, Any]:
    """The arguments binding shard ``k`` to ``SHARD_EXCHANGE``: its store's messages, and probes."""
    return {"x-match": "any", SHARD_HEADER: str(k), PROBE_HEADER: PROBE_EVERY}


def ledger_shards(shards: int | None = None) -> tuple[QueueSpec, ...]:
    return tuple(ledger_shard(k) for k in range(shards or shard_count()))


LEDGER_SHARDS = ledger_shards()
LEDGER_ERP = QueueSpec("ledger.erp", ERP_ROUTES, single_active=True)

QUEUES: tuple[QueueSpec, ...] = (
    INGEST_WEBHOOKS,
    MAPPER_ORDERS,
    MAPPER_INTEGRATIONS,
    MAPPER_PARKED,
    LEDGER_ERP,
    *LEDGER_SHARDS,
)

__all__ = [
    "ERP_ROUTES",
    "EXCHANGES",
    "INGEST_WEBHOOKS",
    "LEDGER_ERP",
    "LEDGER_SHARDS",
    "MAPPER_INTEGRATIONS",
    "MAPPER_ORDERS",
    "MAPPER_PARKED",
    "PROBE_EVERY",
    "PROBE_HEADER",
    "QUEUES",
    "SHARD_EXCHANGE",
    "SHARD_HEADER",
    "SHARD_ROUTES",
    "QueueSpec",
    "ledger_shard",
    "ledger_shards",
    "shard_binding",
    "shard_count",
    "shard_of",
]
