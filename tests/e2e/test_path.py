"""One paid order travels the whole way: webhook → order.paid → pending sale → confirm → receivable.

Against the real broker, database and HTTP, with the three services and the simulator running.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from shared.contracts import SaleConfirm
from tests.harness import System

pytestmark = pytest.mark.e2e

STORE = 501


async def test_paid_order_becomes_confirmed_sale_once(system: System) -> None:
    connected = await system.connect_store(STORE, user="erp-user-7")
    assert connected.webhook_error is None
    sim = system.simulator.state
    order = sim.add_order(
        STORE,
        paid=True,
        notify=False,
        customer={"name": "Maria Silva", "identification": "75839566500"},
        products=[{"name": "Mesa de Roble", "price": "6000.00", "quantity": 1, "sku": "MR-1"}],
        shipping="25.00",
        discount="0",
    )
    order_id = int(order["id"])

    # The same webhook five times, concurrently: one import.
    statuses = await asyncio.gather(
        *(system.webhook(STORE, "order/paid", order_id) for _ in range(5))
    )
    assert statuses == [200] * 5

    paid = await system.observer.wait_for("order.paid", order_id=order_id)
    pending = await system.observer.wait_for("sale.pending_review", order_id=order_id)
    await system.settled(STORE)
    assert len(system.observer.of("order.paid", order_id=order_id)) == 1
    assert len(system.observer.of("sale.pending_review", order_id=order_id)) == 1

    announced = paid[0]
    assert announced.content_type == "application/json"
    assert announced.persistent
    assert announced.type == "order.paid.v1"
    assert announced.correlation_id == f"{STORE}:{order_id}"
    assert announced.body["total"] == "6025.00"

    sale = pending[0].body
    assert sale["status"] == "pending_review"
    assert sale["seller_id"] == "erp-user-7"
    assert sale["customer"]["name"] == "Maria Silva"
    assert sale["customer"]["document"] == "75839566500"
    assert sale["customer"]["created"] is True
    assert sale["items"][0]["product"]["created"] is True
    assert sale["items"][0]["description"] == "Mesa de Roble"
    assert sale["shipping"] == "25.00"
    assert Decimal(sale["total"]) == Decimal("6025.00")
    assert sale["payment"]["method"] == "cash"
    assert [i["amount"] for i in sale["payment"]["installments"]] == ["6025.00"]

    confirm = SaleConfirm(sale_id=sale["sale_id"], confirmed_by="erp-user-7")
    await system.erp_publish(confirm, message_id="erp-confirm-1")
    confirmed = await system.observer.wait_for("sale.confirmed", sale_id=sale["sale_id"])
    body = confirmed[0].body
    assert [(r["number"], r["amount"], r["status"]) for r in body["receivables"]] == [
        (1, "6025.00", "open")
    ]
    assert [(m["quantity"], m["direction"]) for m in body["stock_movements"]] == [(1, "out")]

    # The ERP's message redelivered (same message id): nothing new is posted or published.
    await system.erp_publish(confirm, message_id="erp-confirm-1")
    await system.ledger_settled()
    assert len(system.observer.of("sale.confirmed", sale_id=sale["sale_id"])) == 1
    pool = system.services["ledger"].ctx.pool
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM ledger.receivables WHERE sale_id = $1", sale["sale_id"]
        )
        == 1
    )
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM ledger.stock_movements WHERE sale_id = $1", sale["sale_id"]
        )
        == 1
    )


async def test_bad_webhooks_are_refused(system: System) -> None:
    url = f"{system.ingest_url}/webhooks/nuvemshop"
    async with system.http.post(
        url,
        data=b'{"store_id": 1, "event": "order/paid", "id": 2}',
        headers={"x-linkedstore-hmac-sha256": "00" * 32},
    ) as response:
        assert response.status == 401
    from services.simulator.webhooks import sign

    body = b"not json"
    secret = system.simulator.state.client_secret
    async with system.http.post(
        url, data=body, headers={"x-linkedstore-hmac-sha256": sign(body, secret)}
    ) as response:
        assert response.status == 400
    big = b'{"store_id": 1, "event": "order/paid", "id": 2, "pad": "' + b"x" * 70_000 + b'"}'
    async with system.http.post(
        url, data=big, headers={"x-linkedstore-hmac-sha256": sign(big, secret)}
    ) as response:
        assert response.status == 413
    await system.observer.echo(system.erp)  # a refused webhook queued nothing
    assert system.observer.of("webhook.received") == []
