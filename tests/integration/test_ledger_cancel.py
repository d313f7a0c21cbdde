"""SPEC §6: cancelling a sale — a pending one is just cancelled, a confirmed one is reversed, once.

Cancellations come from the store (``order.cancelled`` on ingest.events, keyed by store and
order) or from the ERP (``sale.discard`` on erp.events). Reversing a confirmed sale cancels its
open receivables and returns its stock with one movement in per movement out; duplicates
(new message ids for the same fact) change nothing more and announce nothing more.
"""

from __future__ import annotations

import asyncio

from tests.integration.ledger_helpers import (
    Ledger,
    days,
    next_order_id,
    payment,
    pending_sale,
    product_id,
    wait_until,
)

STORE = 7401


async def test_discarding_a_pending_sale_cancels_it_without_effects(ledger: Ledger) -> None:
    vase = product_id()
    await ledger.add_stock(STORE, vase, 5)
    sale = pending_sale(STORE, next_order_id(), [(vase, 2, "35.00")])
    await ledger.announce(sale)

    await ledger.discard(sale.sale_id, "erp-discard-1")
    event = await ledger.cancelled(sale.sale_id)
    assert event.body["store_id"] == STORE
    assert event.body["order_id"] == sale.order_id
    assert event.body["receivables"] == []
    assert event.body["stock_movements"] == []
    assert event.correlation_id == f"{STORE}:{sale.order_id}"
    assert event.type == "sale.cancelled.v1"

    row = await ledger.sale(sale.sale_id)
    assert row["status"] == "cancelled"
    assert row["cancelled_at"] is not None
    assert row["cancel_reason"]
    assert await ledger.posted(sale.sale_id) == (0, 0)
    assert await ledger.on_hand(STORE, vase) == 5

    # The ERP discards again (a new message), and the store cancels the order too: nothing more.
    await ledger.discard(sale.sale_id, "erp-discard-2")
    await ledger.cancel_order(STORE, sale.order_id, "order-cancelled-1")
    await ledger.settled()
    assert len(ledger.events("sale.cancelled", sale.sale_id)) == 1
    assert ledger.events("sale.confirmation_refused", sale.sale_id) == []
    assert await ledger.posted(sale.sale_id) == (0, 0)


async def test_order_cancelled_for_a_pending_sale(ledger: Ledger) -> None:
    sale = pending_sale(STORE, next_order_id(), [(product_id(), 1, "10.00")])
    await ledger.announce(sale)
    await ledger.cancel_order(STORE, sale.order_id, "order-cancelled-1", reason="voided")
    event = await ledger.cancelled(sale.sale_id)
    assert (event.body["receivables"], event.body["stock_movements"]) == ([], [])
    row = await ledger.sale(sale.sale_id)
    assert row["status"] == "cancelled"
    assert "voided" in row["cancel_reason"]
    assert await ledger.posted(sale.sale_id) == (0, 0)


async def test_cancelling_a_confirmed_sale_reverses_it_exactly_once(ledger: Ledger) -> None:
    table, chair = product_id(), product_id()
    await ledger.add_stock(STORE, table, 2)
    await ledger.add_stock(STORE, chair, 8)
    sale = pending_sale(
        STORE, next_order_id(), [(table, 1, "900.00"), (chair, 4, "150.00")], shipping="30.00"
    )
    await ledger.announce(sale)
    terms = payment("boleto", ("510.00", days(0)), ("510.00", days(30)), ("510.00", days(60)))
    await ledger.confirm(sale.sale_id, "erp-confirm-1", pay=terms)
    confirmed = (await ledger.confirmed(sale.sale_id)).body
    assert await ledger.on_hand(STORE, table) == 1
    assert await ledger.on_hand(STORE, chair) == 4

    # The store cancels the order; the cancellation arrives four times (new message ids each,
    # as a poll and webhooks would produce), all at once.
    await asyncio.gather(
        *(ledger.cancel_order(STORE, sale.order_id, f"order-cancelled-{n}") for n in range(4))
    )
    event = await ledger.cancelled(sale.sale_id)
    await ledger.settled()
    assert len(ledger.events("sale.cancelled", sale.sale_id)) == 1

    body = event.body
    assert [(r["id"], r["number"], r["amount"], r["status"]) for r in body["receivables"]] == [
        (r["id"], r["number"], r["amount"], "cancelled") for r in confirmed["receivables"]
    ]
    assert [(m["product_id"], m["quantity"], m["direction"]) for m in body["stock_movements"]] == [
        (table, 1, "in"),
        (chair, 4, "in"),
    ]
    outs = {m["id"] for m in confirmed["stock_movements"]}
    assert outs.isdisjoint(m["id"] for m in body["stock_movements"])

    assert await ledger.status(sale.sale_id) == "cancelled"
    assert [r["status"] for r in await ledger.receivables(sale.sale_id)] == ["cancelled"] * 3
    movements = await ledger.movements(sale.sale_id)
    assert sorted((m["direction"], m["line_number"], m["reason"]) for m in movements) == [
        ("in", 1, "sale_reversal"),
        ("in", 2, "sale_reversal"),
        ("out", 1, "sale"),
        ("out", 2, "sale"),
    ]
    assert await ledger.on_hand(STORE, table) == 2
    assert await ledger.on_hand(STORE, chair) == 8

    # Later duplicates from either side change nothing either.
    await ledger.discard(sale.sale_id, "erp-discard-late")
    await ledger.cancel_order(STORE, sale.order_id, "order-cancelled-late")
    await ledger.settled()
    assert len(ledger.events("sale.cancelled", sale.sale_id)) == 1
    assert await ledger.posted(sale.sale_id) == (3, 4)
    assert await ledger.on_hand(STORE, chair) == 8


async def test_a_paid_receivable_is_not_cancelled_but_the_stock_returns(ledger: Ledger) -> None:
    rug = product_id()
    sale = pending_sale(STORE, next_order_id(), [(rug, 2, "100.00")])
    await ledger.announce(sale)
    terms = payment("pix", ("100.00", days(0)), ("100.00", days(30)))
    await ledger.confirm(sale.sale_id, "erp-confirm-1", pay=terms)
    confirmed = (await ledger.confirmed(sale.sale_id)).body
    first = confirmed["receivables"][0]["id"]
    await ledger.pool.execute(
        "UPDATE ledger.receivables SET status = 'paid' WHERE id = $1::uuid", first
    )

    await ledger.cancel_order(STORE, sale.order_id, "order-cancelled-1", reason="refunded")
    body = (await ledger.cancelled(sale.sale_id)).body
    assert [(r["number"], r["status"]) for r in body["receivables"]] == [(2, "cancelled")]
    assert [(m["quantity"], m["direction"]) for m in body["stock_movements"]] == [(2, "in")]
    rows = await ledger.receivables(sale.sale_id)
    assert [(r["number"], r["status"]) for r in rows] == [(1, "paid"), (2, "cancelled")]
    assert await ledger.on_hand(STORE, rug) == 0


async def test_a_cancellation_before_its_sale_is_applied_when_the_sale_arrives(
    ledger: Ledger,
) -> None:
    mirror = product_id()
    await ledger.add_stock(STORE, mirror, 3)
    order_id = next_order_id()
    # The store's cancellation overtakes the sale (twice, with different message ids).
    await ledger.cancel_order(STORE, order_id, "order-cancelled-early-1")
    await ledger.cancel_order(STORE, order_id, "order-cancelled-early-2")

    async def remembered() -> bool:
        count = await ledger.pool.fetchval(
            "SELECT count(*) FROM ledger.early_cancellations WHERE store_id = $1 AND order_id = $2",
            STORE,
            order_id,
        )
        return bool(count == 1)

    await wait_until(remembered, what="the early cancellation to be kept")
    await ledger.settled()
    assert ledger.observer.of("sale.cancelled") == []

    sale = pending_sale(STORE, order_id, [(mirror, 1, "220.00")])
    await ledger.announce(sale, wait=False)
    event = await ledger.cancelled(sale.sale_id)
    assert (event.body["receivables"], event.body["stock_movements"]) == ([], [])
    assert await ledger.status(sale.sale_id) == "cancelled"
    assert not await remembered()

    # The ERP, which saw the announcement, tries to confirm it: refused, nothing posted.
    await ledger.confirm(sale.sale_id, "erp-confirm-1")
    assert (await ledger.refused(sale.sale_id)).body["reason"] == "sale_cancelled"
    await ledger.settled()
    assert len(ledger.events("sale.cancelled", sale.sale_id)) == 1
    assert await ledger.posted(sale.sale_id) == (0, 0)
    assert await ledger.on_hand(STORE, mirror) == 3


async def test_a_cancellation_applies_only_to_its_own_store(ledger: Ledger) -> None:
    order_id = next_order_id()
    mine = pending_sale(STORE, order_id, [(product_id(), 1, "10.00")])
    theirs = pending_sale(STORE + 1, order_id, [(product_id(), 1, "10.00")])
    await ledger.announce(mine)
    await ledger.announce(theirs)
    await ledger.cancel_order(STORE + 1, order_id, "order-cancelled-theirs")
    await ledger.cancelled(theirs.sale_id)
    await ledger.settled()
    assert await ledger.status(mine.sale_id) == "pending_review"
    assert ledger.events("sale.cancelled", mine.sale_id) == []
