"""Concurrent imports converge (SPEC §3 reuse rules, §7 never twice), with two mapper instances.

Two mapper instances consume ``mapper.orders`` at once (as two replicas would); a burst of orders
of one new customer and one new product must leave exactly one customer row and one product row,
and one sale per order; many messages about one order must leave one sale.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest

from shared.runtime import Running
from shared.settings import Settings
from tests import infra
from tests.harness import System
from tests.integration.mapper_helpers import (
    Counts,
    add_mapper,
    counts,
    handled_by,
    line,
    make_order,
    order_envelope,
    peek_queue,
    pending_sale,
    pool,
    processed,
    running_mapper,
    wait_consumers,
)

STORE = 9700
N = 20


@pytest.fixture
async def system(settings: Settings) -> AsyncIterator[System]:
    async with running_mapper(settings) as running:
        yield running


@pytest.fixture
async def two(system: System) -> tuple[Running, Running]:
    second = await add_mapper(system, "mapper-2")
    assert await wait_consumers(system.settings.amqp_url, "mapper.orders", 2) == 2
    return system.services["mapper"], second


async def test_one_new_customer_and_product_ordered_at_once(
    system: System, two: tuple[Running, Running]
) -> None:
    orders = [
        make_order(
            STORE,
            n,
            name="Cliente Único",
            document="758.395.665-00",
            items=[line("Produto Único", 1 + n % 4, "25.00", sku="PU-1")],
        )
        for n in range(1, N + 1)
    ]
    await system.erp.publish_many([order_envelope(o) for o in orders])
    sales = await asyncio.gather(*(pending_sale(system, o, within=20) for o in orders))

    assert await counts(system, STORE) == Counts(customers=1, products=1, sales=N, sale_items=N)
    assert len({s["customer"]["id"] for s in sales}) == 1
    assert len({s["items"][0]["product"]["id"] for s in sales}) == 1
    # Exactly one sale created each; every other one reused it.
    assert sum(s["customer"]["created"] for s in sales) == 1
    assert sum(s["items"][0]["product"]["created"] for s in sales) == 1
    await handled_by(system, two, N)
    assert len(system.observer.of("sale.pending_review", store_id=STORE)) == N
    # Both instances took part (otherwise this would not test concurrency).
    assert all(processed(r) > 0 for r in two), [processed(r) for r in two]
    assert sum(processed(r) for r in two) == N
    assert [processed(r, "dead_lettered") for r in two] == [0, 0]


async def test_one_order_announced_many_times_at_once(
    system: System, two: tuple[Running, Running]
) -> None:
    order = make_order(STORE, 1, items=[line("Mesa", 1, "100.00"), line("Cadeira", 4, "50.00")])
    # Different message ids (webhook, poll, backfill, a replay...) about the same order.
    await system.erp.publish_many([order_envelope(order, f"order.paid:copy-{n}") for n in range(N)])
    await pending_sale(system, order)
    await handled_by(system, two, N)
    assert len(system.observer.of("sale.pending_review", store_id=STORE, order_id=1)) == 1
    assert await counts(system, STORE) == Counts(customers=1, products=2, sales=1, sale_items=2)
    assert sum(processed(r) for r in two) == N
    assert [processed(r, "dead_lettered") for r in two] == [0, 0]


async def test_many_customers_and_products_interleaved(
    system: System, two: tuple[Running, Running], infrastructure: infra.Infrastructure
) -> None:
    """Orders sharing new customers and products in every order: no deadlock loses one."""
    names = ["Ana", "Bruno", "Carla", "Davi"]
    products = ["Pão", "Leite", "Café"]
    rng = random.Random(7)
    orders = []
    for n in range(1, 2 * N + 1):
        picked = rng.sample(products, k=rng.randint(1, len(products)))
        orders.append(
            make_order(
                STORE,
                n,
                name=rng.choice(names),
                document=None,
                items=[line(p, 1, "3.00") for p in picked],
            )
        )
    await system.erp.publish_many([order_envelope(o) for o in orders])
    sales = await asyncio.gather(*(pending_sale(system, o, within=20) for o in orders))

    assert len(sales) == 2 * N
    got = await counts(system, STORE)
    assert (got.customers, got.products, got.sales) == (len(names), len(products), 2 * N)
    created_customers = sum(s["customer"]["created"] for s in sales)
    created_products = sum(i["product"]["created"] for s in sales for i in s["items"])
    assert (created_customers, created_products) == (len(names), len(products))
    dead = await peek_queue(infrastructure, system.settings.amqp_url, "mapper.orders.dead")
    assert dead == []
    rows = await pool(system).fetch(
        "SELECT name, count(*) AS n FROM mapper.customers WHERE store_id = $1 GROUP BY name",
        STORE,
    )
    assert sorted(r["name"] for r in rows) == sorted(names)
