"""Renders simulated orders as the Nuvemshop API returns them: money as decimal strings, `+0000`
timestamps, a `customer` object plus the flat `contact_*`/`billing_*` fields, and, with `quirks`,
the type instability of the official examples (`store_id`, `variant_id` and `quantity` as string
or integer at random). A `v1` order carries `shipping_cost_customer`/`shipping_cost_owner`; a
`2025-03` order omits them, and the figure lives only in its fulfillment orders (served with
`aggregates=fulfillment_orders`, built here from the order's current state).
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from services.simulator.timefmt import completed_at, format_ts

Shape = Literal["v1", "2025-03"]
SHAPES: tuple[Shape, ...] = ("v1", "2025-03")
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
    shipping: Decimal
    shipping_owner: Decimal
    carrier: str
    option: str
    discount: Decimal
    gateway: tuple[str, str, str, str | None, int]
    installments: int
    currency: str = "BRL"
    payment_status: str = "pending"
    paid_at: dt.datetime | None = None
    shape: Shape = "v1"
    quirks: bool = True


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
                "variant_values": [],
                "properties": [],
                "sku": line["sku"],
                "barcode": line["barcode"],
                "weight": "0.500",
            }
        )
    return rendered


def subtotal_of(lines: list[dict[str, Any]]) -> Decimal:
    """Sum of price × quantity over the lines."""
    return sum((line["price"] * int(line["quantity"]) for line in lines), Decimal(0))


def render(rng: random.Random, draft: Draft) -> dict[str, Any]:
    """The order as the API serialises it."""
    customer = draft.customer
    city, province, zipcode, locality, street = customer["address"]
    subtotal = subtotal_of(draft.lines)
    total = subtotal - draft.discount + draft.shipping
    gateway, gateway_name, method, card, _ = draft.gateway
    created = format_ts(draft.created_at)
    address = {
        "address": street,
        "number": str(rng.randrange(1, 2000)),
        "floor": "",
        "locality": locality,
        "zipcode": zipcode,
        "city": city,
        "province": province,
        "country": "BR",
        "name": customer["name"],
        "phone": customer["phone"],
    }
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
        "billing_address": street,
        "billing_number": address["number"],
        "billing_floor": "",
        "billing_locality": locality,
        "billing_zipcode": zipcode,
        "billing_city": city,
        "billing_province": province,
        "billing_country": "BR",
        "billing_customer_type": customer["customer_type"],
        "billing_business_name": customer["business_name"],
        "billing_document_type": customer["document_type"],
        "shipping_address": address,
        "coupon": [],
        "subtotal": money(subtotal),
        "discount": money(draft.discount),
        "discount_coupon": "0.00",
        "discount_gateway": money(draft.discount),
        "total": money(total),
        "total_usd": money(total / Decimal("5.4")),
        "currency": draft.currency,
        "language": "pt",
        "gateway": gateway,
        "gateway_id": None if gateway == "offline" else f"{rng.getrandbits(40):x}",
        "gateway_name": gateway_name,
        "storefront": "store",
        "note": "",
        "created_at": created,
        "updated_at": created,
        "completed_at": completed_at(draft.created_at),
        "payment_details": {
            "method": method,
            "credit_card_company": card,
            "installments": draft.installments,
        },
        "customer": {
            "id": customer["id"],
            "name": customer["name"],
            "email": customer["email"],
            "identification": customer["identification"],
            "phone": customer["phone"],
            "billing_phone": customer["billing_phone"],
            "total_spent": money(total),
            "last_order_id": draft.order_id,
        },
        "products": _render_lines(rng, draft),
        "number": draft.number,
        "cancel_reason": None,
        "owner_note": None,
        "cancelled_at": None,
        "closed_at": None,
        "read_at": None,
        "status": "open",
        "payment_status": draft.payment_status,
        "shipping_status": "unpacked",
        "fulfillments": [],
        "paid_at": format_ts(draft.paid_at) if draft.paid_at else None,
        "app_id": None,
        "is_subscription": False,
        "is_subscription_initial": False,
    }
    if draft.shape == "v1":
        order["shipping"] = draft.carrier.lower()
        order["shipping_option"] = f"{draft.carrier} {draft.option}"
        order["shipping_cost_customer"] = money(draft.shipping)
        order["shipping_cost_owner"] = money(draft.shipping_owner)
    return order


def fulfillment_orders(
    order: dict[str, Any],
    *,
    shipping: Decimal,
    shipping_owner: Decimal,
    carrier: str,
    option: str,
) -> list[dict[str, Any]]:
    """The order's fulfillment orders (one, carrying every line) as of its current state."""
    currency = order.get("currency", "BRL")
    cancelled = order.get("status") == "cancelled"
    address = order.get("shipping_address") or {}
    return [
        {
            "id": f"01J{int(order['id']):023d}",
            "number": f"{order['number']}-1",
            "status": "CANCELLED" if cancelled else "UNPACKED",
            "total_quantity": sum(int(line["quantity"]) for line in order["products"]),
            "assigned_location": {"id": "01JDEFAULTLOCATION00000000", "name": "Depósito"},
            "shipping": {
                "type": "ship",
                "carrier": {"name": carrier, "code": carrier.lower()},
                "option": {"name": option, "code": option.lower()},
                "merchant_cost": {"value": money(shipping_owner), "currency": currency},
                "consumer_cost": {"value": money(shipping), "currency": currency},
            },
            "line_items": [
                {
                    "id": line["id"],
                    "quantity": int(line["quantity"]),
                    "variant": {"id": int(line["variant_id"])},
                    "product": {"id": line["product_id"]},
                }
                for line in order["products"]
            ],
            "recipient": {
                "name": order.get("contact_name"),
                "phone": order.get("contact_phone"),
                "identifier": order.get("contact_identification"),
            },
            "destination": {
                "street": address.get("address"),
                "number": address.get("number"),
                "city": address.get("city"),
                "province": {"name": address.get("province")},
                "zipcode": address.get("zipcode"),
                "country": {"code": "BR"},
            },
            "tracking_info": None,
            "fulfilled_at": None,
            "created_at": order["created_at"],
            "updated_at": order["updated_at"],
        }
    ]
