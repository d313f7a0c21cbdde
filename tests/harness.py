"""Running the real system inside a test: simulator, services, and an observer of every event.

The services run in the test's event loop (as ``nuvem-ledger run all`` runs them), on the
test's own vhost and database, with HTTP on free ports. The observer binds one exclusive queue
to all four exchanges, so a test can wait for any event the system publishes and count them.

A test that asserts something did *not* happen first proves the system had its chance, with a
barrier instead of a pause (``System.ledger_settled``, ``mapper_settled``, ``ingest_settled``):
a sentinel message queued behind the messages under test is answered (each queue is FIFO and
each service publishes in commit order), the service's outbox publisher is flushed, and an echo
published after that reaches the observer, whose queue is FIFO too. So every event the messages
under test caused is in ``observer.seen`` when the barrier returns. Sentinels use their own sale
ids and store, and the observer keeps their answers (and the echoes) out of ``seen``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from pydantic import SecretStr

from services.ingest.adapters.nuvemshop import NuvemshopClient
from services.ingest.adapters.postgres import poll_lock_key
from services.ingest.connections import Connected, connect
from services.ingest.tokens import cipher_from_settings
from services.simulator.runner import Running as Simulator
from services.simulator.runner import start_simulator
from services.simulator.webhooks import send_webhook
from shared.contracts import Message, OrderInvalid, SaleConfirm
from shared.messaging import Broker, envelope
from shared.runtime import Running, start_service
from shared.settings import Settings
from tests.observer import BARRIER_SALE, BARRIER_STORE, OBSERVER_QUEUE, Observer, Seen

__all__ = [
    "BARRIER_SALE",
    "BARRIER_STORE",
    "OBSERVER_QUEUE",
    "Observer",
    "Seen",
    "System",
    "ledger_sentinel",
    "mapper_sentinel",
    "start_system",
]


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
    # Further instances of a service a test started (ledger replicas): barriers flush them too.
    replicas: dict[str, list[Running]] = field(default_factory=dict)

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

    # --- barriers: everything queued so far was handled and what it caused is observed -------

    async def settled(self, store_id: int | None = None, within: float = 20.0) -> None:
        """Everything delivered so far went all the way through: the store's polls (when
        named), the webhooks, then the mapper and the ledger (those running), each behind the
        one before."""
        if store_id is not None:
            await self.no_poll_pending(store_id, within)
        if "ingest" in self.services:
            await self.ingest_settled(within)
        if "mapper" in self.services:
            await self.mapper_settled(within)
        if "ledger" in self.services:
            await self.ledger_settled(within)

    async def no_poll_pending(self, store_id: int, within: float = 20.0) -> None:
        """No poll of the store is running (its poll lock is free) and none is due: every poll
        that was going to happen has happened and published what it read."""
        deadline = time.monotonic() + within
        async with self.services["ingest"].ctx.pool.acquire() as conn:
            while True:
                due = await conn.fetchval(
                    "SELECT enabled AND next_poll_at <= now()"
                    " AND (paused_until IS NULL OR paused_until <= now())"
                    " FROM ingest.stores WHERE store_id = $1",
                    store_id,
                )
                key = poll_lock_key(store_id)
                if not due and await conn.fetchval("SELECT pg_try_advisory_lock($1)", key):
                    await conn.execute("SELECT pg_advisory_unlock($1)", key)
                    return
                if time.monotonic() > deadline:
                    raise AssertionError(f"waited {within}s for the polls of store {store_id}")
                await asyncio.sleep(0.02)

    async def ledger_settled(self, within: float = 20.0) -> None:
        """Every message queued on the ledger's queues before now was handled and its events
        seen, whichever ledger instances consume them (``ledger_sentinel``)."""
        await ledger_sentinel(self.observer, self.erp, within)
        await self.drained("ledger")

    async def mapper_settled(self, within: float = 20.0) -> None:
        """Every message queued on ``mapper.orders`` before now was handled and its events seen
        (with one mapper consuming; ``mapper_sentinel``)."""
        await mapper_sentinel(self.observer, self.erp, within)
        await self.drained("mapper")

    async def ingest_settled(self, within: float = 20.0) -> None:
        """Every webhook delivered so far was handled and its events seen.

        The simulator's deliveries are awaited, then ingest's consumer of ``ingest.webhooks``
        must have finished batches holding as many messages as ingest answered webhooks with
        200 (each was queued, confirmed, before that answer). A poll in progress is not
        covered: wait for ``polls_done`` for that.
        """
        await self.simulator.dispatcher.wait_idle(within)
        metrics = self.services["ingest"].ctx.metrics.registry
        queued = metrics.get_sample_value(
            "nuvem_ledger_http_requests_total",
            {"route": "/webhooks/nuvemshop", "status": "200"},
        )
        deadline = time.monotonic() + within
        while True:
            handled = metrics.get_sample_value(
                "nuvem_ledger_batch_size_sum", {"queue": "ingest.webhooks"}
            )
            if (handled or 0) >= (queued or 0):
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"waited {within}s: {handled} of {queued} webhooks handled")
            await asyncio.sleep(0.02)
        await self.drained("ingest")

    def polls_done(self, outcome: str = "ok") -> int:
        """How many store polls ingest finished with ``outcome`` (what they read published)."""
        value = self.services["ingest"].ctx.metrics.registry.get_sample_value(
            "nuvem_ledger_polls_total", {"outcome": outcome}
        )
        return int(value or 0)

    async def wait_polls(self, count: int, *, after: int, within: float = 20.0) -> None:
        """Wait until ``count`` more polls than ``after`` finished, and their events are seen."""
        deadline = time.monotonic() + within
        while self.polls_done() < after + count:
            if time.monotonic() > deadline:
                raise AssertionError(f"waited {within}s for {count} polls after {after}")
            await asyncio.sleep(0.02)
        await self.observer.echo(self.erp)

    async def drained(self, service: str) -> None:
        """What ``service`` committed so far is published, and the observer has seen it: every
        instance of it (a stopped one published what it had before it stopped)."""
        instances = {id(r): r for r in [self.services[service], *self.replicas.get(service, [])]}
        for running in instances.values():
            await running.ctx.publisher.flush()
        await self.observer.echo(self.erp)

    async def stop(self) -> None:
        await asyncio.gather(*(s.stop(grace_s=5) for s in self.services.values()))
        await self.observer.close()
        self.erp_stop.set()
        if self.erp_keeper is not None:
            await self.erp_keeper
        await self.erp.close()
        await self.http.close()
        await self.simulator.close()


# --- sentinels: what the barriers queue, usable against services in another process too ------


async def ledger_sentinel(observer: Observer, erp: Broker, within: float = 20.0) -> None:
    """Queue a sentinel behind everything on the ledger's queues, and wait for its answer.

    It is an ERP confirmation of a sale nobody announced: ``ledger.erp`` sends it on to every
    shard (behind whatever each holds), and the shard that looks last answers
    ``sale.confirmation_refused`` (``unknown_sale``). So when the answer is seen, every ledger
    instance has committed what was queued before it (what it published may still be in its
    outbox publisher: ``System.drained`` flushes those).
    """
    sentinel = f"{BARRIER_SALE}{uuid.uuid4()}"
    confirm = SaleConfirm(sale_id=sentinel, confirmed_by="test-barrier")
    await erp.publish(envelope(confirm, message_id=f"sale.confirm:{sentinel}", correlation_id=None))
    await observer.wait_barrier("sale.confirmation_refused", within, sale_id=sentinel)


async def mapper_sentinel(observer: Observer, erp: Broker, within: float = 20.0) -> None:
    """Queue a sentinel behind everything on ``mapper.orders``, and wait for its answer: an
    ``order.invalid`` of the sentinel store, answered with ``sale.rejected`` (it leaves that
    store a rejection row)."""
    order_id = uuid.uuid4().int % 2_000_000_000
    invalid = OrderInvalid(store_id=BARRIER_STORE, order_id=order_id, detail="test barrier")
    message_id = f"order.invalid:{BARRIER_STORE}:{order_id}"
    await erp.publish(envelope(invalid, message_id=message_id, correlation_id=None))
    await observer.wait_barrier("sale.rejected", within, store_id=BARRIER_STORE, order_id=order_id)


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
