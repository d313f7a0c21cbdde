"""SPEC §5: installments must add up to the sale total, in exact money — a few cases end to end.

The general property (any split that sums to the total is accepted, any other refused) is a unit
test of ``services.ledger.domain``; here concrete splits travel as the ERP writes them (JSON by
hand: strings with odd scales, exponents, JSON numbers) through the broker, the consumer and the
database, and the receivables that come out are checked to the cent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tests.integration.ledger_helpers import (
    Ledger,
    days,
    next_order_id,
    pending_sale,
    product_id,
    receivable_view,
)

STORE = 7201


@dataclass(frozen=True)
class Split:
    name: str
    total: str
    amounts: Sequence[object]  # as they are written in the JSON body
    expected: str  # the receivables' amounts ("a,b,c") or the refusal reason
    method: str = "boleto"
    first_due: int = 0  # days after the sale date


ACCEPTED = [
    Split(
        "thirds with the cent on the last",
        "100.00",
        ["33.33", "33.33", "33.34"],
        "33.33,33.33,33.34",
    ),
    Split("integers and trailing zeros", "100.00", ["50", "50.000"], "50.00,50.00"),
    Split("exponent notation", "100.00", ["1E+2"], "100.00"),
    Split("json numbers that floats get wrong", "0.30", [0.1, 0.2], "0.10,0.20"),
    Split(
        "twelve installments",
        "100.00",
        ["8.33"] * 11 + ["8.37"],
        ",".join(["8.33"] * 11 + ["8.37"]),
    ),
    Split(
        "the largest total a sale holds",
        "999999999999.99",
        ["999999999999.98", "0.01"],
        "999999999999.98,0.01",
    ),
    Split("one cent", "0.01", ["0.01"], "0.01"),
]

REFUSED = [
    Split("thirds a cent short", "100.00", ["33.33", "33.33", "33.33"], "installments_mismatch"),
    Split("a cent over", "100.00", ["50.00", "50.01"], "installments_mismatch"),
    Split("json numbers a cent short", "0.30", [0.1, 0.19], "installments_mismatch"),
    Split("a cent over a huge total", "999999999999.99", ["999999999999.98", "0.02"], "installments_mismatch"),
    Split("sums to the total in fractions of a cent", "100.00", ["33.333", "33.333", "33.334"], "invalid_installment"),
    Split("a negative installment", "100.00", ["-10.00", "110.00"], "invalid_installment"),
    Split("a zero installment", "100.00", ["0.00", "100.00"], "invalid_installment"),
    Split("an absurdly large amount", "100.00", ["1E+30"], "invalid_installment"),
    Split("due before the sale date", "100.00", ["100.00"], "invalid_installment", first_due=-1),
    Split("a blank method", "100.00", ["100.00"], "invalid_payment", method="  "),
    Split("no installments", "100.00", [], "invalid_payment"),
    Split("not a number", "100.00", ["NaN"], "malformed_message"),
    Split("infinite", "100.00", ["Infinity"], "malformed_message"),
]  # fmt: skip


def _body(sale_id: str, split: Split) -> dict[str, object]:
    return {
        "sale_id": sale_id,
        "confirmed_by": "erp-user-9",
        "payment": {
            "method": split.method,
            "installments": [
                {"amount": amount, "due_date": days(split.first_due + 30 * n).isoformat()}
                for n, amount in enumerate(split.amounts)
            ],
        },
    }


async def test_splits_that_add_up_to_the_total_are_accepted(ledger: Ledger) -> None:
    sales = {}
    for split in ACCEPTED:
        sale = pending_sale(STORE, next_order_id(), [(product_id(), 1, split.total)])
        assert str(sale.total) == split.total
        await ledger.announce(sale, wait=False)
        sales[split.name] = sale
    for split in ACCEPTED:
        sale = sales[split.name]
        await ledger.wait_status(sale.sale_id, "pending_review")
        await ledger.confirm_raw(_body(sale.sale_id, split), f"confirm-{sale.sale_id}")

    problems = []
    for split in ACCEPTED:
        sale = sales[split.name]
        body = (await ledger.confirmed(sale.sale_id)).body
        amounts = ",".join(r["amount"] for r in body["receivables"])
        if amounts != split.expected:
            problems.append(f"{split.name}: receivables {amounts}, expected {split.expected}")
        expected_view = [
            (n, amount, days(30 * (n - 1)).isoformat(), "boleto", "open")
            for n, amount in enumerate(split.expected.split(","), start=1)
        ]
        if receivable_view(body) != expected_view:
            problems.append(f"{split.name}: {receivable_view(body)} != {expected_view}")
        rows = await ledger.receivables(sale.sale_id)
        stored = ",".join(f"{r['amount']:.2f}" for r in rows)
        if stored != split.expected:
            problems.append(f"{split.name}: stored {stored}, expected {split.expected}")
    assert problems == []


async def test_splits_that_do_not_add_up_are_refused_and_post_nothing(ledger: Ledger) -> None:
    sales = {}
    for split in REFUSED:
        sale = pending_sale(STORE, next_order_id(), [(product_id(), 1, split.total)])
        await ledger.announce(sale, wait=False)
        sales[split.name] = sale
    for split in REFUSED:
        sale = sales[split.name]
        await ledger.wait_status(sale.sale_id, "pending_review")
        await ledger.confirm_raw(_body(sale.sale_id, split), f"confirm-{sale.sale_id}")

    problems = []
    for split in REFUSED:
        sale = sales[split.name]
        refused = (await ledger.refused(sale.sale_id)).body
        if refused["reason"] != split.expected:
            problems.append(f"{split.name}: refused {refused['reason']}, expected {split.expected}")
        if not refused["detail"]:
            problems.append(f"{split.name}: refusal without a detail")
    await ledger.settled()
    for split in REFUSED:
        sale = sales[split.name]
        if ledger.events("sale.confirmed", sale.sale_id):
            problems.append(f"{split.name}: sale.confirmed published")
        if await ledger.posted(sale.sale_id) != (0, 0):
            problems.append(f"{split.name}: posted {await ledger.posted(sale.sale_id)}")
        if await ledger.status(sale.sale_id) != "pending_review":
            problems.append(f"{split.name}: status {await ledger.status(sale.sale_id)}")
    assert problems == []

    # Every refused sale is still pending review and takes a correct confirmation afterwards.
    for split in REFUSED:
        sale = sales[split.name]
        await ledger.confirm(sale.sale_id, f"confirm-again-{sale.sale_id}")
    for split in REFUSED:
        sale = sales[split.name]
        body = (await ledger.confirmed(sale.sale_id)).body
        assert receivable_view(body) == [(1, split.total, days(0).isoformat(), "cash", "open")]
        assert await ledger.posted(sale.sale_id) == (1, 1)


async def test_the_refusal_detail_names_both_sums(ledger: Ledger) -> None:
    sale = pending_sale(STORE, next_order_id(), [(product_id(), 3, "33.40")])
    await ledger.announce(sale)
    split = Split("short", "100.20", ["50.10", "50.00"], "installments_mismatch")
    await ledger.confirm_raw(_body(sale.sale_id, split), "confirm-short")
    refused = (await ledger.refused(sale.sale_id)).body
    assert refused["reason"] == "installments_mismatch"
    assert "100.10" in refused["detail"]
    assert "100.20" in refused["detail"]
