"""Issue 9, items 2 and 4-6: nothing stalls silently, nothing grows without bound.

- one store whose API misbehaves (403, 500, not JSON, no headers) is recorded and backs off;
  every other store goes on being polled;
- a message that keeps failing on a transient error goes to ``<queue>.dead`` with
  ``retries_exhausted`` after ``MAX_RETRIES`` attempts, and the queue behind it flows;
- the inbox and the outbox stay bounded under a steady flow;
- ``/healthz`` fails while the event loop is blocked; ``/readyz`` names a task that is down.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import asyncpg
import pytest

from services.ingest.ops import integrations
from shared.settings import Settings
from tests.harness import System, start_system
from tests.integration.helpers import take
from tests.integration.ingest_helpers import eventually, first_poll_done, make_due, store_row

GOOD, BAD = 920_001, 920_002


@pytest.fixture
async def polling(settings: Settings) -> AsyncIterator[System]:
    system = await start_system(
        settings.model_copy(
            update={
                "poll_interval_seconds": 1.0,
                "max_retries": 3,
                "nuvemshop_max_retries": 0,
                "inbox_retention_days": 2.0 / 86400,  # two seconds
            }
        ),
        simulator_opts={"rate_limit": False},
    )
    try:
        yield system
    finally:
        await system.stop()


def _task_restarts(system: System) -> dict[str, int]:
    return {
        f"{svc}/{name}": state.restarts
        for svc, running in system.services.items()
        for name, state in running.supervisor.states.items()
    }


@pytest.mark.parametrize("fault", ["403", "500", "invalid_json", "no_headers"])
async def test_a_misbehaving_store_is_recorded_and_the_others_are_polled(
    polling: System, fault: str
) -> None:
    system = polling
    for store_id in (GOOD, BAD):
        await system.connect_store(store_id)
        await first_poll_done(system, store_id)
    sim = system.simulator.state
    sim.add_order(BAD, notify=False)  # a listing with something in it
    sim.set_fault(BAD, fault)
    await make_due(system, BAD)

    async def recorded() -> bool:
        row = await store_row(system, BAD)
        return row is not None and row["error_count"] >= 1

    await eventually(recorded, f"the {fault} of store {BAD} recorded", within=15)
    bad = await store_row(system, BAD)
    assert bad is not None
    assert bad["last_error"]
    assert bad["last_error_at"] is not None
    assert bad["enabled"]  # a misbehaving API is not revoked credentials
    shown = (await integrations(system.services["ingest"].ctx.pool, BAD))[0]
    assert shown["last_error"] == bad["last_error"]
    assert shown["last_error_at"] is not None

    # Meanwhile the good store goes on: orders paid without webhooks arrive by poll.
    ids = {int(sim.add_order(GOOD, notify=False)["id"]) for _ in range(3)}
    for order_id in ids:
        sim.mark_paid(GOOD, order_id, notify=False)
    await system.observer.wait_for("order.paid", count=3, within=15, store_id=GOOD)

    # The bad store backs off: its next poll is pushed past the 1 s interval.
    after = await store_row(system, BAD)
    assert after is not None
    assert after["next_poll_at"] > after["last_error_at"]
    assert all(v == 0 for v in _task_restarts(system).values()), _task_restarts(system)

    sim.set_fault(BAD, None)
    await make_due(system, BAD)
    await eventually(
        lambda: _error_count_is(system, BAD, 0), "the mended store polled again", within=15
    )


async def _error_count_is(system: System, store_id: int, count: int) -> bool:
    row = await store_row(system, store_id)
    return row is not None and row["error_count"] == count


async def test_a_message_failing_transiently_goes_dead_after_its_retries(polling: System) -> None:
    system = polling
    for store_id in (GOOD, BAD):
        await system.connect_store(store_id)
        await first_poll_done(system, store_id)
    sim = system.simulator.state
    stuck = int(sim.add_order(BAD, paid=True, notify=False)["id"])
    sim.set_fault(BAD, "500")
    await system.webhook(BAD, "order/paid", stuck)
    fine = int(sim.add_order(GOOD, paid=True, notify=False)["id"])
    await system.webhook(GOOD, "order/paid", fine)
    # The good store's order is not held up behind the failing one.
    await system.observer.wait_for("sale.pending_review", within=15, order_id=fine)
    dead = await take(system.settings.amqp_url, "ingest.webhooks.dead", 1, within=30)
    assert [d.header("x-error-reason") for d in dead] == ["retries_exhausted"]
    detail = dead[0].header("x-error-detail") or ""
    assert "3 attempts" in detail
    assert "unavailable" in detail.lower()


async def test_inbox_and_outbox_stay_bounded_under_a_steady_flow(polling: System) -> None:
    system = polling
    await system.connect_store(GOOD)
    await first_poll_done(system, GOOD)
    sim = system.simulator.state
    conn = await asyncpg.connect(system.settings.database_url)
    try:
        sizes: list[tuple[int, int]] = []
        for _ in range(12):
            for _ in range(10):
                order = sim.add_order(GOOD, paid=False, notify=False)
                sim.mark_paid(GOOD, int(order["id"]))
            await asyncio.sleep(1.0)
            inbox = await conn.fetchval(
                "SELECT (SELECT count(*) FROM mapper.inbox) + (SELECT count(*) FROM ledger.inbox)"
            )
            outbox = await conn.fetchval(
                "SELECT (SELECT count(*) FROM ingest.outbox) + (SELECT count(*) FROM mapper.outbox)"
                " + (SELECT count(*) FROM ledger.outbox)"
            )
            sizes.append((int(inbox), int(outbox)))
        await system.observer.wait_for("sale.pending_review", count=120, within=30)
    finally:
        await conn.close()
    # 120 orders went through the mapper and the ledger (240 inbox rows without pruning); with a
    # two-second retention and the pruner's two-second round, at most a few seconds' worth stay.
    assert max(inbox for inbox, _ in sizes[4:]) <= 100, sizes
    assert max(outbox for _, outbox in sizes) <= 60, sizes


async def test_healthz_fails_while_the_loop_is_blocked_and_readyz_names_a_dead_task(
    system: System,
) -> None:
    async with aiohttp.ClientSession() as http:
        url = system.url_of("mapper")
        async with http.get(f"{url}/healthz") as reply:
            assert reply.status == 200
        asyncio.get_running_loop().call_soon(time.sleep, 6)  # the whole process stops for 6 s
        await asyncio.sleep(0.5)
        async with http.get(f"{url}/healthz") as reply:
            body = await reply.json()
            assert reply.status == 503, body
            assert any("event loop blocked" in why for why in body["why"])

        # A supervised task that is restarting makes the service not ready, and says which.
        supervisor = system.services["mapper"].supervisor
        supervisor.states["outbox-relay"].status = "restarting"
        supervisor.states["outbox-relay"].last_error = "RuntimeError: for the test"
        await asyncio.sleep(0.6)  # past the probe's cache
        async with http.get(f"{url}/readyz") as reply:
            body = await reply.json()
            assert reply.status == 503
            assert body["ready"] is False
            assert body["why"] == ["task outbox-relay restarting: RuntimeError: for the test"]
        supervisor.states["outbox-relay"].status = "running"
