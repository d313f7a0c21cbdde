"""Renders simulated orders as the Nuvemshop API returns them: money as decimal strings, `+0000`
timestamps, a `customer` object plus the flat `contact_*`/`billing_*` fields, a `shipping_address`
object, `payment_details`, and, with `quirks`, the type instability of the official examples
(`store_id`, `variant_id`, `quantity` and `payment_details.installments` as string or integer at
random, the address number sometimes an integer, a city name sometimes in decomposed Unicode). The shape follows the store's API version:

- `2025-03` (the default): no order-level shipping fields (`shipping_cost_customer`,
  `shipping_cost_owner`, `shipping`, `shipping_option`... are deprecated and absent); `fulfillments`
  lists the order's fulfillment order ids, and `aggregates=fulfillment_orders` replaces them with the
  full objects, where the shipping charged to the buyer lives (`shipping.consumer_cost.value`).
- `v1` (legacy, a store before multi-inventory): the order-level shipping fields and no
  `fulfillments`; the aggregate adds nothing.
"""

from __future__ import annotations

import datetime as dt
import random
import unicodedata
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from services.simulator.fulfillment import Shipment
from services.simulator.timefmt import completed_at, format_ts

Shape = Literal["v1", "2025-03"]
SHAPES: tuple[Shape, ...] = ("v1", "2025-03")
DEFAULT_SHAPE: Shape = "2025-03"
CENT = Decimal("0.01")


def money(value: Decimal) -> str:
    """`Decimal("5400")` → `"5400.00"`."""
    return format(value.quantize(CENT), "f")


def to_decimal(value: object) -> Decimal:
    """Accept a Decimal, an int or a decimal string; refuse floats and booleans."""
    if isinstance(value, bool | float):
        raise TypeError(f"money must be a Decimal, an int or a decimal string, not {value!r}")
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int | str):
        return Decimal(str(value).strip())
    raise TypeError(f"not an amount: {value!r}")


@dataclass
class Draft:
    """Everything decided about an order before it is rendered."""

    order_id: int
    store_id: int
    number: int
    created_at: dt.datetime
    customer: dict[str, Any]
    lines: list[dict[str, Any]]
    shipments: list[Shipment]
    discount: Decimal
    gateway: tuple[str, str, str | None, str | None, int]
    installments: int
    # The shipping address's parts (`make_address` keys), or None for an order without one.
    destination: dict[str, Any] | None = None
    currency: str = "BRL"
    payment_status: str = "pending"
    paid_at: dt.datetime | None = None
    shape: Shape = DEFAULT_SHAPE
    quirks: bool = True

    @property
    def shipping(self) -> Decimal:
        """What the buyer pays for shipping: every shipment's consumer cost."""
        return sum((s.consumer_cost for s in self.shipments), Decimal(0))


def _maybe_str(rng: random.Random, value: int, quirks: bool) -> int | str:
    return str(value) if quirks and rng.random() < 0.5 else value


def _render_lines(rng: random.Random, draft: Draft) -> list[dict[str, Any]]:
    rendered = []
    for line in draft.lines:
        rendered.append(
            {
                "id": line["id"],
                "name": line["name"],
                "price": money(line["price"]),
                "compare_at_price": money(line["price"] * Decimal("1.2")),
                "product_id": line["product_id"],
                "quantity": _maybe_str(rng, int(line["quantity"]), draft.quirks),
                "variant_id": _maybe_str(rng, int(line["variant_id"]), draft.quirks),
                "variant_values": line.get("variant_values", []),
                "properties": [],
                "sku": line["sku"],
                "barcode": line["barcode"],
                "weight": "0.500",
                "free_shipping": False,
            }
        )
    return rendered


def subtotal_of(lines: list[dict[str, Any]]) -> Decimal:
    """Sum of price × quantity over the lines."""
    return sum((line["price"] * int(line["quantity"]) for line in lines), Decimal(0))


def _part(rng: random.Random, value: object, quirks: bool) -> object:
    """An address number: a string, or (quirk) an integer when it is all digits."""
    if quirks and isinstance(value, str) and value.isdigit() and rng.random() < 0.3:
        return int(value)
    return value


def _spelled(rng: random.Random, value: object, quirks: bool) -> object:
    """A place name, sometimes (quirk) in decomposed Unicode, as some keyboards send it:
    "São" as "Sa" + a combining tilde + "o"."""
    if quirks and isinstance(value, str) and rng.random() < 0.2:
        return unicodedata.normalize("NFD", value)
    return value


def _billing(rng: random.Random, draft: Draft) -> dict[str, Any]:
    address = draft.customer["address"]
    return {
        "billing_address": address.get("street"),
        "billing_number": _part(rng, address.get("number"), draft.quirks),
        "billing_floor": address.get("floor"),
        "billing_locality": address.get("locality"),
        "billing_zipcode": address.get("zipcode"),
        "billing_city": _spelled(rng, address.get("city"), draft.quirks),
        "billing_province": address.get("province"),
        "billing_country": address.get("country"),
    }


def _shipping_address(rng: random.Random, draft: Draft) -> dict[str, Any] | None:
    address = draft.destination
    if address is None:
        return None
    created = format_ts(draft.created_at)
    return {
        "address": address.get("street"),
        "number": _part(rng, address.get("number"), draft.quirks),
        "floor": address.get("floor"),
        "locality": address.get("locality"),
        "city": _spelled(rng, address.get("city"), draft.quirks),
        "province": address.get("province"),
        "zipcode": address.get("zipcode"),
        "country": address.get("country"),
        "name": draft.customer["name"],
        "phone": draft.customer["phone"],
        "id": 0,
        "default": False,
        "created_at": created,
        "updated_at": created,
        "customs": None,
    }


def _customer(draft: Draft, billing: dict[str, Any], total: Decimal) -> dict[str, Any]:
    customer = draft.customer
    return {
        "id": customer["id"],
        "name": customer["name"],
        "email": customer["email"],
        "identification": customer["identification"],
        "phone": customer["phone"],
        "note": None,
        "billing_name": customer["name"].split(" ")[0],
        "billing_phone": customer["billing_phone"],
        **billing,
        "extra": {},
        "total_spent": money(total),
        "total_spent_currency": draft.currency,
        "last_order_id": draft.order_id,
        "active": False,
    }


def _payment(rng: random.Random, draft: Draft) -> dict[str, Any]:
    gateway, gateway_name, method, card, _ = draft.gateway
    return {
        "gateway": gateway,
        "gateway_id": None
        if gateway in ("offline", "not-provided")
        else f"{rng.getrandbits(40):x}",
        "gateway_name": gateway_name,
        "gateway_link": None,
        "payment_details": {
            "method": method,
            "credit_card_company": card,
            "installments": _maybe_str(rng, draft.installments, draft.quirks),
        },
    }


def _legacy_shipping(draft: Draft) -> dict[str, Any]:
    first = draft.shipments[0]
    owner = sum((s.merchant_cost for s in draft.shipments), Decimal(0))
    return {
        "shipping": first.carrier.lower(),
        "shipping_option": f"{first.carrier} {first.option}",
        "shipping_option_code": f"{first.carrier}_{first.option}".lower(),
        "shipping_option_reference": None,
        "shipping_pickup_type": "ship",
        "shipping_store_branch_name": None,
        "shipping_tracking_number": None,
        "shipping_tracking_url": None,
        "shipping_min_days": 3,
        "shipping_max_days": 8,
        "shipping_cost_customer": money(draft.shipping),
        "shipping_cost_owner": money(owner),
    }


def render(rng: random.Random, draft: Draft) -> dict[str, Any]:
    """The order as the API serialises it (before any `fields` selection or aggregate)."""
    customer = draft.customer
    subtotal = subtotal_of(draft.lines)
    total = subtotal - draft.discount + draft.shipping
    created = format_ts(draft.created_at)
    billing = _billing(rng, draft)
    order: dict[str, Any] = {
        "id": draft.order_id,
        "token": f"{rng.getrandbits(160):040x}",
        "store_id": _maybe_str(rng, draft.store_id, draft.quirks),
        "contact_email": customer["email"],
        "contact_name": customer["name"],
        "contact_phone": customer["phone"],
        "contact_identification": customer["identification"],
        "billing_name": customer["name"].split(" ")[0],
        "billing_phone": customer["billing_phone"],
        **billing,
        "billing_customer_type": customer["customer_type"],
        "billing_business_name": customer["business_name"],
        "billing_document_type": customer["document_type"],
        "coupon": [],
        "subtotal": money(subtotal),
        "discount": money(draft.discount),
        "discount_coupon": "0.00",
        "discount_gateway": money(draft.discount),
        "total": money(total),
        "total_usd": money(total / Decimal("5.4")),
        "currency": draft.currency,
        "language": "pt",
        **_payment(rng, draft),
        "storefront": "store",
        "note": "",
        "created_at": created,
        "updated_at": created,
        "completed_at": completed_at(draft.created_at),
        "same_billing_and_shipping_address": draft.destination == customer["address"],
        "customer": _customer(draft, billing, total),
        "products": _render_lines(rng, draft),
        "number": draft.number,
        "cancel_reason": None,
        "owner_note": None,
        "cancelled_at": None,
        "closed_at": None,
        "read_at": None,
        "status": "open",
        "payment_status": draft.payment_status,
        "shipping_address": _shipping_address(rng, draft),
        "shipping_status": "unpacked",
        "paid_at": format_ts(draft.paid_at) if draft.paid_at else None,
        "app_id": None,
        "is_subscription": False,
        "is_subscription_initial": False,
    }
    if draft.shape == "v1":
        order.update(_legacy_shipping(draft))
    else:
        order["fulfillments"] = [shipment.id for shipment in draft.shipments]
    return order
