"""What a consumer hands its handler and what the handler answers, and decoding a delivery.

This module owns the contract between ``shared.consumer.BatchConsumer`` and a service's batch
handler: the decoded ``Incoming`` message, the per-message verdict (processed, or a
``DeadLetter`` with its reason), the ``BatchResult`` of a transaction (verdicts and the outbox
rows it staged), the ``TransientError`` a handler raises for a failure a retry can fix, and
``decode``, which turns a delivery into its contract model or a ``MalformedError`` with the
reason code the dead-letter headers carry. It does no I/O.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import orjson
import pydantic
from aio_pika.abc import AbstractIncomingMessage

from shared.contracts import Message
from shared.messaging import Envelope, content_id
from shared.outbox import Staged


@dataclass(frozen=True)
class Incoming:
    """A decoded message handed to a handler."""

    message: Message
    message_id: str
    routing_key: str
    delivery: AbstractIncomingMessage


@dataclass(frozen=True)
class DeadLetter:
    """The handler's verdict that a message cannot be processed (it goes to ``<queue>.dead``)."""

    reason: str
    detail: str


Outcome = DeadLetter | None


@dataclass
class BatchResult:
    """Per-message outcomes (same order as the batch) and what the transaction staged to publish."""

    outcomes: list[Outcome]
    staged: list[Staged] = field(default_factory=list)


class TransientError(Exception):
    """Raised by a handler for a failure that a later retry can fix (the batch is retried)."""


class MalformedError(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


Handler = Callable[[list[Incoming]], Awaitable[BatchResult]]
DeadLetterHook = Callable[[AbstractIncomingMessage, str, str], Awaitable[list[Envelope]]]


def decode(delivery: AbstractIncomingMessage, models: dict[str, type[Message]]) -> Incoming:
    """Turn a delivery into its contract model, or raise ``MalformedError`` with a reason code."""
    key = delivery.routing_key or ""
    model = models.get(key)
    if model is None:
        raise MalformedError("unknown_message", f"no message is expected with routing key {key!r}")
    try:
        data = orjson.loads(delivery.body)
    except orjson.JSONDecodeError as exc:
        raise MalformedError("invalid_json", f"body is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise MalformedError("invalid_message", "body is not a JSON object")
    try:
        message = model.model_validate(data)
    except (TypeError, ValueError) as exc:
        if not isinstance(exc, pydantic.ValidationError):
            raise MalformedError("invalid_message", f"{model.__name__}: {exc}") from exc
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}"
            for err in exc.errors()
        )
        raise MalformedError("invalid_message", f"{model.__name__}: {problems}") from exc
    # Without a message_id (the management UI publishes none) the content names the fact: a
    # delivery tag would repeat after a restart and make the inbox skip a new message.
    message_id = delivery.message_id or content_id(key, delivery.body)
    return Incoming(message, message_id, key, delivery)
