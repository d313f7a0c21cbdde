"""Fulfillment orders, the 2025-03 home of an order's shipping (tiendanube.github.io/
api-documentation/resources/fulfillment-order). An order has one or more shipments; each is
served as a FulfillmentOrder object: a ULID `id`, a string `number`, `Money` objects whose `value`
is a JSON number (not the decimal string of order amounts), `+00:00` timestamps, the carrier and
option, `merchant_cost` and `consumer_cost` (what the buyer paid for this shipment), the
`recipient` and the `destination` address with `province`/`country` as `{name, code}` objects.
Built here on demand from the order's current state, so an edit shows in its fulfillment orders.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from services.simulator.fakedata import PROVINCE_CODES

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
COUNTRY_NAMES = {"BR": "Brasil", "AR": "Argentina", "MX": "México", "CO": "Colombia"}
LOCATION = {"location_id": "01JDEFAULTLOCATI0N00000000", "name": "Depósito Principal"}


def ulid(number: int) -> str:
    """A 26-character ULID-looking id, stable for `number` (`01J` + 23 Crockford digits)."""
    digits = []
    for _ in range(23):
        number, rest = divmod(number, 32)
        digits.append(CROCKFORD[rest])
    return "01J" + "".join(reversed(digits))


@dataclass
class Shipment:
    """One fulfillment order of an order: what the buyer and the merchant pay to ship it."""

    id: str
    consumer_cost: Decimal
    merchant_cost: Decimal
    carrier: str
    option: str
    lines: list[int] = field(default_factory=list)  # indexes into the order's products


def _money(value: Decimal, currency: str) -> dict[str, Any]:
    # The reference shows Money values as JSON numbers (123.14), so they go out as floats.
    return {"value": float(value), "currency": currency}


def _iso(stamp: str) -> str:
    """An order timestamp (`...+0000`) in the fulfillment order's form (`...+00:00`)."""
    return dt.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S%z").isoformat()


def _destination(address: dict[str, Any] | None) -> dict[str, Any] | None:
    if not address:
        return None
    province = address.get("province")
    country = address.get("country")
    return {
        "zipcode": address.get("zipcode"),
        "street": address.get("address"),
        "number": None if address.get("number") is None else str(address["number"]),
        "floor": address.get("floor"),
        "locality": address.get("locality"),
        "city": address.get("city"),
        "reference": None,
        "between_streets": None,
        "province": {"name": province, "code": PROVINCE_CODES.get(str(province))},
        "region": None,
        "country": {"name": COUNTRY_NAMES.get(str(country), country), "code": country},
    }


def _amount(value: object) -> Decimal | None:
    try:
        return Decimal(str(value))
    except ArithmeticError:
        return None


def _line_items(order: dict[str, Any], shipment: Shipment, currency: str) -> list[dict[str, Any]]:
    """The shipment's lines as they stand (an edit that removed or broke a line shows as such)."""
    products = order.get("products")
    products = products if isinstance(products, list) else []
    items = []
    for index in shipment.lines:
        line = products[index] if index < len(products) else None
        if not isinstance(line, dict):
            continue
        price = _amount(line.get("price"))
        quantity = _amount(line.get("quantity"))
        items.append(
            {
                "id": ulid(int(line.get("id") or index)),
                "external_id": str(line.get("id")),
                "quantity": int(quantity) if quantity is not None else 0,
                "variant": {"variant_id": str(line.get("variant_id"))},
                "product": {"product_id": str(line.get("product_id"))},
                "unit_price": _money(price, currency) if price is not None else None,
                "stock_transfer": {"from_location_id": None},
                "kit": None,
                "created_at": _iso(order["created_at"]),
                "updated_at": _iso(order["updated_at"]),
            }
        )
    return items


def render_fulfillment(order: dict[str, Any], shipment: Shipment, number: int) -> dict[str, Any]:
    """One FulfillmentOrder object as the aggregate serves it."""
    currency = str(order.get("currency") or "BRL")
    lines = _line_items(order, shipment, currency)
    priced = [(item["unit_price"], item["quantity"]) for item in lines if item["unit_price"]]
    price = sum((Decimal(str(unit["value"])) * count for unit, count in priced), Decimal(0))
    created = _iso(order["created_at"])
    return {
        "id": shipment.id,
        "number": str(number),
        "total_quantity": sum(item["quantity"] for item in lines),
        "total_weight": 0.5 * len(lines),
        "total_price": _money(price, currency),
        "assigned_location": dict(LOCATION),
        "line_items": lines,
        "recipient": {
            "name": order.get("contact_name"),
            "phone": order.get("contact_phone"),
            "identifier": order.get("contact_identification"),
        },
        "shipping": {
            "type": "ship",
            "carrier": {
                "carrier_id": shipment.carrier.lower(),
                "code": "native",
                "name": shipment.carrier,
                "app_id": None,
            },
            "option": {
                "name": shipment.option,
                "code": shipment.option.lower(),
                "reference": None,
                "allow_free_shipping": None,
            },
            "merchant_cost": _money(shipment.merchant_cost, currency),
            "consumer_cost": _money(shipment.consumer_cost, currency),
            "min_delivery_date": None,
            "max_delivery_date": None,
            "estimated_delivery_time": None,
            "pickup_details": None,
            "extras": None,
        },
        "destination": _destination(order.get("shipping_address")),
        "discounts": [],
        "status": "UNPACKED",
        "status_history": [],
        "tracking_info": {"url": None, "code": None},
        "tracking_info_history": [],
        "tracking_events": [],
        "fulfilled_at": None,
        "created_at": created,
        "updated_at": _iso(order["updated_at"]),
    }


def render_fulfillments(order: dict[str, Any], shipments: list[Shipment]) -> list[dict[str, Any]]:
    """Every fulfillment order of the order, numbered after the order's number."""
    base = int(order["number"]) * 100
    return [render_fulfillment(order, s, base + i + 1) for i, s in enumerate(shipments)]
