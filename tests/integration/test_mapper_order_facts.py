"""SPEC §8 in the mapper, whatever the batch: its one SQL path takes an order alone in its
batch and a batch of many (queued before the mapper starts so that they arrive together).
Product matching by SKU, the store's calendar, the currency and the order facts a sale carries
must come out the same for both.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable, Coroutine
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from services import system as composition
from services.mapper import ops
from services.mapper.adapters import settings as store_settings
from shared.contracts import Address, OrderCustomer, OrderPaid, StorePayment
from shared.db import migrate
from shared.settings import Settings
from tests.harness import System
from tests.integration.mapper_helpers import (
    add_mapper,
    batches,
    line,
    make_order,
    pending_sale,
    publish,
    rejection,
    running_mapper,
)

EVENING = dt.datetime(2026, 8, 3, 22, 30, tzinfo=dt.timezone(dt.timedelta(hours=-3)))
ADDRESS = Address(
    street="Rua Augusta",
    number="1500",
    complement="Apto 12",
    locality="Consolação",
    city="São Paulo",
    state="SP",
    zipcode="01304-001",
    country="BR",
)
CARD = StorePayment(
    method="credit_card", gateway="Mercado Pago", card_company="visa", installments=3
)

Setup = Callable[[asyncpg.Pool], Coroutine[Any, Any, None]]


@pytest.fixture(params=["batch_of_one", "batch_of_many"])
def path(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


@pytest.fixture
async def system(settings: Settings) -> AsyncIterator[System]:
    # The mapper starts in ``run``: its orders are queued first (a batch) or one at a time.
    async with running_mapper(settings, services=(), batch_wait_ms=400) as running:
        await migrate(settings.database_url, composition.migrations())
        yield running


async def run(system: System, path: str, orders: list[OrderPaid]) -> None:
    """Import ``orders`` by ``path``: together as one batch, or each alone in its own."""
    if path == "batch_of_many":
        for order in orders:
            await publish(system, order)
        running = await add_mapper(system, "mapper")
        for order in orders:
            await system.observer.wait_for(
                "sale.pending_review", store_id=order.store_id, order_id=order.order_id
            )
        count, messages = batches(running)
        assert (count, messages) == (1, len(orders)), "the orders did not arrive as one batch"
        return
    running = await add_mapper(system, "mapper")
    for order in orders:
        await publish(system, order)
        await pending_sale(system, order)
    assert batches(running) == (len(orders), len(orders)), "the orders did not arrive alone"


def with_facts(order: OrderPaid) -> OrderPaid:
    customer = order.customer.model_copy(update={"address": ADDRESS})
    return order.model_copy(
        update={
            "customer": OrderCustomer.model_validate(customer.model_dump()),
            "store_payment": CARD,
            "shipping_address": ADDRESS.model_copy(update={"street": "Avenida Paulista"}),
            "paid_at": EVENING,
        }
    )


async def test_sku_matching_the_calendar_and_the_facts(
    system: System, path: str, settings: Settings
) -> None:
    store, other = (
        8_801 if path == "batch_of_one" else 8_802,
        8_803 if path == "batch_of_one" else 8_804,
    )
    db = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
    try:
        await store_settings.set_product_match(db, store, "sku")
        await store_settings.set_timezone(db, other, "Asia/Tokyo")
        async with db.acquire() as conn:
            catalog = await ops.add_product(
                conn,
                store_id=store,
                description="Camiseta azul P",
                price=Decimal("59.90"),
                sku="CAM-P-AZ",
            )
            described = await ops.add_product(
                conn, store_id=store, description="Caneca", price=Decimal("39.90"), sku=None
            )
            await ops.add_product(
                conn, store_id=other, description="Outra", price=Decimal("1.00"), sku="CAM-P-AZ"
            )
        orders = [
            with_facts(
                make_order(
                    store,
                    1,
                    items=[
                        line("Camiseta (P, Azul)", 1, "59.90", sku="CAM-P-AZ"),  # by SKU
                        line("Caneca", 2, "39.90", sku="NO-SUCH"),  # unknown SKU: description
                        line("Boné (U, Preto)", 1, "49.90", sku="BON-U-PR"),  # created, keeps SKU
                    ],
                )
            ),
            # The default rule on another store: the description decides, never the SKU.
            make_order(other, 2, items=[line("Camiseta (P, Azul)", 1, "59.90", sku="CAM-P-AZ")]),
        ]
        await run(system, path, orders)

        sale = await pending_sale(system, orders[0])
        items = {i["description"]: i for i in sale["items"]}
        assert items["Camiseta (P, Azul)"]["product"] == {
            "id": catalog,
            "description": "Camiseta azul P",
            "created": False,
        }
        assert items["Caneca"]["product"]["id"] == described
        assert items["Boné (U, Preto)"]["product"]["created"] is True
        sku = await db.fetchval(
            "SELECT sku FROM mapper.products WHERE id = $1",
            items["Boné (U, Preto)"]["product"]["id"],
        )
        assert sku == "BON-U-PR"
        # The store's calendar (the installation's default, São Paulo): 22:30 there is 01:30Z.
        assert sale["sale_date"] == "2026-08-03"
        assert sale["payment"]["installments"][0]["due_date"] == "2026-08-03"
        assert sale["payment"]["method"] == "cash"
        assert len(sale["payment"]["installments"]) == 1
        assert sale["store_payment"] == CARD.model_dump()
        assert sale["shipping_address"]["street"] == "Avenida Paulista"
        assert sale["customer"]["address"] == ADDRESS.model_dump()
        row = await db.fetchrow(
            "SELECT c.address AS billing, s.store_payment, s.shipping_address, s.customer_address"
            " FROM mapper.sales s JOIN mapper.customers c ON c.id = s.customer_id"
            " WHERE s.store_id = $1 AND s.order_id = 1",
            store,
        )
        assert row is not None
        assert '"Rua Augusta"' in row["billing"]  # stored on the customer the order created
        assert '"Avenida Paulista"' in row["shipping_address"]
        assert '"credit_card"' in row["store_payment"]

        plain = await pending_sale(system, orders[1])
        assert plain["items"][0]["product"]["created"] is True  # not the other store's product
        assert plain["items"][0]["product"]["description"] == "Camiseta (P, Azul)"
        # 13:05Z is 22:05 in Tokyo, still the 3rd; the store's own zone decides.
        assert plain["sale_date"] == "2026-08-03"
        assert plain["store_payment"] is None
        assert plain["shipping_address"] is None
        assert plain["customer"]["address"] is None
    finally:
        await db.close()


async def test_store_timezone_decides_the_day(
    system: System, path: str, settings: Settings
) -> None:
    store = 8_811 if path == "batch_of_one" else 8_812
    db = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
    try:
        await store_settings.set_timezone(db, store, "UTC")
        late = dt.datetime(2026, 8, 3, 22, 30, tzinfo=dt.timezone(dt.timedelta(hours=-3)))
        orders = [make_order(store, n, paid_at=late) for n in (1, 2)]
        await run(system, path, orders)
        for order in orders:
            assert (await pending_sale(system, order))["sale_date"] == "2026-08-04"
    finally:
        await db.close()


async def test_an_order_not_in_reais_is_rejected(system: System, path: str) -> None:
    store = 8_821 if path == "batch_of_one" else 8_822
    usd = make_order(store, 1).model_copy(update={"currency": "USD"})
    brl = make_order(store, 2)
    if path == "batch_of_one":
        await add_mapper(system, "mapper")
        await publish(system, usd)
        await rejection(system, store, 1)
        await publish(system, brl)
    else:
        for order in (usd, brl):
            await publish(system, order)
        await add_mapper(system, "mapper")
    seen = await rejection(system, store, 1)
    assert seen.body["reason"] == "unsupported_currency"
    assert "USD" in seen.body["detail"]
    await pending_sale(system, brl)
    rejected = await ops.rejected_orders(system.services["mapper"].ctx.pool, store)
    assert [(r["order_id"], r["reason"]) for r in rejected] == [(1, "unsupported_currency")]
