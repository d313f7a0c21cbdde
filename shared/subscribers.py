"""Subscriber declarations: which message a service handles, on which queue, with which handler.

This module owns the declarations, faststream-style, that a service writes beside its handlers:

    LEDGER = Subscribers[LedgerUnitOfWork]("ledger")

    @LEDGER.each(SaleDiscard, LEDGER_ERP.name, "ledger.sales.<k>")
    async def discard(uow: LedgerUnitOfWork, received: Received[SaleDiscard]) -> list[Envelope]:
        ...

A declaration names the model (and so its routing key), the queues it is consumed on, and the
handler: ``each`` handles one message at a time, ``batch`` a run of consecutive messages of the
model at once (a set-based use case; a batch of one takes the same path), both inside the unit
of work the consumer opens (``shared.unitofwork``); ``own`` hands a run to a handler that keeps
its own transactions (ingest, which talks HTTP between reading and writing) and returns what
they staged. A queue name ending in ``.<k>`` is a family (``ledger.sales.<k>``: every shard).

The declarations are the one place a message type is wired: the consumer's models, its dispatch
by type, and the check of ``shared/topology.py`` and ``docs/asyncapi.yaml`` against them
(``tests/unit/test_subscribers.py``, through ``registries()``) are read from them. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeAlias, TypeVar, cast

from shared.contracts import Message
from shared.delivery import Incoming
from shared.messaging import Envelope
from shared.outbox import Staged

M = TypeVar("M", bound=Message)
U = TypeVar("U")

FAMILY = ".<k>"


@dataclass(frozen=True)
class Received(Generic[M]):
    """A decoded message as a handler sees it: the typed model and what its delivery said."""

    message: M
    message_id: str
    routing_key: str
    correlation_id: str | None = None
    body: bytes = b""
    type: str | None = None
    headers: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, incoming: Incoming) -> Received[Message]:
        delivery = incoming.delivery
        return Received(
            message=incoming.message,
            message_id=incoming.message_id,
            routing_key=incoming.routing_key,
            correlation_id=delivery.correlation_id,
            body=delivery.body,
            type=delivery.type,
            headers=delivery.headers or {},
        )

    @classmethod
    def message_of(
        cls, message: M, message_id: str, *, correlation_id: str | None = None
    ) -> Received[M]:
        """As if delivered (the in-memory tests): the body is the model's JSON."""
        return Received(
            message=message,
            message_id=message_id,
            routing_key=message.routing_key,
            correlation_id=correlation_id,
            body=message.model_dump_json().encode(),
            type=message.message_type(),
        )


EachHandler: TypeAlias = Callable[[U, Received[M]], Awaitable[list[Envelope]]]
BatchHandler: TypeAlias = Callable[[U, list[Received[M]]], Awaitable[list[Envelope]]]
OwnHandler: TypeAlias = Callable[[U, list[Received[M]]], Awaitable[list[Staged]]]


def serves(declared: str, queue: str) -> bool:
    """Whether the declared queue (or family ``<name>.<k>``) names ``queue``."""
    if declared == queue:
        return True
    if not declared.endswith(FAMILY):
        return False
    prefix = declared.removesuffix("<k>")
    return queue.startswith(prefix) and queue[len(prefix) :].isdigit()


@dataclass(frozen=True)
class Subscriber(Generic[U, M]):
    """One declaration: ``model`` consumed on ``queues`` by exactly one kind of handler."""

    model: type[M]
    queues: tuple[str, ...]
    each: EachHandler[U, M] | None = None
    batch: BatchHandler[U, M] | None = None
    own: OwnHandler[U, M] | None = None

    @property
    def routing_key(self) -> str:
        return self.model.routing_key

    def serves(self, queue: str) -> bool:
        return any(serves(q, queue) for q in self.queues)

    def __post_init__(self) -> None:
        kinds = [h for h in (self.each, self.batch, self.own) if h is not None]
        if len(kinds) != 1:
            raise ValueError(f"{self.model.__name__}: declare exactly one handler")
        if not self.queues:
            raise ValueError(f"{self.model.__name__}: declare at least one queue")


_REGISTRIES: list[Subscribers[Any]] = []


class Subscribers(Generic[U]):
    """A service's declarations (``U`` is what its handlers are handed: its unit of work)."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.declared: list[Subscriber[U, Any]] = []
        _REGISTRIES.append(cast("Subscribers[Any]", self))

    def each(
        self, model: type[M], *queues: str
    ) -> Callable[[EachHandler[U, M]], EachHandler[U, M]]:
        """Declare a handler of one message at a time."""

        def declare(handler: EachHandler[U, M]) -> EachHandler[U, M]:
            self._add(Subscriber(model, queues, each=handler))
            return handler

        return declare

    def batch(
        self, model: type[M], *queues: str
    ) -> Callable[[BatchHandler[U, M]], BatchHandler[U, M]]:
        """Declare a set-based handler of a run of messages (a run of one included)."""

        def declare(handler: BatchHandler[U, M]) -> BatchHandler[U, M]:
            self._add(Subscriber(model, queues, batch=handler))
            return handler

        return declare

    def own(self, model: type[M], *queues: str) -> Callable[[OwnHandler[U, M]], OwnHandler[U, M]]:
        """Declare a handler that keeps its own transactions and returns what they staged."""

        def declare(handler: OwnHandler[U, M]) -> OwnHandler[U, M]:
            self._add(Subscriber(model, queues, own=handler))
            return handler

        return declare

    def _add(self, subscriber: Subscriber[U, Any]) -> None:
        for queue in subscriber.queues:
            if any(s.model is subscriber.model and queue in s.queues for s in self.declared):
                raise ValueError(f"{subscriber.model.__name__} declared twice on {queue}")
        self.declared.append(subscriber)

    def on(self, queue: str) -> list[Subscriber[U, Any]]:
        """The declarations consumed on ``queue`` (a family's declarations on each member)."""
        found = [s for s in self.declared if s.serves(queue)]
        if not found:
            raise LookupError(f"{self.service}: nothing is declared on {queue}")
        return found

    def models(self, queue: str) -> dict[str, type[Message]]:
        """What the consumer of ``queue`` decodes, by routing key (the rest is dead-lettered)."""
        return {s.routing_key: s.model for s in self.on(queue)}

    def queues(self) -> set[str]:
        return {q for s in self.declared for q in s.queues}


def registries() -> list[Subscribers[Any]]:
    """Every service's declarations loaded in this process (for the topology and docs checks)."""
    return list(_REGISTRIES)
