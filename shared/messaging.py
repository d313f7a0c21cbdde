"""RabbitMQ: connecting, declaring the topology, publishing with confirms, dead-lettering.

Publishing and consuming use separate connections, so a consumer blocked by flow control never
stalls the publisher and the reverse. Every publish waits for the broker's confirm (bounded by a
timeout: on a lost robust connection aio-pika would otherwise wait forever) and carries the
properties CONTRACT.md promises: JSON, persistent, a stable ``message_id``, ``type=<key>.v1`` and
``correlation_id=<store_id>:<order_id>``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractRobustConnection,
)

from shared.contracts import EXCHANGES, Message
from shared.db import retry_until_up
from shared.logging import get_logger
from shared.topology import QUEUES, QueueSpec

log = get_logger(__name__)

PUBLISH_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Envelope:
    """A message ready to publish: body and properties, independent of any channel."""

    exchange: str
    routing_key: str
    body: bytes
    message_id: str
    type: str
    correlation_id: str | None = None
    headers: dict[str, Any] = field(default_factory=dict)


def envelope(message: Message, *, message_id: str, correlation_id: str | None) -> Envelope:
    """Wrap a contract model with the properties CONTRACT.md promises."""
    return Envelope(
        exchange=message.exchange,
        routing_key=message.routing_key,
        body=message.model_dump_json().encode(),
        message_id=message_id,
        type=message.message_type(),
        correlation_id=correlation_id,
    )


def correlation(store_id: int | None, order_id: int | None) -> str | None:
    if store_id is None or order_id is None:
        return None
    return f"{store_id}:{order_id}"


def error_headers(reason: str, detail: str) -> dict[str, Any]:
    # Header values stay short: the management UI shows them, and AMQP caps a short string.
    return {"x-error-reason": reason[:200], "x-error-detail": detail[:2000]}


def amqp_message(env: Envelope, app_id: str) -> aio_pika.Message:
    return aio_pika.Message(
        env.body,
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=env.message_id,
        type=env.type,
        correlation_id=env.correlation_id,
        headers=dict(env.headers) or None,
        timestamp=dt.datetime.now(dt.UTC),
        app_id=app_id,
    )


async def declare_topology(
    channel: AbstractChannel, queues: tuple[QueueSpec, ...] = QUEUES
) -> None:
    """Declare our exchanges, queues, their dead-letter queues and bindings (idempotent)."""
    exchanges: dict[str, AbstractExchange] = {}
    for name in EXCHANGES:
        exchanges[name] = await channel.declare_exchange(
            name, aio_pika.ExchangeType.TOPIC, durable=True
        )
    for spec in queues:
        if spec.dead_letter:
            await channel.declare_queue(
                spec.dead_name, durable=True, arguments={"x-queue-type": "quorum"}
            )
        queue = await channel.declare_queue(spec.name, durable=True, arguments=spec.arguments())
        for exchange, key in spec.bindings:
            await queue.bind(exchanges[exchange], key)


class Broker:
    """Two robust connections (publish, consume) and a confirming publisher channel."""

    def __init__(self, url: str, app_id: str) -> None:
        self.url = url
        self.app_id = app_id
        self._publish_conn: AbstractRobustConnection | None = None
        self._consume_conn: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchanges: dict[str, AbstractExchange] = {}

    async def connect(self, *, deadline: float | None = None) -> None:
        async def attempt() -> None:
            self._publish_conn = await aio_pika.connect_robust(
                self.url, client_properties={"connection_name": f"{self.app_id}-publish"}
            )

        await retry_until_up("broker", attempt, deadline=deadline)
        assert self._publish_conn is not None
        self._channel = await self._publish_conn.channel(publisher_confirms=True)
        await declare_topology(self._channel)
        self._consume_conn = await aio_pika.connect_robust(
            self.url, client_properties={"connection_name": f"{self.app_id}-consume"}
        )

    @property
    def consume_connection(self) -> AbstractRobustConnection:
        if self._consume_conn is None:
            raise RuntimeError("broker not connected")
        return self._consume_conn

    @property
    def is_connected(self) -> bool:
        return (
            self._publish_conn is not None
            and not self._publish_conn.is_closed
            and self._consume_conn is not None
            and not self._consume_conn.is_closed
        )

    async def _exchange(self, name: str) -> AbstractExchange:
        if self._channel is None:
            raise RuntimeError("broker not connected")
        if name == "":
            return self._channel.default_exchange
        found = self._exchanges.get(name)
        if found is None:
            found = await self._channel.get_exchange(name, ensure=False)
            self._exchanges[name] = found
        return found

    async def publish(self, env: Envelope, *, confirm_timeout: float = PUBLISH_TIMEOUT_S) -> None:
        """Publish one envelope and wait for the broker's confirm."""
        exchange = await self._exchange(env.exchange)
        await exchange.publish(
            amqp_message(env, self.app_id), routing_key=env.routing_key, timeout=confirm_timeout
        )

    async def publish_many(
        self, envs: list[Envelope], *, confirm_timeout: float = PUBLISH_TIMEOUT_S
    ) -> None:
        """Publish in order on one channel and wait for every confirm at once."""
        if envs:
            await asyncio.gather(*(self.publish(e, confirm_timeout=confirm_timeout) for e in envs))

    async def dead_letter(
        self, queue: str, incoming: AbstractIncomingMessage, reason: str, detail: str
    ) -> None:
        """Copy a message to ``<queue>.dead`` with the reason in its headers (original body)."""
        await self.park(f"{queue}.dead", incoming, reason, detail)

    async def park(
        self, target_queue: str, incoming: AbstractIncomingMessage, reason: str, detail: str
    ) -> None:
        headers = dict(incoming.headers or {})
        headers |= error_headers(reason, detail)
        headers["x-original-routing-key"] = incoming.routing_key or ""
        headers["x-original-exchange"] = incoming.exchange or ""
        env = Envelope(
            exchange="",
            routing_key=target_queue,
            body=incoming.body,
            message_id=incoming.message_id or "",
            type=incoming.type or "",
            correlation_id=incoming.correlation_id,
            headers=headers,
        )
        await self.publish(env)

    async def close(self) -> None:
        for conn in (self._consume_conn, self._publish_conn):
            if conn is not None and not conn.is_closed:
                await conn.close()
        self._consume_conn = None
        self._publish_conn = None
        self._channel = None
        self._exchanges.clear()
