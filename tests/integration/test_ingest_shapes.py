"""Every path that reads orders reads the shipping right, on the 2025-03 API and on the legacy one.

The real services run in-process against the simulator, the broker and the database. Each test
runs on a store serving the 2025-03 shape (shipping only in the fulfillment orders, split here
in two shipments) and on one serving the legacy v1 shape (order-level shipping_cost_customer),
and checks the shipping of the order.paid and of the pending sale the three services built:
a webhook answered by a single fetch, a burst of webhooks read as one listing, the poll, the
backfill, and a webhook whose fetch failed and was retried.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import unicodedata
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest

from services.ingest.sync import SINGLE_FETCH_LIMIT, backfill
from shared.settings import Settings
from tests.harness import System, start_system
from tests.integration.ingest_helpers import (
    first_poll_done,
    ingest_service,
    make_due,
    store_record,
)

SHAPES = ["2025-03", "v1"]
SAO_PAULO_NFD = unicodedata.normalize("NFD", "São Paulo")
SHIPPING = Decimal("15.55")


@pytest.fixture(params=SHAPES)
def shape(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


@pytest.fixture
async def batching_system(settings: Settings) -> AsyncIterator[System]:
    """The system with consumers that wait 400 ms to fill a batch: a burst of webhooks sent at
    once is handled as one batch, which ingest reads as a listing."""
    running = await start_system(settings.model_copy(update={"batch_wait_ms": 400}))
    yield running
    await running.stop()


def paid_order(system: System, store_id: int, shape: str, **spec: Any) -> int:
    """A paid order whose buyer paid 15.55 for shipping: in two fulfillment orders (10.00 and
    5.55) on a 2025-03 store, as the order-level figure on a legacy one."""
    lines = [
        {"name": "Caneca de Cerâmica 300ml", "price": "39.90", "quantity": 2},
        {"name": "Camiseta (P, Azul)", "price": "59.90", "quantity": 1, "sku": "CAM-P-AZ"},
    ]
    split = {"shipments": ["10.00", "5.55"]} if shape == "2025-03" else {"shipping": SHIPPING}
    order = system.simulator.state.add_order(
        store_id, paid=True, products=lines, discount="0.00", **split, **spec
    )
    return int(order["id"])


async def assert_shipping(system: System, order_ids: list[int]) -> None:
    """Each order became one order.paid and one pending sale, both with shipping 15.55."""
    for order_id in order_ids:
        (paid,) = await system.observer.wait_for("order.paid", order_id=order_id)
        assert Decimal(paid.body["shipping"]) == SHIPPING, paid.body
        assert Decimal(paid.body["total"]) == Decimal("139.70") + SHIPPING
        (sale,) = await system.observer.wait_for("sale.pending_review", order_id=order_id)
        assert Decimal(sale.body["shipping"]) == SHIPPING, sale.body
        assert not any("differs" in warning for warning in sale.body["warnings"]), sale.body
    assert system.observer.of("order.invalid") == []


def reads(system: System, store_id: int) -> dict[str, Any]:
    counters: dict[str, Any] = system.simulator.state.counters()[store_id]
    return counters


async def test_webhook_answered_by_a_single_fetch(system: System, shape: str) -> None:
    store_id = 760_001
    await system.connect_store(store_id, shape=shape)
    await first_poll_done(system, store_id)
    system.simulator.state.reset_counters()

    order_id = paid_order(
        system,
        store_id,
        shape,
        payment_method="credit_card",
        installments=3,
        customer={"address": {"street": "Rua da Conceição", "number": "12", "floor": "Apto 3"}},
        # Typed on a keyboard that sends "ã" as "a" + a combining tilde.
        shipping_address={"street": "Avenida São João", "number": "S/N", "city": SAO_PAULO_NFD},
    )  # sends order/created and order/paid: two webhooks, each a single fetch

    await assert_shipping(system, [order_id])
    counters = reads(system, store_id)
    assert counters["by_route"].get("api-orders", 0) == 0
    assert counters["by_route"]["api-order"] >= 1
    assert counters["aggregate_reads"] == counters["by_route"]["api-order"]
    body = system.observer.of("order.paid", order_id=order_id)[0].body
    payment = body["store_payment"]
    assert (payment["method"], payment["gateway"], payment["installments"]) == (
        "credit_card",
        "Mercado Pago",
        3,
    )
    assert payment["card_company"] in ("visa", "mastercard")
    shipping_address = body["shipping_address"]
    assert (shipping_address["street"], shipping_address["number"]) == ("Avenida São João", "S/N")
    assert shipping_address["city"] == "São Paulo"  # composed again (NFC)
    billing = body["customer"]["address"]
    assert (billing["street"], billing["number"], billing["complement"]) == (
        "Rua da Conceição",
        "12",
        "Apto 3",
    )
    assert body["currency"] == "BRL"


async def test_burst_of_webhooks_read_as_one_listing(batching_system: System, shape: str) -> None:
    system = batching_system
    store_id = 760_002
    await system.connect_store(store_id, shape=shape)
    await first_poll_done(system, store_id)
    ids = [paid_order(system, store_id, shape, notify=False) for _ in range(SINGLE_FETCH_LIMIT + 5)]
    system.simulator.state.reset_counters()

    statuses = await asyncio.gather(*(system.webhook(store_id, "order/paid", o) for o in ids))

    assert statuses == [200] * len(ids)
    await assert_shipping(system, ids)
    counters = reads(system, store_id)
    assert counters["by_route"]["api-orders"] >= 1
    assert counters["by_route"].get("api-order", 0) == 0
    assert counters["aggregate_reads"] >= len(ids)


async def test_poll(system: System, shape: str) -> None:
    store_id = 760_003
    await system.connect_store(store_id, shape=shape)
    await first_poll_done(system, store_id)
    order_id = paid_order(system, store_id, shape, notify=False)  # only the poll can find it

    await make_due(system, store_id)

    await assert_shipping(system, [order_id])


async def test_backfill(system: System, shape: str) -> None:
    store_id = 760_004
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    await system.connect_store(store_id, shape=shape, activated_at=now)
    await first_poll_done(system, store_id)
    created = now - dt.timedelta(days=3)
    order_id = paid_order(system, store_id, shape, created_at=created, notify=False)

    service = ingest_service(system)
    ctx = system.services["ingest"].ctx
    result, total = await backfill(
        ctx.pool,
        ctx.broker,
        service.client,
        service.cipher,
        await store_record(system, store_id),
        since=now - dt.timedelta(days=5),
        until=now - dt.timedelta(days=1),
    )

    assert (result.outcome, result.paid, total) == ("ok", 1, 1)
    await assert_shipping(system, [order_id])


@pytest.mark.timeout(90)
async def test_webhook_whose_fetch_failed_is_retried(system: System, shape: str) -> None:
    store_id = 760_005
    await system.connect_store(store_id, shape=shape)
    await first_poll_done(system, store_id)
    # Every read fails for a while: the client's own retries run out (six attempts), the
    # webhook's batch is retried by its consumer, and that fetch reads the order.
    system.simulator.state.stores[store_id].failing_reads.extend([503] * 7)

    order_id = paid_order(system, store_id, shape, notify=False)
    assert await system.webhook(store_id, "order/paid", order_id) == 200

    await assert_shipping(system, [order_id])
    assert reads(system, store_id)["by_status"]["503"] == 7
