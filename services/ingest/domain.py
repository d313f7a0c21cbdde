"""Ingest's pure rules: reading Nuvemshop orders and webhooks defensively, without any I/O.

The Nuvemshop API is not type-stable (money as strings, quantities and ids as strings or integers,
offsets without a colon, fields that moved between API versions), so everything an order or a
webhook carries is checked and converted here, once, into the typed messages of
``shared.contracts``. Anything that cannot be read raises one exception type per input
(``MalformedOrder``, ``InvalidWebhook``) whose text names the field and the offending value, except
personal documents, which are never quoted. Callers pass the current time in; nothing here reads
the clock. The webhook rules live in ``webhook_rules`` and are re-exported here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, TypeVar

from pydantic import ValidationError

from services.ingest import orderfacts
from services.ingest.reading import (
    MalformedOrder,
    decimal_of,
    first_text,
    money_of,
    object_of,
    quote,
    read_id,
    text_of,
)
from services.ingest.webhook_rules import (
    APP_UNINSTALLED,
    LGPD_EVENTS,
    ORDER_EVENTS,
    InvalidWebhook,
    Webhook,
    parse_webhook,
    verify_signature,
)
from shared.contracts import (
    OrderCancelled,
    OrderCustomer,
    OrderItem,
    OrderPaid,
    OrderPartiallyRefunded,
)

__all__ = [
    "APP_UNINSTALLED",
    "LGPD_EVENTS",
    "ORDER_EVENTS",
    "InvalidWebhook",
    "MalformedOrder",
    "OrderState",
    "Webhook",
    "is_importable",
    "order_state",
    "parse_order_cancelled",
    "parse_order_paid",
    "parse_order_partially_refunded",
    "parse_timestamp",
    "parse_webhook",
    "verify_signature",
]

_TIMESTAMP = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})[T ](?P<time>\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?)"
    r"(?P<offset>Z|[+-]\d{2}:?\d{2})?",
    re.ASCII,
)


class OrderState(StrEnum):
    """What an order's status fields mean for the import."""

    PAID = "paid"
    PARTIALLY_REFUNDED = "partially_refunded"
    CANCELLED = "cancelled"
    NOT_PAID = "not_paid"


# --- small readers ---------------------------------------------------------------------------


def _as_utc(moment: datetime) -> datetime:
    # Naive values are taken as UTC: the API's own examples are UTC and a guess of local time
    # would move every order by the server's offset.
    if moment.tzinfo is None or moment.utcoffset() is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def parse_timestamp(value: object) -> datetime:
    """Read an API timestamp (``+0000``, ``+00:00``, ``Z`` or naive) as an aware UTC datetime.

    Raises ``ValueError`` naming the value when it is not a date and time of day.
    """
    if isinstance(value, datetime):
        return _as_utc(value)
    if not isinstance(value, str):
        # ValueError, not TypeError: callers catch one error for any unreadable timestamp.
        raise ValueError(f"not a timestamp: {quote(value)}")  # noqa: TRY004
    match = _TIMESTAMP.fullmatch(value.strip())
    if match is None:
        raise ValueError(f"not a timestamp (expected ISO 8601 date and time): {quote(value)}")
    offset = match["offset"] or ""
    if offset not in {"", "Z"} and ":" not in offset:
        offset = f"{offset[:3]}:{offset[3:]}"
    try:
        moment = datetime.fromisoformat(f"{match['date']}T{match['time']}{offset}")
    except ValueError as exc:
        raise ValueError(f"not a valid timestamp: {quote(value)} ({exc})") from None
    return _as_utc(moment)


def _required_id(raw: Mapping[str, Any], field: str) -> int:
    if field not in raw or raw[field] is None:
        raise MalformedOrder(field, "missing")
    result = read_id(raw[field])
    if result is None:
        raise MalformedOrder(field, f"not a positive integer id: {quote(raw[field])}")
    return result


def _optional_money(raw: Mapping[str, Any], field: str) -> Decimal:
    value = raw.get(field)
    return Decimal(0) if value is None else money_of(value, field)


def _required_money(raw: Mapping[str, Any], field: str) -> Decimal:
    if raw.get(field) is None:
        raise MalformedOrder(field, "missing")
    return money_of(raw[field], field)


def _quantity(value: object, field: str) -> int:
    if value is None:
        raise MalformedOrder(field, "missing")
    number = decimal_of(value, field)
    # "2.0" is a whole number written oddly; "1.5" is not a quantity of anything we can stock.
    if number != number.to_integral_value() or number <= 0:
        raise MalformedOrder(field, f"not a positive whole number: {quote(value)}")
    return int(number)


# --- orders ----------------------------------------------------------------------------------


def _customer(raw: Mapping[str, Any]) -> OrderCustomer:
    # Without the read_customers scope the order has no customer object: the contact_* fields
    # of the order itself are then the only source.
    customer = object_of(raw.get("customer"), "customer")
    return OrderCustomer(
        name=first_text(customer.get("name"), raw.get("contact_name"), raw.get("billing_name")),
        document=first_text(customer.get("identification"), raw.get("contact_identification")),
        email=first_text(customer.get("email"), raw.get("contact_email")),
        mobile_phone=first_text(raw.get("contact_phone"), customer.get("phone")),
        business_phone=text_of(raw.get("billing_phone")),
        address=orderfacts.billing_address_of(raw, customer),
    )


def _item(product: object, where: str) -> OrderItem:
    line = object_of(product, where)
    name = text_of(line.get("name"))
    if name is None:
        raise MalformedOrder(f"{where}.name", "missing or blank")
    if line.get("price") is None:
        raise MalformedOrder(f"{where}.price", "missing")
    return OrderItem(
        name=name,
        sku=text_of(line.get("sku")),
        quantity=_quantity(line.get("quantity"), f"{where}.quantity"),
        unit_price=money_of(line["price"], f"{where}.price"),
    )


def _items(raw: Mapping[str, Any]) -> list[OrderItem]:
    products = raw.get("products")
    if products is None:
        raise MalformedOrder("products", "missing")
    if not isinstance(products, list):
        raise MalformedOrder("products", f"not a list but {type(products).__name__}")
    if not products:
        # A sale needs at least one line; an order without products is not one we can book.
        raise MalformedOrder("products", "empty")
    return [_item(product, f"products[{index}]") for index, product in enumerate(products)]


def _timestamp(raw: Mapping[str, Any], field: str) -> datetime | None:
    value = raw.get(field)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        return parse_timestamp(value)
    except ValueError as exc:
        raise MalformedOrder(field, str(exc)) from None


def _required_timestamp(raw: Mapping[str, Any], field: str) -> datetime:
    moment = _timestamp(raw, field)
    if moment is None:
        raise MalformedOrder(field, "missing")
    return moment


def _order_number(raw: Mapping[str, Any]) -> int | None:
    if raw.get("number") is None:
        return None
    return _required_id(raw, "number")


def _currency(raw: Mapping[str, Any]) -> str:
    value = raw.get("currency")
    if not isinstance(value, str) or not value.strip():
        raise MalformedOrder("currency", f"missing or not a code: {quote(value)}")
    return value.strip().upper()


def _mapping(raw: object) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise MalformedOrder("order", f"not a JSON object but {type(raw).__name__}")
    return raw


def parse_order_paid(raw: Mapping[str, Any], *, activated_by: str | None) -> OrderPaid:
    """Build the ``order.paid`` message from a raw API order (whatever its payment status).

    Raises ``MalformedOrder`` for the first field that cannot be read.
    """
    order = _mapping(raw)
    subtotal = _required_money(order, "subtotal")
    discount = _optional_money(order, "discount")
    total = _required_money(order, "total")
    shipping = orderfacts.shipping_of(order)
    if shipping is None:
        shipping = orderfacts.shipping_without_figure(subtotal, discount, total)
    fields: dict[str, Any] = {
        "store_id": _required_id(order, "store_id"),
        "order_id": _required_id(order, "id"),
        "order_number": _order_number(order),
        "created_at": _required_timestamp(order, "created_at"),
        "paid_at": _timestamp(order, "paid_at"),
        "currency": _currency(order),
        "subtotal": subtotal,
        "discount": discount,
        "shipping": shipping,
        "total": total,
        "customer": _customer(order),
        "items": _items(order),
        "activated_by": activated_by,
        "store_payment": orderfacts.store_payment_of(order),
        "shipping_address": orderfacts.shipping_address_of(order),
    }
    return _build(OrderPaid, fields)


_Message = TypeVar("_Message", OrderPaid, OrderCancelled, OrderPartiallyRefunded)


def _build(model: type[_Message], fields: dict[str, Any]) -> _Message:
    # Every field was checked above; this only guards against a contract change, and its detail
    # names the field without echoing the value (which could be a document).
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(part) for part in error["loc"]) or "order"
        raise MalformedOrder(field, error["msg"]) from None


def _status(raw: Mapping[str, Any], field: str) -> str:
    value = raw.get(field)
    return value.strip().lower() if isinstance(value, str) else ""


def order_state(raw: Mapping[str, Any]) -> OrderState:
    """Classify an order: paid (import it), partially refunded (import it if it was not, and note
    the refund), cancelled (reverse it) or not yet paid (wait).

    A partial refund leaves the sale standing: only a full refund or a void undoes it. A
    ``partially_paid`` order is not paid: it waits until its payment status is ``paid``.
    """
    status = _status(raw, "status")
    payment_status = _status(raw, "payment_status")
    if status == "cancelled" or payment_status in {"voided", "refunded"}:
        return OrderState.CANCELLED
    if payment_status == "paid":
        return OrderState.PAID
    if payment_status == "partially_refunded":
        return OrderState.PARTIALLY_REFUNDED
    return OrderState.NOT_PAID


def is_importable(raw_created_at: object, activated_at: datetime) -> bool:
    """Whether the normal flow may import an order: created at or after the activation.

    Raises ``MalformedOrder`` when the creation time cannot be read.
    """
    try:
        created_at = parse_timestamp(raw_created_at)
    except ValueError as exc:
        raise MalformedOrder("created_at", str(exc)) from None
    return created_at >= _as_utc(activated_at)


def _cancel_reason(raw: Mapping[str, Any]) -> str:
    reason = text_of(raw.get("cancel_reason"))
    if reason is not None:
        return reason
    payment_status = _status(raw, "payment_status")
    return payment_status if payment_status in {"voided", "refunded"} else "cancelled"


def parse_order_cancelled(raw: Mapping[str, Any], *, now: datetime) -> OrderCancelled:
    """Build the ``order.cancelled`` message: when (cancelled_at, updated_at, now) and why.

    Raises ``MalformedOrder`` for ids or timestamps that cannot be read.
    """
    order = _mapping(raw)
    cancelled_at = _timestamp(order, "cancelled_at") or _timestamp(order, "updated_at")
    fields = {
        "store_id": _required_id(order, "store_id"),
        "order_id": _required_id(order, "id"),
        "cancelled_at": cancelled_at or _as_utc(now),
        "reason": _cancel_reason(order),
    }
    return _build(OrderCancelled, fields)


def parse_order_partially_refunded(
    raw: Mapping[str, Any], *, now: datetime
) -> OrderPartiallyRefunded:
    """Build the ``order.partially_refunded`` message: which order, and when it was noted (the
    order's ``updated_at``, else ``now``).

    Raises ``MalformedOrder`` for ids or timestamps that cannot be read.
    """
    order = _mapping(raw)
    fields = {
        "store_id": _required_id(order, "store_id"),
        "order_id": _required_id(order, "id"),
        "noted_at": _timestamp(order, "updated_at") or _as_utc(now),
    }
    return _build(OrderPartiallyRefunded, fields)
