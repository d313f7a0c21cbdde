"""The pending sale the mapper builds from a paid order (SPEC §3), against the real broker and DB.

``sale.pending_review`` must carry every field CONTRACT.md names, money as decimal strings; the
sale's total is the order's (a mismatch is kept and warned about), the payment is cash in one
installment due on the sale date, the seller is the activating user, and ``created`` says whether
this sale created the customer or product. A redelivered or repeated order creates nothing more.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest

from shared.settings import Settings
from tests.harness import System
from tests.integration.mapper_helpers import (
    CPF,
    CPF_FORMATTED,
    PAID_AT,
    Counts,
    counts,
    import_order,
    line,
    make_order,
    pending_sale,
    pool,
    publish,
    running_mapper,
)

STORE = 3101
MONEY = re.compile(r"^-?\d+\.\d{2}$")


@pytest.fixture
async def system(settings: Settings) -> AsyncIterator[System]:
    async with running_mapper(settings) as running:
        yield running


def _money_fields(sale: dict[str, Any]) -> list[Any]:
    values = [sale["subtotal"], sale["shipping"], sale["discount"], sale["total"]]
    for item in sale["items"]:
        values += [item["unit_price"], item["total"]]
    values += [i["amount"] for i in sale["payment"]["installments"]]
    return values


async def test_pending_review_carries_every_contract_field(system: System) -> None:
    order = make_order(
        STORE,
        9001,
        name="José da Conceição",
        document=CPF_FORMATTED,
        mobile_phone="+55 11 98888-7777",
        business_phone="+55 11 3222-1111",
        items=[
            line("Camiseta Azul", 2, "40.00", sku="CAM-AZ"),
            line("Caneca", 1, "50.5"),
        ],
        shipping="15.50",
        discount="10.00",
    )
    await publish(system, order)
    seen = (await system.observer.wait_for("sale.pending_review", store_id=STORE, order_id=9001))[0]

    # The message's properties, as CONTRACT.md promises for every message.
    assert seen.exchange == "mapper.events"
    assert seen.type == "sale.pending_review.v1"
    assert seen.content_type == "application/json"
    assert seen.persistent
    assert seen.correlation_id == f"{STORE}:9001"
    assert seen.message_id

    sale = seen.body
    contract = {
        "sale_id", "store_id", "order_id", "order_number", "status", "seller_id", "customer",
        "items", "shipping", "discount", "total", "payment", "warnings",
    }  # fmt: skip
    assert contract <= set(sale), f"missing: {contract - set(sale)}"
    assert isinstance(sale["sale_id"], str)
    assert sale["sale_id"]
    assert (sale["store_id"], sale["order_id"], sale["order_number"]) == (STORE, 9001, 10001)
    assert sale["status"] == "pending_review"
    assert sale["seller_id"] == "erp-user-1"

    customer = sale["customer"]
    assert {"id", "name", "document", "business_phone", "mobile_phone", "created"} <= set(customer)
    assert isinstance(customer["id"], str)
    assert customer["name"] == "José da Conceição"
    assert customer["document"] == CPF  # normalised
    assert customer["mobile_phone"] == "+55 11 98888-7777"
    assert customer["business_phone"] == "+55 11 3222-1111"
    assert customer["created"] is True

    items = sale["items"]
    assert [(i["description"], i["quantity"], i["unit_price"], i["total"]) for i in items] == [
        ("Camiseta Azul", 2, "40.00", "80.00"),
        ("Caneca", 1, "50.50", "50.50"),
    ]
    for item in items:
        assert {"product", "description", "quantity", "unit_price", "total"} <= set(item)
        assert {"id", "description", "created"} <= set(item["product"])
        assert isinstance(item["product"]["id"], str)
        assert item["product"]["description"] == item["description"]
        assert item["product"]["created"] is True
    assert items[0]["product"]["id"] != items[1]["product"]["id"]

    assert sale["shipping"] == "15.50"
    assert sale["discount"] == "10.00"
    assert sale["total"] == "136.00"  # 130.50 - 10.00 + 15.50
    assert sale["payment"] == {
        "method": "cash",
        "installments": [{"number": 1, "amount": "136.00", "due_date": "2026-08-03"}],
    }
    assert sale["warnings"] == []
    for amount in _money_fields(sale):
        assert isinstance(amount, str)
        assert MONEY.match(amount), amount

    # The database holds the same sale, its lines, its customer and its products.
    db = pool(system)
    row = await db.fetchrow(
        "SELECT id::text, order_number, status, seller_id, customer_id::text, subtotal, shipping,"
        " discount, total, sale_date FROM mapper.sales WHERE store_id = $1 AND order_id = $2",
        STORE,
        9001,
    )
    assert row is not None
    assert row["id"] == sale["sale_id"]
    assert row["customer_id"] == customer["id"]
    assert row["status"] == "pending_review"
    assert row["seller_id"] == "erp-user-1"
    assert (row["subtotal"], row["shipping"], row["discount"], row["total"]) == (
        Decimal("130.50"),
        Decimal("15.50"),
        Decimal("10.00"),
        Decimal("136.00"),
    )
    assert row["sale_date"] == dt.date(2026, 8, 3)
    lines = await db.fetch(
        "SELECT line_number, product_id::text, description, quantity, unit_price, total"
        " FROM mapper.sale_items WHERE sale_id = $1::uuid ORDER BY line_number",
        sale["sale_id"],
    )
    assert [tuple(r) for r in lines] == [
        (1, items[0]["product"]["id"], "Camiseta Azul", 2, Decimal("40.00"), Decimal("80.00")),
        (2, items[1]["product"]["id"], "Caneca", 1, Decimal("50.50"), Decimal("50.50")),
    ]
    stored = await db.fetchrow(
        "SELECT name, document, email, mobile_phone, business_phone FROM mapper.customers"
        " WHERE id = $1::uuid",
        customer["id"],
    )
    assert stored is not None
    assert tuple(stored) == (
        "José da Conceição",
        CPF,
        "maria@example.com",
        "+55 11 98888-7777",
        "+55 11 3222-1111",
    )


@dataclass(frozen=True)
class TotalsRow:
    id: str
    items: list[tuple[str, int, str]]
    shipping: str
    discount: str
    total: str | None  # None: the order's total is consistent with its lines
    expected_total: str
    warned: bool


TOTALS = [
    TotalsRow("plain", [("A", 1, "100.00")], "0", "0", None, "100.00", False),
    TotalsRow("shipping", [("A", 3, "33.33")], "12.90", "0", None, "112.89", False),
    TotalsRow("discount", [("A", 2, "50.00")], "0", "7.25", None, "92.75", False),
    TotalsRow("both", [("A", 1, "10.00"), ("B", 4, "2.50")], "5.00", "1.00", None, "24.00", False),
    TotalsRow("cents", [("A", 7, "0.10")], "0.05", "0.02", None, "0.73", False),
    TotalsRow("order-total-lower", [("A", 1, "100.00")], "10.00", "0", "105.00", "105.00", True),
    TotalsRow("order-total-higher", [("A", 1, "100.00")], "0", "0", "100.01", "100.01", True),
]


async def test_totals_rule_table(system: System) -> None:
    """Total = order total; shipping and discount carried; a mismatch keeps the order total."""
    orders = {
        row.id: make_order(
            STORE,
            9100 + n,
            items=[line(name, qty, price) for name, qty, price in row.items],
            shipping=row.shipping,
            discount=row.discount,
            total=row.total,
        )
        for n, row in enumerate(TOTALS)
    }
    for order in orders.values():
        await publish(system, order)
    failures: list[str] = []
    for row in TOTALS:
        order = orders[row.id]
        sale = await pending_sale(system, order)
        stored = await pool(system).fetchval(
            "SELECT total FROM mapper.sales WHERE store_id = $1 AND order_id = $2",
            STORE,
            order.order_id,
        )
        total_warnings = [w for w in sale["warnings"] if "total" in w]
        got = {
            "total": sale["total"],
            "shipping": Decimal(sale["shipping"]),
            "discount": Decimal(sale["discount"]),
            "payment": sale["payment"]["method"],
            "installments": [(i["number"], i["amount"]) for i in sale["payment"]["installments"]],
            "stored_total": stored,
            "total_warnings": len(total_warnings),
            "other_warnings": len(sale["warnings"]) - len(total_warnings),
            "warning_names_total": all(row.expected_total in w for w in total_warnings),
        }
        want = {
            "total": row.expected_total,
            "shipping": Decimal(row.shipping),
            "discount": Decimal(row.discount),
            "payment": "cash",
            "installments": [(1, row.expected_total)],
            "stored_total": Decimal(row.expected_total),
            "total_warnings": 1 if row.warned else 0,
            "other_warnings": 0,
            "warning_names_total": True,
        }
        if got != want:
            failures.append(f"{row.id}: got {got}, want {want}")
    assert not failures, "\n".join(failures)


SALE_DATES = [
    # (id, paid_at, expected due date = sale date)
    ("paid-utc", PAID_AT, "2026-08-03"),
    (
        "paid-brt",
        dt.datetime(2026, 2, 10, 10, 0, tzinfo=dt.timezone(dt.timedelta(hours=-3))),
        "2026-02-10",
    ),
    ("no-paid-at", None, "2026-08-03"),  # falls back on the order's creation (13:00 UTC)
]


async def test_single_cash_installment_due_on_the_sale_date(system: System) -> None:
    failures: list[str] = []
    for n, (row_id, paid_at, due) in enumerate(SALE_DATES):
        order = make_order(STORE, 9200 + n, paid_at=paid_at, shipping="3.00")
        sale = await import_order(system, order)
        stored = await pool(system).fetchval(
            "SELECT sale_date FROM mapper.sales WHERE store_id = $1 AND order_id = $2",
            STORE,
            order.order_id,
        )
        got = (sale["payment"], stored.isoformat())
        want = (
            {
                "method": "cash",
                "installments": [{"number": 1, "amount": sale["total"], "due_date": due}],
            },
            due,
        )
        if got != want:
            failures.append(f"{row_id}: got {got}, want {want}")
    assert not failures, "\n".join(failures)


async def test_seller_is_the_activating_user(system: System) -> None:
    users = ["erp-user-9", "maria.gerente@empresa.com.br"]
    orders = [make_order(STORE, 9300 + n, activated_by=user) for n, user in enumerate(users)]
    for order in orders:
        await publish(system, order)
    for order, user in zip(orders, users, strict=True):
        sale = await pending_sale(system, order)
        assert sale["seller_id"] == user
        stored = await pool(system).fetchval(
            "SELECT seller_id FROM mapper.sales WHERE store_id = $1 AND order_id = $2",
            STORE,
            order.order_id,
        )
        assert stored == user


async def test_created_flags_true_then_false(system: System) -> None:
    first = await import_order(
        system, make_order(STORE, 9401, items=[line("Mesa de Roble", 1, "600.00", "MR-1")])
    )
    second = await import_order(
        system,
        make_order(
            STORE,
            9402,
            items=[line("Mesa de Roble", 2, "590.00", "MR-2"), line("Banco", 1, "80.00")],
        ),
    )
    assert first["customer"]["created"] is True
    assert first["items"][0]["product"]["created"] is True
    assert second["customer"]["created"] is False
    assert second["customer"]["id"] == first["customer"]["id"]
    assert second["items"][0]["product"] == {**first["items"][0]["product"], "created": False}
    assert second["items"][1]["product"]["created"] is True  # a product new to this order
    assert await counts(system, STORE) == Counts(1, 2, 2, 3)


async def test_repeated_line_name_makes_one_product(system: System) -> None:
    order = make_order(
        STORE,
        9450,
        items=[line("Vela", 1, "5.00", "V-1"), line("Vela", 3, "4.50", "V-2")],
    )
    sale = await import_order(system, order)
    first, second = sale["items"]
    assert first["product"]["id"] == second["product"]["id"]
    assert [(i["quantity"], i["unit_price"], i["total"]) for i in sale["items"]] == [
        (1, "5.00", "5.00"),
        (3, "4.50", "13.50"),
    ]
    products = await pool(system).fetch(
        "SELECT sku, price FROM mapper.products WHERE store_id = $1", STORE
    )
    assert [(r["sku"], r["price"]) for r in products] == [("V-1", Decimal("5.00"))]


async def test_redelivered_or_repeated_order_makes_one_sale(system: System) -> None:
    order = make_order(STORE, 9500)
    await publish(system, order, message_id="order.paid:first")
    await pending_sale(system, order)
    # The same message again (a redelivery), and another message about the same order (a poll
    # after a webhook): nothing new is created or announced.
    await publish(system, order, message_id="order.paid:first")
    await publish(system, order, message_id="order.paid:second")
    await system.mapper_settled()
    assert len(system.observer.of("sale.pending_review", store_id=STORE, order_id=9500)) == 1
    assert await counts(system, STORE) == Counts(1, 1, 1, 1)
    # The outbox is drained: what was staged was published and forgotten.
    assert await pool(system).fetchval("SELECT count(*) FROM mapper.outbox") == 0
