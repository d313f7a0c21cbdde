"""The RabbitMQ topology of CONTRACT.md, as data: exchanges, queues, bindings, dead-letter queues.

Every queue is a durable quorum queue named ``<consuming service>.<what>`` with a dead-letter
queue ``<queue>.dead``. RabbitMQ itself dead-letters a message that keeps crashing its consumer
(``x-delivery-limit``); messages that fail validation are dead-lettered by our consumer with the
reason in ``x-error-reason``/``x-error-detail`` headers. Changing a queue's arguments makes
RabbitMQ refuse the redeclaration, so these are part of the contract with running brokers.
"""

from __future__ import annotations

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
# One queue for everything that changes a sale's state keeps cause before effect: the ERP can
# only confirm a sale it saw announced, so the announcement is always queued first. A single
# active consumer keeps that order with several ledger replicas (two consumers could otherwise
# hold a sale's announcement and its confirmation at the same time, in either order).
LEDGER_SALES = QueueSpec(
    "ledger.sales",
    (
        ("mapper.events", "sale.pending_review"),
        ("erp.events", "sale.confirm"),
        ("erp.events", "sale.discard"),
        ("ingest.events", "order.cancelled"),
        ("ingest.events", "order.partially_refunded"),
        ("ingest.events", "privacy.request"),
    ),
    single_active=True,
)

QUEUES: tuple[QueueSpec, ...] = (
    INGEST_WEBHOOKS,
    MAPPER_ORDERS,
    MAPPER_INTEGRATIONS,
    MAPPER_PARKED,
    LEDGER_SALES,
)

__all__ = [
    "EXCHANGES",
    "INGEST_WEBHOOKS",
    "LEDGER_SALES",
    "MAPPER_INTEGRATIONS",
    "MAPPER_ORDERS",
    "MAPPER_PARKED",
    "QUEUES",
    "QueueSpec",
]
