"""Plain aio-pika helpers for infrastructure tests: quorum queues and persistent messages."""

from __future__ import annotations

import asyncio
from contextlib import suppress

import aio_pika
import aiormq
import aiormq.abc
from aiormq.abc import FieldTable

QUORUM: FieldTable = {"x-queue-type": "quorum"}


async def publish_persistent(url: str, queue: str, count: int, *, declare: bool = True) -> None:
    """Publish ``count`` persistent messages ``0``..``count-1`` to ``queue``, each confirmed."""
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()  # publisher confirms
        if declare:
            await channel.declare_queue(queue, durable=True, arguments=QUORUM)
        for number in range(count):
            message = aio_pika.Message(
                str(number).encode(), delivery_mode=aio_pika.DeliveryMode.PERSISTENT
            )
            await channel.default_exchange.publish(message, routing_key=queue)
    finally:
        await connection.close()


async def consume_all(url: str, queue: str, expected: int, within: float = 60) -> list[int]:
    """Take (and acknowledge) messages from ``queue`` until ``expected`` came or ``within`` s."""
    connection = await aio_pika.connect(url)
    received: list[int] = []
    try:
        channel = await connection.channel()
        source = await channel.declare_queue(queue, durable=True, arguments=QUORUM)
        with suppress(TimeoutError):
            async with asyncio.timeout(within):
                while len(received) < expected:
                    message = await source.get(fail=False, timeout=10)
                    if message is None:
                        await asyncio.sleep(0.1)
                        continue
                    received.append(int(message.body))
                    await message.ack()
    finally:
        await connection.close()
    return received


async def wait_closed(connection: aiormq.abc.AbstractConnection, within: float = 15) -> bool:
    """Whether the broker closed ``connection`` within ``within`` seconds.

    An aiormq connection, whose ``closing`` future ends when the broker closes it (an aio-pika
    ``Connection.is_closed`` says True only after ``close()`` was called on our side).
    """
    await asyncio.wait([connection.closing], timeout=within)
    return connection.is_closed
