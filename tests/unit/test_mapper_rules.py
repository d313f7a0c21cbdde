"""The store-dependent rules of an import (SPEC §4, §8), pure: product matching by SKU, the
store's calendar, the currency, a switched-off store, and the order facts a sale carries."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.mapper.domain import (
    CustomerRef,
    ProductDraft,
    ProductRef,
    build_sale,
    customer_from_order,
    pending_review,
)
from services.mapper.rules import (
    BY_DESCRIPTION,
    BY_SKU,
    STORE_DISABLED,
    UNSUPPORTED_CURRENCY,
    Catalog,
    StoreRules,
    UnknownTimezoneError,
    currency_rejection,
    is_new_product,
    parse_timezone,
    plan_products,
    refusal,
    resolve_plan,
    sale_day,
    shortages,
    store_disabled_rejection,
)
from shared.contracts import OrderPaid
from tests.unit.test_mapper_domain import order_body

SP = ZoneInfo("America/Sao_Paulo")


def order(**overrides: Any) -> OrderPaid:
    return OrderPaid.model_validate(order_body(**overrides))


def draft(description: str, sku: str | None = None) -> ProductDraft:
    return ProductDraft(description, sku, Decimal("10.00"))


def ref(product_id: str, description: str) -> ProductRef:
    return ProductRef(product_id, description, created=False)


# --- product matching (SPEC §3, §8.1) ----------------------------------------------------------


def test_description_match_ignores_skus() -> None:
    catalog_by_sku = {"CAM-P-AZ": ref("p1", "Camiseta azul P")}
    plan = plan_products(
        [draft("Camiseta (P, Azul)", "CAM-P-AZ")], BY_DESCRIPTION, catalog_by_sku, {}
    )
    assert plan.found == {}
    assert plan.create == [draft("Camiseta (P, Azul)", "CAM-P-AZ")]  # created keeping its SKU


def test_sku_match_takes_the_product_with_the_sku_first() -> None:
    by_sku = {"CAM-P-AZ": ref("p1", "Camiseta azul P")}
    by_description = {"Camiseta (P, Azul)": ref("p2", "Camiseta (P, Azul)")}
    plan = plan_products([draft("Camiseta (P, Azul)", "CAM-P-AZ")], BY_SKU, by_sku, by_description)
    assert plan.found == {"Camiseta (P, Azul)": ref("p1", "Camiseta azul P")}
    assert plan.create == []


@pytest.mark.parametrize("sku", [None, "", "NO-SUCH"])
def test_sku_match_falls_back_to_the_exact_description(sku: str | None) -> None:
    by_description = {"Caneca": ref("p2", "Caneca")}
    plan = plan_products([draft("Caneca", sku)], BY_SKU, {}, by_description)
    assert plan.found == {"Caneca": ref("p2", "Caneca")}
    plan = plan_products([draft("caneca", sku)], BY_SKU, {}, by_description)  # exact: case counts
    assert plan.create == [draft("caneca", sku)]


def test_lines_sharing_a_new_sku_share_the_product_created_for_the_first() -> None:
    drafts = [draft("Camiseta (P, Azul)", "CAM-1"), draft("Camiseta P Azul", "CAM-1")]
    plan = plan_products(drafts, BY_SKU, {}, {})
    assert plan.create == [drafts[0]]
    assert plan.same_as == {"Camiseta P Azul": "Camiseta (P, Azul)"}
    refs = resolve_plan(plan, {"Camiseta (P, Azul)": ProductRef("n1", "Camiseta (P, Azul)", True)})
    assert refs["Camiseta (P, Azul)"].created is True
    assert refs["Camiseta P Azul"] == ProductRef("n1", "Camiseta (P, Azul)", created=False)


names = st.sampled_from(["A", "B", "C", "Camiseta (P, Azul)", "a"])
skus = st.one_of(st.none(), st.sampled_from(["S1", "S2", "S3"]))


@given(
    st.lists(st.tuples(names, skus), unique_by=lambda t: t[0], max_size=5),
    st.dictionaries(st.sampled_from(["S1", "S2"]), st.sampled_from(["p1", "p2"])),
    st.dictionaries(names, st.sampled_from(["p3", "p4"])),
    st.sampled_from([BY_DESCRIPTION, BY_SKU]),
)
def test_every_line_gets_exactly_one_product(
    lines: list[tuple[str, str | None]],
    sku_ids: dict[str, str],
    described: dict[str, str],
    match: Any,
) -> None:
    drafts = [draft(n, s) for n, s in lines]
    by_sku = {s: ref(i, f"product {i}") for s, i in sku_ids.items()}
    by_description = {d: ref(i, d) for d, i in described.items()}
    plan = plan_products(drafts, match, by_sku, by_description)
    created = {
        d.description: ProductRef(f"new-{d.description}", d.description, True) for d in plan.create
    }
    refs = resolve_plan(plan, created)
    assert set(refs) == {d.description for d in drafts}
    for d in drafts:
        got = refs[d.description]
        if match == BY_SKU and d.sku in by_sku:
            assert got == by_sku[d.sku]  # the SKU wins over the description
        elif d.description in by_description and not (match == BY_SKU and d.sku):
            assert got == by_description[d.description]
        if match == BY_DESCRIPTION:
            assert got.id in {
                by_description.get(d.description, ref("", "")).id,
                f"new-{d.description}",
            }
    # A SKU is never given to two new products of one plan.
    new_skus = [d.sku for d in plan.create if d.sku and match == BY_SKU]
    assert len(new_skus) == len(set(new_skus))


# --- the store's calendar (SPEC §8.5) ----------------------------------------------------------


def test_an_evening_order_in_sao_paulo_is_not_dated_tomorrow() -> None:
    evening = order(paid_at="2026-08-03T22:30:00-03:00")  # 2026-08-04T01:30Z
    assert sale_day(evening, SP) == dt.date(2026, 8, 3)
    assert sale_day(evening, ZoneInfo("UTC")) == dt.date(2026, 8, 4)
    assert sale_day(order(paid_at="2026-08-04T01:30:00+00:00"), SP) == dt.date(2026, 8, 3)


def test_sale_day_falls_back_to_the_creation_when_unpaid() -> None:
    created = order(paid_at=None, created_at="2026-08-03T23:59:00-03:00")
    assert sale_day(created, SP) == dt.date(2026, 8, 3)


@given(
    st.datetimes(
        timezones=st.just(dt.UTC),
        min_value=dt.datetime(2000, 1, 1),
        max_value=dt.datetime(2100, 1, 1),
    )
)
def test_sale_day_is_the_local_date_of_the_payment(paid: dt.datetime) -> None:
    body = order_body(paid_at=paid.isoformat())
    assert sale_day(OrderPaid.model_validate(body), SP) == paid.astimezone(SP).date()


def test_store_rules_default_to_the_installation_zone() -> None:
    assert StoreRules().zone("America/Sao_Paulo") == SP
    assert StoreRules(timezone="America/Manaus").zone("America/Sao_Paulo") == ZoneInfo(
        "America/Manaus"
    )


@pytest.mark.parametrize(
    "name", ["Mars/Olympus", "america/sao_paulo", "", "../../etc/passwd", "UTC+3"]
)
def test_a_bad_zone_name_is_refused_clearly(name: str) -> None:
    with pytest.raises(UnknownTimezoneError, match="not an IANA time zone"):
        parse_timezone(name)


# --- currency and a switched-off store (SPEC §8.4, §4) -----------------------------------------


@pytest.mark.parametrize("currency", ["BRL", "brl", " BRL "])
def test_reais_are_accepted(currency: str) -> None:
    assert currency_rejection(order(currency=currency)) is None


@pytest.mark.parametrize("currency", ["USD", "ARS", "EUR", ""])
def test_other_currencies_are_rejected(currency: str) -> None:
    rejected = currency_rejection(order(currency=currency))
    assert rejected is not None
    assert (rejected.store_id, rejected.order_id, rejected.reason) == (
        7,
        9001,
        UNSUPPORTED_CURRENCY,
    )
    assert "BRL" in rejected.detail


def test_store_disabled_rejection_says_what_to_do() -> None:
    rejected = store_disabled_rejection(order(), "switched_off")
    assert rejected.reason == STORE_DISABLED
    assert "switched_off" in rejected.detail
    assert "retry" in rejected.detail


# --- the order facts a sale carries (SPEC §8.2, §8.3) ------------------------------------------

ADDRESS = {
    "street": "Rua Augusta",
    "number": "1500",
    "complement": "Apto 12",
    "locality": "Consolação",
    "city": "São Paulo",
    "state": "SP",
    "zipcode": "01304-001",
    "country": "BR",
}


def test_pending_review_carries_the_store_payment_and_the_addresses() -> None:
    body = order_body()
    body["customer"]["address"] = ADDRESS
    body["shipping_address"] = ADDRESS | {"street": "Avenida Paulista", "number": "1000"}
    body["store_payment"] = {
        "method": "credit_card",
        "gateway": "Mercado Pago",
        "card_company": "visa",
        "installments": 3,
    }
    paid = OrderPaid.model_validate(body)
    draft_customer = customer_from_order(paid)
    assert draft_customer.address is not None
    assert draft_customer.address.street == "Rua Augusta"
    customer = CustomerRef("c1", "Maria da Silva", None, None, None, created=True)
    products = {i.name: ProductRef(f"p-{i.name}", i.name, True) for i in paid.items}
    sale = build_sale(paid, customer, products, "erp-user-1", dt.date(2026, 8, 3))
    message = pending_review(sale, "s1").model_dump(mode="json")
    assert message["store_payment"] == body["store_payment"]
    assert message["shipping_address"]["street"] == "Avenida Paulista"
    assert message["customer"]["address"] == ADDRESS
    # Information only: the sale's own payment stays cash, one installment of the total.
    assert message["payment"]["method"] == "cash"
    assert [i["amount"] for i in message["payment"]["installments"]] == [message["total"]]
    assert message["sale_date"] == "2026-08-03"


def test_an_order_without_facts_carries_nulls() -> None:
    paid = order()
    customer = CustomerRef("c1", "Maria da Silva", None, None, None, created=False)
    products = {i.name: ProductRef(f"p-{i.name}", i.name, False) for i in paid.items}
    message = pending_review(build_sale(paid, customer, products, None, dt.date(2026, 8, 3)), "s1")
    dumped = message.model_dump(mode="json")
    assert dumped["store_payment"] is None
    assert dumped["shipping_address"] is None
    assert dumped["customer"]["address"] is None


# --- what keeps an order out, in order; a batch's catalogue -------------------------------------


def test_refusal_checks_the_store_then_the_currency_then_the_order() -> None:
    broken = order(currency="USD", items=[])
    off = refusal(broken, "switched_off")
    assert off is not None
    assert off.reason == STORE_DISABLED
    usd = refusal(broken, None)
    assert usd is not None
    assert usd.reason == UNSUPPORTED_CURRENCY
    unreadable = refusal(order(items=[]), None)
    assert unreadable is not None
    assert unreadable.reason == "invalid_order"
    assert unreadable.detail == "order has no items"
    assert refusal(order(), None) is None


def test_a_product_an_earlier_sale_creates_is_found_by_later_ones() -> None:
    catalog = Catalog(BY_SKU)
    first = catalog.plan([draft("Camiseta (P, Azul)", "CAM-P-AZ")])
    assert [d.description for d in first.create] == ["Camiseta (P, Azul)"]
    catalog.add(first)
    later = catalog.plan([draft("Camiseta azul P", "CAM-P-AZ"), draft("Camiseta (P, Azul)")])
    assert later.create == []
    assert {d: r.description for d, r in later.found.items()} == {
        "Camiseta azul P": "Camiseta (P, Azul)",
        "Camiseta (P, Azul)": "Camiseta (P, Azul)",
    }
    assert all(is_new_product(r.id) and not r.created for r in later.found.values())


def test_shortages_count_a_product_to_create_as_out_of_stock() -> None:
    paid = order(items=[{"name": "Caneca", "sku": None, "quantity": 2, "unit_price": "5.00"}])
    plan = plan_products([draft("Caneca")], BY_DESCRIPTION, {}, {})
    (short,) = shortages(paid, plan, {})
    assert (short.description, short.requested, short.available) == ("Caneca", 2, 0)
    assert is_new_product(short.product_id)
    stocked = plan_products([draft("Caneca")], BY_DESCRIPTION, {}, {"Caneca": ref("p1", "Caneca")})
    assert shortages(paid, stocked, {"p1": 2}) == []
