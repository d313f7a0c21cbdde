"""The Nuvemshop client against a real HTTP server on 127.0.0.1: a small aiohttp stub in this file
(scripted failures, a leaky bucket like the API's, ``Link`` paging, the 10,000-order reach scaled
down), so that every retry and refusal path can be provoked on demand and checked on the wire."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from multidict import MultiDict

from services.ingest.adapters.nuvemshop import (
    ApiError,
    ApiUnavailable,
    CredentialsRevoked,
    NuvemshopClient,
    NuvemshopError,
    RequestCounters,
    StoreSuspended,
    TokenExchangeError,
    TokenGrant,
    format_timestamp,
)
from services.ingest.adapters.ratelimit import LeakyBucket, RateLimitHeaders

TOKEN = "tok-secret-123"
SECRET = "client-secret-xyz"
STORE = 7
SUSPENDED_STORE = 402
USER_AGENT = "nuvem-ledger-tests (dev@example.com)"
T0 = datetime(2024, 1, 1, tzinfo=UTC)


# --- the stub API


class StubBucket:
    """The server side of the rate limit: continuous drain, a refused request pours nothing."""

    def __init__(self, size: int, leak_per_s: float) -> None:
        self.size, self.leak_per_s = size, leak_per_s
        self.level, self.last = 0.0, time.monotonic()

    def _drain(self) -> None:
        now = time.monotonic()
        self.level = max(0.0, self.level - (now - self.last) * self.leak_per_s)
        self.last = now

    def take(self) -> bool:
        self._drain()
        if self.level + 1 > self.size:
            return False
        self.level += 1
        return True

    def headers(self) -> dict[str, str]:
        self._drain()
        return {
            "x-rate-limit-limit": str(self.size),
            "x-rate-limit-remaining": str(int(self.size - self.level)),
            "x-rate-limit-reset": str(int(self.level / self.leak_per_s * 1000)),
        }


@dataclass
class Seen:
    method: str
    path: str
    query: MultiDict[str]
    raw_query: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Stub:
    token_header: str = "Authentication"
    orders: list[dict[str, Any]] = field(default_factory=list)
    reach: int = 10_000
    bucket: StubBucket | None = None
    # path -> answers to give before behaving normally: a status, or (status, extra headers)
    scripted: dict[str, list[int | tuple[int, dict[str, str]]]] = field(default_factory=dict)
    slow_first: set[str] = field(default_factory=set)
    foreign_next: bool = False
    webhooks: dict[int, dict[str, Any]] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    refused_429: int = 0
    base_url: str = ""

    def api(self) -> str:
        return f"{self.base_url}/v1"


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(data, status=status, headers=headers)


def _stub_app(stub: Stub) -> web.Application:
    @web.middleware
    async def gate(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        body = await request.read()
        stub.seen.append(
            Seen(
                request.method,
                request.path,
                MultiDict(request.query),
                request.query_string,
                dict(request.headers),
                body,
            )
        )
        if request.path.startswith("/apps/"):
            return await handler(request)
        script = stub.scripted.get(request.path)
        if script:
            answer = script.pop(0)
            status, extra = answer if isinstance(answer, tuple) else (answer, {})
            return _json({"code": status}, status=status, headers=extra)
        if request.path in stub.slow_first:
            stub.slow_first.discard(request.path)
            await asyncio.sleep(0.5)
        if request.headers.get(stub.token_header) != f"bearer {TOKEN}":
            return _json({"code": 401, "message": "Unauthorized"}, status=401)
        if request.match_info.get("store") == str(SUSPENDED_STORE):
            return _json({"code": 402, "message": "Payment Required"}, status=402)
        if stub.bucket is not None and not stub.bucket.take():
            stub.refused_429 += 1
            return _json({"code": 429}, status=429, headers=stub.bucket.headers())
        response = await handler(request)
        if stub.bucket is not None:
            response.headers.update(stub.bucket.headers())
        return response

    async def list_orders(request: web.Request) -> web.Response:
        query = request.query
        try:
            low = datetime.fromisoformat(query.get("updated_at_min", "2000-01-01T00:00:00+00:00"))
            high = datetime.fromisoformat(query.get("updated_at_max", "2100-01-01T00:00:00+00:00"))
        except ValueError:
            return _json({"updated_at_min": ["invalid"]}, status=422)
        if low.tzinfo is None or high.tzinfo is None:
            return _json({"updated_at_min": ["no offset"]}, status=422)
        found = [o for o in stub.orders if low <= _parse(o["updated_at"]) <= high]
        page, per_page = int(query.get("page", "1")), int(query.get("per_page", "30"))
        if (page - 1) * per_page >= stub.reach:
            return _json({"error": "out of reach"}, status=400)
        if not found:
            return _json({"code": 404, "description": "Last page is 0"}, status=404)
        chunk = found[(page - 1) * per_page : page * per_page]
        headers = {"x-total-count": str(len(found))}
        if page * per_page < min(len(found), stub.reach):
            following = request.url.update_query(page=str(page + 1))
            if stub.foreign_next:
                following = following.with_host("evil.example")
            headers["Link"] = f'<{following}>; rel="next"'
        return _json(chunk, headers=headers)

    async def get_order(request: web.Request) -> web.Response:
        wanted = int(request.match_info["order"])
        for order in stub.orders:
            if order["id"] == wanted:
                return _json(order)
        return _json({"code": 404, "message": "Not Found"}, status=404)

    async def create_webhook(request: web.Request) -> web.Response:
        if request.content_type != "application/json":
            return _json({"error": "unsupported media type"}, status=415)
        payload = await request.json()
        if not str(payload.get("url", "")).startswith("https://"):
            return _json({"url": ["must be https"]}, status=422)
        hook = {"id": len(stub.webhooks) + 1, **payload}
        stub.webhooks[hook["id"]] = hook
        return _json(hook, status=201)

    async def list_webhooks(request: web.Request) -> web.Response:
        return _json(list(stub.webhooks.values()))

    async def delete_webhook(request: web.Request) -> web.Response:
        if stub.webhooks.pop(int(request.match_info["hook"]), None) is None:
            return _json({"code": 404, "message": "Not Found"}, status=404)
        return _json({})

    async def token(request: web.Request) -> web.Response:
        payload = await request.json()
        grants: dict[str, Any] = {"code-str": "123", "code-int": 123}
        if payload.get("client_secret") != SECRET or payload.get("code") not in grants:
            return _json(
                {
                    "error": "invalid_grant",
                    "error_description": f"The authorization code has expired ({payload.get('client_secret')})",
                },
                status=400,
            )
        return _json(
            {
                "access_token": "fresh-token",
                "token_type": "bearer",
                "scope": "read_orders,read_customers,read_products",
                "user_id": grants[payload["code"]],
            }
        )

    app = web.Application(middlewares=[gate])
    app.router.add_get("/v1/{store}/orders", list_orders)
    app.router.add_get("/v1/{store}/orders/{order}", get_order)
    app.router.add_post("/v1/{store}/webhooks", create_webhook)
    app.router.add_get("/v1/{store}/webhooks", list_webhooks)
    app.router.add_delete("/v1/{store}/webhooks/{hook}", delete_webhook)
    app.router.add_post("/apps/authorize/token", token)
    return app


def _parse(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S%z")


def _orders(count: int, step: timedelta = timedelta(minutes=1)) -> list[dict[str, Any]]:
    return [
        {
            "id": 1000 + n,
            "number": n + 1,
            "updated_at": (T0 + n * step).strftime("%Y-%m-%dT%H:%M:%S+0000"),
        }
        for n in range(count)
    ]


class FakeTime:
    """A monotonic clock that only moves when the client sleeps, so waits cost nothing."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


# --- fixtures


@pytest.fixture
async def stub() -> AsyncIterator[Stub]:
    state = Stub()
    runner = web.AppRunner(_stub_app(state))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    state.base_url = f"http://{host}:{port}"
    yield state
    await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


def make_client(
    session: aiohttp.ClientSession, stub: Stub, fake_time: FakeTime | None = None, **options: Any
) -> NuvemshopClient:
    timing: dict[str, Any] = {}
    if fake_time is not None:
        timing = {"sleep": fake_time.sleep, "clock": fake_time.clock}
    return NuvemshopClient(
        session,
        api_url=stub.api(),
        token_header=stub.token_header,
        user_agent=USER_AGENT,
        **timing,
        **options,
    )


# --- headers


@pytest.mark.parametrize("header", ["Authentication", "Authorization"])
async def test_token_header_lowercase_bearer_and_user_agent(
    stub: Stub, session: aiohttp.ClientSession, header: str
) -> None:
    stub.token_header = header
    stub.orders = _orders(1)
    order = await make_client(session, stub).get_order(STORE, TOKEN, 1000)
    assert order is not None
    assert order["id"] == 1000
    sent = stub.seen[-1]
    assert sent.path == f"/v1/{STORE}/orders/1000"
    assert sent.headers[header] == f"bearer {TOKEN}"
    assert sent.headers["User-Agent"] == USER_AGENT


async def test_json_body_carries_content_type(stub: Stub, session: aiohttp.ClientSession) -> None:
    client = make_client(session, stub)
    hook = await client.register_webhook(STORE, TOKEN, "order/paid", "https://x.example/hook")
    assert hook == {"id": 1, "event": "order/paid", "url": "https://x.example/hook"}
    assert stub.seen[-1].headers["Content-Type"] == "application/json"


# --- orders


async def test_pages_follow_link_over_450_orders(
    stub: Stub, session: aiohttp.ClientSession
) -> None:
    stub.orders = _orders(450)
    pages = make_client(session, stub).iter_orders(STORE, TOKEN, payment_status="paid")
    sizes = [len(page) async for page in pages]
    assert sizes == [200, 200, 50]
    assert pages.total_count == 450
    listing = [seen for seen in stub.seen if seen.path.endswith("/orders")]
    assert [seen.query["per_page"] for seen in listing] == ["200", "200", "200"]
    assert [seen.query.get("page") for seen in listing] == [None, "2", "3"]
    assert all(seen.query["payment_status"] == "paid" for seen in listing)


async def test_updated_at_min_is_sent_in_utc_with_an_offset(
    stub: Stub, session: aiohttp.ClientSession
) -> None:
    stub.orders = _orders(5)
    brasilia = timezone(timedelta(hours=-3))
    since = datetime(2023, 12, 31, 21, 2, 30, 500_000, tzinfo=brasilia)  # 00:02:30.5 UTC
    pages = make_client(session, stub).iter_orders(STORE, TOKEN, updated_at_min=since)
    ids = [order["id"] async for page in pages for order in page]
    assert ids == [1003, 1004]
    sent = stub.seen[-1]
    assert sent.query["updated_at_min"] == "2024-01-01T00:02:30+00:00"
    assert "updated_at_min=2024-01-01T00:02:30%2B00:00" in sent.raw_query


async def test_naive_datetimes_are_refused_before_sending(
    stub: Stub, session: aiohttp.ClientSession
) -> None:
    with pytest.raises(ValueError, match="naive"):
        make_client(session, stub).iter_orders(STORE, TOKEN, updated_at_min=datetime(2024, 1, 1))
    assert stub.seen == []
    assert format_timestamp(T0 + timedelta(microseconds=1), round_up=True).endswith(":01+00:00")


async def test_empty_listing_answered_404_last_page_yields_nothing(
    stub: Stub, session: aiohttp.ClientSession
) -> None:
    client = make_client(session, stub)
    pages = client.iter_orders(STORE, TOKEN)
    assert [page async for page in pages] == []
    assert pages.total_count == 0
    assert await client.count_orders(STORE, TOKEN, status="open") == 0


async def test_window_splitting_when_the_count_passes_the_threshold(
    stub: Stub, session: aiohttp.ClientSession
) -> None:
    stub.orders = _orders(450)
    stub.reach = 100  # the API's 10,000 scaled down: a page beyond it answers 400
    client = make_client(session, stub)
    assert await client.count_orders(STORE, TOKEN) == 450
    got = [
        order
        async for page in client.iter_orders_windowed(
            STORE,
            TOKEN,
            start=T0,
            end=T0 + timedelta(minutes=450),
            max_per_window=100,
            per_page=40,
        )
        for order in page
    ]
    assert {order["id"] for order in got} == {order["id"] for order in stub.orders}
    times = [_parse(order["updated_at"]) for order in got]
    assert times == sorted(times)  # windows come in time order
    assert len(got) - 450 <= 8  # only boundary seconds may repeat
    windows = [seen for seen in stub.seen if "updated_at_max" in seen.query]
    assert len({seen.query["updated_at_min"] for seen in windows}) > 4
    assert all(seen.query["updated_at_min"].endswith("+00:00") for seen in windows)


async def test_missing_order_is_none(stub: Stub, session: aiohttp.ClientSession) -> None:
    assert await make_client(session, stub).get_order(STORE, TOKEN, 99) is None


async def test_revoked_token_raises_credentials_revoked(
    stub: Stub, session: aiohttp.ClientSession
) -> None:
    with pytest.raises(CredentialsRevoked) as caught:
        await make_client(session, stub).get_order(STORE, "old-token", 1)
    assert caught.value.store_id == STORE
    assert "old-token" not in str(caught.value)


async def test_suspended_store_raises_store_suspended(
    stub: Stub, session: aiohttp.ClientSession
) -> None:
    with pytest.raises(StoreSuspended) as caught:
        await make_client(session, stub).get_order(SUSPENDED_STORE, TOKEN, 1)
    assert caught.value.store_id == SUSPENDED_STORE
    assert isinstance(caught.value, NuvemshopError)


async def test_other_4xx_raise_api_error_with_the_body(
    stub: Stub, session: aiohttp.ClientSession
) -> None:
    with pytest.raises(ApiError) as caught:
        await make_client(session, stub).register_webhook(STORE, TOKEN, "order/paid", "http://x")
    assert caught.value.status == 422
    assert "must be https" in caught.value.body


async def test_link_to_another_host_never_gets_the_token(
    stub: Stub, session: aiohttp.ClientSession
) -> None:
    stub.orders = _orders(3)
    stub.foreign_next = True
    pages = make_client(session, stub).iter_orders(STORE, TOKEN, per_page=1)
    with pytest.raises(NuvemshopError, match="refusing"):
        [page async for page in pages]
    assert len(stub.seen) == 1


# --- retries


async def test_429_waits_for_the_reset_and_retries(
    stub: Stub, session: aiohttp.ClientSession, fake_time: FakeTime
) -> None:
    stub.orders = _orders(1)
    limits = {
        "x-rate-limit-limit": "40",
        "x-rate-limit-remaining": "0",
        "x-rate-limit-reset": "20000",
    }
    stub.scripted[f"/v1/{STORE}/orders/1000"] = [(429, limits)]
    client = make_client(session, stub, fake_time)
    order = await client.get_order(STORE, TOKEN, 1000)
    assert order is not None
    assert client.counters(STORE) == RequestCounters(requests_sent=2, rate_limited=1)
    assert fake_time.sleeps == [pytest.approx(20.0)]


async def test_5xx_twice_then_success(
    stub: Stub, session: aiohttp.ClientSession, fake_time: FakeTime
) -> None:
    stub.orders = _orders(1)
    stub.scripted[f"/v1/{STORE}/orders/1000"] = [500, 503]
    client = make_client(session, stub, fake_time)
    assert await client.get_order(STORE, TOKEN, 1000) is not None
    assert client.counters(STORE) == RequestCounters(requests_sent=3, rate_limited=0)
    first, second = fake_time.sleeps
    assert 0.25 <= first <= 0.5
    assert 0.5 <= second <= 1.0


async def test_persistent_5xx_raises_api_unavailable(
    stub: Stub, session: aiohttp.ClientSession, fake_time: FakeTime
) -> None:
    stub.scripted[f"/v1/{STORE}/orders/1000"] = [502] * 10
    client = make_client(session, stub, fake_time, max_retries=3)
    with pytest.raises(ApiUnavailable, match="HTTP 502"):
        await client.get_order(STORE, TOKEN, 1000)
    assert client.counters(STORE).requests_sent == 4


async def test_timeout_is_retried(
    stub: Stub, session: aiohttp.ClientSession, fake_time: FakeTime
) -> None:
    stub.orders = _orders(1)
    stub.slow_first.add(f"/v1/{STORE}/orders/1000")
    client = make_client(session, stub, fake_time, request_timeout_s=0.2)
    assert await client.get_order(STORE, TOKEN, 1000) is not None
    assert client.counters(STORE).requests_sent == 2


async def test_connection_refused_raises_api_unavailable(
    session: aiohttp.ClientSession, fake_time: FakeTime
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = NuvemshopClient(
        session,
        api_url=f"http://127.0.0.1:{port}/v1",
        user_agent=USER_AGENT,
        max_retries=2,
        sleep=fake_time.sleep,
        clock=fake_time.clock,
    )
    with pytest.raises(ApiUnavailable, match="ClientConnectorError"):
        await client.get_order(STORE, TOKEN, 1)
    assert len(fake_time.sleeps) == 2


# --- the bucket


async def test_60_concurrent_calls_never_meet_a_429(
    stub: Stub, session: aiohttp.ClientSession
) -> None:
    stub.orders = _orders(60)
    stub.bucket = StubBucket(size=40, leak_per_s=40.0)
    client = make_client(session, stub, leak_per_s=40.0)
    started = time.monotonic()
    orders = await asyncio.gather(*(client.get_order(STORE, TOKEN, 1000 + n) for n in range(60)))
    assert all(order is not None for order in orders)
    assert stub.refused_429 == 0
    assert client.counters(STORE) == RequestCounters(requests_sent=60, rate_limited=0)
    assert time.monotonic() - started > 0.4  # those beyond the burst were paced, not refused


async def test_the_stub_does_refuse_an_unpaced_burst(
    stub: Stub, session: aiohttp.ClientSession, fake_time: FakeTime
) -> None:
    stub.orders = _orders(60)
    stub.bucket = StubBucket(size=40, leak_per_s=2.0)
    client = make_client(session, stub, fake_time, bucket_size=1000, leak_per_s=1000.0)
    results = await asyncio.gather(
        *(client.get_order(STORE, TOKEN, 1000 + n) for n in range(60)), return_exceptions=True
    )
    assert stub.refused_429 > 0
    assert client.counters(STORE).rate_limited == stub.refused_429
    assert sum(isinstance(result, dict) for result in results) >= 40


def test_bucket_adopts_the_stricter_server_view(fake_time: FakeTime) -> None:
    bucket = LeakyBucket(size=40, leak_per_s=2.0, clock=fake_time.clock, sleep=fake_time.sleep)
    assert bucket.delay() == 0
    bucket.observe(RateLimitHeaders.parse({"x-rate-limit-remaining": "39"}))
    assert bucket.delay() == 0
    bucket.observe(
        RateLimitHeaders.parse({"x-rate-limit-limit": "40", "x-rate-limit-remaining": "0"})
    )
    assert bucket.delay() == pytest.approx(1.0)  # two slots: the one we keep in reserve, then ours
    bucket.observe(
        RateLimitHeaders.parse({"x-rate-limit-limit": "10", "x-rate-limit-reset": "junk"})
    )
    assert bucket.size == 10


async def test_bucket_serves_waiting_callers_in_arrival_order(fake_time: FakeTime) -> None:
    bucket = LeakyBucket(size=2, leak_per_s=10.0, clock=fake_time.clock, sleep=fake_time.sleep)
    served: list[int] = []

    async def caller(n: int) -> None:
        await bucket.acquire()
        served.append(n)

    await asyncio.gather(*(caller(n) for n in range(8)))
    assert served == list(range(8))
    assert fake_time.now - 1000.0 == pytest.approx(0.7)  # one free slot, then 10/s


# --- webhooks and OAuth


async def test_webhooks_register_list_delete(stub: Stub, session: aiohttp.ClientSession) -> None:
    client = make_client(session, stub)
    for event in ("order/paid", "app/uninstalled"):
        await client.register_webhook(STORE, TOKEN, event, "https://x.example/hook")
    hooks = await client.list_webhooks(STORE, TOKEN)
    assert [hook["event"] for hook in hooks] == ["order/paid", "app/uninstalled"]
    assert await client.delete_webhook(STORE, TOKEN, 1) is True
    assert await client.delete_webhook(STORE, TOKEN, 1) is False
    assert [hook["id"] for hook in await client.list_webhooks(STORE, TOKEN)] == [2]


@pytest.mark.parametrize("code", ["code-str", "code-int"])
async def test_code_exchange_reads_user_id_as_string_or_integer(
    stub: Stub, session: aiohttp.ClientSession, code: str
) -> None:
    grant = await make_client(session, stub).exchange_code(stub.base_url, "4242", SECRET, code)
    assert grant == TokenGrant(
        access_token="fresh-token",
        store_id=123,
        scope=("read_orders", "read_customers", "read_products"),
    )
    assert "fresh-token" not in repr(grant)
    sent = stub.seen[-1]
    assert sent.path == "/apps/authorize/token"
    assert sent.headers["Content-Type"] == "application/json"
    assert b'"grant_type": "authorization_code"' in sent.body
    assert b'"client_id": "4242"' in sent.body


async def test_refused_code_raises_without_echoing_the_secret(
    stub: Stub, session: aiohttp.ClientSession
) -> None:
    client = make_client(session, stub)
    with pytest.raises(TokenExchangeError) as caught:
        await client.exchange_code(f"{stub.base_url}/", "4242", SECRET, "expired")
    assert "invalid_grant" in str(caught.value)
    assert "has expired" in str(caught.value)
    assert SECRET not in str(caught.value)


def test_an_answer_nested_past_the_parser_is_an_api_error_not_a_crash() -> None:
    from services.ingest.adapters.nuvemshop_shapes import ApiError, json_body
    from services.ingest.adapters.ratelimit import Reply

    deep = b'{"id": 1, "x": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    with pytest.raises(ApiError, match="nested too deeply"):
        json_body(Reply(status=200, headers={}, body=deep, next_url=None))


def test_lone_surrogates_in_an_answer_become_replacement_characters() -> None:
    from services.ingest.adapters.nuvemshop_shapes import json_body
    from services.ingest.adapters.ratelimit import Reply

    body = b'{"customer": {"name": "Ana \\ud800", "\\udfff": ["\\ud83d\\ude00"]}}'
    read = json_body(Reply(status=200, headers={}, body=body, next_url=None))
    assert read == {"customer": {"name": "Ana \ufffd", "\ufffd": ["\U0001f600"]}}
    assert json.dumps(read, ensure_ascii=False).encode()  # writable as UTF-8
