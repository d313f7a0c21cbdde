"""Rejected orders end to end (SPEC §4): recorded, parked, listed and retried, with the real broker.

The operator's tools are the real ``nuvem-ledger`` command in a subprocess (``catalog``,
``settings set``, ``orders rejected``, ``orders retry``, ``dead list``/``dead replay``) and the
RabbitMQ management API's view of ``mapper.orders.parked``. A retry after the cause is gone
imports the order once, as if it had just arrived; a retry before that rejects it again.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from services.cli import catalog
from services.mapper import ops
from shared.messaging import Broker
from shared.operations import OperatorError
from shared.settings import Settings
from tests import infra
from tests.harness import BARRIER_STORE, System
from tests.integration.mapper_helpers import (
    Cli,
    Counts,
    add_stock,
    counts,
    line,
    make_order,
    order_envelope,
    pending_sale,
    pool,
    publish,
    rejection,
    running_mapper,
    wait_queue,
)

PARKED = "mapper.orders.parked"
STORE = 7100


@pytest.fixture
async def system(settings: Settings) -> AsyncIterator[System]:
    async with running_mapper(settings) as running:
        yield running


@pytest.fixture
def cli(system: System, tmp_path: Path) -> Cli:
    return Cli(system.settings, tmp_path)


async def test_insufficient_stock_rejected_parked_listed_and_retried_once(
    system: System, cli: Cli, infrastructure: infra.Infrastructure
) -> None:
    table = await cli.json(
        "catalog", "add-product", "--store-id", str(STORE), "--description", "Mesa de Roble",
        "--price", "600.00", "--sku", "MR-1", "--stock", "1",
    )  # fmt: skip
    chair = await cli.json(
        "catalog", "add-product", "--store-id", str(STORE), "--description", "Cadeira",
        "--price", "150.00", "--stock", "8",
    )  # fmt: skip
    shown = await cli.json("settings", "set", "--store-id", str(STORE), "stock-check", "on")
    assert {"store_id": STORE, "stock_check": True}.items() <= shown.items()
    order = make_order(
        STORE,
        1,
        name="Cliente Novo",
        items=[line("Mesa de Roble", 3, "600.00"), line("Cadeira", 4, "150.00")],
        shipping="50.00",
    )
    sent = order_envelope(order)
    await system.erp.publish(sent)

    # sale.rejected: the reason and exactly the product and quantities concerned.
    seen = await rejection(system, STORE, 1)
    assert seen.exchange == "mapper.events"
    assert seen.type == "sale.rejected.v1"
    assert seen.correlation_id == f"{STORE}:1"
    assert seen.persistent
    assert seen.body["reason"] == "insufficient_stock"
    assert "Mesa de Roble" in seen.body["detail"]
    assert seen.body["items"] == [
        {"description": "Mesa de Roble", "product_id": table["id"], "requested": 3, "available": 1}
    ]

    # Nothing of the order was created: only the two catalog products exist.
    assert await counts(system, STORE) == Counts(customers=0, products=2, sales=0, sale_items=0)

    # Recorded: the operator lists it, with and without the store filter, as JSON and text.
    listed = await cli.json("orders", "rejected", "--store-id", str(STORE))
    assert len(listed) == 1
    assert {k: listed[0][k] for k in ("store_id", "order_id", "reason", "detail")} == {
        "store_id": STORE,
        "order_id": 1,
        "reason": "insufficient_stock",
        "detail": seen.body["detail"],
    }
    assert [r["order_id"] for r in await cli.json("orders", "rejected")] == [1]
    text = await cli.run("orders", "rejected")
    assert text.returncode == 0, text.describe()
    assert "insufficient_stock" in text.stdout
    assert str(STORE) in text.stdout

    # Parked: the original message, with its reason in the headers (management API view).
    parked = await wait_queue(infrastructure, system.settings.amqp_url, PARKED, 1)
    assert len(parked) == 1
    message = parked[0]
    assert message.body == sent.body
    assert message.headers["x-error-reason"] == "insufficient_stock"
    assert message.headers["x-error-detail"] == seen.body["detail"]
    assert message.correlation_id == f"{STORE}:1"
    assert message.type == "order.paid.v1"
    assert message.content_type == "application/json"
    assert message.persistent
    # ...and the CLI view of the same queue (listing consumes nothing).
    dead_listed = await cli.json("dead", "list", PARKED)
    assert [(d["reason"], d["detail"]) for d in dead_listed] == [
        ("insufficient_stock", seen.body["detail"])
    ]
    assert dead_listed[0]["body"] == sent.body.decode()
    assert len(await wait_queue(infrastructure, system.settings.amqp_url, PARKED, 1)) == 1

    # A retry before the cause is gone: rejected again, still one recorded rejection.
    retried = await cli.json("orders", "retry", "--store-id", str(STORE), "--order-id", "1")
    assert [r["order_id"] for r in retried] == [1]
    again = await rejection(system, STORE, 1, count=2)
    assert again.body["items"] == seen.body["items"]
    listed = await cli.json("orders", "rejected", "--store-id", str(STORE))
    assert [(r["order_id"], r["attempts"]) for r in listed] == [(1, 2)]
    assert await counts(system, STORE) == Counts(customers=0, products=2, sales=0, sale_items=0)

    # Stock entered (an adjustment in the ledger's movements), then retried: imported once.
    await add_stock(system, STORE, table["id"], 2)
    await cli.json("orders", "retry", "--store-id", str(STORE), "--order-id", "1")
    sale = await pending_sale(system, order)
    assert [(i["product"]["id"], i["product"]["created"]) for i in sale["items"]] == [
        (table["id"], False),
        (chair["id"], False),
    ]
    assert sale["customer"]["created"] is True
    assert sale["total"] == "2450.00"
    assert await cli.json("orders", "rejected", "--store-id", str(STORE)) == []

    # Nothing is left to retry: one order id is refused in one line, --all retries nothing.
    refused = await cli.run("orders", "retry", "--store-id", str(STORE), "--order-id", "1")
    assert refused.returncode != 0, refused.describe()
    assert refused.stdout == ""
    assert len([ln for ln in refused.stderr.splitlines() if ln.strip()]) == 1, refused.describe()
    assert await cli.json("orders", "retry", "--store-id", str(STORE), "--all") == []
    await system.mapper_settled()
    assert len(system.observer.of("sale.pending_review", store_id=STORE, order_id=1)) == 1
    assert len(system.observer.of("sale.rejected", store_id=STORE, order_id=1)) == 2
    assert await counts(system, STORE) == Counts(customers=1, products=2, sales=1, sale_items=2)


async def test_retry_all_after_switching_the_check_off(system: System, cli: Cli) -> None:
    other_store = STORE + 1
    for store in (STORE, other_store):
        await cli.json("settings", "set", "--store-id", str(store), "stock-check", "on")
    orders = [
        make_order(STORE, n, name=f"Cliente {n}", items=[line(f"Produto {n}", n, "10.00")])
        for n in (1, 2, 3)
    ]
    elsewhere = make_order(other_store, 1, items=[line("Produto 1", 1, "10.00")])
    for order in [*orders, elsewhere]:
        await publish(system, order)
    for order in [*orders, elsewhere]:
        seen = await rejection(system, order.store_id, order.order_id)
        assert seen.body["items"] == [
            {
                "description": order.items[0].name,
                "product_id": None,  # the product does not exist: no id to show
                "requested": order.items[0].quantity,
                "available": 0,
            }
        ]
    assert await counts(system, STORE) == Counts(0, 0, 0, 0)

    shown = await cli.json("settings", "set", "--store-id", str(STORE), "stock-check", "off")
    assert {"store_id": STORE, "stock_check": False}.items() <= shown.items()
    retried = await cli.json("orders", "retry", "--store-id", str(STORE), "--all")
    assert sorted(r["order_id"] for r in retried) == [1, 2, 3]
    for order in orders:
        sale = await pending_sale(system, order)
        assert sale["items"][0]["product"]["created"] is True
    await system.mapper_settled()
    for order in orders:
        assert (
            len(system.observer.of("sale.pending_review", store_id=STORE, order_id=order.order_id))
            == 1
        )
    assert await counts(system, STORE) == Counts(3, 3, 3, 3)
    # The other store's rejection was not touched by this store's --all.
    remaining = await cli.json("orders", "rejected")
    assert [
        (r["store_id"], r["order_id"]) for r in remaining if r["store_id"] != BARRIER_STORE
    ] == [(other_store, 1)]
    assert system.observer.of("sale.pending_review", store_id=other_store) == []


async def test_retries_racing_each_other_import_once(system: System) -> None:
    db = pool(system)
    added = await catalog.add_product(
        db, store_id=STORE, description="Luminária", price=Decimal("90"),
        sku=None, stock=0,
    )  # fmt: skip
    await ops.set_stock_check(db, STORE, on=True)
    order = make_order(STORE, 1, items=[line("Luminária", 2, "90.00")])
    await publish(system, order)
    await rejection(system, STORE, 1)
    await add_stock(system, STORE, added["id"], 5)

    broker = Broker(system.settings.amqp_url, app_id="test-operator")
    await broker.connect(deadline=10)
    try:
        # Three operators retry at once: up to three new messages about one order. One that
        # arrives after the import finds nothing rejected and says so.
        results = await asyncio.gather(
            *(ops.retry_orders(db, broker, store_id=STORE, order_id=1) for _ in range(3)),
            return_exceptions=True,
        )
        assert all(
            not isinstance(r, BaseException) or isinstance(r, OperatorError) for r in results
        )
        assert any(not isinstance(r, BaseException) for r in results)
    finally:
        await broker.close()
    await pending_sale(system, order)
    await system.mapper_settled()
    assert len(system.observer.of("sale.pending_review", store_id=STORE, order_id=1)) == 1
    assert await counts(system, STORE) == Counts(1, 1, 1, 1)
    assert await ops.rejected_orders(db, STORE) == []


async def test_replay_from_the_parking_queue_after_the_product_is_catalogued(
    system: System, cli: Cli, infrastructure: infra.Infrastructure
) -> None:
    await cli.json("settings", "set", "--store-id", str(STORE), "stock-check", "on")
    order = make_order(STORE, 1, items=[line("Quadro Abstrato", 1, "300.00", sku="QA-1")])
    sent = order_envelope(order)
    await system.erp.publish(sent)
    await rejection(system, STORE, 1)
    parked = await wait_queue(infrastructure, system.settings.amqp_url, PARKED, 1)
    assert [m.body for m in parked] == [sent.body]

    # The cause goes away: the product is catalogued with stock.
    added = await cli.json(
        "catalog", "add-product", "--store-id", str(STORE), "--description", "Quadro Abstrato",
        "--price", "280.00", "--stock", "2",
    )  # fmt: skip
    replayed = await cli.json("dead", "replay", PARKED, "--all")
    assert len(replayed) == 1
    sale = await pending_sale(system, order)
    assert sale["items"][0]["product"] == {
        "id": added["id"],
        "description": "Quadro Abstrato",
        "created": False,
    }
    assert await cli.json("orders", "rejected") == []
    assert await wait_queue(infrastructure, system.settings.amqp_url, PARKED, 0) == []
    await system.mapper_settled()
    assert len(system.observer.of("sale.pending_review", store_id=STORE, order_id=1)) == 1


async def test_parking_queue_holds_the_orders_still_rejected(
    system: System, cli: Cli, infrastructure: infra.Infrastructure
) -> None:
    """``mapper.orders.parked`` is where rejected orders wait: each once, none once imported."""
    await cli.json("settings", "set", "--store-id", str(STORE), "stock-check", "on")
    imported, still_rejected = (
        make_order(STORE, n, items=[line(f"Produto {n}", 1, "3.00")]) for n in (1, 2)
    )
    for order in (imported, still_rejected):
        await publish(system, order)
        await rejection(system, STORE, order.order_id)
    # Retried before the cause is gone: rejected again (a second attempt, still one order).
    await cli.json("orders", "retry", "--store-id", str(STORE), "--all")
    for order in (imported, still_rejected):
        await rejection(system, STORE, order.order_id, count=2)
    # The cause of order 1 goes away (its product is catalogued with stock); retried: imported.
    await cli.json(
        "catalog", "add-product", "--store-id", str(STORE), "--description", "Produto 1",
        "--price", "3.00", "--stock", "1",
    )  # fmt: skip
    await cli.json("orders", "retry", "--store-id", str(STORE), "--order-id", "1")
    await pending_sale(system, imported)
    await rejection(system, STORE, 2, count=2)
    await system.drained("mapper")  # the parked copies too

    listed = await cli.json("orders", "rejected")
    assert [(r["order_id"], r["attempts"]) for r in listed] == [(2, 2)]
    parked = await wait_queue(infrastructure, system.settings.amqp_url, PARKED, 5, within=1.0)
    waiting = sorted(m.correlation_id or "" for m in parked)
    assert waiting == [f"{STORE}:2"], (
        "the parking queue should hold each rejected order once and no imported one; it holds "
        + repr([(m.message_id, m.headers.get("x-error-reason")) for m in parked])
    )
