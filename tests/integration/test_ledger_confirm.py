"""SPEC §5: confirming a pending sale posts its receivables and stock movements, once.

The ledger runs alone; the tests announce sales as the mapper would (``sale.pending_review`` on
mapper.events), confirm them as the ERP would (``sale.confirm`` on erp.events) and read what was
posted from the ledger's tables and from ``ledger.events``.
"""

from __future__ import annotations

import pytest

from shared.contracts import ConfirmPayment
from tests.integration.ledger_helpers import (
    CONFIRMER,
    SALE_DATE,
    SELLER,
    Ledger,
    days,
    next_order_id,
    payment,
    pending_sale,
    product_id,
    receivable_view,
)

STORE = 7101


async def test_confirmation_posts_one_receivable_and_one_movement_out_per_line(
    ledger: Ledger,
) -> None:
    chair, table = product_id(), product_id()
    await ledger.add_stock(STORE, chair, 10)
    await ledger.add_stock(STORE, table, 3)
    order_id = next_order_id()
    # Two lines of the same product are two movements: one per line, not one per product.
    sale = pending_sale(
        STORE,
        order_id,
        [(chair, 2, "150.00"), (table, 1, "899.90"), (chair, 3, "150.00")],
        shipping="25.00",
        discount="4.90",
    )
    assert str(sale.total) == "1670.00"
    await ledger.announce(sale)
    assert await ledger.posted(sale.sale_id) == (0, 0)

    await ledger.confirm(sale.sale_id, "erp-confirm-1")
    event = await ledger.confirmed(sale.sale_id)

    body = event.body
    assert event.exchange == "ledger.events"
    assert event.type == "sale.confirmed.v1"
    assert event.correlation_id == f"{STORE}:{order_id}"
    assert event.content_type == "application/json"
    assert event.persistent
    assert (body["store_id"], body["order_id"], body["seller_id"]) == (STORE, order_id, SELLER)
    # No payment in the confirmation: cash, one installment of the total, due on the sale date.
    assert receivable_view(body) == [(1, "1670.00", SALE_DATE.isoformat(), "cash", "open")]
    assert [(m["product_id"], m["quantity"], m["direction"]) for m in body["stock_movements"]] == [
        (chair, 2, "out"),
        (table, 1, "out"),
        (chair, 3, "out"),
    ]

    row = await ledger.sale(sale.sale_id)
    assert row["status"] == "confirmed"
    assert row["confirmed_by"] == CONFIRMER
    assert row["confirm_message_id"] == "erp-confirm-1"
    assert row["confirmed_at"] is not None
    assert row["seller_id"] == SELLER

    receivables = await ledger.receivables(sale.sale_id)
    assert [r["id"] for r in receivables] == [r["id"] for r in body["receivables"]]
    assert [
        (r["number"], str(r["amount"]), r["due_date"], r["method"], r["status"])
        for r in receivables
    ] == [(1, "1670.00", SALE_DATE, "cash", "open")]
    assert receivables[0]["store_id"] == STORE
    movements = await ledger.movements(sale.sale_id)
    assert [m["id"] for m in movements] == [m["id"] for m in body["stock_movements"]]
    assert [
        (m["line_number"], m["product_id"], m["quantity"], m["direction"], m["reason"])
        for m in movements
    ] == [(1, chair, 2, "out", "sale"), (2, table, 1, "out", "sale"), (3, chair, 3, "out", "sale")]
    # The stock on hand the mapper and the catalog read goes down by what was sold.
    assert await ledger.on_hand(STORE, chair) == 5
    assert await ledger.on_hand(STORE, table) == 2

    await ledger.settled()
    assert len(ledger.events("sale.confirmed", sale.sale_id)) == 1
    assert ledger.events("sale.confirmation_refused", sale.sale_id) == []


async def test_confirmation_with_another_seller_and_three_installments(ledger: Ledger) -> None:
    lamp = product_id()
    sale = pending_sale(STORE, next_order_id(), [(lamp, 1, "100.00")])
    await ledger.announce(sale)

    terms = payment("boleto", ("33.33", days(0)), ("33.33", days(30)), ("33.34", days(60)))
    await ledger.confirm(sale.sale_id, "erp-confirm-3x", seller_id="erp-user-42", pay=terms)
    body = (await ledger.confirmed(sale.sale_id)).body

    assert body["seller_id"] == "erp-user-42"
    assert receivable_view(body) == [
        (1, "33.33", days(0).isoformat(), "boleto", "open"),
        (2, "33.33", days(30).isoformat(), "boleto", "open"),
        (3, "33.34", days(60).isoformat(), "boleto", "open"),
    ]
    assert len({r["id"] for r in body["receivables"]}) == 3
    rows = await ledger.receivables(sale.sale_id)
    assert [
        (r["id"], r["number"], str(r["amount"]), r["due_date"], r["method"], r["status"])
        for r in rows
    ] == [
        (r["id"], r["number"], r["amount"], days(30 * i), "boleto", "open")
        for i, r in enumerate(body["receivables"])
    ]
    assert (await ledger.sale(sale.sale_id))["seller_id"] == "erp-user-42"
    assert [(m["product_id"], m["quantity"]) for m in body["stock_movements"]] == [(lamp, 1)]


async def test_repeated_confirmation_with_the_same_terms_reannounces_what_was_posted(
    ledger: Ledger,
) -> None:
    sofa, rug = product_id(), product_id()
    sale = pending_sale(STORE, next_order_id(), [(sofa, 1, "1200.00"), (rug, 2, "150.00")])
    await ledger.announce(sale)
    terms = payment("pix", ("750.00", days(0)), ("750.00", days(30)))
    await ledger.confirm(sale.sale_id, "erp-confirm-a", seller_id="erp-user-5", pay=terms)
    first = (await ledger.confirmed(sale.sale_id)).body

    # The ERP sends the same confirmation again as a new message (a new message id).
    await ledger.confirm(sale.sale_id, "erp-confirm-b", seller_id="erp-user-5", pay=terms)
    seen = await ledger.observer.wait_for("sale.confirmed", count=2, sale_id=sale.sale_id)
    # The same terms written differently (amounts by value) are still the same terms.
    await ledger.confirm_raw(
        {
            "sale_id": sale.sale_id,
            "confirmed_by": "erp-user-6",
            "seller_id": "erp-user-5",
            "payment": {
                "method": "pix",
                "installments": [
                    {"amount": "750", "due_date": days(0).isoformat()},
                    {"amount": "750.000", "due_date": days(30).isoformat()},
                ],
            },
        },
        "erp-confirm-c",
    )
    seen = await ledger.observer.wait_for("sale.confirmed", count=3, sale_id=sale.sale_id)
    await ledger.settled()

    assert ledger.events("sale.confirmation_refused", sale.sale_id) == []
    for again in seen[1:]:
        assert again.body["receivables"] == first["receivables"]
        assert again.body["stock_movements"] == first["stock_movements"]
        assert again.body["seller_id"] == "erp-user-5"
    assert await ledger.posted(sale.sale_id) == (2, 2)
    row = await ledger.sale(sale.sale_id)
    assert row["confirm_message_id"] == "erp-confirm-a"
    assert await ledger.on_hand(STORE, rug) == -2  # stock check off: sold without stock


TERMS = payment("pix", ("400.00", days(0)), ("600.00", days(30)))


@pytest.mark.parametrize(
    ("change", "seller", "terms"),
    [
        ("another seller", "erp-user-77", TERMS),
        ("other amounts", "erp-user-5", payment("pix", ("500.00", days(0)), ("500.00", days(30)))),
        (
            "another method",
            "erp-user-5",
            payment("boleto", ("400.00", days(0)), ("600.00", days(30))),
        ),
        (
            "other due dates",
            "erp-user-5",
            payment("pix", ("400.00", days(1)), ("600.00", days(30))),
        ),
        ("fewer installments", "erp-user-5", payment("pix", ("1000.00", days(0)))),
    ],
)
async def test_conflicting_confirmation_of_a_confirmed_sale_is_refused(
    ledger: Ledger, change: str, seller: str, terms: ConfirmPayment
) -> None:
    sale = pending_sale(STORE, next_order_id(), [(product_id(), 4, "250.00")])
    await ledger.announce(sale)
    await ledger.confirm(sale.sale_id, "erp-confirm-1", seller_id="erp-user-5", pay=TERMS)
    first = (await ledger.confirmed(sale.sale_id)).body

    await ledger.confirm(sale.sale_id, "erp-confirm-2", seller_id=seller, pay=terms)
    refused = await ledger.refused(sale.sale_id)

    assert refused.body["reason"] == "already_confirmed", change
    assert refused.body["detail"]
    assert refused.body["store_id"] == STORE
    assert refused.correlation_id == f"{STORE}:{sale.order_id}"
    await ledger.settled()
    assert len(ledger.events("sale.confirmed", sale.sale_id)) == 1
    rows = await ledger.receivables(sale.sale_id)
    assert [r["id"] for r in rows] == [r["id"] for r in first["receivables"]]
    assert [str(r["amount"]) for r in rows] == ["400.00", "600.00"]
    assert (await ledger.sale(sale.sale_id))["seller_id"] == "erp-user-5"
    assert await ledger.posted(sale.sale_id) == (2, 1)
