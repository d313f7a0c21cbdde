"""The floor: a bare aio-pika publish → consume → INSERT loop on the same broker and database.

Same settings as the pipeline (a durable quorum queue, persistent messages, publisher confirms,
synchronous commit), no business logic: what the hardware, RabbitMQ and PostgreSQL allow. Run
unbatched (one INSERT and one ack per message) and batched (one transaction and one
``ack(multiple=True)`` per batch), so every pipeline figure can be read as a fraction of it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import aio_pika
import asyncpg
from aio_pika.abc import AbstractIncomingMessage

from services.bench.progress import say

PUBLISH_WINDOW = 500  # confirms awaited together


async def _publish(channel: aio_pika.abc.AbstractChannel, queue: str, count: int) -> None:
    exchange = channel.default_exchange
    for start in range(0, count, PUBLISH_WINDOW):
        await asyncio.gather(
            *(
                exchange.publish(
                    aio_pika.Message(
                        f'{{"n": {n}}}'.encode(),
                        content_type="application/json",
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        message_id=f"floor-{n}",
                    ),
                    routing_key=queue,
                )
                for n in range(start, min(count, start + PUBLISH_WINDOW))
            )
        )


async def floor_rate(amqp_url: str, database_url: str, count: int, *, batch: int) -> float:  # noqa: PLR0915
    """Messages per second through publish → consume → INSERT (``batch`` 1 means unbatched)."""
    queue_name = f"bench.floor.{batch}"
    table = f"bench_floor_{batch}"
    connection = await aio_pika.connect_robust(amqp_url)
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    assert pool is not None
    try:
        await pool.execute(f"DROP TABLE IF EXISTS {table}")
        await pool.execute(
            f"CREATE TABLE {table} (message_id text PRIMARY KEY, body bytea NOT NULL)"
        )
        publish_channel = await connection.channel(publisher_confirms=True)
        consume_channel = await connection.channel()
        await consume_channel.set_qos(prefetch_count=max(batch * 2, 10))
        queue = await consume_channel.declare_queue(
            queue_name, durable=True, arguments={"x-queue-type": "quorum"}
        )
        await queue.purge()
        done = asyncio.Event()
        received = 0
        buffer: list[AbstractIncomingMessage] = []
        lock = asyncio.Lock()

        async def flush() -> None:
            nonlocal received
            taken = buffer[:]
            buffer.clear()
            if not taken:
                return
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute(
                    f"INSERT INTO {table} SELECT * FROM unnest($1::text[], $2::bytea[])",
                    [m.message_id for m in taken],
                    [m.body for m in taken],
                )
            await taken[-1].ack(multiple=True)
            received += len(taken)
            if received >= count:
                done.set()

        async def on_message(message: AbstractIncomingMessage) -> None:
            nonlocal received
            if batch == 1:
                await pool.execute(
                    f"INSERT INTO {table} VALUES ($1, $2)", message.message_id, message.body
                )
                await message.ack()
                received += 1
                if received >= count:
                    done.set()
                return
            async with lock:
                buffer.append(message)
                if len(buffer) >= batch:
                    await flush()

        async def ticker() -> None:
            # A partial batch is flushed after a short wait, as the real consumer does.
            while not done.is_set():
                await asyncio.sleep(0.02)
                async with lock:
                    await flush()

        await queue.consume(on_message)
        tick = asyncio.create_task(ticker()) if batch > 1 else None
        started = time.perf_counter()
        await _publish(publish_channel, queue_name, count)
        await asyncio.wait_for(done.wait(), timeout=600)
        elapsed = time.perf_counter() - started
        if tick is not None:
            tick.cancel()
        await queue.delete(if_unused=False, if_empty=False)
        await pool.execute(f"DROP TABLE IF EXISTS {table}")
        return count / elapsed
    finally:
        await connection.close()
        await pool.close()


async def two_hop_floor_rate(
    amqp_url: str, database_url: str, count: int, batch: int = 200
) -> float:
    """Messages per second through publish → consume → batched INSERT → publish → consume →
    batched INSERT: the bare shape of one of our hops followed by the next, on the same broker
    and database, with the same settings and no business logic."""
    names = ("bench.floor.hop1", "bench.floor.hop2")
    connection = await aio_pika.connect_robust(amqp_url)
    pool = await asyncpg.create_pool(database_url, min_size=2, max_size=3)
    assert pool is not None
    try:
        for table in ("bench_hop1", "bench_hop2"):
            await pool.execute(f"DROP TABLE IF EXISTS {table}")
            await pool.execute(
                f"CREATE TABLE {table} (message_id text PRIMARY KEY, body bytea NOT NULL)"
            )
        publisher = await connection.channel(publisher_confirms=True)
        queues = []
        for name in names:
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=batch * 2)
            queue = await channel.declare_queue(
                name, durable=True, arguments={"x-queue-type": "quorum"}
            )
            await queue.purge()
            queues.append(queue)
        done = asyncio.Event()
        received = 0

        async def forward(taken: list[AbstractIncomingMessage]) -> None:
            await asyncio.gather(
                *(
                    publisher.default_exchange.publish(
                        aio_pika.Message(
                            m.body,
                            content_type="application/json",
                            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                            message_id=m.message_id,
                        ),
                        routing_key=names[1],
                    )
                    for m in taken
                )
            )

        async def finish(taken: list[AbstractIncomingMessage]) -> None:
            nonlocal received
            received += len(taken)
            if received >= count:
                done.set()

        hops = [
            _BatchingHop(pool, "bench_hop1", batch, forward),
            _BatchingHop(pool, "bench_hop2", batch, finish),
        ]
        for queue, hop in zip(queues, hops, strict=True):
            await queue.consume(hop.on_message)
        ticks = [asyncio.create_task(hop.tick(done)) for hop in hops]
        started = time.perf_counter()
        await _publish(publisher, names[0], count)
        await asyncio.wait_for(done.wait(), timeout=600)
        elapsed = time.perf_counter() - started
        for tick in ticks:
            tick.cancel()
        for queue in queues:
            await queue.delete(if_unused=False, if_empty=False)
        for table in ("bench_hop1", "bench_hop2"):
            await pool.execute(f"DROP TABLE IF EXISTS {table}")
        return count / elapsed
    finally:
        await connection.close()
        await pool.close()


class _BatchingHop:
    """Buffer deliveries; per batch: one INSERT transaction, ``then`` (publish or count), one ack."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        table: str,
        batch: int,
        then: Callable[[list[AbstractIncomingMessage]], Awaitable[None]],
    ) -> None:
        self.pool = pool
        self.table = table
        self.batch = batch
        self.then = then
        self.buffer: list[AbstractIncomingMessage] = []
        self.lock = asyncio.Lock()

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        async with self.lock:
            self.buffer.append(message)
            if len(self.buffer) >= self.batch:
                await self.flush()

    async def tick(self, done: asyncio.Event) -> None:
        while not done.is_set():
            await asyncio.sleep(0.02)
            async with self.lock:
                await self.flush()

    async def flush(self) -> None:
        taken, self.buffer = self.buffer, []
        if not taken:
            return
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                f"INSERT INTO {self.table} SELECT * FROM unnest($1::text[], $2::bytea[])",
                [m.message_id for m in taken],
                [m.body for m in taken],
            )
        await self.then(taken)
        await taken[-1].ack(multiple=True)


async def floors(amqp: str, database: str, messages: int) -> dict[str, float]:
    """The three floors of (e), each on a fresh queue."""
    say("(e) the floor: bare publish → consume → INSERT")
    unbatched = await floor_rate(amqp, database, messages // 4, batch=1)
    batched = await floor_rate(amqp, database, messages, batch=200)
    say("(e) the two-hop floor: publish → consume → batched INSERT → publish → consume → INSERT")
    two_hop = await two_hop_floor_rate(amqp, database, messages)
    return {
        "floor_unbatched_per_s": unbatched,
        "floor_batched_per_s": batched,
        "floor_two_hop_batched_per_s": two_hop,
    }
