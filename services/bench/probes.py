"""Probes that split a webhook's accept latency into its parts while a phase runs.

Beside the webhooks, 20 times a second each: a publish with confirm to a quorum queue of the
bench's own (``bench.probe``, persistent, mandatory: what the webhook's publish costs the broker
at that moment, without ingest), and ``GET /healthz`` on ingest (its event loop and HTTP stack,
without the broker). Accept latency minus these two is what neither explains.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import aio_pika
import aiohttp

from services.bench.infra import percentile

PROBE_QUEUE = "bench.probe"
INTERVAL_S = 0.05


async def _confirms(amqp_url: str, stop: asyncio.Event, out: list[float]) -> None:
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        await channel.declare_queue(
            PROBE_QUEUE,
            durable=True,
            arguments={"x-queue-type": "quorum", "x-max-length": 1000, "x-overflow": "drop-head"},
        )
        n = 0
        while not stop.is_set():
            n += 1
            message = aio_pika.Message(
                b'{"probe": true}',
                message_id=f"probe-{n}",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            )
            started = time.perf_counter()
            await channel.default_exchange.publish(message, PROBE_QUEUE, mandatory=True)
            out.append(time.perf_counter() - started)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), INTERVAL_S)
    finally:
        await connection.close()


async def _health(url: str, stop: asyncio.Event, out: list[float]) -> None:
    async with aiohttp.ClientSession() as session:
        while not stop.is_set():
            started = time.perf_counter()
            async with session.get(url) as response:
                await response.read()
            out.append(time.perf_counter() - started)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), INTERVAL_S)


@contextlib.asynccontextmanager
async def probing(amqp_url: str, ingest_url: str) -> AsyncIterator[dict[str, float]]:
    """Probe while the body runs; the yielded dict receives p50/p99 of each (ms) at the end."""
    stop = asyncio.Event()
    confirms: list[float] = []
    health: list[float] = []
    tasks = [
        asyncio.create_task(_confirms(amqp_url, stop, confirms)),
        asyncio.create_task(_health(f"{ingest_url}/healthz", stop, health)),
    ]
    figures: dict[str, float] = {}
    try:
        yield figures
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        for name, values in (("probe_confirm", confirms), ("probe_ingest_healthz", health)):
            figures[f"{name}_p50_ms"] = percentile(values, 50) * 1000
            figures[f"{name}_p99_ms"] = percentile(values, 99) * 1000
