"""The Nuvemshop simulator over real HTTP on loopback: auth and header rules, paging, filters,
errors, rate limit, both shipping shapes, type quirks, the OAuth install, signed webhooks with the
compressed retry schedule and delivery faults, the control API and the command line."""

from __future__ import annotations

import asyncio
import datetime as dt
import hmac
import itertools
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from yarl import URL

from services.simulator import SimState, sign, start_simulator
from services.simulator.runner import Running
from services.simulator.timefmt import format_ts
from services.simulator.webhooks import HMAC_HEADER, retry_delays

UA = "nuvem-ledger-tests (dev@example.com)"
STORE = 817495
T0 = dt.datetime(2025, 3, 10, 12, 0, tzinfo=dt.UTC)
MONEY = re.compile(r"^-?\d+\.\d{2}$")
STAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+0000$")


class FakeClock:
    """Settable wall clock and monotonic source."""

    def __init__(self) -> None:
        self.wall, self.mono = T0, 1000.0

    def now(self) -> dt.datetime:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.wall += dt.timedelta(seconds=seconds)
        self.mono += seconds


@dataclass
class Receiver:
    """A webhook endpoint that records what it gets and fails or stalls on demand."""

    url: str = ""
    hits: list[tuple[dict[str, str], bytes, float]] = field(default_factory=list)
    fail_first: int = 0
    stall_first_s: float = 0.0

    def bodies(self) -> list[dict[str, Any]]:
        return [orjson.loads(body) for _, body, _ in self.hits]


def auth(token: str | None) -> dict[str, str]:
    return {"Authentication": f"bearer {token}"}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def sim(clock: FakeClock) -> AsyncIterator[Running]:
    state = SimState(seed=7, clock=clock.now, monotonic=clock.monotonic)
    running = await start_simulator(
        state, "127.0.0.1", 0, time_scale=0.001, webhook_timeout_s=0.3, seed=3
    )
    yield running
    await running.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(headers={"User-Agent": UA}) as session:
        yield session


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    loop = asyncio.get_running_loop()

    async def handle(request: web.Request) -> web.Response:
        rec.hits.append((dict(request.headers), await request.read(), loop.time()))
        if rec.stall_first_s and len(rec.hits) == 1:
            await asyncio.sleep(rec.stall_first_s)
        if len(rec.hits) <= rec.fail_first:
            return web.Response(status=500)
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    rec.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    yield rec
    await runner.cleanup()


async def get(
    http: aiohttp.ClientSession, url: str | URL, headers: dict[str, str]
) -> tuple[int, Any, Any]:
    async with http.get(url, headers=headers) as response:
        return response.status, await response.json(), response.headers


# --- auth and headers


async def test_token_header_rules(sim: Running, http: aiohttp.ClientSession) -> None:
    token = sim.state.add_store(STORE)
    url = f"{sim.api_url}/{STORE}/orders"
    unauthorized = {"code": 401, "message": "Unauthorized", "description": "Invalid access token"}
    for headers in (
        {},
        {"Authorization": f"Bearer {token}"},
        {"Authorization": f"bearer {token}"},
        {"Authentication": f"Bearer {token}"},
        {"Authentication": "bearer wrong"},
    ):
        assert (await get(http, url, headers))[:2] == (401, unauthorized)
    status, body, headers = await get(http, url, auth(token))
    assert (status, body, headers["x-total-count"]) == (200, [], "0")
    other = sim.state.add_store(STORE + 1)
    assert (await get(http, url, auth(other)))[0] == 401


async def test_token_header_name_is_configurable(http: aiohttp.ClientSession) -> None:
    state = SimState()
    token = state.add_store(STORE)
    async with await start_simulator(state, token_header="Authorization") as sim:
        url = f"{sim.api_url}/{STORE}/orders"
        assert (await get(http, url, {"Authorization": f"bearer {token}"}))[0] == 200
        assert (await get(http, url, auth(token)))[0] == 401


async def test_user_agent_required(sim: Running) -> None:
    token = sim.state.add_store(STORE)
    async with aiohttp.ClientSession(skip_auto_headers=["User-Agent"]) as bare:
        status, body, _ = await get(bare, f"{sim.api_url}/{STORE}/orders", auth(token))
    assert status == 400
    assert "User-Agent" in body["error"]


# --- orders: paging, filters, errors


async def test_paging_follows_link_across_450_orders(
    sim: Running, http: aiohttp.ClientSession
) -> None:
    token = sim.state.add_store(STORE)
    created = sim.state.add_orders(STORE, 450, paid=True)
    url: str | None = f"{sim.api_url}/{STORE}/orders?per_page=200&payment_status=paid"
    seen: list[int] = []
    sizes = []
    while url:
        status, body, headers = await get(http, url, auth(token))
        assert status == 200
        assert headers["x-total-count"] == "450"
        sizes.append(len(body))
        seen.extend(order["id"] for order in body)
        found = re.findall(r'<([^>]+)>; rel="(\w+)"', headers.get("Link", ""))
        links = {rel: link for link, rel in found}
        assert links.get("last", "").endswith("page=3") or "next" not in links
        assert ("prev" in links) == (len(sizes) > 1)
        assert "payment_status=paid" in links.get("next", "payment_status=paid")
        assert all(link.startswith(sim.url) for link in links.values())
        url = links.get("next")
    assert sizes == [200, 200, 50]
    assert seen == created == sorted(created)


async def test_per_page_clamped_and_reach_limited(
    sim: Running, http: aiohttp.ClientSession
) -> None:
    token = sim.state.add_store(STORE, shape="2025-03")
    sim.state.add_orders(STORE, 10_050, quirks=False)
    base = f"{sim.api_url}/{STORE}/orders"
    status, body, headers = await get(http, f"{base}?per_page=500&fields=id", auth(token))
    assert (status, len(body), headers["x-total-count"]) == (200, 200, "10050")
    assert body[0].keys() == {"id"}
    assert 'page=50>; rel="last"' in headers["Link"]
    status, body, headers = await get(http, f"{base}?per_page=200&page=50&fields=id", auth(token))
    assert (status, len(body)) == (200, 200)
    assert 'rel="next"' not in headers["Link"]
    status, body, _ = await get(http, f"{base}?per_page=200&page=51", auth(token))
    assert status == 400
    assert "error" in body
    assert (await get(http, f"{base}?page=0", auth(token)))[0] == 400
    status, body, headers = await get(http, f"{base}?status=cancelled&page=3", auth(token))
    assert (status, body, headers["x-total-count"]) == (200, [], "0")


async def test_payment_status_and_updated_at_filters(
    sim: Running, http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    token = sim.state.add_store(STORE)
    ids = [sim.state.add_order(STORE)["id"] for _ in range(6)]
    clock.advance(3600)
    changed_at = clock.now()
    sim.state.mark_paid(STORE, ids[1])
    sim.state.mark_paid(STORE, ids[4])
    clock.advance(60)
    sim.state.cancel(STORE, ids[5], reason="fraud")
    base = f"{sim.api_url}/{STORE}/orders"

    async def ids_for(query: str) -> list[int]:
        status, body, _ = await get(http, URL(f"{base}?{query}", encoded=True), auth(token))
        assert status == 200, body
        return [order["id"] for order in body]

    assert await ids_for("payment_status=paid") == [ids[1], ids[4]]
    assert await ids_for("payment_status=pending&status=open") == [ids[0], ids[2], ids[3]]
    assert await ids_for("status=cancelled") == [ids[5]]
    stamp = format_ts(changed_at)  # 2025-03-10T13:00:00+0000
    assert stamp.endswith("+0000")
    expected = [ids[1], ids[4], ids[5]]
    assert await ids_for(f"updated_at_min={stamp.replace('+', '%2B')}") == expected
    assert await ids_for(f"updated_at_min={stamp}") == expected  # unencoded '+' arrives as ' '
    assert await ids_for("updated_at_min=2025-03-10T13:00:00%2B00:00") == expected
    assert await ids_for("updated_at_min=2025-03-10T13:00:00Z&payment_status=paid") == ids[1:5:3]
    assert await ids_for("updated_at_max=2025-03-10T12:59:59Z") == [ids[0], ids[2], ids[3]]
    assert await ids_for(f"since_id={ids[3]}") == ids[4:]
    assert await ids_for("created_at_max=2025-03-10T11:59:59Z") == []
    status, body, _ = await get(http, f"{base}?payment_status=bogus", auth(token))
    assert (status, list(body)) == (422, ["payment_status"])
    status, body, _ = await get(http, f"{base}?updated_at_min=yesterday", auth(token))
    assert (status, list(body)) == (422, ["updated_at_min"])
    order = sim.state.get_order(STORE, ids[5])
    assert (order["status"], order["cancel_reason"]) == ("cancelled", "fraud")
    assert order["updated_at"] == "2025-03-10T13:01:00+0000"


async def test_single_order_and_not_found(sim: Running, http: aiohttp.ClientSession) -> None:
    token = sim.state.add_store(STORE)
    order = sim.state.add_order(STORE, paid=True)
    base = f"{sim.api_url}/{STORE}/orders"
    status, body, headers = await get(http, f"{base}/{order['id']}", auth(token))
    assert (status, body) == (200, order)
    assert headers["Content-Type"].startswith("application/json")
    for missing in (order["id"] + 999, "abc"):
        status, body, _ = await get(http, f"{base}/{missing}", auth(token))
        assert status == 404
        assert (body["code"], body["message"]) == (404, "Not Found")
        assert body["description"]


async def test_suspended_store_and_revoked_token(sim: Running, http: aiohttp.ClientSession) -> None:
    token = sim.state.add_store(STORE)
    url = f"{sim.api_url}/{STORE}/orders"
    sim.state.suspend(STORE)
    status, body, _ = await get(http, url, auth(token))
    assert (status, body["code"]) == (402, 402)
    sim.state.suspend(STORE, on=False)
    assert (await get(http, url, auth(token)))[0] == 200
    sim.state.revoke_token(STORE)
    assert (await get(http, url, auth(token)))[:2] == (
        401,
        {"code": 401, "message": "Unauthorized", "description": "Invalid access token"},
    )


async def test_rate_limit_429_headers_and_drain(
    sim: Running, http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    token = sim.state.add_store(STORE)
    url = f"{sim.api_url}/{STORE}/orders/1"
    remaining = []
    for _ in range(40):
        status, _, headers = await get(http, url, auth(token))
        assert status == 404
        remaining.append(int(headers["x-rate-limit-remaining"]))
    assert remaining == list(range(39, -1, -1))
    status, body, headers = await get(http, url, auth(token))
    assert (status, body["code"]) == (429, 429)
    assert headers["x-rate-limit-limit"] == "40"
    assert headers["x-rate-limit-remaining"] == "0"
    assert headers["x-rate-limit-reset"] == "20000"
    assert "Retry-After" not in headers
    clock.advance(0.5)  # drains one request at 2/s
    status, _, headers = await get(http, url, auth(token))
    assert (status, headers["x-rate-limit-remaining"]) == (404, "0")
    assert (await get(http, url, auth(token)))[0] == 429
    counters = sim.state.counters()[STORE]
    assert (counters["requests"], counters["throttled"], counters["served"]) == (43, 2, 41)


async def test_rate_limit_can_be_switched_off(http: aiohttp.ClientSession) -> None:
    state = SimState()
    token = state.add_store(STORE)
    async with await start_simulator(state, rate_limit=False) as sim:
        for _ in range(45):
            status, _, headers = await get(http, f"{sim.api_url}/{STORE}/orders", auth(token))
            assert status == 200
        assert headers["x-rate-limit-remaining"] == "40"
    assert state.counters()[STORE]["throttled"] == 0


async def test_bigger_plan_keeps_its_bucket(http: aiohttp.ClientSession) -> None:
    state = SimState()
    token = state.add_store(STORE, bucket_size=400, leak_per_s=20.0)
    async with await start_simulator(state) as sim:
        _, _, headers = await get(http, f"{sim.api_url}/{STORE}/orders", auth(token))
    assert (headers["x-rate-limit-limit"], headers["x-rate-limit-remaining"]) == ("400", "399")


# --- order shapes and quirks


async def test_orders_look_like_nuvemshop(sim: Running, http: aiohttp.ClientSession) -> None:
    token = sim.state.add_store(STORE)
    for _ in range(30):
        sim.state.add_order(STORE, paid=True)
    sim.state.add_order(STORE, quirks=False)
    status, orders, _ = await get(http, f"{sim.api_url}/{STORE}/orders?per_page=50", auth(token))
    assert status == 200
    quirky, clean = orders[:-1], orders[-1]
    types: dict[str, set[type]] = {"store_id": set(), "quantity": set(), "variant_id": set()}
    for order in quirky:
        types["store_id"].add(type(order["store_id"]))
        for line in order["products"]:
            types["quantity"].add(type(line["quantity"]))
            types["variant_id"].add(type(line["variant_id"]))
            assert line["id"] > 2**32
            assert MONEY.match(line["price"])
    assert all(found == {str, int} for found in types.values()), types
    assert isinstance(clean["store_id"], int)
    assert all(isinstance(line["quantity"], int) for line in clean["products"])
    for order in orders:
        assert int(order["store_id"]) == STORE
        for key in ("subtotal", "discount", "total"):
            assert MONEY.match(order[key]), order[key]
        assert "shipping_cost_customer" not in order
        assert STAMP.match(order["created_at"])
        assert STAMP.match(order["updated_at"])
        lines = sum(
            (Decimal(line["price"]) * int(line["quantity"]) for line in order["products"]),
            Decimal(0),
        )
        assert Decimal(order["subtotal"]) == lines
        customer = order["customer"]
        assert {"id", "name", "email", "identification", "phone", "billing_phone"} <= set(customer)
        assert len(customer["identification"]) in (11, 14)
        assert order["contact_identification"] == customer["identification"]
        assert order["billing_document_type"] in ("cpf", "cnpj")
    assert all(o["paid_at"] and STAMP.match(o["paid_at"]) for o in quirky)
    numbers, ids = [o["number"] for o in orders], [o["id"] for o in orders]
    assert numbers == list(range(numbers[0], numbers[0] + len(orders)))
    assert ids == sorted(set(ids))


async def test_customer_scope_hides_customer(sim: Running, http: aiohttp.ClientSession) -> None:
    token = sim.state.add_store(STORE, scopes="read_orders,read_products")
    order = sim.state.add_order(
        STORE, customer={"name": "Ana Lima", "identification": "75839566500"}
    )
    _, body, _ = await get(http, f"{sim.api_url}/{STORE}/orders/{order['id']}", auth(token))
    assert "customer" not in body
    assert (body["contact_name"], body["contact_identification"]) == ("Ana Lima", "75839566500")
    again = sim.state.add_order(STORE, customer={"identification": "75839566500"})
    assert again["customer"]["id"] == order["customer"]["id"]  # a returning buyer
    company = sim.state.add_order(STORE, customer={"identification": "11.222.333/0001-81"})
    assert (company["billing_document_type"], company["billing_customer_type"]) == (
        "cnpj",
        "company",
    )


# --- OAuth


async def test_oauth_install_and_reinstall(
    sim: Running, http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    state = sim.state
    old = state.add_store(STORE)
    state.install_store_id = STORE
    token_url = f"{sim.auth_url}/apps/authorize/token"

    async def approve() -> str:
        url = f"{sim.auth_url}/apps/{state.app_id}/authorize?state=xyz"
        async with http.get(url, allow_redirects=False) as response:
            assert response.status == 302
            location = URL(response.headers["Location"])
        assert str(location).startswith(state.redirect_url)
        assert location.query["state"] == "xyz"
        return location.query["code"]

    def grant(code: str, secret: str | None = None) -> dict[str, str]:
        return {
            "client_id": state.app_id,
            "client_secret": secret or state.client_secret,
            "grant_type": "authorization_code",
            "code": code,
        }

    user_ids: list[int | str] = []
    for _ in range(2):
        code = await approve()
        async with http.post(token_url, json=grant(code)) as response:
            assert response.status == 200
            answer = await response.json()
        assert answer["token_type"] == "bearer"
        assert "read_orders" in answer["scope"].split(",")
        assert int(answer["user_id"]) == STORE
        user_ids.append(answer["user_id"])
        async with http.post(token_url, json=grant(code)) as response:  # single use
            assert (response.status, "error" in await response.json()) == (400, True)
        url = f"{sim.api_url}/{STORE}/orders"
        assert (await get(http, url, auth(old)))[0] == 401
        assert (await get(http, url, auth(answer["access_token"])))[0] == 200
        old = answer["access_token"]
    assert {type(uid) for uid in user_ids} == {str, int}
    code = await approve()
    async with http.post(token_url, json=grant(code, "wrong")) as response:
        assert response.status == 400
    code = await approve()
    clock.advance(301)
    async with http.post(token_url, json=grant(code)) as response:
        assert response.status == 400
        assert "expired" in (await response.json())["error_description"]


# --- webhooks


async def register(
    http: aiohttp.ClientSession, sim: Running, token: str, event: str, url: str
) -> tuple[int, Any]:
    async with http.post(
        f"{sim.api_url}/{STORE}/webhooks", json={"event": event, "url": url}, headers=auth(token)
    ) as response:
        return response.status, await response.json()


async def test_webhook_registration_rules(sim: Running, http: aiohttp.ClientSession) -> None:
    token = sim.state.add_store(STORE)
    status, body = await register(http, sim, token, "order/paid", "")
    assert (status, list(body)) == (422, ["url"])
    assert (await register(http, sim, token, "order/paid", "http://example.com/h"))[0] == 422
    assert (await register(http, sim, token, "order/nope", "https://example.com/h"))[0] == 422
    status, created = await register(http, sim, token, "order/paid", "https://example.com/h")
    assert (status, created["event"], created["url"]) == (
        201,
        "order/paid",
        "https://example.com/h",
    )
    assert (await register(http, sim, token, "order/paid", "https://example.com/h"))[0] == 422
    assert (await register(http, sim, token, "order/paid", "http://127.0.0.1:9/h"))[0] == 201
    hooks_url = f"{sim.api_url}/{STORE}/webhooks"
    async with http.post(hooks_url, data=b'{"event":"order/paid"}', headers=auth(token)) as resp:
        assert resp.status == 415
    _, listed, _ = await get(http, hooks_url, auth(token))
    assert [hook["id"] for hook in listed] == [created["id"], created["id"] + 1]
    async with http.delete(f"{hooks_url}/{created['id']}", headers=auth(token)) as resp:
        assert resp.status == 200
    assert len((await get(http, hooks_url, auth(token)))[1]) == 1


async def test_signed_webhook_on_payment(
    sim: Running, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    token = sim.state.add_store(STORE)
    assert (await register(http, sim, token, "order/paid", receiver.url))[0] == 201
    order = sim.state.add_order(STORE)
    sim.state.mark_paid(STORE, order["id"])
    await sim.dispatcher.wait_idle(5)
    assert len(receiver.hits) == 1
    headers, body, _ = receiver.hits[0]
    expected = sign(body, sim.state.client_secret)
    assert hmac.compare_digest(headers[HMAC_HEADER], expected)
    assert expected == expected.lower()
    assert not hmac.compare_digest(headers[HMAC_HEADER], sign(body, "another secret"))
    assert body == b'{"store_id":%d,"event":"order/paid","id":%d}' % (STORE, order["id"])
    assert headers["Content-Type"] == "application/json"


async def test_retry_schedule_compressed(sim: Running, receiver: Receiver) -> None:
    delays = retry_delays()
    assert delays[:5] == [0.0, 300.0, 600.0, 900.0, 1260.0]
    assert len(delays) + 1 <= 18
    assert sum(delays) <= 48 * 3600
    assert all(b == pytest.approx(a * 1.4) for a, b in itertools.pairwise(delays[3:]))
    sim.state.add_store(STORE)
    receiver.fail_first = 3
    (delivery,) = sim.dispatcher.fire(STORE, "order/paid", 42, urls=[receiver.url])
    await sim.dispatcher.wait_idle(5)
    assert [a.status for a in delivery.attempts] == [500, 500, 500, 200]
    assert delivery.outcome == "delivered"
    offsets = [a.offset_s for a in delivery.attempts]
    assert offsets[1] < 0.15  # retried at once
    assert 0.25 < offsets[2] < 0.6  # 5 min x 0.001
    assert 0.85 < offsets[3] < 1.4  # then 10 min x 0.001


async def test_slow_receiver_is_retried(sim: Running, receiver: Receiver) -> None:
    sim.state.add_store(STORE)
    receiver.stall_first_s = 0.6  # beyond the 0.3 s timeout of this simulator
    (delivery,) = sim.dispatcher.fire(STORE, "order/updated", 7, urls=[receiver.url])
    await sim.dispatcher.wait_idle(5)
    assert delivery.attempts[0].status is None
    assert "Timeout" in (delivery.attempts[0].error or "")
    assert (delivery.attempts[-1].status, delivery.outcome) == (200, "delivered")


async def test_duplicates_shuffle_and_dropped_webhook(
    sim: Running, http: aiohttp.ClientSession, receiver: Receiver, clock: FakeClock
) -> None:
    token = sim.state.add_store(STORE)
    for event in ("order/paid", "order/updated"):
        sim.state.register_webhook(STORE, event, receiver.url)
    sim.dispatcher.fire(STORE, "order/paid", 11, duplicates=2)
    await sim.dispatcher.wait_idle(5)
    assert receiver.bodies() == [{"store_id": STORE, "event": "order/paid", "id": 11}] * 3
    receiver.hits.clear()
    batch = [(STORE, "order/updated", n) for n in range(1, 7)]
    sim.dispatcher.fire_batch(batch, shuffle=True)
    await sim.dispatcher.wait_idle(5)
    arrived = [body["id"] for body in receiver.bodies()]
    assert sorted(arrived) == list(range(1, 7))
    assert arrived != sorted(arrived)
    receiver.hits.clear()
    sim.dispatcher.faults.duplicates = 1
    order = sim.state.add_order(STORE, notify=False)
    sim.state.update_order(STORE, order["id"], {"note": "gift"})
    await sim.dispatcher.wait_idle(5)
    assert [b["event"] for b in receiver.bodies()] == ["order/updated"] * 2
    receiver.hits.clear()
    sim.dispatcher.faults.duplicates = 0
    sim.dispatcher.faults.drop_next = 1
    clock.advance(10)
    sim.state.mark_paid(STORE, order["id"])
    await sim.dispatcher.wait_idle(5)
    assert receiver.hits == []
    assert sim.dispatcher.log[-1].outcome == "dropped"
    since = URL(f"{sim.api_url}/{STORE}/orders").with_query(
        payment_status="paid", updated_at_min=format_ts(clock.now())
    )
    _, polled, _ = await get(http, since, auth(token))
    assert [o["id"] for o in polled] == [order["id"]]


async def test_uninstall_and_suspension(
    sim: Running, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    token = sim.state.add_store(STORE)
    sim.state.register_webhook(STORE, "order/cancelled", receiver.url)
    sim.state.register_webhook(STORE, "app/uninstalled", receiver.url)
    order = sim.state.add_order(STORE)
    sim.state.suspend(STORE)
    sim.state.cancel(STORE, order["id"])
    sim.state.suspend(STORE, on=False)
    sim.state.uninstall(STORE)
    await sim.dispatcher.wait_idle(5)
    # The reference: the id of an app/uninstalled webhook is the app's id.
    assert receiver.bodies() == [{"store_id": STORE, "event": "app/uninstalled", "id": 1234}]
    assert (await get(http, f"{sim.api_url}/{STORE}/orders", auth(token)))[0] == 401
    assert sim.state.store(STORE).webhooks == {}


# --- control API and command line


async def test_control_api(sim: Running, http: aiohttp.ClientSession, receiver: Receiver) -> None:
    async def call(method: str, path: str, payload: Any = None) -> tuple[int, Any]:
        async with http.request(method, f"{sim.url}/_sim{path}", json=payload) as response:
            return response.status, await response.json()

    status, store = await call("POST", "/stores", {"store_id": 55, "token": "tok55"})
    assert (status, store) == (201, {"store_id": 55, "token": "tok55"})
    assert (await call("POST", "/stores", {"store_id": 55}))[0] == 409
    status, made = await call("POST", "/stores/55/orders", {"count": 3, "paid": True})
    assert (status, made["count"]) == (201, 3)
    status, one = await call(
        "POST",
        "/stores/55/orders",
        {"products": [{"name": "Caneca", "price": "39.90", "quantity": 2}], "shipping": "0.00"},
    )
    assert one["order"]["subtotal"] == "79.80"
    oid = one["order"]["id"]
    assert (await call("POST", "/stores/55/orders", {"shipping": 1.5}))[0] == 400
    assert (await call("POST", "/stores/55/orders/1/pay"))[0] == 404
    sim.state.register_webhook(55, "order/paid", receiver.url)
    status, paid = await call("POST", f"/stores/55/orders/{oid}/pay")
    assert (status, paid["payment_status"]) == (200, "paid")
    assert (await call("POST", "/webhooks/wait", {"timeout": 5}))[1] == {"idle": True}
    assert receiver.bodies() == [{"store_id": 55, "event": "order/paid", "id": oid}]
    status, fired = await call(
        "POST",
        "/webhooks/fire",
        {"store_id": 55, "event": "order/paid", "id": oid, "duplicates": 1},
    )
    assert (status, len(fired["deliveries"])) == (202, 2)
    await call("POST", "/webhooks/wait", {"timeout": 5})
    _, log = await call("GET", "/webhooks/log?store_id=55")
    assert [d["outcome"] for d in log["deliveries"]] == ["delivered"] * 3
    _, cancelled = await call("POST", f"/stores/55/orders/{oid}/cancel", {"reason": "inventory"})
    assert cancelled["cancel_reason"] == "inventory"
    await get(http, f"{sim.api_url}/55/orders", auth("tok55"))
    _, counters = await call("GET", "/counters")
    assert counters["stores"]["55"]["requests"] == 1
    _, summary = await call("POST", "/stores/55/suspend", {"on": True})
    assert summary["suspended"] is True
    assert (await get(http, f"{sim.api_url}/55/orders", auth("tok55")))[0] == 402
    _, reinstalled = await call("POST", "/stores/55/reinstall")
    assert reinstalled["token"] != "tok55"
    assert (await call("GET", "/stores/99"))[0] == 404


async def test_command_line_serves_until_sigterm(http: aiohttp.ClientSession) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.simulator",
        "--port",
        "0",
        "--seed-store",
        "42:tok42",
        "--seed-orders",
        "3",
        stdout=asyncio.subprocess.PIPE,
        cwd=os.getcwd(),
    )
    assert process.stdout is not None
    try:
        line = (await asyncio.wait_for(process.stdout.readline(), 10)).decode()
        base = line.rsplit(" ", 1)[-1].strip()
        assert base.startswith("http://127.0.0.1:")
        assert not base.endswith(":0")
        status, body, _ = await get(http, f"{base}/v1/42/orders", auth("tok42"))
        assert (status, len(body)) == (200, 3)
    finally:
        process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), 10)
    assert code == 0


def test_hostile_fields_replace_or_leave_out_what_is_served() -> None:
    import orjson

    from services.simulator.listing import MISSING, with_hostile

    body = {"id": 1, "total": "10.00", "customer": {"name": "A"}}
    assert with_hostile(body, None) is body
    served = with_hostile(body, {"total": orjson.Fragment(b"NaN"), "customer": MISSING})
    assert orjson.dumps(served) == b'{"id":1,"total":NaN}'
    assert body["total"] == "10.00"  # the stored order is unchanged
