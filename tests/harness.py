"""Running the real system inside a test: simulator, services, and an observer of every event.

The services run in the test's event loop (as ``nuvem-ledger run all`` runs them), on the
test's own vhost and database, with HTTP on free ports. The observer binds one exclusive queue
to all four exchanges, so a test can wait for any event the system publishes and count them.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import aiohttp
import orjson
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage
from aio_pika.exceptions import CONNECTION_EXCEPTIONS
from pydantic import SecretStr

from services.ingest.adapters.nuvemshop import NuvemshopClient
from services.ingest.connections import Connected, connect
from services.ingest.tokens import cipher_from_settings
from services.simulator.runner import Running as Simulator
from services.simulator.runner import start_simulator
from services.simulator.webhooks import send_webhook
from shared.contracts import EXCHANGES, Message
from shared.link import Link, Subscription
from shared.messaging import Broker, envelope
from shared.runtime import Running, start_service
from shared.settings import Settings

OBSERVER_QUEUE = "test.observer"


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
    seen: list[Seen] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _keeper: asyncio.Task[None] | None = None
    _ids: set[str] = field(default_factory=set)

    @classmethod
    async def start(cls, amqp_url: str) -> Observer:
        async def declare(channel: AbstractChannel) -> None:
            queue = await channel.declare_queue(OBSERVER_QUEUE, durable=True)
            for name in EXCHANGES:
                exchange = await channel.declare_exchange(
                    name, aio_pika.ExchangeType.TOPIC, durable=True
                )
                await queue.bind(exchange, "#")

        observer = cls(Link(amqp_url, "test-observer", declare=declare))
        await observer.link.subscribe(
            Subscription(OBSERVER_QUEUE, 1000, observer._on_message, lambda: None)
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
        self.seen.append(
            Seen(
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
        )
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
        deadline = time.monotonic() + within
        while True:
            found = self.of(routing_key, **match)
            if len(found) >= count:
                return found
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                keys = sorted({s.routing_key for s in self.seen})
                raise AssertionError(
                    f"waited {within}s for {count} {routing_key} {match}: saw {len(found)} "
                    f"(all keys seen: {keys})"
                )
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=min(remaining, 0.5))

    async def quiet(self, seconds: float = 1.0) -> None:
        """Wait until nothing new arrived for ``seconds`` (what 'nothing more happens' looks like)."""
        last = len(self.seen)
        while True:
            await asyncio.sleep(seconds)
            if len(self.seen) == last:
                return
            last = len(self.seen)

    async def close(self) -> None:
        self._stop.set()
        if self._keeper is not None:
            await self._keeper
        await self.link.close()


def _json_or_raw(body: bytes) -> dict[str, Any]:
    """A message's JSON object; what tests publish on purpose as junk stays readable as raw."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {"_raw": body.decode(errors="replace")}
    return parsed if isinstance(parsed, dict) else {"_raw": parsed}


@dataclass
class System:
    settings: Settings
    simulator: Simulator
    services: dict[str, Running]
    observer: Observer
    erp: Broker
    http: aiohttp.ClientSession
    erp_stop: asyncio.Event = field(default_factory=asyncio.Event)
    erp_keeper: asyncio.Task[None] | None = None

    @property
    def ingest_url(self) -> str:
        return f"http://127.0.0.1:{self.services['ingest'].port}"

    def url_of(self, service: str) -> str:
        return f"http://127.0.0.1:{self.services[service].port}"

    async def connect_store(
        self,
        store_id: int,
        *,
        user: str = "erp-user-1",
        activated_at: dt.datetime | None = None,
        shape: str | None = None,
    ) -> Connected:
        """Create the store in the simulator (its API serving orders of ``shape``, the
        simulator's default 2025-03 unless given) and connect it as ``integration connect``
        would."""
        state = self.simulator.state
        token = state.add_store(store_id, shape=shape) if shape else state.add_store(store_id)
        client = NuvemshopClient(
            self.http,
            api_url=self.simulator.api_url,
            user_agent="nuvem-ledger tests",
        )
        pool = self.services["ingest"].ctx.pool
        return await connect(
            pool,
            cipher_from_settings(self.settings),
            client,
            store_id=store_id,
            access_token=token,
            activated_by=user,
            public_url=self.ingest_url,
            activated_at=activated_at or dt.datetime(2020, 1, 1, tzinfo=dt.UTC),
        )

    async def webhook(self, store_id: int, event: str, order_id: int) -> int:
        return await send_webhook(
            self.http,
            f"{self.ingest_url}/webhooks/nuvemshop",
            self.simulator.state.client_secret,
            store_id,
            event,
            order_id,
        )

    async def erp_publish(self, message: Message, message_id: str) -> None:
        await self.erp.publish(envelope(message, message_id=message_id, correlation_id=None))

    async def stop(self) -> None:
        await asyncio.gather(*(s.stop(grace_s=5) for s in self.services.values()))
        await self.observer.close()
        self.erp_stop.set()
        if self.erp_keeper is not None:
            await self.erp_keeper
        await self.erp.close()
        await self.http.close()
        await self.simulator.close()


async def start_system(
    settings: Settings,
    *,
    services: tuple[str, ...] = ("ingest", "mapper", "ledger"),
    simulator_opts: dict[str, Any] | None = None,
    configure: Callable[[Settings], Settings] | None = None,
) -> System:
    from services import system

    opts = {"rate_limit": True} | (simulator_opts or {})
    simulator = await start_simulator(**opts)
    settings = settings.model_copy(
        update={
            "nuvemshop_api_url": simulator.api_url,
            "nuvemshop_auth_url": simulator.auth_url,
            "nuvemshop_client_secret": SecretStr(simulator.state.client_secret),
            "nuvemshop_app_id": simulator.state.app_id,
        }
    )
    if configure is not None:
        settings = configure(settings)
    factories = system.factories()
    running = {
        name: await start_service(
            name, factories[name], settings, port=0, host="127.0.0.1", connect_deadline=20
        )
        for name in services
    }
    observer = await Observer.start(settings.amqp_url)
    erp = Broker(settings.amqp_url, app_id="test-erp")
    await erp.connect(deadline=10)
    built = System(settings, simulator, running, observer, erp, aiohttp.ClientSession())
    built.erp_keeper = asyncio.create_task(erp.run(built.erp_stop))
    return built
