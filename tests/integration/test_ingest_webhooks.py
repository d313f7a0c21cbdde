"""Ingest's webhook path against the simulator, the real broker and the real database.

Webhooks duplicated and delivered out of order, orders not paid yet, orders created before the
activation, orders the API does not have or returns malformed, webhooks of unknown stores,
cancellations after the import, and a 120-webhook burst for one store within its rate limit.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.simulator.webhooks import HMAC_HEADER, sign
from tests.harness import System
from tests.integration.ingest_helpers import (
    announced_rows,
    eventually,
    first_poll_done,
    make_due,
    per_order,
    run_cli,
    store_row,
)

STORE = 710_001
BURST_FIGURES = Path(__file__).resolve().parents[2] / ".burst-figures.json"


async def _requests(system: System, store_id: int) -> int:
    return int(system.simulator.state.counters()[store_id]["requests"])


async def test_duplicated_and_reordered_webhooks_import_each_order_once(system: System) -> None:
    await system.connect_store(STORE)
    await first_poll_done(system, STORE)
    sim = system.simulator.state
    ids = [int(sim.add_order(STORE, notify=False)["id"]) for _ in range(6)]
    faults = system.simulator.dispatcher.faults
    faults.duplicates, faults.shuffle, faults.shuffle_window_s = 2, True, 0.3

    for order_id in ids:
        sim.update_order(STORE, order_id, {"owner_note": "gift wrap"})  # order/updated
        sim.mark_paid(STORE, order_id)  # order/paid
    # Each change is delivered three times, in a random order spread over 0.3 s.

    await system.observer.wait_for("order.paid", count=len(ids), store_id=STORE)
    await system.simulator.dispatcher.wait_idle(10)
    await system.observer.wait_for("sale.pending_review", count=len(ids), store_id=STORE)
    await system.settled(STORE)

    deliveries = [d for d in system.simulator.dispatcher.log if d.store_id == STORE]
    assert len(deliveries) == len(ids) * 2 * 3
    assert {d.outcome for d in deliveries} == {"delivered"}
    assert per_order(system, "order.paid", STORE) == Counter(dict.fromkeys(ids, 1))
    assert per_order(system, "sale.pending_review", STORE) == Counter(dict.fromkeys(ids, 1))
    rows = await announced_rows(system, STORE)
    assert set(rows) == set(ids)
    assert all(r["paid_announced_at"] is not None for r in rows.values())


async def test_order_not_paid_is_imported_once_it_becomes_paid(system: System) -> None:
    await system.connect_store(STORE)
    await first_poll_done(system, STORE)
    sim = system.simulator.state
    pending = int(sim.add_order(STORE, paid=False)["id"])
    authorized = int(sim.add_order(STORE, payment_status="authorized")["id"])
    abandoned = int(sim.add_order(STORE, payment_status="abandoned")["id"])
    voided = int(sim.add_order(STORE, paid=False)["id"])
    sim.void(STORE, voided, notify=False)
    before = await _requests(system, STORE)

    for order_id in (pending, authorized, abandoned, voided):
        assert await system.webhook(STORE, "order/updated", order_id) == 200

    async def fetched() -> bool:
        return await _requests(system, STORE) > before  # a listing or single fetches

    await eventually(fetched, "ingest to fetch the webhooked orders")
    await system.settled(STORE)
    assert system.observer.of("order.paid", store_id=STORE) == []
    assert system.observer.of("order.cancelled", store_id=STORE) == []
    assert await announced_rows(system, STORE) == {}

    sim.mark_paid(STORE, pending)  # sends order/paid
    await system.observer.wait_for("order.paid", order_id=pending)
    assert await system.webhook(STORE, "order/updated", pending) == 200
    await system.settled(STORE)
    assert per_order(system, "order.paid", STORE) == Counter({pending: 1})
    paid = system.observer.of("order.paid", order_id=pending)[0].body
    assert paid["paid_at"] is not None


async def test_order_created_before_activation_is_never_imported(system: System) -> None:
    activated = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=1)
    await system.connect_store(STORE, activated_at=activated)
    await first_poll_done(system, STORE)
    sim = system.simulator.state
    old = int(sim.add_order(STORE, paid=True, created_at=activated - dt.timedelta(hours=1))["id"])
    new = int(sim.add_order(STORE, paid=True)["id"])  # both send order/paid

    await system.observer.wait_for("order.paid", order_id=new)
    # The old order changes again (a webhook, and the poll now sees it in its window).
    sim.update_order(STORE, old, {"owner_note": "edited"})
    row = await store_row(system, STORE)
    assert row is not None
    await make_due(system, STORE)

    async def polled_again() -> bool:
        again = await store_row(system, STORE)
        return again is not None and again["poll_cursor"] > row["poll_cursor"]

    await eventually(polled_again, "a second poll")
    await system.simulator.dispatcher.wait_idle(10)
    await system.settled(STORE)
    assert per_order(system, "order.paid", STORE) == Counter({new: 1})
    assert set(await announced_rows(system, STORE)) == {new}


async def test_order_created_in_the_second_of_activation_is_imported(system: System) -> None:
    """The API shows creation times in whole seconds; an order created 0.2 s after the
    activation reads as created at the start of that second. It was not created before the
    activation, so it is imported (SPEC §2: a paid order is never lost)."""
    activated = dt.datetime.now(dt.UTC).replace(microsecond=500_000)
    await system.connect_store(STORE, activated_at=activated)
    await first_poll_done(system, STORE)
    created = activated + dt.timedelta(milliseconds=200)
    order = system.simulator.state.add_order(STORE, paid=True, created_at=created)
    await system.observer.wait_for("order.paid", order_id=int(order["id"]), within=5)


async def test_webhook_for_an_order_the_store_does_not_have_is_acknowledged(
    system: System,
) -> None:
    await system.connect_store(STORE)
    await first_poll_done(system, STORE)
    missing = 999_999_999_999
    assert await system.webhook(STORE, "order/paid", missing) == 200

    async def answered_404() -> bool:
        counters = system.simulator.state.counters()[STORE]
        return int(counters["by_status"].get("404", 0)) >= 1

    await eventually(answered_404, "ingest to ask the API for the order")
    await system.settled(STORE)
    keys = {s.routing_key for s in system.observer.seen}
    assert keys == {"webhook.received"}
    assert await announced_rows(system, STORE) == {}


async def test_webhook_for_an_unknown_store_is_acknowledged_and_ignored(system: System) -> None:
    stranger = 710_999
    system.simulator.state.add_store(stranger)
    order = system.simulator.state.add_order(stranger, paid=True, notify=False)
    assert await system.webhook(stranger, "order/paid", int(order["id"])) == 200
    await system.observer.wait_for("webhook.received", store_id=stranger)
    await system.settled()
    assert {s.routing_key for s in system.observer.seen} == {"webhook.received"}
    assert await store_row(system, stranger) is None
    assert system.simulator.state.counters()[stranger]["requests"] == 0


async def test_malformed_order_is_recorded_and_rejected_then_imported_once_fixed(
    system: System, tmp_path: Path
) -> None:
    await system.connect_store(STORE)
    await first_poll_done(system, STORE)
    sim = system.simulator.state
    bad_price = int(sim.add_order(STORE, paid=True, notify=False)["id"])
    products = sim.get_order(STORE, bad_price)["products"]
    broken = [dict(products[0], price="abc"), *products[1:]]
    sim.update_order(STORE, bad_price, {"products": broken}, notify=False)
    no_products = int(sim.add_order(STORE, paid=True, notify=False)["id"])
    sim.update_order(STORE, no_products, {"products": []}, notify=False)

    for order_id in (bad_price, no_products):
        assert await system.webhook(STORE, "order/paid", order_id) == 200
    invalid = await system.observer.wait_for("order.invalid", count=2, store_id=STORE)
    details = {s.body["order_id"]: s.body["detail"] for s in invalid}
    assert "products[0].price" in details[bad_price]
    assert "products" in details[no_products]
    rejected = await system.observer.wait_for("sale.rejected", count=2, store_id=STORE)
    assert {s.body["reason"] for s in rejected} == {"invalid_order"}
    assert system.observer.of("order.paid", store_id=STORE) == []

    rows = await announced_rows(system, STORE)
    assert rows[bad_price]["paid_announced_at"] is None
    assert rows[bad_price]["invalid_detail"] is not None

    listed = (
        await run_cli(system, tmp_path, "orders", "rejected", "--store-id", str(STORE), "--json")
    ).json()
    assert {(r["order_id"], r["reason"]) for r in listed} == {
        (bad_price, "invalid_order"),
        (no_products, "invalid_order"),
    }
    shown = (await run_cli(system, tmp_path, "integration", "show", str(STORE), "--json")).json()
    assert shown["rejected"] == 2

    # The same malformed order webhooked again: nothing new to say.
    assert await system.webhook(STORE, "order/updated", no_products) == 200
    # The merchant fixes the other one: it is imported, once.
    sim.update_order(STORE, bad_price, {"products": products})
    await system.observer.wait_for("order.paid", order_id=bad_price)
    await system.observer.wait_for("sale.pending_review", order_id=bad_price)
    await system.settled(STORE)
    assert per_order(system, "order.invalid", STORE) == Counter({bad_price: 1, no_products: 1})
    assert per_order(system, "order.paid", STORE) == Counter({bad_price: 1})
    listed = (
        await run_cli(system, tmp_path, "orders", "rejected", "--store-id", str(STORE), "--json")
    ).json()
    assert [r["order_id"] for r in listed] == [no_products]


async def test_cancellation_after_import_is_announced_exactly_once(system: System) -> None:
    await system.connect_store(STORE)
    await first_poll_done(system, STORE)
    sim = system.simulator.state
    cancelled, voided, refunded, partly = (
        int(sim.add_order(STORE, paid=True)["id"]) for _ in range(4)
    )
    await system.observer.wait_for("sale.pending_review", count=4, store_id=STORE)

    system.simulator.dispatcher.faults.duplicates = 3
    sim.cancel(STORE, cancelled, reason="fraud")  # order/cancelled ×4
    sim.void(STORE, voided)  # order/voided ×4
    sim.refund(STORE, refunded)  # order/updated ×4
    sim.refund(STORE, partly, amount="1.00")  # a partial refund leaves the sale standing

    announced = await system.observer.wait_for("order.cancelled", count=3, store_id=STORE)
    await system.observer.wait_for("sale.cancelled", count=3, store_id=STORE)
    await system.simulator.dispatcher.wait_idle(10)
    # Late and stale webhooks for the cancelled order change nothing either.
    assert await system.webhook(STORE, "order/paid", cancelled) == 200
    assert await system.webhook(STORE, "order/cancelled", cancelled) == 200
    await system.settled(STORE)

    assert per_order(system, "order.cancelled", STORE) == Counter(
        {cancelled: 1, voided: 1, refunded: 1}
    )
    assert per_order(system, "order.paid", STORE) == Counter(
        {cancelled: 1, voided: 1, refunded: 1, partly: 1}
    )
    reasons = {s.body["order_id"]: s.body["reason"] for s in announced}
    assert reasons == {cancelled: "fraud", voided: "voided", refunded: "refunded"}
    assert all(s.body["cancelled_at"] for s in announced)
    assert len(system.observer.of("sale.cancelled", store_id=STORE)) == 3
    rows = await announced_rows(system, STORE)
    assert rows[partly]["cancelled_announced_at"] is None
    assert all(rows[o]["cancelled_announced_at"] is not None for o in reasons)


@pytest.mark.timeout(60)
async def test_burst_of_120_webhooks_for_one_store_stays_within_its_rate_limit(
    system: System,
) -> None:
    sim = system.simulator.state
    await system.connect_store(STORE)
    await first_poll_done(system, STORE)
    bucket = sim.stores[STORE].bucket
    assert (bucket.enabled, bucket.size, bucket.leak_per_s) == (True, 40, 2.0)
    ids = sim.add_orders(STORE, 120, paid=True, interval=dt.timedelta(seconds=1))
    sim.reset_counters()

    started = time.monotonic()
    statuses = await asyncio.gather(*(system.webhook(STORE, "order/paid", o) for o in ids))
    acknowledged = time.monotonic() - started
    await system.observer.wait_for("order.paid", count=120, within=50, store_id=STORE)
    elapsed = time.monotonic() - started
    counters = sim.counters()[STORE]

    figures = {
        "webhooks": len(ids),
        "seconds_to_acknowledge_all": round(acknowledged, 3),
        "seconds_to_last_order_paid": round(elapsed, 3),
        "api_requests": counters["requests"],
        "api_429s": counters["throttled"],
        "by_status": counters["by_status"],
    }
    print(f"burst figures: {json.dumps(figures)}")
    BURST_FIGURES.write_text(json.dumps(figures, indent=2) + "\n")

    assert statuses == [200] * 120
    assert counters["throttled"] == 0
    await system.settled(STORE)
    assert per_order(system, "order.paid", STORE) == Counter(dict.fromkeys(ids, 1))


def _padded(size: int) -> bytes:
    """A valid order/paid webhook body of exactly ``size`` bytes (for an unknown store)."""
    head = b'{"store_id":710998,"event":"order/paid","id":1,"pad":"'
    return head + b"x" * (size - len(head) - 2) + b'"}'


async def test_webhook_body_limit_is_64_kib_with_or_without_a_content_length(
    system: System,
) -> None:
    url = f"{system.ingest_url}/webhooks/nuvemshop"
    secret = system.simulator.state.client_secret

    async def post(body: bytes, *, chunked: bool) -> int:
        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(body), 8192):
                yield body[start : start + 8192]

        headers = {"Content-Type": "application/json", HMAC_HEADER: sign(body, secret)}
        data = chunks() if chunked else body
        async with system.http.post(url, data=data, headers=headers) as response:
            await response.read()
            return response.status

    at_limit, over = _padded(64 * 1024), _padded(64 * 1024 + 1)
    assert await post(at_limit, chunked=False) == 200
    assert await post(at_limit, chunked=True) == 200
    assert await post(over, chunked=False) == 413
    assert await post(over, chunked=True) == 413
