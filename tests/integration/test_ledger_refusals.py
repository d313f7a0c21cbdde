"""SPEC §5 and CONTRACT.md: every confirmation the ledger will not carry out is refused, visibly.

A refusal is ``ledger.events / sale.confirmation_refused`` with a short ``reason`` and a
``detail``; it posts nothing, and a sale that was pending review stays so and can be confirmed
correctly afterwards. Malformed ERP messages are also dead-lettered to ``ledger.erp.dead``
with their reason in the headers, and never block the queue.
"""

from __future__ import annotations

import asyncio

import orjson

from services.ledger.adapters import postgres
from services.ledger.handlers import sales_handler
from shared.contracts import SaleConfirm
from shared.db import create_pool
from shared.settings import Settings
from tests.integration.ledger_helpers import (
    Ledger,
    Rows,
    days,
    deliveries_of,
    next_order_id,
    payment,
    pending_sale,
    product_id,
    receivable_view,
)

STORE = 7301


def _header(value: object) -> str | None:
    if isinstance(value, bytes):
        return value.decode()
    return None if value is None else str(value)


async def test_unknown_sale_is_refused_for_confirm_and_discard(ledger: Ledger) -> None:
    await ledger.confirm("no-such-sale", "erp-confirm-ghost")
    refused = (await ledger.refused("no-such-sale")).body
    assert refused["reason"] == "unknown_sale"
    assert refused["detail"]

    await ledger.discard("no-such-sale-2", "erp-discard-ghost")
    refused = (await ledger.refused("no-such-sale-2")).body
    assert refused["reason"] == "unknown_sale"

    await ledger.settled()
    assert await ledger.pool.fetchval("SELECT count(*) FROM ledger.sales") == 0
    assert await ledger.pool.fetchval("SELECT count(*) FROM ledger.receivables") == 0
    assert await ledger.pool.fetchval("SELECT count(*) FROM ledger.stock_movements") == 0
    assert ledger.observer.of("sale.confirmed") == []
    assert ledger.observer.of("sale.cancelled") == []


async def test_a_cancelled_sale_cannot_be_confirmed(ledger: Ledger) -> None:
    stool = product_id()
    await ledger.add_stock(STORE, stool, 5)
    sale = pending_sale(STORE, next_order_id(), [(stool, 2, "45.00")])
    await ledger.announce(sale)
    await ledger.discard(sale.sale_id, "erp-discard-1")
    await ledger.cancelled(sale.sale_id)

    await ledger.confirm(sale.sale_id, "erp-confirm-late")
    refused = await ledger.refused(sale.sale_id)
    assert refused.body["reason"] == "sale_cancelled"
    assert refused.body["store_id"] == STORE
    assert refused.body["order_id"] == sale.order_id
    assert refused.correlation_id == f"{STORE}:{sale.order_id}"
    await ledger.settled()
    assert ledger.events("sale.confirmed", sale.sale_id) == []
    assert await ledger.status(sale.sale_id) == "cancelled"
    assert await ledger.posted(sale.sale_id) == (0, 0)
    assert await ledger.on_hand(STORE, stool) == 5


async def test_installments_that_do_not_add_up_and_early_due_dates_are_refused(
    ledger: Ledger,
) -> None:
    sale = pending_sale(STORE, next_order_id(), [(product_id(), 2, "60.00")], shipping="5.00")
    await ledger.announce(sale)

    short = payment("boleto", ("60.00", days(0)), ("60.00", days(30)))
    await ledger.confirm(sale.sale_id, "erp-confirm-short", pay=short)
    assert (await ledger.refused(sale.sale_id)).body["reason"] == "installments_mismatch"
    assert await ledger.status(sale.sale_id) == "pending_review"
    assert await ledger.posted(sale.sale_id) == (0, 0)

    early = payment("boleto", ("65.00", days(-1)), ("60.00", days(30)))
    await ledger.confirm(sale.sale_id, "erp-confirm-early", pay=early)
    found = await ledger.observer.wait_for(
        "sale.confirmation_refused", count=2, sale_id=sale.sale_id
    )
    assert found[-1].body["reason"] == "invalid_installment"
    assert "before the sale date" in found[-1].body["detail"]
    assert await ledger.status(sale.sale_id) == "pending_review"
    assert await ledger.posted(sale.sale_id) == (0, 0)

    good = payment("boleto", ("65.00", days(0)), ("60.00", days(30)))
    await ledger.confirm(sale.sale_id, "erp-confirm-good", pay=good)
    body = (await ledger.confirmed(sale.sale_id)).body
    assert receivable_view(body) == [
        (1, "65.00", days(0).isoformat(), "boleto", "open"),
        (2, "60.00", days(30).isoformat(), "boleto", "open"),
    ]
    assert await ledger.posted(sale.sale_id) == (2, 1)


async def test_malformed_erp_messages_are_refused_dead_lettered_and_do_not_block(
    ledger: Ledger,
) -> None:
    sale = pending_sale(STORE, next_order_id(), [(product_id(), 1, "80.00")])
    await ledger.announce(sale)

    await ledger.publish_raw("erp.events", "sale.confirm", b"this is {not json", "bad-not-json")
    missing = orjson.dumps({"sale_id": sale.sale_id})  # no confirmed_by
    await ledger.publish_raw("erp.events", "sale.confirm", missing, "bad-no-confirmer")
    not_object = orjson.dumps([sale.sale_id, "erp-user-9"])
    await ledger.publish_raw("erp.events", "sale.confirm", not_object, "bad-array")
    no_discarder = orjson.dumps({"sale_id": sale.sale_id})
    await ledger.publish_raw("erp.events", "sale.discard", no_discarder, "bad-discard")

    refusals = await ledger.observer.wait_for("sale.confirmation_refused", count=4)
    by_id = {s.message_id: s.body for s in refusals}
    assert set(by_id) == {
        "sale.confirmation_refused:bad-not-json",
        "sale.confirmation_refused:bad-no-confirmer",
        "sale.confirmation_refused:bad-array",
        "sale.confirmation_refused:bad-discard",
    }
    assert all(body["reason"] == "malformed_message" for body in by_id.values())
    assert by_id["sale.confirmation_refused:bad-not-json"]["sale_id"] is None
    assert by_id["sale.confirmation_refused:bad-no-confirmer"]["sale_id"] == sale.sale_id
    assert "confirmed_by" in by_id["sale.confirmation_refused:bad-no-confirmer"]["detail"]
    assert by_id["sale.confirmation_refused:bad-discard"]["sale_id"] == sale.sale_id

    dead = await ledger.take_dead(4)
    assert sorted(m.message_id or "" for m in dead) == sorted(
        ["bad-not-json", "bad-no-confirmer", "bad-array", "bad-discard"]
    )
    headers = {m.message_id: dict(m.headers or {}) for m in dead}
    bodies = {m.message_id: m.body for m in dead}
    assert bodies["bad-not-json"] == b"this is {not json"  # the original body, untouched
    assert bodies["bad-no-confirmer"] == missing
    assert _header(headers["bad-not-json"].get("x-error-reason")) == "invalid_json"
    assert _header(headers["bad-no-confirmer"].get("x-error-reason")) == "invalid_message"
    for message_id, h in headers.items():
        assert _header(h.get("x-error-reason")), message_id
        assert _header(h.get("x-error-detail")), message_id
        assert _header(h.get("x-original-routing-key")) in ("sale.confirm", "sale.discard")

    # Nothing was posted or changed; the sale is still pending and a correct message goes through.
    assert await ledger.status(sale.sale_id) == "pending_review"
    assert await ledger.posted(sale.sale_id) == (0, 0)
    await ledger.confirm(sale.sale_id, "erp-confirm-good")
    body = (await ledger.confirmed(sale.sale_id)).body
    assert receivable_view(body) == [(1, "80.00", days(0).isoformat(), "cash", "open")]


async def test_stock_short_at_confirmation_is_refused_when_the_check_is_on(
    ledger: Ledger,
) -> None:
    desk, chair = product_id(), product_id()
    await ledger.stock_check_on(STORE)
    await ledger.add_stock(STORE, desk, 1)
    await ledger.add_stock(STORE, chair, 10)
    sale = pending_sale(STORE, next_order_id(), [(desk, 2, "500.00"), (chair, 4, "90.00")])
    await ledger.announce(sale)

    await ledger.confirm(sale.sale_id, "erp-confirm-1")
    refused = (await ledger.refused(sale.sale_id)).body
    assert refused["reason"] == "insufficient_stock"
    assert "requested 2" in refused["detail"]
    assert "available 1" in refused["detail"]
    assert "Produto 1" in refused["detail"]  # the line's description, for the operator
    assert "Produto 2" not in refused["detail"]  # the chair has enough
    assert await ledger.status(sale.sale_id) == "pending_review"
    assert await ledger.posted(sale.sale_id) == (0, 0)
    assert await ledger.on_hand(STORE, desk) == 1
    assert await ledger.on_hand(STORE, chair) == 10

    # Stock is entered; the same confirmation, sent again as a new message, now goes through.
    await ledger.add_stock(STORE, desk, 4)
    await ledger.confirm(sale.sale_id, "erp-confirm-2")
    body = (await ledger.confirmed(sale.sale_id)).body
    assert [(m["product_id"], m["quantity"]) for m in body["stock_movements"]] == [
        (desk, 2),
        (chair, 4),
    ]
    assert await ledger.on_hand(STORE, desk) == 3
    assert await ledger.on_hand(STORE, chair) == 6


async def test_stock_check_adds_up_lines_of_the_same_product(ledger: Ledger) -> None:
    shelf = product_id()
    await ledger.stock_check_on(STORE)
    await ledger.add_stock(STORE, shelf, 4)
    # Each line alone fits in the stock; together they do not.
    sale = pending_sale(STORE, next_order_id(), [(shelf, 3, "70.00"), (shelf, 2, "70.00")])
    await ledger.announce(sale)
    await ledger.confirm(sale.sale_id, "erp-confirm-1")
    refused = (await ledger.refused(sale.sale_id)).body
    assert refused["reason"] == "insufficient_stock"
    assert "requested 5" in refused["detail"]
    assert await ledger.posted(sale.sale_id) == (0, 0)
    assert await ledger.on_hand(STORE, shelf) == 4


async def test_stock_check_is_per_store_and_off_by_default(ledger: Ledger) -> None:
    other_store = STORE + 1
    bench = product_id()
    await ledger.stock_check_on(other_store)  # another store's setting does not apply here
    sale = pending_sale(STORE, next_order_id(), [(bench, 3, "120.00")])
    await ledger.announce(sale)
    await ledger.confirm(sale.sale_id, "erp-confirm-1")
    await ledger.confirmed(sale.sale_id)
    assert await ledger.on_hand(STORE, bench) == -3
    assert ledger.events("sale.confirmation_refused", sale.sale_id) == []


async def test_overlapping_confirmations_cannot_both_take_the_last_units(
    settings: Settings,
) -> None:
    """Two confirmations needing the same last units, in overlapping transactions: one wins.

    The handler is called directly (with real deliveries) so that the two transactions overlap
    for sure; the stock check must serialise them per product and never let stock go negative.
    """
    pool = await create_pool(settings.database_url, min_size=1, max_size=20)
    try:
        rows = Rows(pool)
        handler = sales_handler(postgres.begin(pool), 0, 1)  # every kind, one shard
        await rows.stock_check_on(STORE)
        pairs = []
        for _ in range(8):
            lamp = product_id()
            await rows.add_stock(STORE, lamp, 4)
            # Four units on hand, two sales of three each.
            a = pending_sale(STORE, next_order_id(), [(lamp, 3, "40.00")])
            b = pending_sale(STORE, next_order_id(), [(lamp, 3, "40.00")])
            pairs.append((lamp, a, b))
        sales = [sale for _, a, b in pairs for sale in (a, b)]
        incoming = await deliveries_of(
            settings.amqp_url,
            [(s, f"announce-{s.sale_id}") for s in sales]
            + [
                (SaleConfirm(sale_id=s.sale_id, confirmed_by="erp-user-9"), f"c-{s.sale_id}")
                for s in sales
            ],
        )
        await handler(incoming[: len(sales)])
        results = await asyncio.gather(*(handler([i]) for i in incoming[len(sales) :]))
        answers = {
            orjson.loads(staged.envelope.body)["sale_id"]: (
                staged.envelope.routing_key,
                orjson.loads(staged.envelope.body).get("reason", ""),
            )
            for result in results
            for staged in result.staged
        }
        for lamp, a, b in pairs:
            assert sorted([answers[a.sale_id], answers[b.sale_id]]) == [
                ("sale.confirmation_refused", "insufficient_stock"),
                ("sale.confirmed", ""),
            ]
            statuses = sorted(
                [await rows.status(a.sale_id) or "", await rows.status(b.sale_id) or ""]
            )
            assert statuses == ["confirmed", "pending_review"]
            assert await rows.on_hand(STORE, lamp) == 1
    finally:
        await pool.close()


async def test_a_boolean_amount_is_refused_and_does_not_stop_the_ledger(ledger: Ledger) -> None:
    """CONTRACT.md: a malformed ERP message is refused and never blocks the queue."""
    poisoned = pending_sale(STORE, next_order_id(), [(product_id(), 1, "10.00")])
    healthy = pending_sale(STORE, next_order_id(), [(product_id(), 1, "20.00")])
    await ledger.announce(poisoned)
    await ledger.announce(healthy)

    body = {
        "sale_id": poisoned.sale_id,
        "confirmed_by": "erp-user-9",
        "payment": {
            "method": "pix",
            "installments": [{"amount": True, "due_date": days(0).isoformat()}],
        },
    }
    await ledger.confirm_raw(body, "bad-boolean-amount")
    await ledger.confirm(healthy.sale_id, "erp-confirm-healthy")

    # The next message is still consumed...
    answer = await ledger.outcome(healthy.sale_id, within=8)
    assert answer == ("sale.confirmed", ""), answer
    # ...and the bad one was answered and parked, like any other malformed message.
    refused = (await ledger.refused(poisoned.sale_id)).body
    assert refused["reason"] == "malformed_message"
    dead = await ledger.take_dead(1)
    assert [m.message_id for m in dead] == ["bad-boolean-amount"]
    assert await ledger.status(poisoned.sale_id) == "pending_review"


async def test_an_erp_message_the_database_cannot_hold_is_still_refused(ledger: Ledger) -> None:
    """CONTRACT.md: a malformed or unknown ERP message is refused with sale.confirmation_refused.

    A sale id with a NUL character is valid JSON and passes the model, but PostgreSQL text cannot
    hold it: the ERP must still hear that its confirmation was refused.
    """
    await ledger.confirm("sale\u0000id", "erp-confirm-nul")
    dead = await ledger.take_dead(1)
    assert [m.message_id for m in dead] == ["erp-confirm-nul"]  # it is parked, visibly
    refused = (await ledger.refused("sale\u0000id", within=5)).body
    assert refused["reason"] in ("unknown_sale", "malformed_message")
