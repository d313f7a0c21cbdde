"""Looking into a queue without consuming it: the operators' view of dead and parked messages.

A queue is read with ``basic.get`` and every message not taken is handed back (requeued), so a
look changes nothing. Used by the CLI's dead-letter tools and by the mapper's retry of rejected
orders (which removes their parked copies).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

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
