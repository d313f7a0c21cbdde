"""The order facts beyond money and lines (pure, no I/O): shipping, payment, addresses.

Where each lives in the API (see docs/nuvemshop.md for the reference's pages):

- **Shipping charged to the buyer.** A 2025-03 order has no order-level shipping fields; its
  ``fulfillments`` list holds fulfillment order ids, or, when read with
  ``aggregates=fulfillment_orders``, the fulfillment orders themselves, each with
  ``shipping.consumer_cost.value`` (a JSON number). One example of the reference names the same
  list ``fulfillment_orders``, so both names are read. A legacy (v1) order carries
  ``shipping_cost_customer`` (a decimal string), which during the multi-inventory transition holds
  the *first* fulfillment order's cost only; the sum over the details wins whenever they are here.
- **What the buyer paid with.** ``payment_details {method, credit_card_company, installments}`` and
  the gateway's display name ``gateway_name`` (empty for orders created through the API), else its
  id ``gateway``. ``installments`` is an integer in the reference's table and a string in the wild.
- **Addresses.** The shipping address is the ``shipping_address`` object (``address`` is the
  street, ``floor`` Brazil's complement, ``province`` the state's name), else the first fulfillment
  order's ``destination`` (``province``/``country`` as ``{name, code}``). The billing address is the
  order's flat ``billing_*`` fields, else the same fields inside ``customer``. Parts may be
  missing, null, empty, numbers, or the checkout's "Não informado" placeholder; none of it stops
  an import.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, Final

from services.ingest.reading import (
    MalformedOrder,
    decimal_of,
    first_text,
    money_of,
    object_of,
    place_of,
    quote,
    text_of,
)
from shared.contracts import Address, StorePayment

__all__ = [
    "FULFILLMENT_KEYS",
    "billing_address_of",
    "shipping_address_of",
    "shipping_of",
    "shipping_without_figure",
    "store_payment_of",
]

FULFILLMENT_KEYS: Final = ("fulfillments", "fulfillment_orders")
_ADDRESS_PARTS: Final = ("street", "number", "complement", "locality", "city", "state", "zipcode")


# --- shipping ----------------------------------------------------------------------------------


def _fulfillment_details(raw: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]] | None:
    """The detailed fulfillment orders (with where each was found), or None when the order as
    read has none: no list, an empty list, or ids only (read without the aggregate)."""
    for key in FULFILLMENT_KEYS:
        listed = raw.get(key)
        if listed is None:
            continue
        if not isinstance(listed, list):
            raise MalformedOrder(key, f"not a list but {type(listed).__name__}")
        details = [(f"{key}[{i}]", f) for i, f in enumerate(listed) if isinstance(f, Mapping)]
        if not details:
            for index, entry in enumerate(listed):
                if not isinstance(entry, str | int) or isinstance(entry, bool):
                    raise MalformedOrder(f"{key}[{index}]", f"not an id: {quote(entry)}")
            continue
        if len(details) != len(listed):
            raise MalformedOrder(key, "some fulfillment orders came as ids without their details")
        return details
    return None


def shipping_of(raw: Mapping[str, Any]) -> Decimal | None:
    """What the buyer paid for shipping, or None when the order as read does not say.

    Raises ``MalformedOrder`` for a figure that is not a non-negative amount.
    """
    details = _fulfillment_details(raw)
    if details is not None:
        total = Decimal(0)
        for where, fulfillment in details:
            shipping = object_of(fulfillment.get("shipping"), f"{where}.shipping")
            cost = object_of(shipping.get("consumer_cost"), f"{where}.shipping.consumer_cost")
            # A fulfillment without a consumer cost (a pickup, say) charges the buyer nothing.
            if cost.get("value") is not None:
                total += money_of(cost["value"], f"{where}.shipping.consumer_cost.value")
        return total
    if raw.get("shipping_cost_customer") is not None:
        return money_of(raw["shipping_cost_customer"], "shipping_cost_customer")
    return None


def shipping_without_figure(subtotal: Decimal, discount: Decimal, total: Decimal) -> Decimal:
    """The shipping of an order that carries no shipping figure: zero when its own amounts
    leave nothing for shipping (total = subtotal − discount); otherwise the order cannot be read
    yet, and we never guess money."""
    left = total - (subtotal - discount)
    if left == 0:
        return Decimal(0)
    raise MalformedOrder(
        "fulfillments",
        f"no shipping figure while the total leaves {format(left, 'f')} for it: read the order"
        " with aggregates=fulfillment_orders (an empty list means Nuvemshop has not created"
        " its fulfillment orders yet)",
    )


# --- payment -----------------------------------------------------------------------------------


def _installments(value: object) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = decimal_of(value, "payment_details.installments")
    except MalformedOrder:
        return None
    if number != number.to_integral_value() or not 1 <= number <= 999:
        return None
    return int(number)


def store_payment_of(raw: Mapping[str, Any]) -> StorePayment:
    """What the buyer paid with, as information for the reviewer: a part the API left out or
    wrote oddly is None, and never stops the import."""
    details = raw.get("payment_details")
    payment: Mapping[str, Any] = details if isinstance(details, Mapping) else {}
    return StorePayment(
        method=text_of(payment.get("method")),
        gateway=first_text(raw.get("gateway_name"), raw.get("gateway")),
        card_company=text_of(payment.get("credit_card_company")),
        installments=_installments(payment.get("installments")),
    )


# --- addresses ---------------------------------------------------------------------------------


def _place(value: object) -> str | None:
    text = place_of(value)
    # One spelling per name: "São Paulo" typed on a Mac arrives decomposed (a + combining tilde).
    return unicodedata.normalize("NFC", text) if text is not None else None


def _named(value: object, key: str) -> str | None:
    """A 2025-03 ``{name, code}`` object's ``key``, or a plain value."""
    return _place(value.get(key)) if isinstance(value, Mapping) else _place(value)


def _address(parts: Mapping[str, str | None]) -> Address | None:
    if all(parts.get(part) is None for part in (*_ADDRESS_PARTS, "country")):
        return None
    return Address.model_validate(parts)


def _from_order_object(address: Mapping[str, Any]) -> Address | None:
    return _from_place(address, street="address")


def _from_destination(destination: Mapping[str, Any]) -> Address | None:
    return _from_place(destination, street="street")


def _from_place(place: Mapping[str, Any], *, street: str, prefix: str = "") -> Address | None:
    """An address of any of its shapes: they differ in where the street is, and the flat one
    (billing fields of the order itself) prefixes every other field with ``billing_``."""
    return _address(
        {
            "street": _place(place.get(street)),
            "number": _place(place.get(f"{prefix}number")),
            "complement": _place(place.get(f"{prefix}floor")),
            "locality": _place(place.get(f"{prefix}locality")),
            "city": _place(place.get(f"{prefix}city")),
            "state": _named(place.get(f"{prefix}province"), "name"),
            "zipcode": _place(place.get(f"{prefix}zipcode")),
            "country": _named(place.get(f"{prefix}country"), "code"),
        }
    )


def shipping_address_of(raw: Mapping[str, Any]) -> Address | None:
    """Where the order ships, or None (a pickup, a digital order, an address not given)."""
    address = raw.get("shipping_address")
    if isinstance(address, Mapping):
        found = _from_order_object(address)
        if found is not None:
            return found
    details = _fulfillment_details(raw) or []
    for _, fulfillment in details:
        destination = fulfillment.get("destination")
        if isinstance(destination, Mapping):
            found = _from_destination(destination)
            if found is not None:
                return found
    return None


def _flat_billing(fields: Mapping[str, Any]) -> Address | None:
    street = fields.get("billing_address")
    if isinstance(street, Mapping):  # the shape orders are created with
        return _from_order_object(street)
    return _from_place(fields, street="billing_address", prefix="billing_")


def billing_address_of(raw: Mapping[str, Any], customer: Mapping[str, Any]) -> Address | None:
    """The buyer's billing address: the order's ``billing_*`` fields, else the customer's."""
    sources: Sequence[Mapping[str, Any]] = (raw, customer)
    for source in sources:
        found = _flat_billing(source)
        if found is not None:
            return found
    return None
