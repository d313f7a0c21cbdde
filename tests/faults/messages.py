"""AMQP helpers for infrastructure tests: quorum queues, persistent messages, a bare connection."""

from __future__ import annotations

import asyncio
from contextlib import suppress
from typing import TypeVar

import aio_pika
import pamqp.base
import pamqp.commands
import pamqp.frame
import pamqp.header
from aiormq.abc import FieldTable

F = TypeVar("F", bound=pamqp.base.Frame)
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


class BareConnection:
    """An AMQP 0-9-1 connection that only does the handshake, over streams it owns.

    For tests of the broker closing connections: unlike an aiormq connection, it leaves nothing
    unclosed when the broker closes it (aiormq 6.9 answers a broker's Connection.Close without
    closing its StreamWriter, a ResourceWarning at a later garbage collection).
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int, vhost: str = "/") -> BareConnection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        connection = cls(reader, writer)
        try:
            writer.write(pamqp.header.ProtocolHeader().marshal())
            await connection._expect(pamqp.commands.Connection.Start)
            connection._send(pamqp.commands.Connection.StartOk(response="\0guest\0guest"))
            tune = await connection._expect(pamqp.commands.Connection.Tune)
            connection._send(
                pamqp.commands.Connection.TuneOk(tune.channel_max, tune.frame_max, heartbeat=0)
            )
            connection._send(pamqp.commands.Connection.Open(virtual_host=vhost))
            await connection._expect(pamqp.commands.Connection.OpenOk)
        except BaseException:
            await connection.close()
            raise
        return connection

    async def closed_by_broker(self, within: float = 15) -> bool:
        """Whether the broker closes the connection (Connection.Close or EOF) within ``within`` s."""
        with suppress(TimeoutError):
            async with asyncio.timeout(within):
                try:
                    while not isinstance(await self._frame(), pamqp.commands.Connection.Close):
                        pass
                    self._send(pamqp.commands.Connection.CloseOk())
                except (asyncio.IncompleteReadError, ConnectionError):
                    pass
                await self.close()
                return True
        return False

    async def close(self) -> None:
        self.writer.close()
        with suppress(OSError):
            await self.writer.wait_closed()

    def _send(self, frame: pamqp.base.Frame) -> None:
        self.writer.write(pamqp.frame.marshal(frame, 0))

    async def _frame(self) -> object:
        head = await self.reader.readexactly(7)  # type, channel, size
        rest = await self.reader.readexactly(int.from_bytes(head[3:7], "big") + 1)  # + frame end
        return pamqp.frame.unmarshal(head + rest)[2]

    async def _expect(self, kind: type[F]) -> F:
        frame = await self._frame()
        if not isinstance(frame, kind):
            raise RuntimeError(f"expected {kind.__name__}, the broker sent {frame!r}")
        return frame
