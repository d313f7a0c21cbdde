"""``orders trace``: one order driven into each state, and the timeline each state shows.

The system starts without its mapper, so an announced order stays announced until the mapper is
started; then orders go on to pending review, rejection (the stock check on), parked (retried
and rejected again), confirmed (retried once the check is off, then confirmed by the ERP) and
cancelled (at the store). Webhooks for a missing order, an unpaid order, an order created
before the activation and an order of a switched-off store show received and skipped.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from services import system as registry
from services.cli.trace import order_trace, trace_text
from services.ingest import ops as ingest_ops
from services.ingest.adapters.trace import TracePruner
from services.mapper import ops as mapper_ops
from shared.contracts import SaleConfirm
from shared.runtime import start_service
from shared.settings import Settings
from tests.harness import System, start_system
from tests.integration.helpers import unique_store_id
from tests.integration.ingest_helpers import eventually, first_poll_done, run_cli


@pytest.fixture
async def system(settings: Settings) -> AsyncIterator[System]:
    running = await start_system(settings, services=("ingest", "ledger"))
    yield running
    await running.stop()


async def _trace(system: System, store_id: int, order_id: int) -> dict[str, Any]:
    return await order_trace(system.services["ingest"].ctx.pool, store_id, order_id)


async def _state_becomes(system: System, store_id: int, order_id: int, state: str) -> None:
    async def reached() -> bool:
        return bool((await _trace(system, store_id, order_id))["state"] == state)

    await eventually(reached, f"order {order_id} of store {store_id} {state}", within=20)


def _whats(trace: dict[str, Any]) -> list[tuple[str, str]]:
    return [(e["service"], e["what"]) for e in trace["events"]]


def _in_time_order(trace: dict[str, Any]) -> None:
    ats = [e["at"] for e in trace["events"]]
    assert ats == sorted(ats), trace


async def _start_mapper(system: System) -> None:
    factory = registry.factories()["mapper"]
    system.services["mapper"] = await start_service(
        "mapper", factory, system.settings, port=0, host="127.0.0.1", connect_deadline=20
    )


async def test_unknown_received_and_skipped(system: System) -> None:
    store = unique_store_id()
    activated = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    await system.connect_store(store, activated_at=activated)
    await first_poll_done(system, store)
    sim = system.simulator.state

    unknown = await _trace(system, store, 987_654_321)
    assert unknown["state"] == "unknown"
    assert unknown["events"] == []
    assert f"store {store} is connected" in unknown["looked_for"]
    assert "order 987654321" in unknown["looked_for"]
    stranger = await _trace(system, unique_store_id(), 1)
    assert "is not connected" in stranger["looked_for"]

    await system.webhook(store, "order/paid", 555_000_111)  # no such order at the store
    await _state_becomes(system, store, 555_000_111, "received")
    received = await _trace(system, store, 555_000_111)
    assert _whats(received) == [("ingest", "webhook received")]
    assert received["events"][0]["detail"] == "order/paid"

    unpaid = int(sim.add_order(store, paid=False)["id"])
    await system.webhook(store, "order/updated", unpaid)
    await _state_becomes(system, store, unpaid, "skipped")
    skipped = await _trace(system, store, unpaid)
    assert _whats(skipped) == [
        ("ingest", "webhook received"),
        ("ingest", "fetched"),
        ("ingest", "skipped"),
    ]
    assert skipped["events"][1]["detail"] == "from the Nuvemshop API by webhook"
    assert skipped["events"][2]["detail"].startswith("not_paid: ")

    early = sim.add_order(store, paid=True, created_at=activated - dt.timedelta(days=1))
    await _state_becomes(system, store, int(early["id"]), "skipped")
    before = await _trace(system, store, int(early["id"]))
    assert before["events"][-1]["detail"].startswith("before_activation: ")

    await ingest_ops.set_enabled(
        system.services["ingest"].ctx.pool, system.erp, store, enabled=False
    )
    off = int(sim.add_order(store, paid=True)["id"])
    await _state_becomes(system, store, off, "skipped")
    while_off = await _trace(system, store, off)
    assert while_off["events"][-1]["detail"].startswith("store_disabled: ")
    assert "the store is disabled: switched_off" in trace_text(while_off)

    # What ingest saw is forgotten after TRACE_RETENTION_DAYS; announcements stay.
    pruner = TracePruner(system.services["ingest"].ctx.pool, retention_s=0.001, interval_s=60)
    assert await pruner.prune_once() >= 8
    assert (await _trace(system, store, off))["events"] == []


async def test_an_order_through_every_later_state(system: System, tmp_path: Path) -> None:
    store = unique_store_id()
    await system.connect_store(store)
    await first_poll_done(system, store)
    sim = system.simulator.state
    observer = system.observer

    # announced: ingest published it, no mapper is running yet.
    first = int(sim.add_order(store, paid=True)["id"])
    await _state_becomes(system, store, first, "announced")
    announced = await _trace(system, store, first)
    assert _whats(announced)[-1] == ("ingest", "announced order.paid"), announced

    # pending_review, then cancelled at the store.
    await _start_mapper(system)
    await _state_becomes(system, store, first, "pending_review")
    sim.cancel(store, first)
    await _state_becomes(system, store, first, "cancelled")
    cancelled = await _trace(system, store, first)
    _in_time_order(cancelled)
    assert [w for w in _whats(cancelled) if w[0] != "ingest"] == [
        ("mapper", "pending sale created (sale.pending_review)"),
        ("ledger", "sale recorded pending review"),
        ("ledger", "cancelled (sale.cancelled)"),
    ]
    # The ERP confirms it all the same: refused, and the refusal shows in the timeline.
    announced_sale = await observer.wait_for("sale.pending_review", order_id=first)
    late = announced_sale[0].body["sale_id"]
    await system.erp_publish(SaleConfirm(sale_id=late, confirmed_by="erp-user-9"), f"late-{late}")
    await observer.wait_for("sale.confirmation_refused", sale_id=late)

    async def refusal_noted() -> bool:
        last = (await _trace(system, store, first))["events"][-1]
        return (last["service"], last["what"]) == (
            "ledger",
            "ERP message refused (sale.confirmation_refused)",
        )

    await eventually(refusal_noted, "the refusal in the timeline")
    assert (await _trace(system, store, first))["state"] == "cancelled"

    # rejected (stock check on, nothing in stock), parked (retried, rejected again).
    pool = system.services["mapper"].ctx.pool
    broker = system.services["mapper"].ctx.broker
    await mapper_ops.set_stock_check(pool, store, on=True)
    second = int(sim.add_order(store, paid=True)["id"])
    await _state_becomes(system, store, second, "rejected")
    rejected = await _trace(system, store, second)
    assert rejected["events"][-1]["what"] == "rejected (sale.rejected)"
    assert rejected["events"][-1]["detail"].startswith("insufficient_stock: ")
    await mapper_ops.retry_orders(pool, broker, store_id=store, order_id=second)
    await observer.wait_for("sale.rejected", count=2, store_id=store, order_id=second)
    await _state_becomes(system, store, second, "parked")
    parked = await _trace(system, store, second)
    assert [w[1] for w in _whats(parked)][-2:] == ["retry requested", "rejected (sale.rejected)"]
    assert [w[1] for w in _whats(parked)].count("rejected (sale.rejected)") == 2

    # confirmed: the check off, retried, confirmed by the ERP.
    await mapper_ops.set_stock_check(pool, store, on=False)
    await mapper_ops.retry_orders(pool, broker, store_id=store, order_id=second)
    await _state_becomes(system, store, second, "pending_review")
    pending = await observer.wait_for("sale.pending_review", store_id=store, order_id=second)
    sale_id = pending[0].body["sale_id"]
    await system.erp_publish(
        SaleConfirm(sale_id=sale_id, confirmed_by="erp-user-9"), f"confirm-{sale_id}"
    )
    await _state_becomes(system, store, second, "confirmed")

    shown = await run_cli(
        system, tmp_path, "orders", "trace", "--store-id", str(store), "--order-id", str(second)
    )
    assert shown.returncode == 0, shown.describe()
    lines = shown.stdout.splitlines()
    assert lines[0] == f"store {store} order {second}: confirmed"
    timeline = [re.fullmatch(r"  (\S+ \S+) +(\w+) +([^:]+): (.*)", line) for line in lines[1:]]
    assert all(timeline), shown.stdout
    whats = [m.group(3) for m in timeline if m]
    assert whats[-7:] == [
        "rejected (sale.rejected)",
        "retry requested",
        "rejected (sale.rejected)",
        "retry requested",
        "pending sale created (sale.pending_review)",
        "sale recorded pending review",
        "confirmed (sale.confirmed)",
    ]
    assert "by erp-user-9; receivables: #1 " in lines[-1]
    as_json = await run_cli(
        system,
        tmp_path,
        "orders",
        "trace",
        "--store-id",
        str(store),
        "--order-id",
        str(second),
        "--json",
    )
    body = as_json.json()
    assert (body["store_id"], body["order_id"], body["state"]) == (store, second, "confirmed")
    assert set(body["events"][0]) == {"at", "service", "what", "detail"}
    _in_time_order(body)
