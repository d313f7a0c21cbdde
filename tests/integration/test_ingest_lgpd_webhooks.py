"""The LGPD webhooks on their own URLs, against the simulator, the real ingest and the broker.

The simulator delivers ``store/redact``, ``customers/redact`` and ``customers/data_request`` to
the URLs of the app's partner settings, with bodies that carry no ``event``; ingest checks them
like every webhook (signature, size, body) and answers 2xx only once the request is queued, 503
when it cannot be queued.
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
import orjson
import pytest

from services.ingest.lgpd import webhook_url
from services.simulator.webhooks import HMAC_HEADER, sign
from tests import infra
from tests.harness import System
from tests.integration.helpers import vhost_of
from tests.integration.ingest_helpers import eventually, first_poll_done

STORE = 732_001
CPF = "75839566500"
PATHS = {
    "store/redact": "store-redact",
    "customers/redact": "customers-redact",
    "customers/data_request": "customers-data-request",
}


async def _post(
    system: System, slug: str, body: bytes, *, signature: str | None = "good"
) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json"}
    if signature == "good":
        headers[HMAC_HEADER] = sign(body, system.simulator.state.client_secret)
    elif signature is not None:
        headers[HMAC_HEADER] = signature
    url = f"{system.ingest_url}/webhooks/nuvemshop/{slug}"
    async with system.http.post(url, data=body, headers=headers) as response:
        return response.status, await response.json(content_type=None)


def _received(system: System, store_id: int) -> list[dict[str, Any]]:
    return [s.body for s in system.observer.of("webhook.received", store_id=store_id)]


async def test_the_simulator_delivers_each_lgpd_event_to_its_own_url(system: System) -> None:
    await system.connect_store(STORE)
    await first_poll_done(system, STORE)
    sim = system.simulator.state
    # The app's partner settings name ingest's three LGPD URLs (they are not registered per store).
    sim.lgpd_urls = {event: webhook_url(system.ingest_url, event) for event in PATHS}
    order = sim.add_order(STORE, paid=True, customer={"name": "Maria Silva", "identification": CPF})
    customer = order["customer"]
    request = {"event": "customers/redact", "customer_id": customer["id"]}
    control = f"{system.simulator.auth_url}/_sim/stores/{STORE}/lgpd"
    async with system.http.post(control, json=request) as response:
        assert (response.status, await response.json()) == (202, {"sent": True})
    sim.lgpd_request(
        STORE, "customers/data_request", customer_id=customer["id"], data_request_id=77
    )
    sim.uninstall(STORE)  # app/uninstalled, then store/redact
    dispatcher = system.simulator.dispatcher
    await dispatcher.wait_idle(10)

    lgpd = [d for d in dispatcher.log if d.event in PATHS]
    assert sorted(d.event for d in lgpd) == sorted(PATHS)
    for delivery in lgpd:
        assert delivery.url == webhook_url(system.ingest_url, delivery.event)
        assert delivery.outcome == "delivered", delivery.to_json()
        assert delivery.payload is not None
        assert "event" not in delivery.payload
        assert delivery.payload["store_id"] == STORE
    bodies = {d.event: d.payload or {} for d in lgpd}
    person = {
        "id": customer["id"],
        "email": customer["email"],
        "phone": customer["phone"],
        "identification": CPF,
    }
    assert bodies["store/redact"] == {"store_id": STORE}
    assert bodies["customers/redact"] == {
        "store_id": STORE,
        "customer": person,
        "orders_to_redact": [int(order["id"])],
    }
    assert bodies["customers/data_request"]["customer"] == person
    assert bodies["customers/data_request"]["orders_requested"] == [int(order["id"])]
    assert bodies["customers/data_request"]["data_request"] == {"id": 77}

    requests = await system.observer.wait_for("privacy.request", count=3, store_id=STORE)
    kinds = {r.body["kind"]: r.body for r in requests}
    assert set(kinds) == {"store_redact", "customers_redact", "data_request"}
    assert kinds["customers_redact"]["order_ids"] == [int(order["id"])]
    assert kinds["customers_redact"]["customer"]["identification"] == CPF
    assert kinds["data_request"]["order_ids"] == [int(order["id"])]
    queued = [r for r in _received(system, STORE) if r["event"] in PATHS]  # order/paid too
    assert sorted(r["event"] for r in queued) == sorted(PATHS)
    data_request = next(r for r in queued if r["event"] == "customers/data_request")
    assert data_request["payload"]["data_request"] == {"id": 77}


def _padded(size: int) -> bytes:
    head = b'{"store_id":732002,"pad":"'
    return head + b"x" * (size - len(head) - 2) + b'"}'


async def test_lgpd_urls_answer_like_the_main_webhook_endpoint(system: System) -> None:
    store = 732_002
    good = orjson.dumps(
        {"store_id": store, "customer": {"id": 5, "email": "a@example.com"}, "orders_to_redact": []}
    )
    answers = Counter[str]()
    cases: list[tuple[str, str, bytes, str | None, int]] = [
        ("unsigned", "customers-redact", good, None, 401),
        ("signed with another secret", "customers-redact", good, sign(good, "other"), 401),
        ("not JSON", "customers-redact", b"{nope", "good", 400),
        ("names nobody", "customers-redact", b'{"store_id": 732002, "customer": {}}', "good", 400),
        (
            "another event",
            "store-redact",
            b'{"store_id":732002,"event":"app/uninstalled"}',
            "good",
            400,
        ),
        ("no request id", "customers-data-request", good, "good", 400),
        ("over 64 KiB", "store-redact", _padded(64 * 1024 + 1), "good", 413),
        ("at 64 KiB", "store-redact", _padded(64 * 1024), "good", 200),
        ("a customer redaction", "customers-redact", good, "good", 200),
        ("the same, again (Nuvemshop retries)", "customers-redact", good, "good", 200),
    ]
    for why, slug, body, signature, expected in cases:
        status, answer = await _post(system, slug, body, signature=signature)
        assert status == expected, f"{why}: {status} {answer}"
        answers[str(status)] += 1
        if status == 200:
            assert answer == {"status": "queued"}
        else:
            assert answer["error"], why

    async def all_queued() -> bool:
        return len(_received(system, store)) >= 3

    await eventually(all_queued, "the three accepted requests to be queued", within=5)
    await system.observer.echo(system.erp)  # every answered webhook was queued
    queued = _received(system, store)
    assert Counter(r["event"] for r in queued) == {"store/redact": 1, "customers/redact": 2}
    assert all(r["payload"] is not None and r["payload"]["store_id"] == store for r in queued)
    assert answers == {"401": 2, "400": 4, "413": 1, "200": 3}


@pytest.fixture
async def management(infrastructure: infra.Infrastructure) -> AsyncIterator[aiohttp.ClientSession]:
    assert infrastructure.management_url is not None, "the management API is needed here"
    parts = urlsplit(infrastructure.amqp_url)
    credentials = f"{parts.username or 'guest'}:{parts.password or 'guest'}"
    auth = {"authorization": "Basic " + base64.b64encode(credentials.encode()).decode()}
    async with aiohttp.ClientSession(infrastructure.management_url, headers=auth) as session:
        yield session


async def test_503_while_the_request_cannot_be_queued(
    system: System, management: aiohttp.ClientSession
) -> None:
    """The broker closes the connections of the test's own vhost (through the management API),
    ingest's publisher among them: the LGPD URL answers 503 so Nuvemshop retries, and 200 once
    the connection is back."""
    vhost = quote(vhost_of(system.settings.amqp_url), safe="")
    body = orjson.dumps({"store_id": 732_003})

    async def close_connections() -> None:
        async with management.get(f"/api/vhosts/{vhost}/connections") as response:
            connections = await response.json()
        for conn in connections:
            async with management.delete(f"/api/connections/{quote(conn['name'], safe='')}"):
                pass

    async def refused() -> bool:
        await close_connections()
        status, answer = await _post(system, "store-redact", body)
        assert status in (200, 503), answer
        return status == 503

    await eventually(refused, "the store-redact URL to answer 503", within=20, every=0.5)

    async def accepted() -> bool:
        return (await _post(system, "store-redact", body))[0] == 200

    await eventually(accepted, "the store-redact URL to answer 200 again", within=30, every=0.5)
