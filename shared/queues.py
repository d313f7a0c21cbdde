"""Looking into a queue without consuming it: the operators' view of dead and parked messages.

A queue is read with ``basic.get`` and every message not taken is handed back (requeued), so a
look changes nothing. Used by the CLI's dead-letter tools and by the mapper's retry of rejected
orders (which removes their parked copies).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue
from aiormq.exceptions import ChannelNotFoundEntity

from shared.operations import OperatorError

MAX_MESSAGES = 10_000


@contextlib.asynccontextmanager
async def opened(url: str, name: str) -> AsyncIterator[AbstractQueue]:
    """The existing queue ``name`` on its own connection, closed on the way out."""
    connection = await aio_pika.connect_robust(url)
    try:
        channel = await connection.channel()
        try:
            queue = await channel.declare_queue(name, passive=True)
        except ChannelNotFoundEntity:
            raise OperatorError(f"no queue named {name!r}") from None
        yield queue
    finally:
        with contextlib.suppress(Exception):
            await connection.close()


async def take(queue: AbstractQueue, limit: int = MAX_MESSAGES) -> list[AbstractIncomingMessage]:
    """Up to ``limit`` messages, unacknowledged: the caller acks or hands back each one."""
    taken: list[AbstractIncomingMessage] = []
    while len(taken) < limit:
        message = await queue.get(no_ack=False, fail=False)
        if message is None:
            break
        taken.append(message)
    return taken


def text(value: object) -> str:
    """A header value as text (AMQP tables carry strings as bytes)."""
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return "" if value is None else str(value)


async def rewrite_messages(
    url: str,
    name: str,
    concerns: Callable[[AbstractIncomingMessage], bool],
    rewrite: Callable[[bytes], bytes] | None,
    detail: Callable[[str], str] = lambda text: text,
) -> int:
    """Replace (``rewrite`` given) or drop (None) the messages of ``name`` that ``concerns``.

    A replaced message goes back to the same queue with its id, type, correlation id and headers,
    its publisher confirm awaited before the old copy is acknowledged; the others are handed back
    untouched; ``detail`` rewrites the free-text ``x-error-detail`` header. Used to redact a
    person out of dead-letter and parked queues (LGPD).
    """
    changed = 0
    publisher = await aio_pika.connect(url)
    try:
        channel = await publisher.channel(publisher_confirms=True)
        with contextlib.suppress(OperatorError):  # a queue not declared yet holds nobody
            async with opened(url, name) as queue:
                for message in await take(queue):
                    if not concerns(message):
                        await message.nack(requeue=True)
                        continue
                    if rewrite is not None:
                        await channel.default_exchange.publish(
                            aio_pika.Message(
                                rewrite(message.body),
                                message_id=message.message_id,
                                type=message.type,
                                correlation_id=message.correlation_id,
                                content_type=message.content_type,
                                headers=_with_detail(message.headers, detail),
                                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                            ),
                            routing_key=name,
                        )
                    await message.ack()
                    changed += 1
    finally:
        await publisher.close()
    return changed


def _with_detail(headers: dict[str, Any] | None, detail: Callable[[str], str]) -> dict[str, Any]:
    out = dict(headers or {})
    if "x-error-detail" in out:
        out["x-error-detail"] = detail(text(out["x-error-detail"]))
    return out
