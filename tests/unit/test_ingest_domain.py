"""Unit tests of ingest's pure rules: order parsing, order states, webhooks and signatures."""

from __future__ import annotations

import hashlib
import hmac
import json
from copy import deepcopy
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.ingest import schedule as domain
from services.ingest.domain import (
    APP_UNINSTALLED,
    LGPD_EVENTS,
    ORDER_EVENTS,
    InvalidWebhook,
    MalformedOrder,
    OrderState,
    Webhook,
    is_importable,
    order_state,
    parse_order_cancelled,
    parse_order_paid,
    parse_timestamp,
    parse_webhook,
    verify_signature,
)
from shared.contracts import OrderCustomer, OrderItem

# The trimmed official example order of the Nuvemshop API reference (shared fixture), as text so
# that its type quirks (store_id and quantity as strings, "+0000" offsets) stay exactly as served.
FIXTURE = """
{"id":871254203,"token":"b872a1befbcde5aaf0517ecbcc910f5dc005350e","store_id":"817495",
 "contact_email":"buyer@tiendanube.com","contact_name":"Maria Silva","contact_phone":"+551533276436",
 "contact_identification":"75839566500","billing_name":"Maria","billing_phone":"+551533276436",
 "billing_customer_type":"company","billing_business_name":"Nuvem Shop LTDA",
 "billing_document_type":"cnpj","coupon":[],"subtotal":"6000.00","discount":"600.00",
 "discount_coupon":"0.00","discount_gateway":"600.00","total":"5400.00","total_usd":"40.79",
 "currency":"ARS","language":"es","gateway":"offline","gateway_id":null,
 "gateway_name":"Transferencia Bancaria","storefront":"store","note":"",
 "created_at":"2022-11-15T19:36:59+0000","updated_at":"2022-11-15T19:37:08+0000",
 "completed_at":{"date":"2022-11-15 19:36:59.000000","timezone_type":3,"timezone":"UTC"},
 "payment_details":{"method":"custom","credit_card_company":null,"installments":1},
 "customer":{"id":105799009,"name":"Maria Silva","email":"buyer@tiendanube.com",
   "identification":"75839566500","phone":"+551533276436","billing_phone":"+551533276436",
   "total_spent":"27.00","last_order_id":871254203},
 "products":[{"id":1069053829,"name":"Mesa de Roble","price":"6000.00","compare_at_price":"37.77",
   "product_id":111334785,"quantity":"1","variant_id":"426215948","variant_values":[],
   "properties":[],"sku":"12389012348124801234890","barcode":null}],
 "number":306,"cancel_reason":null,"owner_note":null,"cancelled_at":null,"closed_at":null,
 "read_at":null,"status":"open","payment_status":"pending","shipping_status":"unpacked",
 "fulfillments":[],"paid_at":null,"app_id":null,"is_subscription":false,
 "is_subscription_initial":false}
"""
CPF = "75839566500"
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
SECRET = "app-client-secret"


def fixture_order(**changes: Any) -> dict[str, Any]:
    order: dict[str, Any] = json.loads(FIXTURE)
    order.update(changes)
    return order


def paid_order(**changes: Any) -> dict[str, Any]:
    paid: dict[str, Any] = {"payment_status": "paid", "paid_at": "2022-11-15T19:40:00+0000"}
    return fixture_order(**(paid | changes))


def malformed_detail(order: dict[str, Any]) -> str:
    with pytest.raises(MalformedOrder) as caught:
        parse_order_paid(order, activated_by="user-1")
    return caught.value.detail


# --- the example order -----------------------------------------------------------------------


def test_fixture_order_parses_to_order_paid() -> None:
    message = parse_order_paid(paid_order(), activated_by="user-7")

    assert message.store_id == 817495
    assert message.order_id == 871254203
    assert message.order_number == 306
    assert message.created_at == datetime(2022, 11, 15, 19, 36, 59, tzinfo=UTC)
    assert message.paid_at == datetime(2022, 11, 15, 19, 40, tzinfo=UTC)
    assert message.currency == "ARS"
    assert message.subtotal == Decimal("6000.00")
    assert message.discount == Decimal("600.00")
    assert message.shipping == Decimal(0)
    assert message.total == Decimal("5400.00")
    assert message.activated_by == "user-7"
    assert message.customer == OrderCustomer(
        name="Maria Silva",
        document=CPF,
        email="buyer@tiendanube.com",
        mobile_phone="+551533276436",
        business_phone="+551533276436",
    )
    assert message.items == [
        OrderItem(
            name="Mesa de Roble",
            sku="12389012348124801234890",
            quantity=1,
            unit_price=Decimal("6000.00"),
        )
    ]


def test_amounts_are_decimals_and_serialise_as_strings() -> None:
    message = parse_order_paid(paid_order(), activated_by=None)

    for amount in (message.subtotal, message.discount, message.shipping, message.total):
        assert type(amount) is Decimal
    assert type(message.items[0].unit_price) is Decimal
    wire = json.loads(message.model_dump_json())
    assert wire["total"] == "5400.00"
    assert wire["shipping"] == "0.00"
    assert wire["created_at"] == "2022-11-15T19:36:59+00:00"


def test_not_paid_fixture_still_parses_without_paid_at() -> None:
    # Parsing does not decide importability: order_state does.
    assert parse_order_paid(fixture_order(), activated_by=None).paid_at is None


@pytest.mark.parametrize("quantity", ["1", 1, "3", 3, " 2 ", 2.0, "2.00"])
def test_quantity_as_string_or_integer(quantity: object) -> None:
    order = paid_order()
    order["products"][0]["quantity"] = quantity
    expected = int(Decimal(str(quantity).strip()))

    assert parse_order_paid(order, activated_by=None).items[0].quantity == expected


@pytest.mark.parametrize(("store_id", "expected"), [("817495", 817495), (817495, 817495)])
def test_store_id_as_string_or_integer(store_id: object, expected: int) -> None:
    assert parse_order_paid(paid_order(store_id=store_id), activated_by=None).store_id == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("19.99", "19.99"),
        (19.99, "19.99"),
        (0.1, "0.1"),
        (20, "20"),
        ("1e2", "100"),
        ("7.5", "7.5"),
    ],
)
def test_money_never_goes_through_float_arithmetic(value: object, expected: str) -> None:
    order = paid_order()
    order["products"][0]["price"] = value

    price = parse_order_paid(order, activated_by=None).items[0].unit_price
    # Equal to the decimal written, which the float's binary value (Decimal(0.1)) is not.
    assert price == Decimal(expected)


def test_several_products_keep_their_order() -> None:
    order = paid_order()
    order["products"].append({"name": "Silla", "price": "150.50", "quantity": 4, "sku": None})

    items = parse_order_paid(order, activated_by=None).items
    assert [(i.name, i.quantity, i.unit_price, i.sku) for i in items] == [
        ("Mesa de Roble", 1, Decimal("6000.00"), "12389012348124801234890"),
        ("Silla", 4, Decimal("150.50"), None),
    ]


# --- timestamps ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2022-11-15T19:36:59+0000", datetime(2022, 11, 15, 19, 36, 59, tzinfo=UTC)),
        ("2022-11-15T19:36:59+00:00", datetime(2022, 11, 15, 19, 36, 59, tzinfo=UTC)),
        ("2022-11-15T19:36:59Z", datetime(2022, 11, 15, 19, 36, 59, tzinfo=UTC)),
        ("2022-11-15T19:36:59", datetime(2022, 11, 15, 19, 36, 59, tzinfo=UTC)),
        ("2022-11-15 19:36:59", datetime(2022, 11, 15, 19, 36, 59, tzinfo=UTC)),
        ("2022-11-15T16:36:59-0300", datetime(2022, 11, 15, 19, 36, 59, tzinfo=UTC)),
        ("2022-11-15T19:36:59.250+0000", datetime(2022, 11, 15, 19, 36, 59, 250000, tzinfo=UTC)),
        ("2022-11-15T19:36Z", datetime(2022, 11, 15, 19, 36, tzinfo=UTC)),
    ],
)
def test_parse_timestamp_accepts_api_shapes(text: str, expected: datetime) -> None:
    parsed = parse_timestamp(text)

    assert parsed == expected
    assert parsed.tzinfo is UTC


def test_parse_timestamp_converts_datetimes_to_utc() -> None:
    brasilia = timezone(timedelta(hours=-3))
    assert parse_timestamp(datetime(2024, 1, 1, 9, 0, tzinfo=brasilia)) == datetime(
        2024, 1, 1, 12, 0, tzinfo=UTC
    )
    assert parse_timestamp(datetime(2024, 1, 1, 9, 0)).tzinfo is UTC


@pytest.mark.parametrize(
    "value",
    [
        "",
        "yesterday",
        "2022-11-15",
        "20221115T193659",
        "2022-13-01T00:00:00Z",
        "2022-11-15T25:00:00Z",
        "2022-11-15T19:36:59+0000 extra",
        "2022-11-15T19:36:59+5",
        1668541019,
        None,
        {"date": "2022-11-15 19:36:59.000000"},
    ],
)
def test_parse_timestamp_refuses_other_values(value: object) -> None:
    with pytest.raises(ValueError, match="timestamp"):
        parse_timestamp(value)


# --- customer fallbacks ----------------------------------------------------------------------


def test_name_falls_back_to_contact_then_billing_name() -> None:
    order = paid_order()
    order["customer"]["name"] = "  "
    assert parse_order_paid(order, activated_by=None).customer.name == "Maria Silva"

    order["contact_name"] = ""
    assert parse_order_paid(order, activated_by=None).customer.name == "Maria"

    order["billing_name"] = None
    assert parse_order_paid(order, activated_by=None).customer.name is None


def test_customer_name_comes_first_and_is_trimmed() -> None:
    order = paid_order(contact_name="Contact", billing_name="Billing")
    order["customer"]["name"] = "  Maria  da Silva "

    assert parse_order_paid(order, activated_by=None).customer.name == "Maria  da Silva"


def test_document_falls_back_to_contact_identification() -> None:
    order = paid_order(contact_identification="11222333000181")
    assert parse_order_paid(order, activated_by=None).customer.document == CPF

    order["customer"]["identification"] = ""
    assert parse_order_paid(order, activated_by=None).customer.document == "11222333000181"

    order["contact_identification"] = None
    assert parse_order_paid(order, activated_by=None).customer.document is None


def test_mobile_phone_is_contact_phone_else_customer_phone() -> None:
    order = paid_order(contact_phone="+5511911112222")
    order["customer"]["phone"] = "+5511933334444"
    assert parse_order_paid(order, activated_by=None).customer.mobile_phone == "+5511911112222"

    order["contact_phone"] = " "
    assert parse_order_paid(order, activated_by=None).customer.mobile_phone == "+5511933334444"

    del order["contact_phone"]
    order["customer"]["phone"] = None
    assert parse_order_paid(order, activated_by=None).customer.mobile_phone is None


def test_business_phone_is_billing_phone_only() -> None:
    order = paid_order(billing_phone="+551140041234")
    order["customer"]["billing_phone"] = "+559999999999"
    assert parse_order_paid(order, activated_by=None).customer.business_phone == "+551140041234"

    order["billing_phone"] = ""
    assert parse_order_paid(order, activated_by=None).customer.business_phone is None


def test_email_falls_back_to_contact_email() -> None:
    order = paid_order(contact_email="contact@example.com")
    order["customer"]["email"] = None

    assert parse_order_paid(order, activated_by=None).customer.email == "contact@example.com"


@pytest.mark.parametrize("customer", [None, [], {}])
def test_order_without_customer_object_uses_contact_fields(customer: object) -> None:
    # Without the read_customers scope the API leaves the customer out.
    order = paid_order(customer=customer)

    assert parse_order_paid(order, activated_by=None).customer == OrderCustomer(
        name="Maria Silva",
        document=CPF,
        email="buyer@tiendanube.com",
        mobile_phone="+551533276436",
        business_phone="+551533276436",
    )


def test_numeric_document_is_read_as_text_and_odd_shapes_as_missing() -> None:
    order = paid_order(contact_identification=["x"])
    order["customer"]["identification"] = 75839566500
    assert parse_order_paid(order, activated_by=None).customer.document == CPF

    order["customer"]["identification"] = {"number": CPF}
    assert parse_order_paid(order, activated_by=None).customer.document is None


# --- malformed orders ------------------------------------------------------------------------


def with_product(**changes: Any) -> dict[str, Any]:
    order = paid_order()
    order["products"][0].update(changes)
    return order


def without(field: str) -> dict[str, Any]:
    order = paid_order()
    del order[field]
    return order


@pytest.mark.parametrize(
    ("order", "field", "shown"),
    [
        (paid_order(total="abc"), "total", "'abc'"),
        (paid_order(subtotal="12,50"), "subtotal", "'12,50'"),
        (paid_order(discount="NaN"), "discount", "'NaN'"),
        (paid_order(total="-1.00"), "total", "'-1.00'"),
        (paid_order(shipping_cost_customer=True), "shipping_cost_customer", "True"),
        (with_product(quantity="1.5"), "products[0].quantity", "'1.5'"),
        (with_product(quantity=0), "products[0].quantity", "0"),
        (with_product(quantity=None), "products[0].quantity", "missing"),
        (with_product(price="abc"), "products[0].price", "'abc'"),
        (with_product(price=None), "products[0].price", "missing"),
        (with_product(name=" "), "products[0].name", "blank"),
        (without("products"), "products", "missing"),
        (paid_order(products=[]), "products", "empty"),
        (paid_order(products={"0": {}}), "products", "dict"),
        (paid_order(products=["Mesa"]), "products[0]", "str"),
        (without("id"), "id", "missing"),
        (paid_order(id="87125420x"), "id", "'87125420x'"),
        (paid_order(id=-5), "id", "-5"),
        (paid_order(id=True), "id", "True"),
        (paid_order(store_id=""), "store_id", "''"),
        (paid_order(number="three"), "number", "'three'"),
        (without("created_at"), "created_at", "missing"),
        (paid_order(created_at="15/11/2022"), "created_at", "15/11/2022"),
        (paid_order(paid_at="soon"), "paid_at", "soon"),
        (paid_order(currency=None), "currency", "None"),
        (without("total"), "total", "missing"),
        (
            paid_order(fulfillment_orders=[{"shipping": {"consumer_cost": {"value": "free"}}}]),
            "consumer_cost.value",
            "'free'",
        ),
        (paid_order(fulfillment_orders="none"), "fulfillment_orders", "str"),
    ],
)
def test_unreadable_orders_raise_malformed_order(
    order: dict[str, Any], field: str, shown: str
) -> None:
    detail = malformed_detail(order)

    assert field in detail
    assert shown in detail


def test_malformed_order_is_a_value_error_with_field() -> None:
    with pytest.raises(ValueError, match="products") as caught:
        parse_order_paid(without("products"), activated_by=None)

    assert isinstance(caught.value, MalformedOrder)
    assert caught.value.field == "products"
    assert str(caught.value) == caught.value.detail == "products: missing"


@pytest.mark.parametrize("raw", [[], "order", None, 42])
def test_order_that_is_not_an_object(raw: Any) -> None:
    with pytest.raises(MalformedOrder, match="not a JSON object"):
        parse_order_paid(raw, activated_by=None)


def test_document_is_never_quoted_in_a_detail() -> None:
    # A customer that is a bare string is unreadable, but its text may be a CPF.
    detail = malformed_detail(paid_order(customer=CPF))

    assert "customer" in detail
    assert CPF not in detail
    assert "758" not in detail


def test_long_values_are_cut_in_details() -> None:
    detail = malformed_detail(paid_order(total="x" * 500))

    assert len(detail) < 80


# --- order state -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "payment_status", "expected"),
    [
        ("open", "paid", OrderState.PAID),
        ("closed", "paid", OrderState.PAID),
        ("open", "partially_refunded", OrderState.PARTIALLY_REFUNDED),
        ("cancelled", "paid", OrderState.CANCELLED),
        ("open", "voided", OrderState.CANCELLED),
        ("open", "refunded", OrderState.CANCELLED),
        ("closed", "refunded", OrderState.CANCELLED),
        ("cancelled", "pending", OrderState.CANCELLED),
        ("open", "pending", OrderState.NOT_PAID),
        ("open", "authorized", OrderState.NOT_PAID),
        ("open", "partially_paid", OrderState.NOT_PAID),
        ("open", "abandoned", OrderState.NOT_PAID),
        ("open", None, OrderState.NOT_PAID),
        (None, None, OrderState.NOT_PAID),
        ("open", "PAID", OrderState.PAID),
    ],
)
def test_order_state(status: str | None, payment_status: str | None, expected: OrderState) -> None:
    assert order_state({"status": status, "payment_status": payment_status}) is expected


def test_partial_refund_is_noted_but_never_cancels() -> None:
    # A partial refund of a paid order arrives with payment_status "partially_refunded": the
    # sale stands (it is not a cancellation) and the refund is noted; a partly *paid* order is
    # not paid yet.
    refunded = paid_order(payment_status="partially_refunded")
    assert order_state(refunded) is OrderState.PARTIALLY_REFUNDED
    assert order_state(paid_order(payment_status="partially_paid")) is OrderState.NOT_PAID
    assert order_state(paid_order()) is OrderState.PAID
    assert OrderState("paid") is OrderState.PAID


# --- importability ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("created_at", "expected"),
    [
        ("2024-05-01T11:59:59+0000", False),
        ("2024-05-01T12:00:00+0000", True),
        ("2024-05-01T12:00:01Z", True),
        ("2024-05-01T09:00:00-0300", True),
        ("2024-05-01T08:59:59-0300", False),
        (datetime(2024, 5, 2, tzinfo=UTC), True),
    ],
)
def test_is_importable_from_activation_on(created_at: object, expected: bool) -> None:
    assert is_importable(created_at, NOW) is expected


def test_is_importable_refuses_unreadable_creation_time() -> None:
    with pytest.raises(MalformedOrder, match="created_at"):
        is_importable("not a date", NOW)


# --- cancellation ----------------------------------------------------------------------------


def test_cancelled_order_uses_cancelled_at_and_cancel_reason() -> None:
    order = fixture_order(
        status="cancelled", cancelled_at="2022-11-16T10:00:00+0000", cancel_reason="customer"
    )

    message = parse_order_cancelled(order, now=NOW)
    assert message.store_id == 817495
    assert message.order_id == 871254203
    assert message.cancelled_at == datetime(2022, 11, 16, 10, 0, tzinfo=UTC)
    assert message.reason == "customer"


def test_cancelled_at_falls_back_to_updated_at_then_now() -> None:
    order = fixture_order(status="cancelled")
    assert parse_order_cancelled(order, now=NOW).cancelled_at == datetime(
        2022, 11, 15, 19, 37, 8, tzinfo=UTC
    )

    order["updated_at"] = None
    assert parse_order_cancelled(order, now=NOW).cancelled_at == NOW


@pytest.mark.parametrize(
    ("status", "payment_status", "cancel_reason", "expected"),
    [
        ("open", "voided", None, "voided"),
        ("open", "refunded", "", "refunded"),
        ("cancelled", "pending", None, "cancelled"),
        ("cancelled", "refunded", "fraud", "fraud"),
    ],
)
def test_cancel_reason(
    status: str, payment_status: str, cancel_reason: str | None, expected: str
) -> None:
    order = fixture_order(status=status, payment_status=payment_status, cancel_reason=cancel_reason)

    assert parse_order_cancelled(order, now=NOW).reason == expected


def test_cancelled_order_with_bad_ids_is_malformed() -> None:
    with pytest.raises(MalformedOrder, match="store_id"):
        parse_order_cancelled(fixture_order(store_id=None), now=NOW)


# --- webhooks --------------------------------------------------------------------------------


def test_event_constants() -> None:
    assert {"order/paid", "order/updated", "order/cancelled", "order/voided"} == ORDER_EVENTS
    assert {"store/redact", "customers/redact", "customers/data_request"} == LGPD_EVENTS
    assert APP_UNINSTALLED == "app/uninstalled"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"store_id": 123, "event": "order/paid", "id": 456}', Webhook(123, "order/paid", 456)),
        (
            b'{"store_id": "123", "event": "order/voided", "id": "456"}',
            Webhook(123, "order/voided", 456),
        ),
        (
            b'{"store_id": 1, "event": "order/updated", "id": 9007199254740993}',
            Webhook(1, "order/updated", 9007199254740993),
        ),
        (b'{"store_id": 123, "event": "app/uninstalled"}', Webhook(123, "app/uninstalled", None)),
        (
            b'{"store_id": 123, "event": "store/redact", "id": null}',
            Webhook(123, "store/redact", None),
        ),
        (
            b'{"store_id": 123, "event": "customers/redact", "customer": {"id": 1}}',
            Webhook(123, "customers/redact", None),
        ),
        (
            b'{"store_id": 7, "event": "product/created", "id": 55, "extra": [1]}',
            Webhook(7, "product/created", 55),
        ),
    ],
)
def test_parse_webhook(body: bytes, expected: Webhook) -> None:
    assert parse_webhook(body) == expected


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "not JSON"),
        (b"store_id=1", "not JSON"),
        (b"\xff\xfe{", "not JSON"),
        (b"[" * 100_000, "not JSON"),
        # Accepted by json, refused by orjson: a signed one answered 500 (the receiver read the
        # LGPD body again with orjson). One parser now reads every webhook.
        (b'{"store_id": 1, "event": "store/redact", "x": NaN}', "not JSON"),
        (b'{"store_id": 1, "event": "store/redact", "x": -Infinity}', "not JSON"),
        (b'{"store_id": 1, "event": "store/redact", "x": 1e999}', "not JSON"),
        (b'{"store_id": 1, "event": "store/redact", "x": "\\ud800"}', "not JSON"),
        (b'\xef\xbb\xbf{"store_id": 1, "event": "store/redact"}', "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'"order/paid"', "not a JSON object"),
        (b'{"event": "order/paid", "id": 1}', "store_id: missing"),
        (b'{"store_id": "abc", "event": "order/paid", "id": 1}', "store_id"),
        (b'{"store_id": 0, "event": "order/paid", "id": 1}', "store_id"),
        (b'{"store_id": 1.5, "event": "order/paid", "id": 1}', "store_id"),
        (b'{"store_id": true, "event": "order/paid", "id": 1}', "store_id"),
        (b'{"store_id": "1e3", "event": "order/paid", "id": 1}', "store_id"),
        (b'{"store_id": 99999999999999999999, "event": "order/paid", "id": 1}', "store_id"),
        (b'{"store_id": 1, "id": 1}', "event"),
        (b'{"store_id": 1, "event": "", "id": 1}', "event"),
        (b'{"store_id": 1, "event": 5, "id": 1}', "event"),
        (b'{"store_id": 1, "event": "order/paid"}', "id: missing"),
        (b'{"store_id": 1, "event": "order/paid", "id": null}', "id: missing"),
        (b'{"store_id": 1, "event": "order/created", "id": -4}', "id"),
        (b'{"store_id": 1, "event": "order/paid", "id": "4x"}', "id"),
    ],
)
def test_parse_webhook_refuses(body: bytes, message: str) -> None:
    with pytest.raises(InvalidWebhook, match=message):
        parse_webhook(body)


# Timing checks off: these run beside other suites on shared machines, and speed is not the point.
RELAXED = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


@RELAXED
@given(st.binary(max_size=200))
def test_parse_webhook_raises_only_invalid_webhook(body: bytes) -> None:
    try:
        webhook = parse_webhook(body)
    except InvalidWebhook:
        return
    assert webhook.store_id > 0


@RELAXED
@given(
    st.dictionaries(
        st.sampled_from(["store_id", "event", "id", "x"]),
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(),
            st.sampled_from([1.5, 2.0, -0.0, float("nan")]),
            st.text(max_size=8),
            st.sampled_from(["order/paid", "app/uninstalled", "12", " 7 "]),
        ),
    )
)
def test_parse_webhook_on_any_object(fields: dict[str, object]) -> None:
    try:
        webhook = parse_webhook(json.dumps(fields).encode())
    except InvalidWebhook:
        return
    assert webhook.store_id > 0
    assert webhook.event
    assert webhook.id is not None or not webhook.event.startswith("order/")


# --- signatures ------------------------------------------------------------------------------


def sign(body: bytes, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


BODY = b'{"store_id": 123, "event": "order/paid", "id": 456}'


def test_signature_of_the_raw_body_verifies() -> None:
    assert verify_signature(BODY, sign(BODY), SECRET)
    assert verify_signature(BODY, f" {sign(BODY).upper()} ", SECRET)


@pytest.mark.parametrize(
    ("body", "signature", "secret"),
    [
        (BODY.replace(b"456", b"457"), sign(BODY), SECRET),
        (BODY + b" ", sign(BODY), SECRET),
        (BODY, sign(BODY, "another-secret"), SECRET),
        (BODY, sign(BODY)[:-1], SECRET),
        (BODY, None, SECRET),
        (BODY, "", SECRET),
        (BODY, "é" * 64, SECRET),
        (BODY, sign(BODY, ""), ""),
    ],
)
def test_signature_mismatch(body: bytes, signature: str | None, secret: str) -> None:
    assert not verify_signature(body, signature, secret)


def test_parsing_does_not_modify_the_raw_order() -> None:
    order = paid_order()
    copy = deepcopy(order)
    parse_order_paid(order, activated_by=None)

    assert order == copy


def test_retry_ids_are_new_and_name_the_first_attempt() -> None:
    from shared.messaging import retry_ids

    new, original = retry_ids("order.paid:1:2")
    assert original == "order.paid:1:2"
    assert new.startswith("order.paid:1:2:retry:")
    assert new != original
    again, still = retry_ids(new)
    assert still == "order.paid:1:2"
    assert again != new
    assert retry_ids("m:retry:20261201T031500123456", {"x-retry-of": b"first"})[1] == "first"
    assert retry_ids("old:replay:20261201T031500123456")[1] == "old"


@pytest.mark.parametrize("value", [Decimal("1E+999"), 10**30, "123456789012345678901234567890"])
def test_a_number_too_large_to_write_in_cents_is_malformed(value: object) -> None:
    from services.ingest.reading import decimal_of

    with pytest.raises(MalformedOrder, match="too large"):
        decimal_of(value, "total")


# --- poll slots (issue 13: thousands of stores, polls spread over the interval) ------------------


@given(
    store_id=st.integers(min_value=1, max_value=10**9),
    interval=st.floats(min_value=1, max_value=3600),
    now=st.floats(min_value=0, max_value=10**9),
)
def test_the_next_poll_is_at_the_stores_slot_within_one_interval_and_a_bit(
    store_id: int, interval: float, now: float
) -> None:
    delay = domain.poll_slot_delay(store_id, interval, now)
    assert domain.SLOT_EARLIEST * interval - 1e-6 <= delay <= (1 + domain.SLOT_EARLIEST) * interval
    # Polled on time at its slot, the store's next slot is exactly one interval later.
    at = now + delay
    assert abs(domain.poll_slot_delay(store_id, interval, at) - interval) < 1e-3 * interval + 1e-6


def test_two_thousand_stores_are_spread_evenly_over_the_interval() -> None:
    interval = 60.0
    slots = [
        (domain.poll_slot_delay(s, interval, 0.0)) % interval for s in range(7_000_000, 7_002_000)
    ]
    per_second = [0] * 60
    for slot in slots:
        per_second[int(slot) % 60] += 1
    # 2,000 stores over 60 s is 33 a second on average: no second holds twice that.
    assert max(per_second) < 2 * 2000 / 60
    assert min(per_second) > 0
