"""Delivery of Nuvemshop API requests: pacing per store, and retries. ``LeakyBucket`` models the
server's bucket for one store (a burst of ``size`` requests draining at ``leak_per_s``) so that a
request waits here instead of being refused with 429 there; it keeps the time at which the bucket
will be empty (each request pours ``1 / leak_per_s`` seconds in), every response's
``x-rate-limit-*`` headers pull it towards the server's view whenever that view is stricter
(another process using the same token, network jitter), and a 429 pauses the store until the
server says its bucket is empty. Callers for one store queue on an ``asyncio.Lock``, which serves
waiters in arrival order. ``PacedSender`` sends through those buckets and retries 429, 5xx,
connection errors and timeouts (exponential backoff with jitter) without knowing the API's paths;
``nuvemshop.py`` gives the answers their meaning.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Final

import aiohttp
from yarl import URL

from shared.logging import get_logger

__all__ = [
    "Clock",
    "LeakyBucket",
    "PacedSender",
    "RateLimitHeaders",
    "Reply",
    "RequestCounters",
    "RetriesExhausted",
    "Sleep",
]

_BACKOFF_BASE_S: Final = 0.5
_BACKOFF_CAP_S: Final = 30.0

_log = get_logger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


def _number(headers: Mapping[str, str], name: str) -> float | None:
    raw = headers.get(name)
    if raw is None:
        return None
    try:
        value = float(raw.strip())
    except ValueError:
        return None
    # A negative or non-finite figure cannot describe a bucket; ignore it rather than trust it.
    return value if 0 <= value < float("inf") else None


@dataclass(frozen=True, slots=True)
class RateLimitHeaders:
    """The server's ``x-rate-limit-*`` headers of one response; None where absent or unreadable."""

    limit: int | None = None
    remaining: int | None = None
    reset_s: float | None = None

    @classmethod
    def parse(cls, headers: Mapping[str, str]) -> RateLimitHeaders:
        """Read the three headers defensively (any of them may be missing or malformed)."""
        limit = _number(headers, "x-rate-limit-limit")
        remaining = _number(headers, "x-rate-limit-remaining")
        reset_ms = _number(headers, "x-rate-limit-reset")
        return cls(
            limit=int(limit) if limit is not None else None,
            remaining=int(remaining) if remaining is not None else None,
            reset_s=reset_ms / 1000 if reset_ms is not None else None,
        )


class LeakyBucket:
    """One store's bucket as this client sees it.

    A few slots stay unused: the server counts a request when it arrives, and arrivals jitter
    against the moments we released them (a busy event loop sends a burst late and squeezes it
    against the next paced request), so a bucket filled to the brim here could overflow there.
    The reserve covers ``jitter_s`` of drain, at least one slot: one of 40 at 2/s.
    """

    def __init__(
        self,
        *,
        size: int,
        leak_per_s: float,
        clock: Clock,
        sleep: Sleep,
        jitter_s: float = 0.5,
    ) -> None:
        if size < 1 or leak_per_s <= 0:
            raise ValueError("a bucket needs size >= 1 and leak_per_s > 0")
        self._size = size
        self._rate = leak_per_s
        self._jitter_s = jitter_s
        self._clock = clock
        self._sleep = sleep
        self._empty_at = clock()
        self._paused_until = self._empty_at
        self._lock = asyncio.Lock()

    @property
    def size(self) -> int:
        """The bucket size in use (the configured one, or the server's when that is smaller)."""
        return self._size

    def level(self) -> float:
        """How many requests are in the bucket now, by this model."""
        return max(0.0, self._empty_at - self._clock()) * self._rate

    def delay(self) -> float:
        """Seconds to wait before one more request fits (0 when it fits now)."""
        now = self._clock()
        reserve = min(self._size - 1, max(1, math.ceil(self._jitter_s * self._rate)))
        backlog_allowed = (self._size - reserve - 1) / self._rate
        return max(0.0, self._paused_until - now, self._empty_at - now - backlog_allowed)

    async def acquire(self) -> None:
        """Wait for room, in arrival order, then pour one request in."""
        async with self._lock:
            # Re-check after every sleep: a response may have made the view stricter meanwhile.
            while (wait := self.delay()) > 0:
                await self._sleep(wait)
            self._empty_at = max(self._empty_at, self._clock()) + 1 / self._rate

    def observe(self, headers: RateLimitHeaders) -> None:
        """Adopt the server's view of the bucket where it is stricter than ours."""
        if headers.limit is not None and 0 < headers.limit < self._size:
            self._size = headers.limit
        level = 0.0
        if headers.remaining is not None:
            level = max(level, float(self._size - headers.remaining))
        if headers.reset_s is not None:
            # A reset longer than our full drain means the server drains slower than we think;
            # counting it as a full bucket is strict enough and keeps a bogus header from stalling us.
            level = max(level, min(headers.reset_s * self._rate, float(self._size)))
        self._empty_at = max(self._empty_at, self._clock() + level / self._rate)

    def throttled(self, headers: RateLimitHeaders) -> float:
        """The server refused with 429: pause the store until its bucket is empty.

        Returns the pause in seconds: the server's ``x-rate-limit-reset`` when given, else the time
        a full bucket takes to drain. A 429 means something else shares the bucket, so waiting
        for a whole drain (not one slot) avoids a second refusal.
        """
        self.observe(headers)
        full_drain = self._size / self._rate
        if headers.reset_s is None:
            pause = full_drain
        else:
            pause = min(max(headers.reset_s, 1 / self._rate), 2 * full_drain)
        self._paused_until = max(self._paused_until, self._clock() + pause)
        return pause


class RetriesExhausted(Exception):  # noqa: N818 -- a state, translated by the caller
    """Every attempt met a 429, a 5xx, a connection error or a timeout; the text says the last."""


@dataclass(frozen=True, slots=True)
class RequestCounters:
    """What was sent to one store since the sender was created."""

    requests_sent: int = 0
    rate_limited: int = 0


@dataclass(frozen=True, slots=True)
class Reply:
    """One HTTP answer, read in full (the connection is already back in the pool)."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    next_url: URL | None

    @property
    def text(self) -> str:
        """The body as text (invalid UTF-8 replaced, never raising)."""
        return self.body.decode("utf-8", errors="replace")


def _next_link(response: aiohttp.ClientResponse) -> URL | None:
    link = response.links.get("next")
    target = link.get("url") if link is not None else None
    return target if isinstance(target, URL) else None


# Told of every attempt: the store (None for the OAuth host) and the HTTP status (None: no answer).
AnswerHook = Callable[[int | None, int | None], None]


class PacedSender:
    """Sends requests, paced per store and retried; keeps each store's bucket and counters."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        bucket_size: int,
        leak_per_s: float,
        max_retries: int,
        timeout_s: float,
        sleep: Sleep,
        clock: Clock,
        on_answer: AnswerHook | None = None,
    ) -> None:
        self._session = session
        self._on_answer = on_answer
        self._bucket_size = bucket_size
        self._leak_per_s = leak_per_s
        self._max_retries = max_retries
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._sleep = sleep
        self._clock = clock
        self._buckets: dict[int, LeakyBucket] = {}
        self._counters: dict[int, RequestCounters] = {}
        # Jitter only spreads retries apart; it needs no cryptographic quality.
        self._jitter = random.Random()  # noqa: S311

    def counters(self, store_id: int) -> RequestCounters:
        """Requests sent to one store and 429s received from it."""
        return self._counters.get(store_id, RequestCounters())

    async def send(
        self,
        method: str,
        url: URL,
        *,
        headers: Mapping[str, str],
        data: bytes | None,
        store_id: int | None,
    ) -> Reply:
        """Send until an answer other than 429/5xx arrives; ``RetriesExhausted`` when none does.

        With a store, every attempt goes through its bucket and a 429 waits inside the bucket (so
        the store's other callers wait too); without one (the OAuth host), a 429 backs off like a
        5xx.
        """
        bucket = self._bucket(store_id) if store_id is not None else None
        reason = ""
        for attempt in range(1, self._max_retries + 2):
            log = _log.bind(store_id=store_id, method=method, path=url.path, attempt=attempt)
            if bucket is not None and store_id is not None:
                await bucket.acquire()
                self._count(store_id, sent=1)
            outcome = await self._send_once(method, url, headers, data)
            if self._on_answer is not None:
                self._on_answer(store_id, None if isinstance(outcome, str) else outcome.status)
            if isinstance(outcome, str):
                reason = outcome
            else:
                log.debug("nuvemshop.response", status=outcome.status)
                limits = RateLimitHeaders.parse(outcome.headers)
                if outcome.status == 429 and bucket is not None and store_id is not None:
                    self._count(store_id, rate_limited=1)
                    pause = bucket.throttled(limits)
                    log.warning("nuvemshop.rate_limited", status=429, pause_s=round(pause, 3))
                    reason = "HTTP 429"
                    continue
                if bucket is not None:
                    bucket.observe(limits)
                if outcome.status != 429 and outcome.status < 500:
                    return outcome
                reason = f"HTTP {outcome.status}"
            log.warning("nuvemshop.retry", reason=reason)
            if attempt <= self._max_retries:
                await self._sleep(self._backoff(attempt))
        raise RetriesExhausted(
            f"{method} {url.path}: gave up after {self._max_retries + 1} attempts ({reason})"
        )

    def _bucket(self, store_id: int) -> LeakyBucket:
        bucket = self._buckets.get(store_id)
        if bucket is None:
            bucket = LeakyBucket(
                size=self._bucket_size,
                leak_per_s=self._leak_per_s,
                clock=self._clock,
                sleep=self._sleep,
            )
            self._buckets[store_id] = bucket
        return bucket

    def _count(self, store_id: int, *, sent: int = 0, rate_limited: int = 0) -> None:
        now = self.counters(store_id)
        self._counters[store_id] = RequestCounters(
            requests_sent=now.requests_sent + sent, rate_limited=now.rate_limited + rate_limited
        )

    async def _send_once(
        self, method: str, url: URL, headers: Mapping[str, str], data: bytes | None
    ) -> Reply | str:
        """One exchange: the reply, or a short reason when no reply came."""
        try:
            # No redirects: aiohttp would forward a custom token header to wherever they point.
            async with self._session.request(
                method,
                url,
                headers=headers,
                data=data,
                timeout=self._timeout,
                allow_redirects=False,
            ) as response:
                body = await response.read()
                return Reply(response.status, response.headers, body, _next_link(response))
        except TimeoutError:
            return "timeout"
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            return f"{type(exc).__name__}: {exc}"

    def _backoff(self, attempt: int) -> float:
        # "Equal jitter": half the exponential delay is kept and half is random, so concurrent
        # retries spread out while none of them comes back at once.
        delay = min(_BACKOFF_CAP_S, _BACKOFF_BASE_S * 2.0 ** (attempt - 1))
        return delay / 2 + self._jitter.uniform(0, delay / 2)
