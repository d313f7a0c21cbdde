"""The test's observer: every message published on our exchanges, in arrival order.

It owns the observer's queue (bound with ``#`` to all four exchanges), the record of what was
seen, waiting for a message, and the echo that proves everything published before it was seen.
Sentinels' answers (see ``tests.harness``: the ledger's unknown sales ``barrier-*``, the mapper's
store ``BARRIER_STORE``) and echoes are kept apart, in ``barriers``, so tests never count them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import orjson
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage
from aio_pika.exceptions import CONNECTION_EXCEPTIONS

from shared.contracts import EXCHANGES
from shared.link import Link, Subscription
from shared.messaging import Broker, Envelope

OBSERVER_QUEUE = "test.observer"
ECHO_KEY = "test.echo"  # bound to no queue of ours: only the observer's "#" takes it
BARRIER_SALE = "barrier-"  # sale ids of the ledger's sentinels
BARRIER_STORE = 999_000_001  # the store of the mapper's sentinels


@dataclass(frozen=True)
class Seen:
    routing_key: str
    exchange: str
    body: dict[str, Any]
    message_id: str | None
    type: str | None
    correlation_id: str | None
    content_type: str | None
    persistent: bool
    headers: dict[str, Any]


@dataclass
class Observer:
    """Every message published on our exchanges during a test, in arrival order.

    It listens on a durable queue of the test's own vhost through a ``Link``, so it keeps
    listening across broker events (a test that closes every connection still sees everything).
    """

    link: Link
    amqp_url: str
    seen: list[Seen] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _keeper: asyncio.Task[None] | None = None
    _ids: set[str] = field(default_factory=set)
    barriers: list[Seen] = field(default_factory=list)  # sentinels' answers and echoes

    @classmethod
    async def start(cls, amqp_url: str, queue_name: str = OBSERVER_QUEUE) -> Observer:
        """An observer on ``queue_name`` (two observers on one queue would share its messages)."""

        async def declare(channel: AbstractChannel) -> None:
            queue = await channel.declare_queue(queue_name, durable=True)
            for name in EXCHANGES:
                exchange = await channel.declare_exchange(
                    name, aio_pika.ExchangeType.TOPIC, durable=True
                )
                await queue.bind(exchange, "#")

        observer = cls(Link(amqp_url, "test-observer", declare=declare), amqp_url)
        await observer.link.subscribe(
            Subscription(queue_name, 1000, observer._on_message, lambda: None)
        )
        await observer.link.open()
        observer._keeper = asyncio.create_task(observer.link.run(observer._stop))
        return observer

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        with contextlib.suppress(*CONNECTION_EXCEPTIONS):
            await message.ack()
        if message.redelivered and message.message_id in self._ids:
            return  # our own queue redelivered it after a broker event: already recorded
        if message.message_id:
            self._ids.add(message.message_id)
        seen = Seen(
            routing_key=message.routing_key or "",
            exchange=message.exchange or "",
            body=_json_or_raw(message.body),
            message_id=message.message_id,
            type=message.type,
            correlation_id=message.correlation_id,
            content_type=message.content_type,
            persistent=message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT,
            headers=dict(message.headers or {}),
        )
        (self.barriers if _is_barrier(seen) else self.seen).append(seen)
        self._changed.set()

    def of(self, routing_key: str, **match: Any) -> list[Seen]:
        return [
            s
            for s in self.seen
            if s.routing_key == routing_key and all(s.body.get(k) == v for k, v in match.items())
        ]

    async def wait_for(
        self, routing_key: str, count: int = 1, within: float = 20.0, **match: Any
    ) -> list[Seen]:
        what = f"{routing_key} {match}"
        return await self._wait(lambda: self.of(routing_key, **match), what, count, within)

    async def _wait(
        self, found_now: Callable[[], list[Seen]], what: str, count: int, within: float
    ) -> list[Seen]:
        deadline = time.monotonic() + within
        while True:
            found = found_now()
            if len(found) >= count:
                return found
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                keys = sorted({s.routing_key for s in self.seen})
                raise AssertionError(
                    f"waited {within}s for {count} {what}: saw {len(found)} (all keys seen: {keys})"
                )
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=min(remaining, 0.5))

    async def wait_barrier(self, routing_key: str, within: float = 20.0, **match: Any) -> Seen:
        """Wait for a sentinel's answer (kept out of ``seen``)."""

        def found() -> list[Seen]:
            return [
                s
                for s in self.barriers
                if s.routing_key == routing_key
                and all(s.body.get(k) == v for k, v in match.items())
            ]

        what = f"the barrier {routing_key} {match}"
        return (await self._wait(found, what, 1, within))[0]

    async def next_change(self, within: float = 0.5) -> None:
        """Until anything new arrives, or ``within`` seconds passed."""
        self._changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout=within)

    async def echo(self, publisher: Broker | None = None, within: float = 20.0) -> None:
        """Publish a marker and wait until it comes back: whatever reached our exchanges before
        it (confirmed) is in ``seen`` by then. Without a publisher, one is opened for it."""
        marker = f"echo:{uuid.uuid4()}"
        body = orjson.dumps({"echo": marker})
        sent = Envelope("ingest.events", ECHO_KEY, body, marker, ECHO_KEY)
        if publisher is not None:
            await publisher.publish(sent)
        else:
            own = Broker(self.amqp_url, app_id="test-echo")
            await own.connect(deadline=10)
            try:
                await own.publish(sent)
            finally:
                await own.close()
        await self.wait_barrier(ECHO_KEY, within, echo=marker)

    async def close(self) -> None:
        self._stop.set()
        if self._keeper is not None:
            await self._keeper
        await self.link.close()


def _is_barrier(seen: Seen) -> bool:
    sale_id = seen.body.get("sale_id")
    return (
        seen.routing_key == ECHO_KEY
        or (isinstance(sale_id, str) and sale_id.startswith(BARRIER_SALE))
        or seen.body.get("store_id") == BARRIER_STORE
    )


def _json_or_raw(body: bytes) -> dict[str, Any]:
    """A message's JSON object; what tests publish on purpose as junk stays readable as raw."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {"_raw": body.decode(errors="replace")}
    return parsed if isinstance(parsed, dict) else {"_raw": parsed}
