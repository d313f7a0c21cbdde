"""RabbitMQ: declaring the topology, publishing with confirms, dead-lettering, consuming.

The connections themselves belong to ``shared.link.Link``, which rebuilds them after any broker
event. Every publish waits for the broker's confirm (bounded by a timeout) and carries the
properties CONTRACT.md promises: JSON, persistent, a stable ``message_id``, ``type=<key>.v1`` and
``correlation_id=<store_id>:<order_id>``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractIncomingMessage
from aio_pika.exceptions import CONNECTION_EXCEPTIONS, DeliveryError
from pamqp.commands import Basic

from shared.contracts import EXCHANGES, Message
from shared.db import retry_until_up
from shared.link import Link, LinkDownError, Subscription
from shared.logging import get_logger
from shared.publishing import ChannelPublisher, settled
from shared.topology import (
    QUEUES,
    SHARD_EXCHANGE,
    SHARD_HEADER,
    SHARD_ROUTES,
    QueueSpec,
    shard_binding,
    shard_of,
)

log = get_logger(__name__)

LINK_ERRORS: tuple[type[BaseException], ...] = (*CONNECTION_EXCEPTIONS, TimeoutError)

PUBLISH_TIMEOUT_S = 10.0
# A broker that confirms nothing for this long while publishes wait is treated as away by the
# callers that must answer quickly (the webhook); under load confirms keep arriving every few ms.
STALL_S = 0.75
STALL_CHECK_S = 0.1


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


# On an order.paid that a webhook led to: when ingest received that webhook (ISO 8601), so the
# mapper can measure webhook-to-pending-sale latency (nuvem_ledger_webhook_to_pending_seconds).
RECEIVED_HEADER = "x-webhook-received-at"


def envelope(message: Message, *, message_id: str, correlation_id: str | None) -> Envelope:
    """Wrap a contract model with the properties CONTRACT.md promises.

    A message about a store carries the ledger shard of that store (``ledger-shard``), by which
    the broker routes it to ``ledger.sales.<k>`` (``shared.topology``).
    """
    store_id = getattr(message, "store_id", None)
    headers = {SHARD_HEADER: str(shard_of(store_id))} if isinstance(store_id, int) else {}
    return Envelope(
        exchange=message.exchange,
        routing_key=message.routing_key,
        # The serializer's bytes as they are (model_dump_json would decode them to a str).
        body=message.__pydantic_serializer__.to_json(message),
        message_id=message_id,
        type=message.message_type(),
        correlation_id=correlation_id,
        headers=headers,
    )


def correlation(store_id: int | None, order_id: int | None) -> str | None:
    if store_id is None or order_id is None:
        return None
    return f"{store_id}:{order_id}"


def content_id(routing_key: str | None, body: bytes) -> str:
    """An id for a message published without one: its content names the fact."""
    return f"{routing_key or ''}:{hashlib.sha256(body).hexdigest()[:32]}"


RETRY_OF = "x-retry-of"
_RETRY_MARK = re.compile(r":(?:retry|replay):\d{8}T\d{12}$")


def retry_ids(message_id: str, headers: Mapping[str, Any] | None = None) -> tuple[str, str]:
    """An operator's new attempt of an old fact: ``(new message id, original message id)``.

    The original is the first attempt's id, however many retries came between (a retried message
    keeps ``x-retry-of``; our own ``:retry:``/``:replay:`` suffixes are taken off otherwise). The
    new id is the original's with a microsecond stamp, so inboxes take it as a new message and
    operators can read where it came from.
    """
    named = (headers or {}).get(RETRY_OF)
    if isinstance(named, bytes):
        named = named.decode(errors="replace")
    original = named if isinstance(named, str) and named else message_id
    while _RETRY_MARK.search(original):
        original = _RETRY_MARK.sub("", original)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%f")
    return f"{original}:retry:{stamp}", original


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
    shards = await channel.declare_exchange(
        SHARD_EXCHANGE, aio_pika.ExchangeType.HEADERS, durable=True
    )
    for source, key in SHARD_ROUTES:
        await shards.bind(exchanges[source], key)
    for spec in queues:
        if spec.dead_letter:
            await channel.declare_queue(
                spec.dead_name, durable=True, arguments={"x-queue-type": "quorum"}
            )
        queue = await channel.declare_queue(spec.name, durable=True, arguments=spec.arguments())
        for exchange, key in spec.bindings:
            await queue.bind(exchanges[exchange], key)
        if spec.shard is not None:
            await queue.bind(shards, "", arguments=shard_binding(spec.shard))


class PublishError(ConnectionError):
    """A publish that cannot be said to have reached a queue: retry it later."""


class BrokerUnavailableError(PublishError):
    """The link to RabbitMQ is down (it is reconnecting)."""


class PublishTimeoutError(PublishError):
    """The broker did not confirm in time (it may or may not hold the message)."""


class UnroutableError(PublishError):
    """The broker returned a mandatory message (no queue took it) or refused it (nack)."""


class Broker:
    """Publishing with confirms, dead-lettering and consuming over one ``Link``.

    ``connect`` opens the link once (waiting for the broker at start); ``run`` is the task that
    rebuilds it after any loss. A publish while the link is down fails at once with
    ``BrokerUnavailableError``, never waits for a reconnection: callers decide (the webhook answers
    503, the outbox keeps its rows and retries). Every failure is a ``PublishError``.
    """

    def __init__(self, url: str, app_id: str) -> None:
        self.url = url
        self.app_id = app_id
        self.link = Link(url, app_id, declare=declare_topology)
        # The batching publisher of each publishing channel: (link generation, urgent).
        self._publishers: dict[tuple[int, bool], ChannelPublisher] = {}
        self._in_flight = 0
        self._waiting_since = 0.0  # when the in-flight count last rose from zero
        self._last_confirm = 0.0

    def stalled_for(self) -> float:
        """Seconds the broker has confirmed nothing while publishes were waiting (0 if none)."""
        if self._in_flight == 0:
            return 0.0
        return time.monotonic() - max(self._waiting_since, self._last_confirm)

    async def connect(self, *, deadline: float | None = None) -> None:
        await retry_until_up("broker", self.link.open, deadline=deadline, errors=LINK_ERRORS)

    async def run(self, stopping: asyncio.Event) -> None:
        """Keep the link up until ``stopping`` is set (run it as a supervised task)."""
        await self.link.run(stopping)

    async def subscribe(self, subscription: Subscription) -> None:
        await self.link.subscribe(subscription)

    async def unsubscribe(self, subscription: Subscription) -> None:
        await self.link.unsubscribe(subscription)

    @property
    def is_connected(self) -> bool:
        return self.link.is_up

    async def wait_up(self, within: float | None = None) -> bool:
        return await self.link.wait_up(within)

    async def _publisher(self, urgent: bool) -> ChannelPublisher:
        try:
            channel = self.link.urgent_channel if urgent else self.link.publish_channel
        except LinkDownError as exc:
            raise BrokerUnavailableError(str(exc)) from exc
        key = (self.link.generation, urgent)
        found = self._publishers.get(key)
        if found is None or found.source is not channel:
            try:
                underlay = await channel.get_underlay_channel()
            except CONNECTION_EXCEPTIONS as exc:
                raise BrokerUnavailableError(f"{type(exc).__name__}: {exc}") from exc
            assert isinstance(underlay, aiormq.Channel)
            found = ChannelPublisher(underlay, self.app_id, source=channel)
            # Publishers of an older link are dropped: their channels are closed.
            self._publishers = {k: v for k, v in self._publishers.items() if k[0] == key[0]}
            self._publishers[key] = found
        return found

    def _confirmed(self) -> None:
        self._last_confirm = time.monotonic()

    async def publish(
        self,
        env: Envelope,
        *,
        confirm_timeout: float = PUBLISH_TIMEOUT_S,
        mandatory: bool = False,
        give_up_stalled: bool = False,
    ) -> None:
        """Publish one envelope and wait for the broker's confirm (``PublishError`` otherwise).

        ``mandatory``: a message no queue takes is a failure (the webhook, dead letters), not a
        message the broker may drop; events for other services' exchanges are not mandatory,
        since having no consumer bound is legitimate there. ``give_up_stalled``: stop waiting
        as soon as the broker has confirmed nothing for ``STALL_S`` (a stalled connection looks
        alive until its heartbeat expires), instead of waiting out ``confirm_timeout``; such a
        publish (someone waits on it to answer: the webhook) goes on the link's channel of its
        own, so it never queues behind the outbox's batches.

        Concurrent publishes share writes: each one joins whatever the channel sends next
        (``shared.publishing``), and each waits for its own confirm.
        """
        await self._publish([env], confirm_timeout, mandatory, urgent=give_up_stalled)

    async def publish_many(
        self,
        envs: list[Envelope],
        *,
        confirm_timeout: float = PUBLISH_TIMEOUT_S,
        mandatory: bool = False,
    ) -> None:
        """Publish in order on one channel (in one write when they fit) and wait until every
        one is confirmed; the first failure in order is raised once all are settled."""
        if envs:
            await self._publish(envs, confirm_timeout, mandatory, urgent=False)

    async def _publish(
        self, envs: list[Envelope], within: float, mandatory: bool, *, urgent: bool
    ) -> None:
        publisher = await self._publisher(urgent)
        failed = envs[0]
        try:
            confirming = settled(publisher.submit(envs, mandatory=mandatory), self._confirmed)
            # In flight until the broker answers, also when the caller stopped waiting: a webhook
            # given up on after STALL_S is still unconfirmed, so the stall keeps being measured.
            if self._in_flight == 0:
                self._waiting_since = time.monotonic()
            self._in_flight += 1
            confirming.add_done_callback(self._settled)
            await self._await_confirm(confirming, give_up_stalled=urgent, within=within)
            failure = confirming.result()
            if failure is not None:
                failed = envs[failure[0]]
                raise failure[1]
        except PublishError:
            raise
        except TimeoutError as exc:
            raise PublishTimeoutError(f"no confirm within {within} s") from exc
        except DeliveryError as exc:
            if isinstance(getattr(exc, "frame", None), Basic.Nack):
                # A refusal, not a return: after a quorum queue's leader moved mid-publish,
                # RabbitMQ can keep refusing everything on that channel (seen in the cluster
                # test: minutes of nacks while a new channel was accepted). Start afresh.
                self.link.suspect(exc)
            reason = _delivery_reason(exc)
            raise UnroutableError(f"{failed.exchange}/{failed.routing_key}: {reason}") from exc
        except CONNECTION_EXCEPTIONS as exc:
            self.link.suspect(exc)
            raise BrokerUnavailableError(f"{type(exc).__name__}: {exc}") from exc

    def _settled(self, _confirming: asyncio.Future[Any]) -> None:
        # Confirms were counted one by one (``_confirmed``); this only ends the wait.
        self._in_flight -= 1

    async def _await_confirm(
        self, confirming: asyncio.Future[Any], *, give_up_stalled: bool, within: float
    ) -> None:
        """Wait for ``confirming``; on giving up it is left to settle (nothing is cancelled: the
        frames went out, or will, in the publisher's own write)."""
        deadline = time.monotonic() + within
        while True:
            step = STALL_CHECK_S if give_up_stalled else max(0.0, deadline - time.monotonic())
            done, _ = await asyncio.wait({confirming}, timeout=step)
            if done:
                return
            if give_up_stalled and self.stalled_for() > STALL_S:
                raise PublishTimeoutError(f"the broker confirmed nothing for {STALL_S} s")
            if time.monotonic() > deadline:
                raise PublishTimeoutError(f"no confirm within {within} s")

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
            # A returned message is matched to its publish by id: never publish one without.
            message_id=incoming.message_id or content_id(incoming.routing_key, incoming.body),
            type=incoming.type or "",
            correlation_id=incoming.correlation_id,
            headers=headers,
        )
        await self.publish(env, mandatory=True)

    async def close(self) -> None:
        await self.link.close()
        self._publishers.clear()


def _delivery_reason(exc: DeliveryError) -> str:
    frame = getattr(exc, "frame", None)
    if isinstance(frame, Basic.Nack):
        return "refused by the broker (nack)"
    text = getattr(frame, "reply_text", None)
    return str(text) if text else "returned or refused by the broker"
