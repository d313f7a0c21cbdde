"""LGPD webhooks and the explicit backfill, against the simulator, the broker and the database.

A ``customers/redact`` webhook anonymises the mapper's customer with that document, and
``store/redact`` every customer of the store; a backfill imports the paid orders created in its
range before the activation date, and only those, once.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg

from services.ingest.sync import backfill
from tests.harness import System
from tests.integration.ingest_helpers import (
    eventually,
    first_poll_done,
    ingest_pool,
    ingest_service,
    per_order,
    post_signed,
    run_cli,
    store_record,
)

STORE = 740_001
OTHER_STORE = 740_002
CPF = "75839566500"
CNPJ = "16727230000197"


async def _customers(system: System, store_id: int) -> dict[str, asyncpg.Record]:
    rows = await ingest_pool(system).fetch(
        "SELECT id::text AS id, name, document, email, mobile_phone, business_phone"
        " FROM mapper.customers WHERE store_id = $1",
        store_id,
    )
    return {r["id"]: r for r in rows}


async def _import(system: System, store_id: int, customer: dict[str, Any]) -> dict[str, Any]:
    """A paid order of ``customer`` imported as a pending sale; the sale's announcement."""
    order = system.simulator.state.add_order(store_id, paid=True, customer=customer)
    sale = await system.observer.wait_for("sale.pending_review", order_id=int(order["id"]))
    return {"order": order, "sale": sale[0].body}


async def test_customers_redact_anonymises_the_customer_with_that_document(
    system: System,
) -> None:
    await system.connect_store(STORE)
    await first_poll_done(system, STORE)
    maria = await _import(system, STORE, {"name": "Maria Silva", "identification": CPF})
    other = await _import(system, STORE, {"name": "Madeira Ltda", "identification": CNPJ})
    maria_id = maria["sale"]["customer"]["id"]
    other_id = other["sale"]["customer"]["id"]
    assert (await _customers(system, STORE))[maria_id]["document"] == CPF

    request = {
        "store_id": STORE,
        "event": "customers/redact",
        "customer": {
            "id": maria["order"]["customer"]["id"],
            "email": maria["order"]["customer"]["email"],
            "phone": maria["order"]["customer"]["phone"],
            "identification": CPF,
        },
        "orders_to_redact": [int(maria["order"]["id"])],
    }
    assert await post_signed(system, request) == 200
    published = await system.observer.wait_for("privacy.request", store_id=STORE)
    body = published[0].body
    assert body["kind"] == "customers_redact"
    # What the mapper and the ledger act on must reach them: the customer and the orders.
    assert body["order_ids"] == [int(maria["order"]["id"])], body
    assert body["customer"] is not None, body
    assert body["customer"]["identification"] == CPF, body

    async def redacted() -> bool:
        name: str = (await _customers(system, STORE))[maria_id]["name"]
        return name == "redacted"

    await eventually(redacted, "the customer with that document to be anonymised", within=5)
    customers = await _customers(system, STORE)
    gone = customers[maria_id]
    assert (gone["name"], gone["document"], gone["email"]) == ("redacted", None, None)
    assert (gone["mobile_phone"], gone["business_phone"]) == (None, None)
    kept = customers[other_id]
    assert (kept["name"], kept["document"]) == ("Madeira Ltda", CNPJ)


async def test_store_redact_anonymises_every_customer_of_that_store(system: System) -> None:
    for store_id in (STORE, OTHER_STORE):
        await system.connect_store(store_id)
        await first_poll_done(system, store_id)
    await _import(system, STORE, {"name": "Maria Silva", "identification": CPF})
    await _import(system, STORE, {"name": "Madeira Ltda", "identification": CNPJ})
    await _import(system, OTHER_STORE, {"name": "Maria Silva", "identification": CPF})

    assert await post_signed(system, {"store_id": STORE, "event": "store/redact"}) == 200

    async def redacted() -> bool:
        return {r["name"] for r in (await _customers(system, STORE)).values()} == {"redacted"}

    await eventually(redacted, "every customer of the store to be anonymised", within=5)
    assert all(r["document"] is None for r in (await _customers(system, STORE)).values())
    untouched = list((await _customers(system, OTHER_STORE)).values())
    assert [(r["name"], r["document"]) for r in untouched] == [("Maria Silva", CPF)]


async def test_backfill_imports_the_paid_orders_of_its_range_only(
    system: System, tmp_path: Path
) -> None:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    await system.connect_store(STORE, activated_at=now)
    await first_poll_done(system, STORE)
    sim = system.simulator.state

    def old_order(days: float, *, paid: bool = True) -> int:
        created = now - dt.timedelta(days=days)
        return int(sim.add_order(STORE, paid=paid, created_at=created, notify=False)["id"])

    too_old = old_order(20)
    in_range = [old_order(10), old_order(5), old_order(2)]
    not_paid = old_order(6, paid=False)
    cancelled = old_order(4)
    sim.cancel(STORE, cancelled, notify=False)
    after_range = old_order(0.5)  # before the activation, but after --until
    since, until = now - dt.timedelta(days=12), now - dt.timedelta(days=1)

    result = await run_cli(
        system,
        tmp_path,
        "backfill",
        "--store-id",
        str(STORE),
        "--since",
        since.isoformat(),
        "--until",
        until.isoformat(),
        "--json",
    )
    report = result.json()
    assert report["imported"] == 3, report
    await system.observer.wait_for("order.paid", count=3, store_id=STORE)
    await system.observer.wait_for("sale.pending_review", count=3, store_id=STORE)
    await system.settled(STORE)
    assert per_order(system, "order.paid", STORE) == Counter(dict.fromkeys(in_range, 1))
    for order_id in (too_old, not_paid, cancelled, after_range):
        assert system.observer.of("order.paid", order_id=order_id) == []

    # The same backfill again (in process this time): everything in range is already imported.
    service = ingest_service(system)
    ctx = system.services["ingest"].ctx
    again, total = await backfill(
        ctx.pool,
        ctx.broker,
        service.client,
        service.cipher,
        await store_record(system, STORE),
        since=since,
        until=until,
    )
    assert (again.outcome, again.paid) == ("ok", 0)
    assert total == report["matched"]
    await system.settled(STORE)
    assert per_order(system, "order.paid", STORE) == Counter(dict.fromkeys(in_range, 1))
