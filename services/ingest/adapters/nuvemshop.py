"""The Nuvemshop (Tiendanube) API client ingest uses (its errors, filters and pages are in
``nuvemshop_shapes``, re-exported here): orders (one, or pages of up to 200 following
the ``Link`` header, split into narrower ``updated_at`` windows when a query would pass the
10,000-order reach), webhooks and the OAuth code exchange. Every order read asks for
``aggregates=fulfillment_orders`` unless told otherwise: on the 2025-03 API the shipping charged to
the buyer is only in the fulfillment orders. JSON numbers are read as ``Decimal`` (fulfillment
order amounts are numbers, and money is never a float here). Requests carry ``<token header>: bearer
<token>``, a ``User-Agent`` and, with a body, ``Content-Type: application/json``; they are paced by
one client-side leaky bucket per store (``ratelimit.LeakyBucket``) so the server never has to
refuse them. A 429 waits and retries the same request; 5xx, connection errors and timeouts retry
with exponential backoff and jitter, then raise ``ApiUnavailable``. 401, 402 and other 4xx raise
``CredentialsRevoked``, ``StoreSuspended`` and ``ApiError``; all derive from ``NuvemshopError``.
Tokens, the client secret and codes are never logged; the secret never reaches an exception.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Final, Unpack

import aiohttp
from yarl import URL

from services.ingest.adapters.nuvemshop_shapes import (
    MAX_PER_PAGE,
    MAX_REACH,
    ORDER_AGGREGATES,
    ApiError,
    ApiUnavailable,
    CredentialsRevoked,
    NuvemshopError,
    OrderQuery,
    Page,
    Pages,
    StoreSuspended,
    TokenExchangeError,
    TokenGrant,
    WindowFilters,
    comma_list,
    format_timestamp,
    json_body,
    midpoint,
    order_params,
    parse_scopes,
    parse_store_id,
    refusal_text,
    require_aware,
    total_count_of,
)
from services.ingest.adapters.ratelimit import (
    AnswerHook,
    Clock,
    PacedSender,
    Reply,
    RequestCounters,
    RetriesExhausted,
    Sleep,
)
from shared.logging import get_logger

__all__ = [
    "MAX_PER_PAGE",
    "MAX_REACH",
    "ORDER_AGGREGATES",
    "ApiError",
    "ApiUnavailable",
    "CredentialsRevoked",
    "NuvemshopClient",
    "NuvemshopError",
    "OrderQuery",
    "Pages",
    "RequestCounters",
    "StoreSuspended",
    "TokenExchangeError",
    "TokenGrant",
    "WindowFilters",
    "format_timestamp",
]

_MIN_WINDOW: Final = timedelta(seconds=2)

_log = get_logger(__name__)


class NuvemshopClient:
    """One per process; share it across stores (buckets and counters are kept per store)."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        api_url: str,
        token_header: str = "Authentication",  # noqa: S107 - a header name
        user_agent: str,
        bucket_size: int = 40,
        leak_per_s: float = 2.0,
        max_retries: int = 5,
        request_timeout_s: float = 10.0,
        sleep: Sleep = asyncio.sleep,
        clock: Clock = time.monotonic,
        on_answer: AnswerHook | None = None,
    ) -> None:
        self._api_url = URL(api_url.rstrip("/"))
        self._token_header = token_header
        self._user_agent = user_agent
        self._sender = PacedSender(
            session,
            bucket_size=bucket_size,
            leak_per_s=leak_per_s,
            max_retries=max_retries,
            timeout_s=request_timeout_s,
            sleep=sleep,
            clock=clock,
            on_answer=on_answer,
        )

    # --- orders

    async def get_order(
        self,
        store_id: int,
        token: str,
        order_id: int,
        *,
        aggregates: str | Sequence[str] | None = ORDER_AGGREGATES,
    ) -> dict[str, Any] | None:
        """One order (with its fulfillment orders), or None when the store has none such (404)."""
        url = self._store_url(store_id, f"orders/{order_id}")
        if aggregates is not None:
            url = url.with_query(aggregates=comma_list(aggregates))
        reply = await self._store_request(store_id, token, "GET", url)
        if reply.status == 404:
            return None
        self._raise_for_status(store_id, reply)
        return self._json_object(reply)

    def iter_orders(
        self,
        store_id: int,
        token: str,
        *,
        payment_status: str | None = None,
        status: str | None = None,
        updated_at_min: datetime | None = None,
        updated_at_max: datetime | None = None,
        created_at_min: datetime | None = None,
        created_at_max: datetime | None = None,
        since_id: int | None = None,
        fields: str | Sequence[str] | None = None,
        aggregates: str | Sequence[str] | None = ORDER_AGGREGATES,
        per_page: int = MAX_PER_PAGE,
    ) -> Pages:
        """Pages of orders matching the filters (with their fulfillment orders unless
        ``aggregates`` says otherwise); ``async for page in ...``. Bounds are inclusive."""
        params = order_params(
            per_page,
            {
                "payment_status": payment_status,
                "status": status,
                "updated_at_min": updated_at_min,
                "updated_at_max": updated_at_max,
                "created_at_min": created_at_min,
                "created_at_max": created_at_max,
                "since_id": since_id,
                "fields": fields,
                "aggregates": aggregates,
            },
        )
        url = self._store_url(store_id, "orders").with_query(params)
        return Pages(lambda page_url: self._fetch_page(store_id, token, page_url), url)

    async def count_orders(self, store_id: int, token: str, **query: Unpack[OrderQuery]) -> int:
        """How many orders match (the ``x-total-count`` of a one-order page)."""
        query["per_page"] = 1
        query["fields"] = "id"
        query["aggregates"] = None  # a count needs no fulfillment orders
        pages = self.iter_orders(store_id, token, **query)
        await anext(pages, None)
        if pages.total_count is None:
            raise ApiError(200, "the order listing came without x-total-count")
        return pages.total_count

    async def iter_orders_windowed(
        self,
        store_id: int,
        token: str,
        *,
        start: datetime,
        end: datetime,
        max_per_window: int = MAX_REACH,
        **filters: Unpack[WindowFilters],
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Pages of the orders updated in [start, end], in windows that each stay within reach.

        The first page of a window doubles as its count: when ``x-total-count`` exceeds
        ``max_per_window`` the page is dropped and both halves are listed, earlier half first.
        Adjacent windows share their boundary second (the API's bounds are inclusive), so an
        order updated exactly then may come twice; nothing falls between two windows.
        """
        require_aware(start)
        require_aware(end)
        if end <= start:
            return
        pages = self.iter_orders(
            store_id, token, updated_at_min=start, updated_at_max=end, **filters
        )
        first = await anext(pages, None)
        total = pages.total_count
        if total is None and first is not None:
            # Without the count nothing tells whether this window is past the API's reach (and
            # without it, a missing Link would end the listing early): refuse, do not guess.
            raise ApiError(200, "the order listing came without x-total-count")
        if total is not None and total > max_per_window:
            if end - start >= _MIN_WINDOW:
                mid = midpoint(start, end)
                _log.info("nuvemshop.window_split", store_id=store_id, total=total)
                for low, high in ((start, mid), (mid, end)):
                    async for page in self.iter_orders_windowed(
                        store_id,
                        token,
                        start=low,
                        end=high,
                        max_per_window=max_per_window,
                        **filters,
                    ):
                        yield page
                return
            _log.warning("nuvemshop.window_unsplittable", store_id=store_id, total=total)
        if first is None:
            return
        yield first
        async for page in pages:
            yield page

    # --- webhooks

    async def register_webhook(
        self, store_id: int, token: str, event: str, url: str
    ) -> dict[str, Any]:
        """Subscribe ``url`` (HTTPS in production) to ``event``; the created webhook."""
        target = self._store_url(store_id, "webhooks")
        reply = await self._store_request(
            store_id, token, "POST", target, body={"event": event, "url": url}
        )
        self._raise_for_status(store_id, reply)
        return self._json_object(reply)

    async def list_webhooks(self, store_id: int, token: str) -> list[dict[str, Any]]:
        """Every webhook the app has on the store (all pages)."""
        pages = Pages(
            lambda page_url: self._fetch_page(store_id, token, page_url),
            self._store_url(store_id, "webhooks"),
        )
        return [hook async for page in pages for hook in page]

    async def delete_webhook(self, store_id: int, token: str, webhook_id: int) -> bool:
        """Delete one webhook; False when it was already gone (404), so deleting is idempotent."""
        target = self._store_url(store_id, f"webhooks/{webhook_id}")
        reply = await self._store_request(store_id, token, "DELETE", target)
        if reply.status == 404:
            return False
        self._raise_for_status(store_id, reply)
        return True

    # --- OAuth

    async def exchange_code(
        self, auth_url: str, app_id: str, client_secret: str, code: str
    ) -> TokenGrant:
        """Trade an authorization code for the store's access token."""
        target = URL(auth_url.rstrip("/")) / "apps" / "authorize" / "token"
        body = {
            "client_id": app_id,
            "client_secret": client_secret,
            "grant_type": "authorization_code",
            "code": code,
        }
        reply = await self._send("POST", target, None, body, store_id=None)
        payload = self._json_or_none(reply)
        # Some OAuth servers refuse with 200 and an "error" member: judge by content, not status.
        if reply.status < 300 and isinstance(payload, dict):
            token = payload.get("access_token")
            if isinstance(token, str) and token:
                return TokenGrant(
                    access_token=token,
                    store_id=parse_store_id(payload.get("user_id")),
                    scope=parse_scopes(payload.get("scope")),
                )
        detail = refusal_text(reply, payload)
        if client_secret:
            detail = detail.replace(client_secret, "***")
        raise TokenExchangeError(f"code exchange refused ({reply.status}): {detail}")

    # --- counters

    def counters(self, store_id: int) -> RequestCounters:
        """Requests sent to one store and 429s received from it."""
        return self._sender.counters(store_id)

    # --- internals: URLs, status, bodies

    def _store_url(self, store_id: int, path: str) -> URL:
        return URL(f"{self._api_url}/{store_id}/{path}")

    def _raise_for_status(self, store_id: int, reply: Reply) -> None:
        if 200 <= reply.status < 300:
            return
        if reply.status == 401:
            raise CredentialsRevoked(store_id)
        if reply.status == 402:
            raise StoreSuspended(store_id)
        raise ApiError(reply.status, reply.text)

    @staticmethod
    def _json_object(reply: Reply) -> dict[str, Any]:
        payload = json_body(reply)
        if not isinstance(payload, dict):
            raise ApiError(reply.status, f"expected a JSON object: {reply.text}")
        return payload

    @staticmethod
    def _json_or_none(reply: Reply) -> Any:
        try:
            return json_body(reply)
        except ApiError:
            return None

    async def _fetch_page(self, store_id: int, token: str, url: URL) -> Page:
        reply = await self._store_request(store_id, token, "GET", url)
        # Past the last page the API may answer 404 "Last page is N" instead of an empty list.
        if reply.status == 404 and "last page" in reply.text.lower():
            return Page(items=[], next_url=None, total_count=total_count_of(reply) or 0)
        self._raise_for_status(store_id, reply)
        payload = json_body(reply)
        if not isinstance(payload, list):
            raise ApiError(reply.status, f"expected a JSON list: {reply.text}")
        items = [item for item in payload if isinstance(item, dict)]
        return Page(items=items, next_url=reply.next_url, total_count=total_count_of(reply))

    # --- internals: sending

    async def _store_request(
        self,
        store_id: int,
        token: str,
        method: str,
        url: URL,
        *,
        body: Mapping[str, Any] | None = None,
    ) -> Reply:
        if url.origin() != self._api_url.origin():
            # A Link pointing elsewhere must not receive the store's token.
            raise NuvemshopError(f"refusing to send a store token to {url.origin()}")
        return await self._send(method, url, token, body, store_id=store_id)

    async def _send(
        self,
        method: str,
        url: URL,
        token: str | None,
        body: Mapping[str, Any] | None,
        *,
        store_id: int | None,
    ) -> Reply:
        headers = {"User-Agent": self._user_agent, "Accept": "application/json"}
        if token is not None:
            headers[self._token_header] = f"bearer {token}"
        if body is not None:
            headers["Content-Type"] = "application/json"
        data = json.dumps(body).encode() if body is not None else None
        try:
            return await self._sender.send(
                method, url, headers=headers, data=data, store_id=store_id
            )
        except RetriesExhausted as exc:
            raise ApiUnavailable(str(exc)) from exc
