"""One bad message never fails its batch-mates (SPEC §7: nothing dropped, nothing lost).

The messages are queued before the mapper starts, with a generous batch wait, so they reach the
handler as one batch (the consumer's metrics prove it). Among 50 valid orders: one whose product
description is too long for the products' unique index (the handler's transaction fails), one body
that is not JSON (a poison message) and one invalid order (a business rejection). The 50 become
sales; the poison is dead-lettered with its reason; the failing one and the invalid one are
rejected (SPEC §4: any reason an order cannot become a sale is recorded) and parked.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from shared.contracts import OrderInvalid
from shared.settings import Settings
from tests import infra
from tests.harness import System
from tests.integration.mapper_helpers import (
    Counts,
    add_mapper,
    batches,
    counts,
    handled_by,
    line,
    make_order,
    order_envelope,
    pending_sale,
    processed,
    publish_raw,
    random_text,
    rejection,
    running_mapper,
    wait_queue,
)

STORE = 9100
VALID = 50


@pytest.fixture
async def system(settings: Settings) -> AsyncIterator[System]:
    # No mapper yet: the test queues its batch first, then starts one.
    async with running_mapper(settings, services=(), batch_wait_ms=500) as running:
        yield running


async def test_one_bad_message_never_fails_its_batch_mates(
    system: System, infrastructure: infra.Infrastructure
) -> None:
    valid = [
        make_order(
            STORE,
            n,
            name=f"Cliente {n % 7}",
            items=[line(f"Produto {n % 5}", 1 + n % 3, "19.90"), line("Embalagem", 1, "2.00")],
        )
        for n in range(1, VALID + 1)
    ]
    failing = make_order(STORE, 900, items=[line("Caneca", 1), line(random_text(3000), 1)])
    envs = [order_envelope(o) for o in valid[:25]]
    envs.append(order_envelope(failing))
    envs += [order_envelope(o) for o in valid[25:]]
    for env in envs:
        await system.erp.publish(env)
    poison = await publish_raw(system, "order.paid", b"{not json", message_id="poison-1")
    invalid = order_envelope(OrderInvalid(store_id=STORE, order_id=901, detail="unreadable"))
    await system.erp.publish(invalid)

    mapper = await add_mapper(system, "mapper")
    sales = await asyncio.gather(*(pending_sale(system, o, within=20) for o in valid))
    assert len({s["sale_id"] for s in sales}) == VALID
    seen = await rejection(system, STORE, 901)
    assert seen.body["reason"] == "invalid_order"

    unstorable = await rejection(system, STORE, 900)
    assert unstorable.body["reason"] == "invalid_order"
    assert "index row size" in unstorable.body["detail"]

    dead = await wait_queue(infrastructure, system.settings.amqp_url, "mapper.orders.dead", 1)
    reasons = {m.message_id: m.headers.get("x-error-reason") for m in dead}
    assert reasons == {"poison-1": "invalid_json"}
    assert dead[0].body == poison.body
    parked = await wait_queue(infrastructure, system.settings.amqp_url, "mapper.orders.parked", 2)
    by_id = {m.message_id: m for m in parked}
    assert set(by_id) == {
        f"{invalid.message_id}:parked:1",
        f"{order_envelope(failing).message_id}:parked:1",
    }
    assert (
        by_id[f"{order_envelope(failing).message_id}:parked:1"].body == order_envelope(failing).body
    )

    # Every message handled and what it caused observed (a sentinel would add a batch).
    await handled_by(system, [mapper], len(envs) + 2)
    assert system.observer.of("sale.pending_review", store_id=STORE, order_id=900) == []
    assert len(system.observer.of("sale.pending_review")) == VALID
    got = await counts(system, STORE)
    assert got == Counts(customers=7, products=6, sales=VALID, sale_items=2 * VALID)
    # They were one batch: the failing order did fail a batch, and its mates went through.
    assert batches(mapper) == (1.0, float(len(envs) + 2))
    assert processed(mapper) == VALID + 2  # the 50 and the two rejected ones
    assert processed(mapper, "dead_lettered") == 1
