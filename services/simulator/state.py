"""In-memory world of the Nuvemshop simulator: the app's credentials, stores (access token,
suspension, registered webhooks, a leaky bucket, request counters) and their orders, plus the
OAuth codes awaiting exchange. Everything is synchronous and driven either by tests directly or by
the HTTP layer; order changes are announced to listeners (the webhook dispatcher) as
`WebhookEvent`s carrying the URLs registered for the event at that moment. Order creation and the
order lifecycle live in `OrderBook`, which this class extends.
"""

from __future__ import annotations

import datetime as dt
import random
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from services.simulator.bucket import LeakyBucket
from services.simulator.lgpd import lgpd_body
from services.simulator.model import Store, Webhook, WebhookEvent
from services.simulator.orderbook import OrderBook
from services.simulator.orders import DEFAULT_SHAPE, SHAPES, Shape
from services.simulator.timefmt import Clock, utc_now

DEFAULT_SCOPES = "read_orders,read_customers,read_products,write_webhooks"
CODE_TTL = dt.timedelta(minutes=5)


class InvalidGrantError(ValueError):
    """The authorization code or the client credentials were refused."""


@dataclass
class _Code:
    store_id: int
    expires_at: dt.datetime


@dataclass
class RateConfig:
    """Default bucket parameters for stores (the app overrides them at creation)."""

    enabled: bool = True
    size: int = 40
    leak_per_s: float = 2.0


class SimState(OrderBook):
    """The simulator's whole state. See the module docstring."""

    def __init__(
        self,
        *,
        clock: Clock = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
        seed: int | None = None,
        app_id: str = "1234",
        client_secret: str = "sim-client-secret",  # noqa: S107 - a simulator default
        redirect_url: str = "http://127.0.0.1:8080/oauth/nuvemshop/callback",
    ) -> None:
        super().__init__(clock=clock, rng=random.Random(seed))  # noqa: S311 - fake data only
        self.monotonic = monotonic
        self.app_id = app_id
        self.client_secret = client_secret
        self.redirect_url = redirect_url
        self.install_store_id: int | None = None
        self.rate = RateConfig()
        self._tokens: dict[str, int] = {}
        self._codes: dict[str, _Code] = {}
        self._next_webhook_id = 1
        self._next_new_store_id = 1_000_001
        self._exchanges = 0
        self.listeners: list[Callable[[WebhookEvent], None]] = []
        # The app's partner settings: the URL of each LGPD webhook (none until set).
        self.lgpd_urls: dict[str, str] = {}

    # --- stores and tokens

    def add_store(
        self,
        store_id: int | None = None,
        token: str | None = None,
        *,
        scopes: str = DEFAULT_SCOPES,
        shape: str = DEFAULT_SHAPE,
        bucket_size: int | None = None,
        leak_per_s: float | None = None,
    ) -> str:
        """Create an installed store and return its access token (generated unless given).

        `shape` is the order shape its API serves: `2025-03` (shipping only in the fulfillment
        orders) or `v1` (the legacy order-level shipping fields)."""
        if store_id is None:
            store_id = self.new_store_id()
        if store_id in self.stores:
            raise ValueError(f"store {store_id} already exists")
        bucket = LeakyBucket(
            size=bucket_size or self.rate.size,
            leak_per_s=leak_per_s or self.rate.leak_per_s,
            enabled=self.rate.enabled,
            now=self.monotonic,
        )
        store = Store(store_id=store_id, scopes=scopes, shape=_shape(shape), bucket=bucket)
        store.custom_bucket = bucket_size is not None or leak_per_s is not None
        self.stores[store_id] = store
        return self._issue_token(store, token)

    def new_store_id(self) -> int:
        """A store id not used yet (each call reserves a new one)."""
        while self._next_new_store_id in self.stores:
            self._next_new_store_id += 1
        self._next_new_store_id += 1
        return self._next_new_store_id - 1

    def _issue_token(self, store: Store, token: str | None = None) -> str:
        if store.token is not None:
            self._tokens.pop(store.token, None)
        new = token or secrets.token_hex(20)
        if new in self._tokens and self._tokens[new] != store.store_id:
            raise ValueError("that token belongs to another store")
        store.token, store.installed = new, True
        self._tokens[new] = store.store_id
        return new

    def authenticate(self, store_id: int, token: str) -> Store | None:
        """The store when `token` is its current access token, else None."""
        if self._tokens.get(token) != store_id:
            return None
        return self.stores.get(store_id)

    def revoke_token(self, store_id: int) -> None:
        """The merchant revoked access: the token answers 401 from now on."""
        store = self.store(store_id)
        if store.token is not None:
            self._tokens.pop(store.token, None)
        store.token = None

    def reinstall(self, store_id: int) -> str:
        """A new install of an existing store: a new token, the old one invalid."""
        return self._issue_token(self.store(store_id))

    def install(self, store_id: int) -> str:
        """Install the app in a store (created when unknown); a previous token is invalidated."""
        if store_id not in self.stores:
            return self.add_store(store_id)
        return self.reinstall(store_id)

    def uninstall(self, store_id: int) -> None:
        """The merchant uninstalled the app: token revoked, `app/uninstalled` sent, hooks gone."""
        store = self.store(store_id)
        self.revoke_token(store_id)
        store.installed = False
        # The reference: the `id` of an app/uninstalled webhook is the app's id.
        self.emit(store_id, "app/uninstalled", int(self.app_id) if self.app_id.isdigit() else 0)
        store.webhooks.clear()
        self.lgpd_request(store_id, "store/redact")

    def suspend(self, store_id: int, on: bool = True) -> None:
        """While suspended every API call answers 402 and no webhook is sent."""
        self.store(store_id).suspended = on

    def set_fault(self, store_id: int, fault: str | None) -> None:
        """Make the store's API misbehave (see ``FAULTS`` in ``api``), or behave again (None)."""
        self.store(store_id).fault = fault

    def configure_rate_limit(self, *, enabled: bool, size: int, leak_per_s: float) -> None:
        """Set the default bucket and empty every store's bucket; stores created with their own
        size or drain rate (a bigger plan) keep them."""
        self.rate = RateConfig(enabled=enabled, size=size, leak_per_s=leak_per_s)
        for store in self.stores.values():
            bucket = store.bucket
            if store.custom_bucket:
                bucket.reconfigure(size=bucket.size, leak_per_s=bucket.leak_per_s, enabled=enabled)
            else:
                bucket.reconfigure(size=size, leak_per_s=leak_per_s, enabled=enabled)

    def counters(self) -> dict[int, dict[str, Any]]:
        """Requests and 429s per store."""
        return {sid: store.counters.to_json() for sid, store in self.stores.items()}

    def reset_counters(self) -> None:
        """Zero every store's counters."""
        for store in self.stores.values():
            store.counters.reset()

    # --- OAuth

    def issue_code(self, store_id: int | None = None) -> tuple[str, int]:
        """The merchant approved the install: a single-use code valid for five minutes."""
        if store_id is None:
            store_id = self.install_store_id or self.new_store_id()
        code = secrets.token_hex(16)
        self._codes[code] = _Code(store_id, self.now() + CODE_TTL)
        return code, store_id

    def exchange_code(self, client_id: str, client_secret: str, code: str) -> dict[str, Any]:
        """Trade a code for a token (installing the store); raises InvalidGrantError."""
        if client_id != self.app_id or not secrets.compare_digest(
            client_secret.encode(), self.client_secret.encode()
        ):
            raise InvalidGrantError("invalid client credentials")
        grant = self._codes.pop(code, None)
        if grant is None:
            raise InvalidGrantError("the authorization code is invalid or was already used")
        if self.now() > grant.expires_at:
            raise InvalidGrantError("the authorization code has expired")
        token = self.install(grant.store_id)
        self._exchanges += 1
        user_id: int | str = grant.store_id if self._exchanges % 2 == 0 else str(grant.store_id)
        return {
            "access_token": token,
            "token_type": "bearer",
            "scope": self.stores[grant.store_id].scopes,
            "user_id": user_id,
        }

    # --- webhooks

    def register_webhook(self, store_id: int, event: str, url: str) -> Webhook:
        """Register `url` for `event` on the store."""
        store = self.store(store_id)
        now = self.now()
        hook = Webhook(self._next_webhook_id, event, url, now, now)
        self._next_webhook_id += 1
        store.webhooks[hook.id] = hook
        return hook

    def delete_webhook(self, store_id: int, webhook_id: int) -> bool:
        """Remove a webhook; False when the store has no such webhook."""
        return self.store(store_id).webhooks.pop(webhook_id, None) is not None

    def urls_for(self, store_id: int, event: str) -> tuple[str, ...]:
        """URLs the store registered for `event`, in registration order."""
        store = self.store(store_id)
        return tuple(hook.url for hook in store.webhooks.values() if hook.event == event)

    def emit(self, store_id: int, event: str, entity_id: int) -> WebhookEvent | None:
        """Announce an event to the listeners (nothing while the store is suspended)."""
        return self._announce(
            WebhookEvent(store_id, event, entity_id, self.urls_for(store_id, event))
        )

    def lgpd_request(
        self,
        store_id: int,
        event: str,
        *,
        customer_id: int | None = None,
        orders: Sequence[int] | None = None,
        data_request_id: int = 1,
    ) -> WebhookEvent | None:
        """Send an LGPD webhook to the URL the partner settings give for `event` (none when
        unset): `store/redact`, or `customers/redact`/`customers/data_request` about a buyer."""
        url = self.lgpd_urls.get(event)
        if url is None:
            return None
        body = lgpd_body(
            self.store(store_id),
            event,
            customer_id=customer_id,
            orders=orders,
            data_request_id=data_request_id,
        )
        return self._announce(WebhookEvent(store_id, event, 0, (url,), payload=body))

    def _announce(self, announced: WebhookEvent) -> WebhookEvent | None:
        if self.store(announced.store_id).suspended:
            return None
        for listener in list(self.listeners):
            listener(announced)
        return announced


def _shape(value: str) -> Shape:
    if value not in SHAPES:
        raise ValueError(f"unknown order shape {value!r}; use 'v1' or '2025-03'")
    return value


__all__ = [
    "DEFAULT_SCOPES",
    "InvalidGrantError",
    "RateConfig",
    "SimState",
    "Store",
    "Webhook",
    "WebhookEvent",
]
