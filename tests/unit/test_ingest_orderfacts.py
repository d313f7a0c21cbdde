"""Unit tests of the order facts ingest reads beyond money and lines: the shipping charged to the
buyer on both API shapes, what the buyer paid with, the shipping and billing addresses, and the
partial refund. Shapes and quirks are those of the public reference (docs/nuvemshop.md)."""

from __future__ import annotations

import json
import unicodedata
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.ingest.domain import (
    MalformedOrder,
    parse_order_paid,
    parse_order_partially_refunded,
)
from services.ingest.orderfacts import (
    billing_address_of,
    shipping_address_of,
    shipping_of,
    store_payment_of,
)
from shared.contracts import Address, OrderPaid, StorePayment
from tests.unit.test_ingest_domain import paid_order

RELAXED = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def fulfillment(value: object, **more: Any) -> dict[str, Any]:
    """A 2025-03 fulfillment order (trimmed) whose buyer paid ``value`` for shipping."""
    return {
        "id": "01FHZXHK8PTP9FVK99Z66GXKKK",
        "shipping": {"type": "ship", "consumer_cost": {"value": value, "currency": "BRL"}},
        **more,
    }


# --- shipping --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        # Legacy (v1): the order-level decimal string.
        ({"shipping_cost_customer": "25.50", "shipping_cost_owner": "30.00"}, "25.50"),
        ({"shipping_cost_customer": 0}, "0"),
        # 2025-03 with aggregates=fulfillment_orders: `fulfillments` holds the objects, whose
        # Money values are JSON numbers (parsed as Decimal by the client, floats by json.loads).
        ({"fulfillments": [fulfillment(Decimal("123.14"))]}, "123.14"),
        ({"fulfillments": [fulfillment(15.9)]}, "15.90"),
        ({"fulfillments": [fulfillment(20)]}, "20"),
        ({"fulfillments": [fulfillment("10.00"), fulfillment(5.5)]}, "15.50"),
        ({"fulfillments": [fulfillment("10.00"), {"id": "pickup", "shipping": None}]}, "10"),
        ({"fulfillments": [{"shipping": {"consumer_cost": None}}]}, "0"),
        # One example of the reference names the list `fulfillment_orders`.
        ({"fulfillment_orders": [fulfillment("8.25")]}, "8.25"),
        ({"fulfillments": ["01BX5ZZKBK"], "fulfillment_orders": [fulfillment("4.00")]}, "4.00"),
        # During the transition the order-level field holds the first fulfillment's cost only:
        # the sum of the details wins.
        (
            {"shipping_cost_customer": "7.00", "fulfillments": [fulfillment(7), fulfillment(3)]},
            "10",
        ),
        ({"shipping_cost_customer": None, "fulfillments": [fulfillment("8.25")]}, "8.25"),
        # Ids only (read without the aggregate) with the legacy field: the legacy field.
        ({"shipping_cost_customer": "9.90", "fulfillments": ["01BX5ZZKBK"]}, "9.90"),
    ],
)
def test_shipping_charged_to_the_buyer(changes: dict[str, Any], expected: str) -> None:
    order = paid_order(**changes)
    assert shipping_of(order) == Decimal(expected)
    assert parse_order_paid(order, activated_by=None).shipping == Decimal(expected)


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"fulfillments": []},
        {"fulfillments": ["01BX5ZZKBKACTAV9WEVGEMMVRZ", "01BX5ZZKBKZZZZZZZZZZZZZZZX"]},
        {"fulfillments": None},
    ],
)
def test_no_shipping_figure_is_zero_only_when_the_total_leaves_nothing(
    changes: dict[str, Any],
) -> None:
    # The reference's example: subtotal 6000 - discount 600 = total 5400, nothing for shipping.
    order = paid_order(**changes)
    assert shipping_of(order) is None
    assert parse_order_paid(order, activated_by=None).shipping == Decimal(0)

    # The same order with 27.50 of shipping in its total but no figure for it: never a guess.
    order["total"] = "5427.50"
    with pytest.raises(MalformedOrder) as caught:
        parse_order_paid(order, activated_by=None)
    assert caught.value.field == "fulfillments"
    assert "27.50" in caught.value.detail
    assert "aggregates=fulfillment_orders" in caught.value.detail


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"fulfillments": "none"}, "fulfillments"),
        ({"fulfillments": [None]}, "fulfillments[0]"),
        ({"fulfillments": [fulfillment("1.00"), "01BX5ZZKBK"]}, "fulfillments"),
        ({"fulfillments": [fulfillment("-1.00")]}, "fulfillments[0].shipping.consumer_cost.value"),
        ({"fulfillments": [fulfillment("free")]}, "fulfillments[0].shipping.consumer_cost.value"),
        ({"fulfillments": [{"shipping": "ship"}]}, "fulfillments[0].shipping"),
    ],
)
def test_unreadable_shipping(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(MalformedOrder) as caught:
        parse_order_paid(paid_order(**changes), activated_by=None)
    assert caught.value.field == field


money = st.decimals(min_value=0, max_value=Decimal("99999.99"), places=2)


def as_served(amount: Decimal, form: int) -> object:
    """One amount as the API may write it: a JSON number (Decimal or float) or a string."""
    return (amount, float(amount), format(amount, "f"))[form]


@RELAXED
@given(st.lists(st.tuples(money, st.integers(0, 2)), min_size=1, max_size=6))
def test_shipping_is_the_exact_sum_of_the_consumer_costs(costs: list[tuple[Decimal, int]]) -> None:
    order = {"fulfillments": [fulfillment(as_served(value, form)) for value, form in costs]}
    assert shipping_of(order) == sum((value for value, _ in costs), Decimal(0))


# --- what the buyer paid with ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        # The reference's example: an offline payment, no card, one installment.
        ({}, StorePayment(method="custom", gateway="Transferencia Bancaria", installments=1)),
        (
            {
                "gateway": "mercadopago",
                "gateway_name": "Mercado Pago",
                "payment_details": {
                    "method": "credit_card",
                    "credit_card_company": "visa",
                    "installments": "3",
                },
            },
            StorePayment(
                method="credit_card", gateway="Mercado Pago", card_company="visa", installments=3
            ),
        ),
        # An order created through the API: gateway `not-provided`, empty name, no method.
        (
            {
                "gateway": "not-provided",
                "gateway_name": "",
                "payment_details": {"method": None, "credit_card_company": None, "installments": 1},
            },
            StorePayment(gateway="not-provided", installments=1),
        ),
        ({"payment_details": None, "gateway": None, "gateway_name": None}, StorePayment()),
        ({"payment_details": []}, StorePayment(gateway="Transferencia Bancaria")),
        (
            {"payment_details": {"installments": "doze"}},
            StorePayment(gateway="Transferencia Bancaria"),
        ),
        (
            {"payment_details": {"installments": 2.0}},
            StorePayment(gateway="Transferencia Bancaria", installments=2),
        ),
        ({"payment_details": {"installments": 0}}, StorePayment(gateway="Transferencia Bancaria")),
        (
            {"payment_details": {"installments": True}},
            StorePayment(gateway="Transferencia Bancaria"),
        ),
    ],
)
def test_store_payment(changes: dict[str, Any], expected: StorePayment) -> None:
    order = paid_order(**changes)
    assert store_payment_of(order) == expected
    assert parse_order_paid(order, activated_by=None).store_payment == expected


json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=10)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


@RELAXED
@given(
    st.dictionaries(
        st.sampled_from(["method", "credit_card_company", "installments"]), json_values
    ),
    json_values,
    json_values,
)
def test_store_payment_never_stops_an_import(
    details: object, name: object, gateway: object
) -> None:
    payment = store_payment_of(
        {"payment_details": details, "gateway_name": name, "gateway": gateway}
    )
    assert payment.installments is None or payment.installments >= 1
    for text in (payment.method, payment.gateway, payment.card_company):
        assert text is None or (text and text == text.strip())


# --- addresses -------------------------------------------------------------------------------

SHIPPING_ADDRESS = {
    "address": "Evergreen Terrace",
    "city": "New York",
    "country": "US",
    "floor": "Apartment 8",
    "locality": "Bronx",
    "name": "John Doe",
    "number": "742",
    "phone": "john.doe@example.com",
    "province": "New York",
    "zipcode": "10451",
    "customs": None,
}
EVERGREEN = Address(
    street="Evergreen Terrace",
    number="742",
    complement="Apartment 8",
    locality="Bronx",
    city="New York",
    state="New York",
    zipcode="10451",
    country="US",
)
SOROCABA = Address(
    street="Rua Doutor Azevedo Sampaio",
    number="50",
    locality="Centro",
    city="Sorocaba",
    state="São Paulo",
    zipcode="18010220",
    country="BR",
)
BILLING = {
    "billing_address": "Rua Doutor Azevedo Sampaio",
    "billing_number": "50",
    "billing_floor": "",
    "billing_locality": "Centro",
    "billing_zipcode": "18010220",
    "billing_city": "Sorocaba",
    "billing_province": "São Paulo",
    "billing_country": "BR",
}
DESTINATION = {
    "zipcode": "12910802",
    "street": "Some Street",
    "number": "100",
    "floor": "Some Floor",
    "locality": "Some Locality",
    "city": "Some City",
    "reference": "Some Reference",
    "between_streets": "Some Between Streets",
    "province": {"name": "São Paulo", "code": "SP"},
    "region": {"name": "Sudeste", "code": "SE"},
    "country": {"name": "Brasil", "code": "BR"},
}


def test_the_reference_example_addresses() -> None:
    order = paid_order(shipping_address=SHIPPING_ADDRESS, **BILLING)
    message = parse_order_paid(order, activated_by=None)
    assert message.shipping_address == EVERGREEN
    assert message.customer.address == SOROCABA


def test_shipping_address_falls_back_to_the_fulfillment_destination() -> None:
    order = paid_order(
        shipping_address=None, fulfillments=[fulfillment(0, destination=DESTINATION)]
    )
    assert shipping_address_of(order) == Address(
        street="Some Street",
        number="100",
        complement="Some Floor",
        locality="Some Locality",
        city="Some City",
        state="São Paulo",
        zipcode="12910802",
        country="BR",
    )


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        # The checkout's placeholders for what the buyer did not give.
        (
            {
                "address": "No informado",
                "number": "Não informado",
                "zipcode": "0000",
                "city": "Sorocaba",
                "country": "BR",
                "floor": None,
                "locality": "",
            },
            Address(city="Sorocaba", country="BR"),
        ),
        ({"address": None, "city": None, "country": None, "zipcode": None}, None),
        # Numbers as integers, and decomposed Unicode (a + combining tilde) made whole.
        (
            {"address": "Rua da Conceic\u0327a\u0303o", "number": 1200, "city": "Sa\u0303o Paulo"},
            Address(street="Rua da Conceição", number="1200", city="São Paulo"),
        ),
        (
            {"address": "  Av. Paulista  ", "number": "S/N"},
            Address(street="Av. Paulista", number="S/N"),
        ),
    ],
)
def test_shipping_address_quirks(address: dict[str, Any], expected: Address | None) -> None:
    assert shipping_address_of({"shipping_address": address}) == expected


@pytest.mark.parametrize("address", [None, [], "Rua X", 5])
def test_order_without_a_shipping_address_is_imported(address: object) -> None:
    message = parse_order_paid(paid_order(shipping_address=address), activated_by=None)
    assert message.shipping_address is None


def test_billing_address_falls_back_to_the_customer_object() -> None:
    customer = {"name": "Maria", **BILLING}
    assert billing_address_of({}, customer) == SOROCABA
    assert billing_address_of({**BILLING, "billing_city": "Itu"}, customer) == SOROCABA.model_copy(
        update={"city": "Itu"}
    )
    assert billing_address_of({}, {}) is None
    # The shape orders are created with: an address object.
    assert billing_address_of({"billing_address": SHIPPING_ADDRESS}, {}) == EVERGREEN


address_parts = st.sampled_from(
    ["address", "number", "floor", "locality", "city", "province", "zipcode", "country"]
)
place_values = st.one_of(
    json_values,
    st.sampled_from(["Não informado", "0000", "Sa\u0303o Paulo", " ", "S/N"]),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=12),
)


@RELAXED
@given(st.dictionaries(address_parts, place_values))
def test_addresses_never_stop_an_import(parts: dict[str, object]) -> None:
    found = shipping_address_of({"shipping_address": parts})
    if found is None:
        return
    for text in found.model_dump().values():
        assert text is None or (text.strip() and unicodedata.is_normalized("NFC", text))


# --- the whole message -----------------------------------------------------------------------


def test_order_paid_carries_the_new_facts_on_the_wire() -> None:
    order = paid_order(
        shipping_address=SHIPPING_ADDRESS,
        payment_details={"method": "credit_card", "credit_card_company": "visa", "installments": 3},
        gateway_name="Mercado Pago",
        fulfillments=[fulfillment(Decimal("27.50"))],
        total="5427.50",
        **BILLING,
    )
    wire = json.loads(parse_order_paid(order, activated_by="u").model_dump_json())
    assert wire["shipping"] == "27.50"
    assert wire["currency"] == "ARS"
    assert wire["store_payment"] == {
        "method": "credit_card",
        "gateway": "Mercado Pago",
        "card_company": "visa",
        "installments": 3,
    }
    assert wire["shipping_address"]["street"] == "Evergreen Terrace"
    assert wire["customer"]["address"]["state"] == "São Paulo"
    # A message published before these fields existed still reads, with them as None.
    for key in ("store_payment", "shipping_address"):
        del wire[key]
    del wire["customer"]["address"]
    old = OrderPaid.model_validate(wire)
    assert (old.store_payment, old.shipping_address, old.customer.address) == (None, None, None)


def test_partial_refund_is_noted_at_the_orders_update() -> None:
    order = paid_order(payment_status="partially_refunded", updated_at="2022-11-16T10:00:00+0000")
    noted = parse_order_partially_refunded(order, now=NOW)
    assert (noted.store_id, noted.order_id) == (817495, 871254203)
    assert noted.noted_at == datetime(2022, 11, 16, 10, 0, tzinfo=UTC)
    assert parse_order_partially_refunded({**order, "updated_at": None}, now=NOW).noted_at == NOW
    with pytest.raises(MalformedOrder):
        parse_order_partially_refunded({**order, "id": "x"}, now=NOW)
