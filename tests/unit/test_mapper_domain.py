"""The mapper's pure rules: customer matching and drafting, order validation, product resolution by
exact description, the sale's lines, totals and payment, the pending-review message, and the stock
check, by tables of cases and by properties over generated orders."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from services.mapper.domain import (
    CustomerRef,
    InvalidOrderError,
    ProductDraft,
    ProductRef,
    SaleLine,
    Shortage,
    UnresolvedProductError,
    build_sale,
    check_stock,
    customer_from_order,
    customer_key,
    insufficient_stock_rejection,
    invalid_order_rejection,
    normalize_name,
    pending_review,
    product_drafts,
    products_to_create,
    validate_order,
)
from shared.contracts import OrderPaid

SALE_DATE = dt.date(2026, 8, 3)
CPF = "75839566500"
CNPJ = "11222333000181"


def order_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "store_id": 7,
        "order_id": 9001,
        "order_number": 42,
        "created_at": "2026-08-03T10:00:00-03:00",
        "paid_at": "2026-08-03T10:05:00-03:00",
        "currency": "BRL",
        "subtotal": "130.00",
        "discount": "10.00",
        "shipping": "15.50",
        "total": "135.50",
        "customer": {
            "name": "Maria  da Silva ",
            "document": "758.395.665-00",
            "email": "maria@example.com",
            "mobile_phone": "+55 11 99999-0000",
            "business_phone": " ",
        },
        "items": [
            {"name": "Camiseta", "sku": "CAM-1", "quantity": 2, "unit_price": "40.00"},
            {"name": "Caneca", "sku": None, "quantity": 1, "unit_price": "50.00"},
        ],
        "activated_by": "user-1",
    }
    body.update(overrides)
    return body


def make_order(**overrides: Any) -> OrderPaid:
    return OrderPaid.model_validate(order_body(**overrides))


def with_customer(**fields: Any) -> OrderPaid:
    customer = {**order_body()["customer"], **fields}
    return make_order(customer=customer)


def item(
    name: str, quantity: int = 1, price: str = "10.00", sku: str | None = None
) -> dict[str, Any]:
    return {"name": name, "sku": sku, "quantity": quantity, "unit_price": price}


def catalog(*descriptions: str) -> dict[str, ProductRef]:
    return {d: ProductRef(id=f"p-{d}", description=d, created=False) for d in descriptions}


CUSTOMER = CustomerRef(
    id="c-1",
    name="Maria da Silva",
    document=CPF,
    mobile_phone="+55 11 99999-0000",
    business_phone=None,
    created=True,
)


def line(product_id: str, quantity: int, description: str | None = None) -> SaleLine:
    product = ProductRef(id=product_id, description=description or product_id, created=False)
    return SaleLine(product, product.description, quantity, Decimal("1.00"), Decimal(quantity))


# --- names and customer keys -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Maria da Silva", "Maria da Silva"),
        ("  Maria   da\tSilva \n", "Maria da Silva"),
        ("Maria\u00a0da Silva", "Maria da Silva"),
        ("maria da silva", "maria da silva"),
        ("José Ávila", "José Ávila"),
        ("   ", ""),
    ],
)
def test_normalize_name(raw: str, expected: str) -> None:
    assert normalize_name(raw) == expected


@pytest.mark.parametrize(
    ("first", "second", "same"),
    [
        (("Maria da Silva", CPF), ("Maria da Silva", CPF), True),
        (("Maria da Silva", CPF), ("João Souza", CPF), False),
        (("Maria da Silva", CPF), ("Maria da Silva", "52998224725"), False),
        (("Maria da Silva", CPF), ("  Maria   da  Silva ", CPF), True),
        (("Maria da Silva", CPF), ("Maria da Silva", "758.395.665-00"), True),
        (("ACME Ltda", CNPJ), ("ACME Ltda", "11.222.333/0001-81"), True),
        (("ACME Ltda", "12abc34501de35"), ("ACME Ltda", "12.ABC.345/01DE-35"), True),
        (("Maria da Silva", None), ("Maria da Silva", ""), True),
        (("Maria da Silva", None), ("Maria da Silva", CPF), False),
        (("Maria da Silva", CPF), ("maria da silva", CPF), False),
    ],
)
def test_customer_key(
    first: tuple[str, str | None], second: tuple[str, str | None], same: bool
) -> None:
    assert (customer_key(*first) == customer_key(*second)) is same


# --- customer drafts ---------------------------------------------------------------------------


def test_customer_from_order_normalises_everything() -> None:
    draft = customer_from_order(make_order())
    assert draft.name == "Maria da Silva"
    assert draft.document == CPF
    assert draft.document_kind == "cpf"
    assert draft.email == "maria@example.com"
    assert draft.mobile_phone == "+55 11 99999-0000"
    assert draft.business_phone is None
    assert draft.warnings == ()
    assert draft.key == ("Maria da Silva", CPF)


@pytest.mark.parametrize(
    ("document", "kind"),
    [("11.222.333/0001-81", "cnpj"), ("12.abc.345/01de-35", "cnpj"), (CPF, "cpf")],
)
def test_customer_from_order_keeps_valid_documents(document: str, kind: str) -> None:
    draft = customer_from_order(with_customer(document=document))
    assert draft.document_kind == kind
    assert draft.document is not None
    assert draft.warnings == ()


@pytest.mark.parametrize(
    ("document", "warning_parts"),
    [
        ("758.395.665-01", ["***.***.***-01", "dropped", "check digits"]),
        ("11.222.333/0001-82", ["**.***.***/****-82", "dropped", "check digits"]),
        ("123456789", ["*******89", "dropped", "9 characters"]),
        (None, ["no CPF or CNPJ"]),
        ("", ["no CPF or CNPJ"]),
        (" - ", ["no CPF or CNPJ"]),
    ],
)
def test_customer_from_order_drops_bad_documents_with_a_masked_warning(
    document: str | None, warning_parts: list[str]
) -> None:
    draft = customer_from_order(with_customer(document=document))
    assert draft.document is None
    assert draft.document_kind is None
    assert len(draft.warnings) == 1
    for part in warning_parts:
        assert part in draft.warnings[0]
    if document:
        digits = document.replace(".", "").replace("/", "").replace("-", "")
        assert digits not in draft.warnings[0]
        assert document not in draft.warnings[0]


@pytest.mark.parametrize("name", [None, "", "   \t"])
def test_customer_without_name_makes_the_order_invalid(name: str | None) -> None:
    order = with_customer(name=name)
    with pytest.raises(InvalidOrderError, match="no name"):
        customer_from_order(order)
    assert any("no name" in problem for problem in validate_order(order))


def test_new_customer_ref_comes_from_the_draft() -> None:
    draft = customer_from_order(make_order())
    ref = CustomerRef.new(draft, "c-9")
    assert ref == CustomerRef("c-9", "Maria da Silva", CPF, "+55 11 99999-0000", None, True)


# --- order validation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "problem_part"),
    [
        ({"items": []}, "no items"),
        ({"items": [item("Camiseta", quantity=0)]}, "quantity 0"),
        ({"items": [item("Camiseta", quantity=-2)]}, "quantity -2"),
        ({"items": [item("Camiseta", price="-0.01")]}, "negative unit price"),
        ({"items": [item("   ")]}, "item 1 has no name"),
        ({"items": [item("A"), item("")]}, "item 2 has no name"),
        ({"total": "-1.00"}, "negative total"),
        ({"discount": "-5.00"}, "negative discount"),
        ({"shipping": "-0.50"}, "negative shipping"),
    ],
)
def test_validate_order_problems(overrides: dict[str, Any], problem_part: str) -> None:
    problems = validate_order(make_order(**overrides))
    assert any(problem_part in problem for problem in problems), problems


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {
            "items": [item("Brinde", price="0.00")],
            "total": "0.00",
            "discount": "0",
            "shipping": "0",
        },
        {"discount": "0", "shipping": "0"},
    ],
)
def test_validate_order_accepts_good_orders(overrides: dict[str, Any]) -> None:
    assert validate_order(make_order(**overrides)) == []


def test_validate_order_lists_every_problem() -> None:
    order = make_order(
        items=[item("", quantity=0, price="-1")], total="-1", customer={"name": None}
    )
    assert len(validate_order(order)) == 5


def test_invalid_order_rejection() -> None:
    order = make_order(items=[])
    rejection = invalid_order_rejection(order, validate_order(order))
    assert (rejection.store_id, rejection.order_id) == (7, 9001)
    assert rejection.reason == "invalid_order"
    assert "no items" in rejection.detail
    assert rejection.items is None


# --- products ----------------------------------------------------------------------------------


def test_product_drafts_are_distinct_in_first_seen_order() -> None:
    order = make_order(
        items=[
            item("Caneca", 1, "50.00", "CAN"),
            item("Camiseta", 2, "40.00", "CAM-1"),
            item("Caneca", 3, "45.00", "CAN-2"),
        ]
    )
    assert product_drafts(order) == [
        ProductDraft("Caneca", "CAN", Decimal("50.00")),
        ProductDraft("Camiseta", "CAM-1", Decimal("40.00")),
    ]


def test_product_drafts_compare_names_exactly() -> None:
    order = make_order(items=[item("Camiseta"), item("camiseta"), item("Camiseta ")])
    assert [d.description for d in product_drafts(order)] == ["Camiseta", "camiseta", "Camiseta "]


@pytest.mark.parametrize(
    ("line_name", "existing", "created"),
    [
        ("Camiseta", {"Camiseta"}, []),
        ("camiseta", {"Camiseta"}, ["camiseta"]),
        ("CAMISETA", {"Camiseta"}, ["CAMISETA"]),
        ("Camiseta ", {"Camiseta"}, ["Camiseta "]),
        ("Camiseta  Azul", {"Camiseta Azul"}, ["Camiseta  Azul"]),
        ("Camiseta", set(), ["Camiseta"]),
    ],
)
def test_products_reused_only_on_exact_description(
    line_name: str, existing: set[str], created: list[str]
) -> None:
    order = make_order(items=[item(line_name)])
    assert [d.description for d in products_to_create(order, existing)] == created


# --- the sale ----------------------------------------------------------------------------------


def test_build_sale_from_a_consistent_order() -> None:
    order = make_order()
    sale = build_sale(order, CUSTOMER, catalog("Camiseta", "Caneca"), "user-1", SALE_DATE)
    assert [(ln.description, ln.quantity, ln.unit_price, ln.total) for ln in sale.lines] == [
        ("Camiseta", 2, Decimal("40.00"), Decimal("80.00")),
        ("Caneca", 1, Decimal("50.00"), Decimal("50.00")),
    ]
    assert [ln.product.id for ln in sale.lines] == ["p-Camiseta", "p-Caneca"]
    assert sale.subtotal == Decimal("130.00")
    assert (sale.discount, sale.shipping, sale.total) == (
        Decimal("10.00"),
        Decimal("15.50"),
        Decimal("135.50"),
    )
    assert sale.payment.method == "cash"
    assert [(i.number, i.amount, i.due_date) for i in sale.payment.installments] == [
        (1, Decimal("135.50"), SALE_DATE)
    ]
    assert (sale.store_id, sale.order_id, sale.order_number) == (7, 9001, 42)
    assert (sale.seller_id, sale.sale_date, sale.customer) == ("user-1", SALE_DATE, CUSTOMER)
    assert sale.warnings == ()


@pytest.mark.parametrize(
    ("total", "difference"),
    [("140.00", "4.50"), ("135.49", "-0.01"), ("0.00", "-135.50")],
)
def test_build_sale_keeps_the_order_total_and_warns(total: str, difference: str) -> None:
    sale = build_sale(
        make_order(total=total), CUSTOMER, catalog("Camiseta", "Caneca"), None, SALE_DATE
    )
    assert sale.total == Decimal(total)
    assert sale.payment.installments[0].amount == Decimal(total)
    assert len(sale.warnings) == 1
    assert f"order total {total}" in sale.warnings[0]
    assert "= 135.50" in sale.warnings[0]
    assert f"by {difference}" in sale.warnings[0]


def test_build_sale_warnings_are_customer_then_total() -> None:
    order = make_order(total="1.00", customer={"name": "Maria", "document": "758.395.665-01"})
    sale = build_sale(order, CUSTOMER, catalog("Camiseta", "Caneca"), None, SALE_DATE)
    assert len(sale.warnings) == 2
    assert "***.***.***-01" in sale.warnings[0]
    assert "order total 1.00" in sale.warnings[1]


def test_build_sale_needs_every_product() -> None:
    with pytest.raises(UnresolvedProductError, match="Caneca"):
        build_sale(make_order(), CUSTOMER, catalog("Camiseta", "caneca"), None, SALE_DATE)


def test_build_sale_refuses_an_invalid_order() -> None:
    with pytest.raises(InvalidOrderError, match="quantity 0"):
        build_sale(
            make_order(items=[item("Camiseta", quantity=0)]),
            CUSTOMER,
            catalog("Camiseta"),
            None,
            SALE_DATE,
        )


def test_pending_review_message() -> None:
    products = {
        "Camiseta": ProductRef("p-1", "Camiseta", created=False),
        "Caneca": ProductRef("p-2", "Caneca", created=True),
    }
    reused = CustomerRef("c-1", "Maria da Silva", CPF, "+55 11 99999-0000", "3333-0000", False)
    sale = build_sale(make_order(total="140"), reused, products, "user-1", SALE_DATE)
    body = pending_review(sale, "s-1").model_dump(mode="json")
    assert body["sale_id"] == "s-1"
    assert body["status"] == "pending_review"
    assert (body["store_id"], body["order_id"], body["order_number"]) == (7, 9001, 42)
    assert body["seller_id"] == "user-1"
    assert body["customer"] == {
        "id": "c-1",
        "name": "Maria da Silva",
        "document": CPF,
        "business_phone": "3333-0000",
        "mobile_phone": "+55 11 99999-0000",
        "created": False,
        "address": None,
    }
    assert body["items"] == [
        {
            "product": {"id": "p-1", "description": "Camiseta", "created": False},
            "description": "Camiseta",
            "quantity": 2,
            "unit_price": "40.00",
            "total": "80.00",
        },
        {
            "product": {"id": "p-2", "description": "Caneca", "created": True},
            "description": "Caneca",
            "quantity": 1,
            "unit_price": "50.00",
            "total": "50.00",
        },
    ]
    assert (body["subtotal"], body["discount"], body["shipping"], body["total"]) == (
        "130.00",
        "10.00",
        "15.50",
        "140.00",
    )
    assert body["payment"] == {
        "method": "cash",
        "installments": [{"number": 1, "amount": "140.00", "due_date": "2026-08-03"}],
    }
    assert body["sale_date"] == "2026-08-03"
    assert len(body["warnings"]) == 1


money = st.decimals(
    min_value=Decimal(0),
    max_value=Decimal(100_000),
    places=2,
    allow_nan=False,
    allow_infinity=False,
)
order_items = st.lists(
    st.tuples(st.sampled_from(["A", "B", "C", "a"]), st.integers(1, 1000), money),
    min_size=1,
    max_size=8,
)


@given(order_items, money, money, st.one_of(st.none(), money))
def test_build_sale_totals_are_exact(
    items: list[tuple[str, int, Decimal]],
    discount: Decimal,
    shipping: Decimal,
    declared_total: Decimal | None,
) -> None:
    subtotal = sum((quantity * price for _, quantity, price in items), Decimal(0))
    computed = subtotal - discount + shipping
    total = computed if declared_total is None else declared_total
    assume(total >= 0)  # a discount above the rest makes an invalid order, tested elsewhere
    order = make_order(
        items=[item(name, quantity, str(price)) for name, quantity, price in items],
        subtotal=str(subtotal),
        discount=str(discount),
        shipping=str(shipping),
        total=str(total),
    )
    products = catalog(*(draft.description for draft in product_drafts(order)))
    sale = build_sale(order, CUSTOMER, products, None, SALE_DATE)
    assert all(isinstance(ln.total, Decimal) for ln in sale.lines)
    assert [ln.total for ln in sale.lines] == [q * p for _, q, p in items]
    assert sale.subtotal == subtotal
    assert sale.total == total
    assert [i.amount for i in sale.payment.installments] == [sale.total]
    assert (len(sale.warnings) == 0) is (total == computed)


# --- stock -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lines", "available", "shortages"),
    [
        ([line("p1", 2)], {"p1": 2}, []),
        ([line("p1", 3)], {"p1": 2}, [Shortage("p1", "p1", 3, 2)]),
        ([line("p1", 1), line("p1", 2)], {"p1": 2}, [Shortage("p1", "p1", 3, 2)]),
        ([line("p1", 1), line("p1", 1)], {"p1": 2}, []),
        ([line("p1", 1)], {}, [Shortage("p1", "p1", 1, 0)]),
        (
            [line("p2", 5, "Caneca"), line("p1", 1), line("p2", 1, "Caneca")],
            {"p1": 0, "p2": 6},
            [Shortage("p1", "p1", 1, 0)],
        ),
        (
            [line("p2", 5, "Caneca"), line("p1", 4, "Camiseta")],
            {"p1": 3, "p2": 4},
            [Shortage("Caneca", "p2", 5, 4), Shortage("Camiseta", "p1", 4, 3)],
        ),
        ([], {"p1": 0}, []),
    ],
)
def test_check_stock(
    lines: list[SaleLine], available: dict[str, int], shortages: list[Shortage]
) -> None:
    assert check_stock(lines, available) == shortages


@given(
    st.lists(st.tuples(st.sampled_from(["p1", "p2", "p3"]), st.integers(1, 50)), max_size=12),
    st.dictionaries(st.sampled_from(["p1", "p2", "p3"]), st.integers(0, 200)),
)
def test_check_stock_aggregates_duplicates(
    requests: list[tuple[str, int]], available: dict[str, int]
) -> None:
    totals: dict[str, int] = {}
    for product_id, quantity in requests:
        totals[product_id] = totals.get(product_id, 0) + quantity
    shortages = check_stock([line(p, q) for p, q in requests], available)
    assert {s.product_id: s.requested for s in shortages} == {
        p: q for p, q in totals.items() if q > available.get(p, 0)
    }
    assert all(s.available == available.get(s.product_id, 0) for s in shortages)
    assert len({s.product_id for s in shortages}) == len(shortages)


def test_insufficient_stock_rejection() -> None:
    order = make_order()
    shortages = [Shortage("Camiseta", "p-1", 2, 1), Shortage("Caneca", "p-2", 1, 0)]
    body = insufficient_stock_rejection(order, shortages).model_dump(mode="json")
    assert body["reason"] == "insufficient_stock"
    assert "Camiseta: requested 2, available 1" in body["detail"]
    assert body["items"] == [
        {"description": "Camiseta", "product_id": "p-1", "requested": 2, "available": 1},
        {"description": "Caneca", "product_id": "p-2", "requested": 1, "available": 0},
    ]
