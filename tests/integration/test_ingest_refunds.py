"""Partial refunds and partial payments through ingest, on both API shapes (SPEC §8.6).

An imported order that becomes partially_refunded is announced once (order.partially_refunded),
after its order.paid, however many webhooks say so, and nothing is reversed; an order first seen
already partly refunded was paid, so it is imported and then noted; a partially_paid order is not
imported until it is paid.
"""

from __future__ import annotations

from collections import Counter

import pytest

from tests.harness import System
from tests.integration.ingest_helpers import announced_rows, first_poll_done, make_due, per_order

STORE = 770_001


@pytest.fixture(params=["2025-03", "v1"])
def shape(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


async def test_partial_refund_of_an_imported_order_is_announced_once(
    system: System, shape: str
) -> None:
    await system.connect_store(STORE, shape=shape)
    await first_poll_done(system, STORE)
    sim = system.simulator.state
    order_id = int(sim.add_order(STORE, paid=True)["id"])
    await system.observer.wait_for("sale.pending_review", order_id=order_id)

    system.simulator.dispatcher.faults.duplicates = 2
    sim.refund(STORE, order_id, amount="1.00")  # order/updated, delivered three times

    (noted,) = await system.observer.wait_for("order.partially_refunded", order_id=order_id)
    await system.simulator.dispatcher.wait_idle(10)
    assert await system.webhook(STORE, "order/updated", order_id) == 200
    await system.settled(STORE)
    assert per_order(system, "order.partially_refunded", STORE) == Counter({order_id: 1})
    assert per_order(system, "order.paid", STORE) == Counter({order_id: 1})
    assert system.observer.of("order.cancelled", store_id=STORE) == []
    assert system.observer.of("sale.cancelled", store_id=STORE) == []
    assert noted.body["store_id"] == STORE
    assert noted.body["noted_at"]
    assert noted.message_id == f"order.partially_refunded:{STORE}:{order_id}"
    assert noted.type == "order.partially_refunded.v1"
    row = (await announced_rows(system, STORE))[order_id]
    assert row["partially_refunded_announced_at"] is not None

    sim.refund(STORE, order_id)  # now in full: the sale is undone, once
    await system.observer.wait_for("order.cancelled", order_id=order_id)
    await system.observer.wait_for("sale.cancelled", order_id=order_id)


async def test_order_first_seen_partly_refunded_is_imported_then_noted(
    system: System, shape: str
) -> None:
    await system.connect_store(STORE, shape=shape)
    await first_poll_done(system, STORE)
    sim = system.simulator.state
    order_id = int(sim.add_order(STORE, paid=True, notify=False)["id"])
    sim.refund(STORE, order_id, amount="1.00", notify=False)  # both webhooks lost

    await make_due(system, STORE)

    await system.observer.wait_for("order.partially_refunded", order_id=order_id)
    await system.observer.wait_for("sale.pending_review", order_id=order_id)
    keys = [s.routing_key for s in system.observer.seen if s.body.get("order_id") == order_id]
    assert keys.index("order.paid") < keys.index("order.partially_refunded")
    await system.settled(STORE)
    assert per_order(system, "order.partially_refunded", STORE) == Counter({order_id: 1})


async def test_partially_paid_order_waits_until_it_is_paid(system: System, shape: str) -> None:
    await system.connect_store(STORE, shape=shape)
    await first_poll_done(system, STORE)
    sim = system.simulator.state
    order_id = int(sim.add_order(STORE, payment_status="partially_paid")["id"])
    assert await system.webhook(STORE, "order/updated", order_id) == 200
    await make_due(system, STORE)
    await system.settled(STORE)
    assert system.observer.of("order.paid", store_id=STORE) == []
    assert await announced_rows(system, STORE) == {}

    sim.mark_paid(STORE, order_id)

    await system.observer.wait_for("order.paid", order_id=order_id)
    await system.observer.wait_for("sale.pending_review", order_id=order_id)
    assert system.observer.of("order.partially_refunded", store_id=STORE) == []
