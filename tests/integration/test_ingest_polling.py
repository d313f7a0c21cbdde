"""Ingest's poller against the simulator, the real broker and the real database.

A lost webhook is made up by the poll; a webhook and a poll that see the same orders import them
once; the cursor moves forward only after a poll; two pollers never poll one store at once; and a
poll killed in the middle resumes without losing or repeating an order.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shared.settings import Settings
from tests.harness import System
from tests.integration.ingest_helpers import (
    GatedClient,
    HangingClient,
    announced_rows,
    eventually,
    first_poll_done,
    make_due,
    per_order,
    poller,
    run_cli,
    start_polling_system,
    store_record,
    store_row,
)

STORE = 720_001


@pytest.fixture
async def polling_system(settings: Settings) -> AsyncIterator[System]:
    """The system with a poll every second per store."""
    running = await start_polling_system(settings, interval_s=1.0)
    yield running
    await running.stop()


async def test_lost_webhook_is_made_up_by_the_poll(polling_system: System) -> None:
    system = polling_system
    await system.connect_store(STORE)
    await first_poll_done(system, STORE)
    sim = system.simulator.state
    order_id = int(sim.add_order(STORE, paid=False)["id"])
    system.simulator.dispatcher.faults.drop_next = 1
    sim.mark_paid(STORE, order_id)  # its order/paid webhook is lost

    dropped = [d for d in system.simulator.dispatcher.log if d.entity_id == order_id]
    assert [(d.event, d.outcome) for d in dropped] == [("order/paid", "dropped")]
    await system.observer.wait_for("order.paid", order_id=order_id, within=10)
    await system.observer.wait_for("sale.pending_review", order_id=order_id)
    assert system.observer.of("webhook.received", id=order_id) == []
    polls = system.polls_done()
    await system.wait_polls(2, after=polls)  # two more polls see the order again
    assert per_order(system, "order.paid", STORE) == Counter({order_id: 1})


async def test_webhooks_and_polls_seeing_the_same_orders_import_them_once(
    polling_system: System,
) -> None:
    system = polling_system
    await system.connect_store(STORE)
    await first_poll_done(system, STORE)
    sim = system.simulator.state
    system.simulator.dispatcher.faults.duplicates = 1
    ids = [int(sim.add_order(STORE, paid=True)["id"]) for _ in range(10)]
    await make_due(system, STORE)

    await system.observer.wait_for("order.paid", count=10, store_id=STORE)
    await system.simulator.dispatcher.wait_idle(10)
    polls = system.polls_done()
    await system.wait_polls(2, after=polls)  # more polls over the same orders
    assert per_order(system, "order.paid", STORE) == Counter(dict.fromkeys(ids, 1))
    assert set(await announced_rows(system, STORE)) == set(ids)


async def test_poll_cursor_moves_forward_after_a_poll(system: System, tmp_path: Path) -> None:
    await system.connect_store(STORE)
    first_cursor = await first_poll_done(system, STORE)
    shown = (await run_cli(system, tmp_path, "integration", "show", str(STORE), "--json")).json()
    assert shown["last_synced_at"] is not None
    first_sync = dt.datetime.fromisoformat(shown["last_synced_at"])

    # Paid without a webhook: only the next poll (due now) can find it.
    order_id = int(system.simulator.state.add_order(STORE, paid=True, notify=False)["id"])
    await make_due(system, STORE)
    await system.observer.wait_for("order.paid", order_id=order_id, within=10)

    async def cursor_moved() -> bool:
        row = await store_row(system, STORE)
        return row is not None and row["poll_cursor"] > first_cursor

    await eventually(cursor_moved, "the cursor to move after the poll")
    row = await store_row(system, STORE)
    assert row is not None
    assert row["poll_cursor"] <= dt.datetime.now(dt.UTC)
    # The next poll is one interval (300 s in this system) away.
    assert row["next_poll_at"] > dt.datetime.now(dt.UTC) + dt.timedelta(seconds=250)
    shown = (await run_cli(system, tmp_path, "integration", "show", str(STORE), "--json")).json()
    assert dt.datetime.fromisoformat(shown["last_synced_at"]) > first_sync
    assert dt.datetime.fromisoformat(shown["poll_cursor"]) == row["poll_cursor"]


async def test_two_pollers_on_one_store_only_one_polls(system: System) -> None:
    await system.connect_store(STORE)
    cursor = await first_poll_done(system, STORE)
    ids = system.simulator.state.add_orders(STORE, 5, paid=True, interval=dt.timedelta(seconds=1))
    record = await store_record(system, STORE)
    gated = GatedClient(system.http, api_url=system.simulator.api_url)
    first = asyncio.create_task(poller(system, gated).poll_store(record))
    await asyncio.wait_for(gated.entered.wait(), timeout=5)

    second = await poller(system).poll_store(record)
    assert second.outcome == "locked"
    assert second.pages == 0
    gated.gate.set()
    result = await asyncio.wait_for(first, timeout=10)
    assert result.outcome == "ok"
    assert result.paid == 5

    await system.observer.wait_for("order.paid", count=5, store_id=STORE)
    await system.settled(STORE)
    assert per_order(system, "order.paid", STORE) == Counter(dict.fromkeys(ids, 1))
    row = await store_row(system, STORE)
    assert row is not None
    assert row["poll_cursor"] > cursor
    # Once the first is done, the lock is free again.
    assert (await poller(system).poll_store(record)).outcome == "ok"


async def test_poll_killed_in_the_middle_resumes_without_loss_or_duplicate(
    system: System,
) -> None:
    await system.connect_store(STORE)
    cursor = await first_poll_done(system, STORE)
    sim = system.simulator.state
    ids = sim.add_orders(STORE, 50, paid=True, interval=dt.timedelta(seconds=1))
    record = await store_record(system, STORE)

    # A poll that reads pages of 10 and is killed after committing two of them.
    hanging = HangingClient(system.http, api_url=system.simulator.api_url, per_page=10, pages=2)
    doomed = asyncio.create_task(poller(system, hanging).poll_store(record))
    await asyncio.wait_for(hanging.committed.wait(), timeout=10)
    doomed.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await doomed

    first_twenty = await system.observer.wait_for("order.paid", count=20, store_id=STORE)
    await system.settled(STORE)
    assert {s.body["order_id"] for s in first_twenty} == set(ids[:20])
    assert len(system.observer.of("order.paid", store_id=STORE)) == 20
    row = await store_row(system, STORE)
    assert row is not None
    assert row["poll_cursor"] == cursor, "a poll that did not finish must not move the cursor"

    # The running ingest polls the store again (its lock was released) and finishes the job.
    await make_due(system, STORE)
    await system.observer.wait_for("order.paid", count=50, store_id=STORE, within=15)
    await system.settled(STORE)
    assert per_order(system, "order.paid", STORE) == Counter(dict.fromkeys(ids, 1))
    rows = await announced_rows(system, STORE)
    assert set(rows) == set(ids)
    assert all(r["paid_announced_at"] is not None for r in rows.values())
    await system.observer.wait_for("sale.pending_review", count=50, store_id=STORE)
    row = await store_row(system, STORE)
    assert row is not None
    assert row["poll_cursor"] > cursor


async def test_a_store_whose_token_cannot_be_read_does_not_stop_the_others(
    polling_system: System,
) -> None:
    system = polling_system
    pool = system.services["ingest"].ctx.pool
    # A store connected under another TOKEN_ENCRYPTION_KEY (a key rotated by mistake, say).
    await pool.execute(
        "INSERT INTO ingest.stores (store_id, access_token, activated_at, activated_by)"
        " VALUES ($1, $2, now(), 'someone')",
        STORE + 1,
        b"not a fernet token",
    )
    await system.connect_store(STORE)
    await first_poll_done(system, STORE)
    order_id = int(system.simulator.state.add_order(STORE, paid=True, notify=False)["id"])
    # Only the poll can find it (no webhook was sent), and it must, polls after polls.
    await system.observer.wait_for("order.paid", order_id=order_id, within=10)
    poller_tasks = [t for t in system.services["ingest"].tasks if t.done()]
    assert poller_tasks == [], "a service loop ended"
