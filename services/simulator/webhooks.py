"""Signed webhook delivery as Nuvemshop does it. The body is compact JSON
`{"store_id":123,"event":"order/paid","id":456}`, signed in `x-linkedstore-hmac-sha256` with the
lowercase hex HMAC-SHA256 of the raw bytes keyed by the app's client secret. A delivery succeeds on
a 2xx within the timeout (3 s); otherwise it is retried at once, then after 5, 10 and 15 minutes,
then at intervals growing ×1.4, for at most 18 attempts and only while the next one falls within 48
hours of the first (16 attempts in practice); `time_scale` multiplies every wait so tests can
compress the schedule. Faults on demand: extra duplicate deliveries, out-of-order delivery, and
dropped events. Deliveries run as background tasks owned by the dispatcher and are all logged.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import random
from collections.abc import Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from services.simulator.model import WebhookEvent
from services.simulator.state import SimState
from services.simulator.timefmt import utc_now

HMAC_HEADER = "x-linkedstore-hmac-sha256"
USER_AGENT = "Nuvemshop-Simulator-Webhooks/1.0"
MAX_ATTEMPTS = 18
WINDOW = dt.timedelta(hours=48)
FIRST_DELAYS = (0.0, 300.0, 600.0, 900.0)


def sign(body: bytes, secret: str) -> str:
    """Lowercase hex HMAC-SHA256 of the raw body, keyed with the app's client secret."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def webhook_body(store_id: int, event: str, entity_id: int) -> bytes:
    """The compact JSON body Nuvemshop posts."""
    return orjson.dumps({"store_id": store_id, "event": event, "id": entity_id})


async def send_webhook(  # noqa: PLR0917 - the documented positional signature
    session: aiohttp.ClientSession,
    url: str,
    secret: str,
    store_id: int,
    event: str,
    order_id: int,
    *,
    timeout_s: float = 3.0,
    body: bytes | None = None,
) -> int:
    """POST one signed webhook and return the HTTP status (redirects are not followed); `body`
    replaces the usual `{"store_id", "event", "id"}` (the LGPD webhooks).

    Network errors and timeouts propagate (`aiohttp.ClientError`, `TimeoutError`)."""
    if body is None:
        body = webhook_body(store_id, event, order_id)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        HMAC_HEADER: sign(body, secret),
    }
    async with session.post(
        url,
        data=body,
        headers=headers,
        timeout=aiohttp.ClientTimeout(total=timeout_s),
        allow_redirects=False,
    ) as response:
        await response.read()
        return response.status


def retry_delays(max_attempts: int = MAX_ATTEMPTS, window: dt.timedelta = WINDOW) -> list[float]:
    """Seconds to wait before attempts 2, 3, ...: 0, 300, 600, 900, then ×1.4 each, cut at
    `max_attempts` in all and at the `window` measured from the first attempt."""
    delays: list[float] = []
    elapsed = 0.0
    while len(delays) < max_attempts - 1:
        nxt = FIRST_DELAYS[len(delays)] if len(delays) < len(FIRST_DELAYS) else delays[-1] * 1.4
        if elapsed + nxt > window.total_seconds():
            break
        delays.append(nxt)
        elapsed += nxt
    return delays


@dataclass
class Attempt:
    """One POST of a delivery."""

    number: int
    at: dt.datetime
    offset_s: float
    status: int | None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """For the control API."""
        return {
            "number": self.number,
            "at": self.at.isoformat(),
            "offset_s": round(self.offset_s, 4),
            "status": self.status,
            "error": self.error,
        }


@dataclass
class Delivery:
    """One event to one URL (a duplicate is a delivery of its own, `copy` ≥ 1)."""

    id: int
    store_id: int
    event: str
    entity_id: int
    url: str
    copy: int = 0
    outcome: str = "pending"  # pending | delivered | failed | dropped | cancelled
    attempts: list[Attempt] = field(default_factory=list)
    payload: dict[str, Any] | None = None  # the whole body, when not the usual one

    def to_json(self) -> dict[str, Any]:
        """For the control API."""
        return {
            "id": self.id,
            "store_id": self.store_id,
            "event": self.event,
            "entity_id": self.entity_id,
            "url": self.url,
            "copy": self.copy,
            "outcome": self.outcome,
            "attempts": [attempt.to_json() for attempt in self.attempts],
            "payload": self.payload,
        }


@dataclass
class Faults:
    """Misbehaviour applied to events announced by state changes."""

    duplicates: int = 0
    shuffle: bool = False
    shuffle_window_s: float = 0.2
    drop_next: int = 0


class WebhookDispatcher:
    """Delivers the state's events; start() subscribes it, close() cancels what is in flight."""

    def __init__(
        self,
        state: SimState,
        *,
        time_scale: float = 1.0,
        timeout_s: float = 3.0,
        max_attempts: int = MAX_ATTEMPTS,
        seed: int | None = None,
    ) -> None:
        self.state = state
        self.time_scale = time_scale
        self.timeout_s = timeout_s
        self.delays = retry_delays(max_attempts)
        self.faults = Faults()
        self.log: list[Delivery] = []
        self._rng = random.Random(seed)  # noqa: S311 - ordering of test deliveries only
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        """Open the HTTP session and listen to the state."""
        self._loop = asyncio.get_running_loop()
        self._session = aiohttp.ClientSession()
        self.state.listeners.append(self.on_event)

    async def close(self) -> None:
        """Stop listening, cancel pending deliveries, close the session."""
        if self.on_event in self.state.listeners:
            self.state.listeners.remove(self.on_event)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for delivery in self.log:
            if delivery.outcome == "pending":
                delivery.outcome = "cancelled"
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def wait_idle(self, within_s: float | None = None) -> None:
        """Wait until no delivery is in flight (raises TimeoutError after `within_s`)."""
        async with asyncio.timeout(within_s):
            while self._tasks:
                await asyncio.wait(set(self._tasks))

    # --- entry points

    def on_event(self, event: WebhookEvent) -> None:
        """State listener: apply the configured faults and deliver (thread-safe)."""
        loop = self._loop
        if loop is None:
            return
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not loop:
            if not loop.is_closed():
                loop.call_soon_threadsafe(self.on_event, event)
            return
        if self.faults.drop_next > 0:
            self.faults.drop_next -= 1
            self._new(event, 0, "dropped")
            return
        delay = self._rng.uniform(0, self.faults.shuffle_window_s) if self.faults.shuffle else 0
        for delivery in self._new(event, self.faults.duplicates):
            self._spawn(self._run(delivery, 1, delay))

    def fire(
        self,
        store_id: int,
        event: str,
        entity_id: int,
        *,
        urls: Sequence[str] | None = None,
        duplicates: int = 0,
        drop: bool = False,
    ) -> list[Delivery]:
        """Deliver an event now (to `urls`, default the store's registrations for it)."""
        targets = tuple(urls) if urls is not None else self.state.urls_for(store_id, event)
        announced = WebhookEvent(store_id, event, entity_id, targets)
        if drop:
            return self._new(announced, 0, "dropped")
        deliveries = self._new(announced, duplicates)
        for delivery in deliveries:
            self._spawn(self._run(delivery, 1, 0))
        return deliveries

    def fire_batch(
        self,
        events: Iterable[tuple[int, str, int]],
        *,
        shuffle: bool = False,
        duplicates: int = 0,
    ) -> list[Delivery]:
        """Deliver several `(store_id, event, id)` events; with `shuffle` their first attempts
        go out one after another in a random order that differs from the given one."""
        deliveries: list[Delivery] = []
        for store_id, event, entity_id in events:
            urls = self.state.urls_for(store_id, event)
            deliveries.extend(self._new(WebhookEvent(store_id, event, entity_id, urls), duplicates))
        order = list(deliveries)
        if shuffle and len(order) > 1:
            self._rng.shuffle(order)
            if order == deliveries:
                order.reverse()
        self._spawn(self._run_in_sequence(order))
        return order

    # --- machinery

    def _new(
        self, event: WebhookEvent, duplicates: int, outcome: str = "pending"
    ) -> list[Delivery]:
        created = []
        for url in event.urls:
            for copy in range(duplicates + 1):
                delivery = Delivery(
                    len(self.log) + 1,
                    event.store_id,
                    event.event,
                    event.id,
                    url,
                    copy,
                    outcome,
                    payload=event.payload,
                )
                self.log.append(delivery)
                created.append(delivery)
        return created

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_in_sequence(self, deliveries: list[Delivery]) -> None:
        for delivery in deliveries:
            started = asyncio.get_running_loop().time()
            if not await self._attempt(delivery, 1, started):
                self._spawn(self._run(delivery, 2, 0, started))

    async def _run(
        self, delivery: Delivery, first: int, delay: float, started: float | None = None
    ) -> None:
        if delay:
            await asyncio.sleep(delay)
        if started is None:
            started = asyncio.get_running_loop().time()
        for number in range(first, len(self.delays) + 2):
            if number > 1:
                await asyncio.sleep(self.delays[number - 2] * self.time_scale)
            if await self._attempt(delivery, number, started):
                return
        delivery.outcome = "failed"

    async def _attempt(self, delivery: Delivery, number: int, started: float) -> bool:
        assert self._session is not None, "dispatcher not started"
        offset = asyncio.get_running_loop().time() - started
        status: int | None = None
        error = None
        try:
            status = await send_webhook(
                self._session,
                delivery.url,
                self.state.client_secret,
                delivery.store_id,
                delivery.event,
                delivery.entity_id,
                timeout_s=self.timeout_s,
                body=orjson.dumps(delivery.payload) if delivery.payload is not None else None,
            )
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        delivery.attempts.append(Attempt(number, utc_now(), offset, status, error))
        ok = status is not None and 200 <= status < 300
        if ok:
            delivery.outcome = "delivered"
        elif number > len(self.delays):
            delivery.outcome = "failed"
        return ok
