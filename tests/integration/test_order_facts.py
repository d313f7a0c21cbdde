"""SPEC §8 and §4 through the three services, against the simulator in its default (2025-03)
shape and in the legacy one: the order facts a merchant expects in the ERP (the store payment,
the addresses, a SKU-matched product, the store's calendar), an order not in reais, a partial
refund, and the orders of a store switched off while in flight.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from services.ingest import ops as ingest_ops
from services.ingest.connections import store_connection
from services.ingest.handlers import disable_store
from services.ingest.tokens import cipher_from_settings
from services.ledger import ops as ledger_ops
from services.mapper import ops as mapper_ops
from services.mapper.adapters import settings as store_settings
from shared.contracts import Address, OrderPartiallyRefunded, PrivacyRequest, SaleConfirm
from shared.outbox import publish_staged
from tests.harness import System
from tests.integration.ingest_helpers import first_poll_done
from tests.integration.mapper_helpers import make_order, publish, wait_until

SAO_PAULO = dt.timezone(dt.timedelta(hours=-3))
# 22:30 in São Paulo is 01:30Z the next day: the sale is of the 20th, not of the 21st.
EVENING = dt.datetime(2026, 11, 20, 22, 30, tzinfo=SAO_PAULO)


@pytest.fixture(params=["2025-03", "v1"])
def shape(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


def store_of(base: int, shape: str) -> int:
    return base + (0 if shape == "2025-03" else 1)


async def test_card_payment_addresses_sku_and_calendar(system: System, shape: str) -> None:
    store = store_of(780_001, shape)
    mapper_pool = system.services["mapper"].ctx.pool
    await store_settings.set_product_match(mapper_pool, store, "sku")
    async with mapper_pool.acquire() as conn:
        catalog = await mapper_ops.add_product(
            conn,
            store_id=store,
            description="Camiseta básica azul P",
            price=Decimal("59.90"),
            sku="CAM-P-AZ",
        )
    await system.connect_store(store, shape=shape)
    await first_poll_done(system, store)
    order = system.simulator.state.add_order(
        store,
        paid=True,
        created_at=EVENING,
        paid_at=EVENING,
        products=[
            {"name": "Camiseta (P, Azul)", "price": "59.90", "quantity": 1, "sku": "CAM-P-AZ"}
        ],
        payment_method="credit_card",
        installments=3,
        customer={"address": {"street": "Rua Augusta", "number": "1500", "floor": "Apto 12"}},
        shipping_address={"street": "Avenida Paulista", "number": "1000"},
    )
    order_id = int(order["id"])

    (seen,) = await system.observer.wait_for("sale.pending_review", order_id=order_id)
    sale = seen.body
    (item,) = sale["items"]
    assert item["description"] == "Camiseta (P, Azul)"  # the variant name, as it came
    assert item["product"] == {
        "id": catalog,
        "description": "Camiseta básica azul P",
        "created": False,
    }
    assert sale["sale_date"] == "2026-11-20"
    assert sale["payment"] == {
        "method": "cash",
        "installments": [{"number": 1, "amount": sale["total"], "due_date": "2026-11-20"}],
    }
    paid = sale["store_payment"]
    assert (paid["method"], paid["installments"]) == ("credit_card", 3)
    assert paid["gateway"]
    assert paid["card_company"]
    assert (sale["shipping_address"]["street"], sale["shipping_address"]["number"]) == (
        "Avenida Paulista",
        "1000",
    )
    billing = sale["customer"]["address"]
    assert (billing["street"], billing["number"], billing["complement"]) == (
        "Rua Augusta",
        "1500",
        "Apto 12",
    )

    # The ledger keeps the facts and shows them; the ERP's confirmation decides the payment.
    ledger_pool = system.services["ledger"].ctx.pool

    async def kept() -> bool:
        row = await ledger_pool.fetchval(
            "SELECT 1 FROM ledger.sales WHERE sale_id = $1", sale["sale_id"]
        )
        return row is not None

    assert await wait_until(kept, True)
    await system.erp_publish(
        SaleConfirm(sale_id=sale["sale_id"], confirmed_by="revisor"), f"confirm:{sale['sale_id']}"
    )
    (confirmed,) = await system.observer.wait_for("sale.confirmed", sale_id=sale["sale_id"])
    assert [(r["method"], r["amount"]) for r in confirmed.body["receivables"]] == [
        ("cash", sale["total"])
    ]
    shown = await ledger_ops.sale(ledger_pool, store, order_id)
    assert shown["store_payment"] == paid
    assert shown["shipping_address"]["street"] == "Avenida Paulista"
    assert shown["customer"]["address"]["street"] == "Rua Augusta"
    assert shown["sale_date"] == dt.date(2026, 11, 20)


async def test_an_order_not_in_reais_is_rejected_visibly(system: System, shape: str) -> None:
    store = store_of(780_011, shape)
    await system.connect_store(store, shape=shape)
    await first_poll_done(system, store)
    order_id = int(system.simulator.state.add_order(store, paid=True, currency="USD")["id"])

    (rejected,) = await system.observer.wait_for("sale.rejected", order_id=order_id)
    assert rejected.body["reason"] == "unsupported_currency"
    listed = await mapper_ops.rejected_orders(system.services["mapper"].ctx.pool, store)
    assert [(r["order_id"], r["reason"]) for r in listed] == [(order_id, "unsupported_currency")]
    assert system.observer.of("sale.pending_review", order_id=order_id) == []


async def test_a_partial_refund_is_noted_and_announced(system: System, shape: str) -> None:
    store = store_of(780_021, shape)
    await system.connect_store(store, shape=shape)
    await first_poll_done(system, store)
    sim = system.simulator.state
    order_id = int(sim.add_order(store, paid=True)["id"])
    (pending,) = await system.observer.wait_for("sale.pending_review", order_id=order_id)

    sim.refund(store, order_id, amount="1.00")

    (noted,) = await system.observer.wait_for("sale.partially_refunded", order_id=order_id)
    assert noted.exchange == "ledger.events"
    assert noted.type == "sale.partially_refunded.v1"
    assert (noted.body["sale_id"], noted.body["store_id"]) == (pending.body["sale_id"], store)
    assert noted.body["noted_at"]
    shown = await ledger_ops.sale(system.services["ledger"].ctx.pool, store, order_id)
    assert shown["partially_refunded_at"] is not None
    assert shown["status"] == "pending_review"  # nothing reversed
    await system.settled(store)
    assert system.observer.of("sale.cancelled", order_id=order_id) == []
    assert len(system.observer.of("sale.partially_refunded", order_id=order_id)) == 1


async def test_a_partial_refund_before_its_sale_is_noted_when_it_comes(system: System) -> None:
    # The ledger may hear of the refund first (it comes straight from ingest).
    store = 780_031
    order = make_order(store, 5)
    noted_at = dt.datetime(2026, 11, 21, 12, 0, tzinfo=dt.UTC)
    await publish(system, OrderPartiallyRefunded(store_id=store, order_id=5, noted_at=noted_at))
    ledger_pool = system.services["ledger"].ctx.pool

    async def remembered() -> bool:
        row = await ledger_pool.fetchval(
            "SELECT 1 FROM ledger.early_partial_refunds WHERE store_id = $1", store
        )
        return row is not None

    assert await wait_until(remembered, True)
    await publish(system, order)
    (noted,) = await system.observer.wait_for("sale.partially_refunded", order_id=5, store_id=store)
    assert noted.body["noted_at"].startswith("2026-11-21T12:00:00")


async def test_orders_of_a_store_switched_off_in_flight(system: System, shape: str) -> None:
    store = store_of(780_041, shape)
    await system.connect_store(store, shape=shape)
    await first_poll_done(system, store)
    ingest_pool = system.services["ingest"].ctx.pool
    mapper_pool = system.services["mapper"].ctx.pool
    sim = system.simulator.state
    # Read and announced by ingest, but not yet imported: in flight when the store goes off.
    order_id = int(sim.add_order(store, paid=True, notify=False)["id"])
    in_flight = make_order(store, order_id)

    assert await ingest_ops.set_enabled(ingest_pool, system.erp, store, enabled=False)
    await system.observer.wait_for("integration.disabled", store_id=store)

    async def status() -> bool | None:
        value: bool | None = await mapper_pool.fetchval(
            "SELECT enabled FROM mapper.store_status WHERE store_id = $1", store
        )
        return value

    assert await wait_until(status, False) is False
    await publish(system, in_flight)
    (rejected,) = await system.observer.wait_for("sale.rejected", order_id=order_id)
    assert rejected.body["reason"] == "store_disabled"
    listed = await mapper_ops.rejected_orders(mapper_pool, store)
    assert [(r["order_id"], r["reason"]) for r in listed] == [(order_id, "store_disabled")]

    assert await ingest_ops.set_enabled(ingest_pool, system.erp, store, enabled=True)
    await system.observer.wait_for("integration.enabled", store_id=store)
    assert await wait_until(status, True) is True
    await mapper_ops.retry_orders(mapper_pool, system.erp, store_id=store, order_id=order_id)

    (sale,) = await system.observer.wait_for("sale.pending_review", order_id=order_id)
    assert sale.body["store_id"] == store
    assert await mapper_ops.rejected_orders(mapper_pool, store) == []


async def test_a_redacted_customer_loses_the_addresses_everywhere(system: System) -> None:
    # LGPD (SPEC §9): the addresses are personal data, held by the mapper and the ledger.
    store = 780_051
    order = make_order(store, 1)
    address = {"street": "Rua Augusta", "number": "1500", "city": "São Paulo"}

    def leaks(value: object) -> bool:
        text = "" if value is None else str(value)
        return any(part in text for part in address.values())

    order = order.model_copy(
        update={
            "customer": order.customer.model_copy(update={"address": Address(**address)}),
            "shipping_address": Address(**address),
        }
    )
    await publish(system, order)
    mapper_pool = system.services["mapper"].ctx.pool
    ledger_pool = system.services["ledger"].ctx.pool

    async def kept() -> bool:
        found = await ledger_pool.fetchval("SELECT 1 FROM ledger.sales WHERE store_id = $1", store)
        return found is not None

    assert await wait_until(kept, True)
    await publish(
        system, PrivacyRequest(store_id=store, kind="customers_redact", order_ids=[1]), "lgpd:1"
    )

    async def forgotten() -> bool:
        row = await ledger_pool.fetchrow(
            "SELECT announcement->'customer'->'address' AS billing,"
            " announcement->'shipping_address' AS shipping FROM ledger.sales WHERE store_id = $1",
            store,
        )
        assert row is not None
        # Redacted in place (shared/privacy.py): the places stay, none of the person's values.
        return not any(leaks(row[k]) for k in ("billing", "shipping"))

    assert await wait_until(forgotten, True)

    async def mapper_forgot() -> bool:
        row = await mapper_pool.fetchrow(
            "SELECT c.address AS billing, s.customer_address, s.shipping_address"
            " FROM mapper.sales s JOIN mapper.customers c ON c.id = s.customer_id"
            " WHERE s.store_id = $1",
            store,
        )
        assert row is not None
        return any(leaks(row[k]) for k in ("billing", "customer_address", "shipping_address"))

    assert await wait_until(mapper_forgot, False) is False


async def test_a_store_connected_again_is_announced_enabled(system: System) -> None:
    # After an uninstall (or a revocation), the merchant connects the store again: the mapper
    # must hear that it is on, as after `integration enable`.
    store = 780_061
    await system.connect_store(store)
    await first_poll_done(system, store)
    ingest_pool = system.services["ingest"].ctx.pool
    async with ingest_pool.acquire() as conn, conn.transaction():
        staged = await disable_store(conn, store, "app_uninstalled")
    await publish_staged(ingest_pool, "ingest", system.erp, staged)
    (off,) = await system.observer.wait_for("integration.disabled", store_id=store)
    assert off.body["reason"] == "app_uninstalled"

    await store_connection(
        ingest_pool,
        cipher_from_settings(system.settings),
        store_id=store,
        access_token="a-new-token",
        activated_by="erp-user-1",
        publisher=system.services["ingest"].ctx.publisher,  # as the OAuth callback does
    )

    (on,) = await system.observer.wait_for("integration.enabled", store_id=store)
    assert on.type == "integration.enabled.v1"
    mapper_pool = system.services["mapper"].ctx.pool

    async def status() -> bool | None:
        value: bool | None = await mapper_pool.fetchval(
            "SELECT enabled FROM mapper.store_status WHERE store_id = $1", store
        )
        return value

    assert await wait_until(status, True) is True
