"""The simulator against the public API reference (docs/nuvemshop.md): the 2025-03 and legacy order
shapes, the fulfillment orders of the aggregate, payments and addresses with their quirks, and the
LGPD webhooks sent to the partner settings' URLs with the reference's bodies."""

from __future__ import annotations

import unicodedata
from decimal import Decimal

import aiohttp

from services.simulator import sign
from services.simulator.runner import Running
from services.simulator.webhooks import HMAC_HEADER
from tests.unit import test_simulator as base
from tests.unit.test_simulator import STORE, Receiver, auth, get, register

# The simulator, an HTTP session and a webhook receiver: the fixtures of test_simulator.
clock, sim, http, receiver = base.clock, base.sim, base.http, base.receiver


async def test_shipping_shapes(sim: Running, http: aiohttp.ClientSession) -> None:
    token = sim.state.add_store(STORE)
    assert sim.state.stores[STORE].shape == "2025-03"  # the current API by default
    legacy = sim.state.add_order(STORE, shipping="15.90", shape="v1")
    modern = sim.state.add_order(STORE, shipping=Decimal("27.50"))
    split = sim.state.add_order(
        STORE,
        shipments=["10.00", "5.55"],
        products=[{"name": "Caneca", "price": "39.90"}, {"name": "Vela", "price": "34.50"}],
    )
    assert legacy["shipping_cost_customer"] == "15.90"
    assert legacy["shipping_cost_owner"] == "0.00"
    assert "fulfillments" not in legacy
    base = f"{sim.url}/2025-03/{STORE}/orders"
    status, plain, _ = await get(http, f"{base}/{modern['id']}", auth(token))
    assert status == 200
    for deprecated in ("shipping_cost_customer", "shipping_cost_owner", "shipping_option"):
        assert deprecated not in plain
    # Without the aggregate, only the fulfillment order ids (26-character ULIDs).
    assert [len(i) for i in plain["fulfillments"]] == [26]
    query = "aggregates=fulfillment_orders"
    _, rich, _ = await get(http, f"{base}/{modern['id']}?{query}", auth(token))
    (shipment,) = rich["fulfillments"]
    assert shipment["id"] == plain["fulfillments"][0]
    assert shipment["shipping"]["consumer_cost"] == {"value": 27.5, "currency": "BRL"}
    assert shipment["destination"]["province"]["code"] == "SP" or shipment["destination"]
    assert shipment["created_at"].endswith("+00:00")
    assert {item["external_id"] for item in shipment["line_items"]} == {
        str(line["id"]) for line in rich["products"]
    }
    subtotal, discount = Decimal(rich["subtotal"]), Decimal(rich["discount"])
    assert Decimal(rich["total"]) == subtotal - discount + Decimal("27.50")
    _, listed, _ = await get(http, f"{base}?{query}", auth(token))
    by_id = {o["id"]: o for o in listed}
    assert by_id[legacy["id"]]["shipping_cost_customer"] == "15.90"
    assert "fulfillments" not in by_id[legacy["id"]]  # a legacy store knows no fulfillment orders
    costs = [f["shipping"]["consumer_cost"]["value"] for f in by_id[split["id"]]["fulfillments"]]
    assert costs == [10.0, 5.55]
    split_goods = Decimal(split["subtotal"]) - Decimal(split["discount"])
    assert Decimal(split["total"]) == split_goods + Decimal("15.55")


async def test_payments_and_addresses(sim: Running, http: aiohttp.ClientSession) -> None:
    token = sim.state.add_store(STORE)
    card = sim.state.add_order(STORE, payment_method="credit_card", installments=3)
    assert card["gateway_name"] == "Mercado Pago"
    details = card["payment_details"]
    assert details["method"] == "credit_card"
    assert details["credit_card_company"] in ("visa", "mastercard")
    assert int(details["installments"]) == 3
    orders = [sim.state.add_order(STORE) for _ in range(40)]
    assert {type(o["payment_details"]["installments"]) for o in orders} == {int, str}
    cities = {o["billing_city"] for o in orders} | {o["shipping_address"]["city"] for o in orders}
    assert any(not unicodedata.is_normalized("NFC", city) for city in cities)  # quirk
    buyer = {
        "address": {"street": "Rua da Conceição", "number": "S/N", "floor": "", "locality": None}
    }
    pickup = sim.state.add_order(STORE, customer=buyer, shipping_address=False)
    assert pickup["shipping_address"] is None
    assert (pickup["billing_address"], pickup["billing_number"]) == ("Rua da Conceição", "S/N")
    assert pickup["billing_locality"] is None
    elsewhere = sim.state.add_order(
        STORE, shipping_address={"city": "Niterói", "province": "Rio de Janeiro"}
    )
    _, body, _ = await get(
        http,
        f"{sim.api_url}/{STORE}/orders/{elsewhere['id']}?aggregates=fulfillment_orders",
        auth(token),
    )
    assert body["shipping_address"]["city"] == "Niterói"
    destination = body["fulfillments"][0]["destination"]
    assert destination["city"] == "Niterói"
    assert destination["province"] == {"name": "Rio de Janeiro", "code": "RJ"}
    assert destination["country"] == {"name": "Brasil", "code": "BR"}


async def test_lgpd_webhooks_go_to_the_partner_settings_urls(
    sim: Running, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    token = sim.state.add_store(STORE)
    # Not registrable through the API: their URLs are set in the partner panel.
    for event in ("store/redact", "customers/redact", "customers/data_request"):
        assert (await register(http, sim, token, event, "https://example.com/h"))[0] == 422
    order = sim.state.add_order(STORE, customer={"identification": "75839566500"}, paid=True)
    customer_id = int(order["customer"]["id"])
    assert sim.state.lgpd_request(STORE, "store/redact") is None  # no URL set: nothing sent
    async with http.post(
        f"{sim.url}/_sim/oauth",
        json={"lgpd_urls": dict.fromkeys(("customers/redact", "store/redact"), receiver.url)},
    ) as response:
        assert (await response.json())["lgpd_urls"]["store/redact"] == receiver.url
    async with http.post(
        f"{sim.url}/_sim/stores/{STORE}/lgpd",
        json={"event": "customers/redact", "customer_id": customer_id},
    ) as response:
        assert (response.status, await response.json()) == (202, {"sent": True})
    sim.state.uninstall(STORE)
    await sim.dispatcher.wait_idle(5)

    redact, store_redact = receiver.bodies()
    assert redact == {
        "store_id": STORE,
        "customer": {
            "id": customer_id,
            "email": order["customer"]["email"],
            "phone": order["customer"]["phone"],
            "identification": "75839566500",
        },
        "orders_to_redact": [order["id"]],
    }
    assert store_redact == {"store_id": STORE}  # no "event" in LGPD bodies
    for headers, raw, _ in receiver.hits:
        assert headers[HMAC_HEADER] == sign(raw, sim.state.client_secret)
    # The third one, about the same buyer.
    sim.state.lgpd_urls["customers/data_request"] = receiver.url
    sim.state.lgpd_request(
        STORE, "customers/data_request", customer_id=customer_id, data_request_id=9
    )
    await sim.dispatcher.wait_idle(5)
    asked = receiver.bodies()[-1]
    assert (asked["orders_requested"], asked["data_request"]) == ([order["id"]], {"id": 9})
