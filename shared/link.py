"""The one place that owns the connections to RabbitMQ: connect, declare, watch, rebuild.

Why not aio-pika's robust connection: measured on aio-pika 9.6 / aiormq 6.9 against RabbitMQ 3.10
(``docs/reliability.md``), a robust channel whose connection is closed by the broker
(``close_all_connections``, ``stop_app``) tries to reopen itself from its close callback while
the connection is still closed; that raises ``RuntimeError: connection closed`` inside the
callback, the channel stays closed for good, and the consumers registered on it are never
restored, although the connection itself comes back. Publishing through a cached exchange of
such a channel then fails forever. So the services use plain connections and rebuild
everything here, in one place, after any loss:

- two connections (publishing and consuming, so flow control on one never stalls the other),
  each with AMQP heartbeats so a stalled peer is noticed;
- on any unexpected close of a connection or channel, the link is marked down (publishers fail
  fast, readiness says why), every subscriber is told to drop the deliveries it buffered (their
  channel is gone, the broker redelivers them), both connections are closed, and the link
  reconnects with a growing pause, trying each host of ``AMQP_URL`` in turn;
- once reconnected it declares the topology again, opens new publishing channels (publisher
  confirms, returns raised: one for the outbox and events, one of its own for publishes a caller
  waits on to answer, the webhook's) and a new channel per subscription, and consumes again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractIncomingMessage,
)
from aio_pika.exceptions import CONNECTION_EXCEPTIONS

from shared.logging import get_logger

log = get_logger(__name__)

HEARTBEAT_S = 10  # aiormq declares a peer stuck after 3 x (heartbeat + 1) s of silence
CONNECT_TIMEOUT_S = 5.0
MAX_PAUSE_S = 5.0


class LinkDownError(ConnectionError):
    """The broker cannot be reached right now (the link is reconnecting)."""


@dataclass(frozen=True)
class Subscription:
    """A queue consumed on every (re)connection; ``on_reset`` drops what the old channel gave."""

    queue: str
    prefetch: int
    on_message: Callable[[AbstractIncomingMessage], Awaitable[None]]
    on_reset: Callable[[], None]


def split_hosts(url: str) -> list[str]:
    """Every broker URL in ``AMQP_URL``: comma-separated URLs, or one URL with several hosts.

    ``amqp://u:p@h1:5672,h2:5673/vh`` and ``amqp://u:p@h1:5672/vh,amqp://u:p@h2:5673/vh`` both
    name two nodes of one cluster; the connection goes to the first that answers.
    """
    if "://" in url.split(",", 1)[-1] or url.count("://") > 1:
        return [u.strip() for u in url.split(",") if u.strip()]
    parts = urlsplit(url)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    prefix = f"{userinfo}@" if userinfo else ""
    return [
        urlunsplit((parts.scheme, prefix + host.strip(), parts.path, parts.query, ""))
        for host in hosts.split(",")
        if host.strip()
    ]


def with_heartbeat(url: str, heartbeat: int = HEARTBEAT_S) -> str:
    """Add ``heartbeat`` to a URL that does not set one (the broker's default is 60 s)."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.setdefault("heartbeat", str(heartbeat))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))


def safe_url(url: str) -> str:
    """A URL without its password, for logs."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


class Link:
    """Keeps a publishing channel and every subscription alive across broker events."""

    def __init__(
        self,
        url: str,
        app_id: str,
        *,
        declare: Callable[[AbstractChannel], Awaitable[None]] | None = None,
    ) -> None:
        self.urls = [with_heartbeat(u) for u in split_hosts(url)]
        self.app_id = app_id
        self._declare = declare
        self._next_host = 0
        self._connections: list[AbstractConnection] = []
        self._channel: AbstractChannel | None = None
        self._urgent: AbstractChannel | None = None
        self._subscriptions: list[Subscription] = []
        # id(sub) -> its channel; a channel we close on purpose is not a lost link.
        self._consuming: dict[int, AbstractChannel] = {}
        self._retired: set[int] = set()
        self._up = asyncio.Event()
        self._lost = asyncio.Event()
        self._lock = asyncio.Lock()
        self._closing = False
        self.generation = 0
        self.last_error: str | None = None
        self.down_since: float | None = time.monotonic()
        self.reconnects = 0
        self.refused = 0  # attempts to reopen that failed (the broker away or refusing)

    # --- state --------------------------------------------------------------------------------

    @property
    def is_up(self) -> bool:
        return self._up.is_set() and not self._lost.is_set()

    @property
    def publish_channel(self) -> AbstractChannel:
        channel = self._channel
        if not self.is_up or channel is None or channel.is_closed:
            raise LinkDownError(f"broker unreachable: {self.last_error or 'reconnecting'}")
        return channel

    @property
    def urgent_channel(self) -> AbstractChannel:
        """A publishing channel of its own for publishes someone waits on (the webhook's 2xx):
        its frames and confirms do not queue behind the outbox's batches on the other one."""
        channel = self._urgent
        if not self.is_up or channel is None or channel.is_closed:
            raise LinkDownError(f"broker unreachable: {self.last_error or 'reconnecting'}")
        return channel

    async def wait_up(self, within: float | None = None) -> bool:
        """Wait until the link is up (at most ``within`` s); whether it is."""
        if not self._up.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._up.wait(), timeout=within)
        return self._up.is_set()

    def suspect(self, exc: BaseException) -> None:
        """A caller saw the link fail (a publish on a dead channel): rebuild it."""
        self._mark_lost(self.generation, exc)

    # --- opening ------------------------------------------------------------------------------

    async def open(self) -> None:
        """One attempt at connecting everything; raises when the broker does not answer."""
        async with self._lock:
            await self._teardown()
            url = self.urls[self._next_host % len(self.urls)]
            try:
                await self._open_at(url)
            except BaseException:
                self._next_host += 1
                await self._teardown()
                raise

    async def _open_at(self, url: str) -> None:
        # A close seen from here on (even halfway through opening) belongs to this generation.
        self.generation += 1
        generation = self.generation
        self._lost.clear()
        connections = []
        for role in ("publish", "consume"):
            conn = await aio_pika.connect(
                url,
                timeout=CONNECT_TIMEOUT_S,
                client_properties={"connection_name": f"{self.app_id}-{role}"},
            )
            self._watch(conn, generation)
            connections.append(conn)
            self._connections.append(conn)
        channel = await connections[0].channel(publisher_confirms=True, on_return_raises=True)
        self._watch(channel, generation)
        urgent = await connections[0].channel(publisher_confirms=True, on_return_raises=True)
        self._watch(urgent, generation)
        if self._declare is not None:
            await self._declare(channel)
        self._channel, self._urgent = channel, urgent
        for sub in self._subscriptions:
            await self._consume(connections[1], sub, generation)
        self._up.set()
        if generation > 1 and self.down_since is not None:
            log.info(
                "broker link restored",
                url=safe_url(url),
                down_s=round(time.monotonic() - self.down_since, 2),
            )
        self.down_since = None
        self.last_error = None

    async def _consume(self, conn: AbstractConnection, sub: Subscription, generation: int) -> None:
        channel = await conn.channel()
        self._watch(channel, generation)
        await channel.set_qos(prefetch_count=sub.prefetch)
        queue = await channel.get_queue(sub.queue, ensure=False)
        await queue.consume(sub.on_message)
        self._consuming[id(sub)] = channel

    def _watch(self, closable: AbstractConnection | AbstractChannel, generation: int) -> None:
        def closed(_: object, exc: BaseException | None = None) -> None:
            if id(closable) in self._retired:
                self._retired.discard(id(closable))
                return
            self._mark_lost(generation, exc)

        closable.close_callbacks.add(closed)

    def _mark_lost(self, generation: int, exc: BaseException | None) -> None:
        if self._closing or generation != self.generation or self._lost.is_set():
            return
        was_up = self._up.is_set()
        self._up.clear()
        self._lost.set()
        self.last_error = f"{type(exc).__name__}: {exc}" if exc is not None else "closed"
        self.down_since = time.monotonic()
        for sub in self._subscriptions:
            sub.on_reset()
        if was_up:
            log.warning("broker link lost, reconnecting", error=self.last_error)

    async def subscribe(self, sub: Subscription) -> None:
        """Consume ``sub.queue`` now (when up) and after every reconnection."""
        async with self._lock:
            self._subscriptions.append(sub)
            if self._up.is_set() and len(self._connections) == 2:
                try:
                    await self._consume(self._connections[1], sub, self.generation)
                except CONNECTION_EXCEPTIONS as exc:
                    self._mark_lost(self.generation, exc)

    async def unsubscribe(self, sub: Subscription) -> None:
        """Stop consuming ``sub.queue``: its channel is closed, so whatever it delivered and was
        not acknowledged goes back to the queue, ahead of what follows, in one step. (Cancelling
        the consumer first would let a single-active-consumer queue hand the next messages to
        another consumer while ours still held earlier ones.) Call it with no batch in hand."""
        async with self._lock:
            with contextlib.suppress(ValueError):
                self._subscriptions.remove(sub)
            channel = self._consuming.pop(id(sub), None)
            if channel is not None and self.is_up:
                self._retired.add(id(channel))
                with contextlib.suppress(*CONNECTION_EXCEPTIONS, TimeoutError):
                    await asyncio.wait_for(channel.close(), timeout=2)

    # --- keeping ------------------------------------------------------------------------------

    async def run(self, stopping: asyncio.Event) -> None:
        """Rebuild the link after every loss until ``stopping`` is set (a supervised task)."""
        pause = 0.2
        while not stopping.is_set():
            if self.is_up:
                await _first(self._lost.wait(), stopping.wait())
                continue
            if stopping.is_set():
                break
            try:
                await self.open()
            except (*CONNECTION_EXCEPTIONS, TimeoutError) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                self.refused += 1
                log.warning("broker unreachable, retrying", error=self.last_error, in_s=pause)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), timeout=pause)
                pause = min(pause * 2, MAX_PAUSE_S)
                continue
            self.reconnects += 1
            pause = 0.2

    async def _teardown(self) -> None:
        self._up.clear()
        self._channel = self._urgent = None
        self._consuming.clear()
        connections, self._connections = self._connections, []
        for conn in connections:
            with contextlib.suppress(*CONNECTION_EXCEPTIONS, TimeoutError):
                await asyncio.wait_for(conn.close(), timeout=2)

    async def close(self) -> None:
        self._closing = True
        async with self._lock:
            await self._teardown()


async def _first(*aws: Awaitable[object]) -> None:
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
