"""Issue 9 inside living processes: the services heal after broker events without a restart.

Each test runs the three services in the test's event loop (as ``nuvem-ledger run all`` does)
with orders flowing by webhook and poll and an ERP confirming, causes a broker event on the
test's own vhost in the middle of the flow, and then checks that every order has exactly one
sale, every sale exactly one posting, and every service is ready again, with the same objects
(no process, service or task restarted by the test).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator
from urllib.parse import quote

import aiohttp
import pytest

from shared.settings import Settings
from tests.harness import OBSERVER_QUEUE, System, start_system
from tests.integration.ingest_helpers import first_poll_done
from tests.integration.ledger_helpers import wait_until
from tests.integration.recovery_helpers import (
    Erp,
    all_ready,
    close_connections,
    links,
    readiness,
    vhost_of,
    vhost_outage,
    wait_reconciled,
)

STORE = 910_001
ORDERS = 60


@pytest.fixture
async def flowing(settings: Settings) -> AsyncIterator[System]:
    """The system with fast webhook retries (the simulator's schedule compressed) and polling."""
    system = await start_system(
        settings.model_copy(update={"poll_interval_seconds": 3.0}),
        simulator_opts={"time_scale": 0.002},
    )
    try:
        yield system
    finally:
        await system.stop()


async def _pay(system: System, store_id: int, count: int, per_s: float) -> set[int]:
    """Create and pay ``count`` orders at ``per_s``; the simulator sends their webhooks."""
    sim = system.simulator.state
    ids: set[int] = set()
    for _ in range(count):
        order = sim.add_order(store_id, paid=False, notify=False)
        sim.mark_paid(store_id, int(order["id"]))
        ids.add(int(order["id"]))
        await asyncio.sleep(1 / per_s)
    return ids


@contextlib.asynccontextmanager
async def _erp(system: System) -> AsyncIterator[Erp]:
    erp = Erp(system)
    stop = asyncio.Event()
    task = asyncio.create_task(erp.run(stop))
    try:
        yield erp
    finally:
        stop.set()
        await task


def _tasks(system: System) -> dict[str, dict[str, asyncio.Task[None]]]:
    return {name: dict(r.supervisor.tasks) for name, r in system.services.items()}


def _distinct_sales_per_order(system: System) -> Counter[int]:
    sales = {
        (s.body["order_id"], s.body["sale_id"]) for s in system.observer.of("sale.pending_review")
    }
    return Counter(order_id for order_id, _ in sales)


async def test_services_resume_after_the_broker_closes_every_connection(flowing: System) -> None:
    system = flowing
    await system.connect_store(STORE)
    await first_poll_done(system, STORE)
    tasks_before = _tasks(system)
    async with _erp(system) as erp:
        paying = asyncio.create_task(_pay(system, STORE, ORDERS, per_s=30))
        # In the middle of the flow: some orders are sales already, most are still coming.
        await system.observer.wait_for("sale.pending_review", count=5, store_id=STORE)
        await close_connections(system.settings.amqp_url)
        order_ids = await paying
        result = await wait_reconciled(system, STORE, order_ids, within=60)
    links = {
        n: (r.ctx.broker.link.is_up, r.ctx.broker.link.last_error)
        for n, r in system.services.items()
    }
    extra = (
        system.erp.link.is_up,
        system.erp.link.last_error,
        system.erp_keeper,
        len(erp.confirmed),
        links,
    )
    assert result.lost == 0, (result, extra)
    assert result.confirmed == ORDERS, (result, extra)
    assert (result.doubled_sales, result.doubled_postings) == (0, 0)
    assert max(_distinct_sales_per_order(system).values()) == 1
    ready = await all_ready(system)
    assert {name: status for name, (status, _) in ready.items()} == dict.fromkeys(ready, 200)
    assert _tasks(system) == tasks_before  # nothing restarted: the same tasks healed
    for running in system.services.values():
        assert running.ctx.broker.link.reconnects >= 1


async def test_a_broker_outage_answers_webhooks_503_fast_and_heals(flowing: System) -> None:
    system = flowing
    await system.connect_store(STORE + 1)
    await first_poll_done(system, STORE + 1)
    async with _erp(system):
        first = await _pay(system, STORE + 1, 10, per_s=50)
        async with vhost_outage(system.settings.amqp_url):

            async def all_down() -> bool:
                return not any(link.is_up for link in links(system))

            await wait_until(all_down, within=20, what="every link down")
            started = time.monotonic()
            status = await system.webhook(STORE + 1, "order/paid", min(first))
            answered_in = time.monotonic() - started
            assert status == 503
            assert answered_in < 1.0, answered_in
            ready = await readiness(system)
            for name, (code, body) in ready.items():
                assert code == 503, name
                assert not body["ready"]
                assert any("broker unreachable" in why for why in body["why"]), body
            during = await _pay(system, STORE + 1, 10, per_s=50)  # webhooks fail: 503
            # The outage outlasts a reconnect attempt of every service (each is refused).
            refused = [link.refused for link in links(system)]

            async def each_refused() -> bool:
                pairs = zip(links(system), refused, strict=True)
                return all(link.refused > n for link, n in pairs)

            await wait_until(each_refused, within=20, what="a refused reconnect by every service")
        returned = time.monotonic()
        after = await _pay(system, STORE + 1, 10, per_s=50)
        order_ids = first | during | after
        result = await wait_reconciled(system, STORE + 1, order_ids, within=60)
    assert result.lost == 0, result
    assert result.confirmed == len(order_ids), result
    ready = await all_ready(system)
    assert all(status == 200 for status, _ in ready.values()), ready
    assert time.monotonic() - returned < 60


async def test_an_unroutable_webhook_is_answered_503(flowing: System) -> None:
    system = flowing
    await system.connect_store(STORE + 2)
    await first_poll_done(system, STORE + 2)
    order = system.simulator.state.add_order(STORE + 2, notify=False)
    # The bindings that route webhooks to a queue are gone (an operator's mistake): the
    # service's own, and the test observer's.
    bindings = [("ingest.webhooks", "webhook.received"), (OBSERVER_QUEUE, "#")]
    base = f"{_management(system)}/api/bindings/{_vhost(system)}/e/ingest.events/q"
    async with aiohttp.ClientSession(headers=_AUTH) as http:
        for queue, key in bindings:
            async with http.delete(f"{base}/{queue}/{quote(key, safe='')}") as reply:
                assert reply.status == 204
        assert await system.webhook(STORE + 2, "order/paid", int(order["id"])) == 503
        for queue, key in bindings:
            async with http.post(f"{base}/{queue}", json={"routing_key": key}) as reply:
                assert reply.status == 201
    assert await system.webhook(STORE + 2, "order/paid", int(order["id"])) == 200


_AUTH = {"Authorization": "Basic " + base64.b64encode(b"guest:guest").decode()}


def _management(system: System) -> str:
    return "http://127.0.0.1:15672"


def _vhost(system: System) -> str:
    return quote(vhost_of(system.settings.amqp_url), safe="")
