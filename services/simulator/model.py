"""Plain records the simulator state is made of: a store (token, suspension, scopes, webhooks,
bucket, counters, orders), an order record (the API JSON plus what the simulator needs to filter
and to build fulfillment orders: parsed timestamps and the order's shipments), a registered
webhook, and the event announced to the webhook dispatcher.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from services.simulator.bucket import LeakyBucket
from services.simulator.fulfillment import Shipment, render_fulfillments
from services.simulator.orders import Shape
from services.simulator.timefmt import format_ts


@dataclass(frozen=True)
class WebhookEvent:
    """An event to deliver: `{"store_id", "event", "id"}` to each of `urls`, or `payload` as the
    whole body (the LGPD webhooks, whose bodies differ)."""

    store_id: int
    event: str
    id: int
    urls: tuple[str, ...]
    payload: dict[str, Any] | None = None


@dataclass
class Webhook:
    """A webhook a store's app registered."""

    id: int
    event: str
    url: str
    created_at: dt.datetime
    updated_at: dt.datetime

    def to_json(self) -> dict[str, Any]:
        """The API representation."""
        return {
            "id": self.id,
            "event": self.event,
            "url": self.url,
            "created_at": format_ts(self.created_at),
            "updated_at": format_ts(self.updated_at),
        }


@dataclass
class Counters:
    """What the API served a store: every request, the 429s among them, counts by status, by
    route (`api-order`: one order, `api-orders`: a listing, ...) and the orders read with
    `aggregates=fulfillment_orders` (one per order served that way)."""

    requests: int = 0
    throttled: int = 0
    by_status: Counter[int] = field(default_factory=Counter)
    by_route: Counter[str] = field(default_factory=Counter)
    aggregate_reads: int = 0

    def record(self, status: int, route: str = "") -> None:
        """Count one response."""
        self.requests += 1
        self.by_status[status] += 1
        self.by_route[route] += 1
        if status == 429:
            self.throttled += 1

    def reset(self) -> None:
        """Back to zero."""
        self.requests, self.throttled, self.aggregate_reads = 0, 0, 0
        self.by_status.clear()
        self.by_route.clear()

    def to_json(self) -> dict[str, Any]:
        """`{"requests", "throttled", "served", "by_status", "by_route", "aggregate_reads"}`
        (served = requests − 429s)."""
        return {
            "requests": self.requests,
            "throttled": self.throttled,
            "served": self.requests - self.throttled,
            "by_status": {str(k): v for k, v in sorted(self.by_status.items())},
            "by_route": dict(sorted(self.by_route.items())),
            "aggregate_reads": self.aggregate_reads,
        }


@dataclass
class OrderRecord:
    """One order: its API body and the simulator's bookkeeping."""

    body: dict[str, Any]
    created: dt.datetime
    updated: dt.datetime
    shape: Shape
    shipments: list[Shipment]

    @property
    def id(self) -> int:
        """The order id."""
        return int(self.body["id"])

    def fulfillment_orders(self) -> list[dict[str, Any]]:
        """The `aggregates=fulfillment_orders` details of this order as it stands."""
        return render_fulfillments(self.body, self.shipments)


@dataclass
class Store:
    """A store with the app installed (or formerly installed)."""

    store_id: int
    scopes: str
    shape: Shape
    bucket: LeakyBucket
    token: str | None = None
    installed: bool = True
    suspended: bool = False
    # A test control: the store's API misbehaves ("403", "500", "invalid_json", "no_headers").
    fault: str | None = None
    counters: Counters = field(default_factory=Counters)
    webhooks: dict[int, Webhook] = field(default_factory=dict)
    orders: dict[int, OrderRecord] = field(default_factory=dict)
    customers: list[dict[str, Any]] = field(default_factory=list)
    next_number: int = 101
    custom_bucket: bool = False
    # Statuses the next order reads answer with instead of the order (a 5xx outage, say).
    failing_reads: list[int] = field(default_factory=list)
    # A test control (hostile payloads): per order id, top-level fields served in place of the
    # order's own, ``MISSING`` to leave one out. A value may hold ``orjson.Fragment`` (raw JSON
    # text: NaN, numbers past a double, nesting deeper than the writer allows, bad escapes).
    hostile: dict[int, dict[str, Any]] = field(default_factory=dict)
    _sorted: list[OrderRecord] | None = field(default=None, repr=False)

    def take_number(self, number: int | None = None) -> int:
        """The next order `number` (or the one asked for); numbers after it grow from there."""
        if number is None:
            number = self.next_number
        self.next_number = max(self.next_number, number) + 1
        return number

    def add(self, record: OrderRecord) -> None:
        """Store an order (invalidates the sorted view)."""
        self.orders[record.id] = record
        self._sorted = None

    def sorted_orders(self) -> list[OrderRecord]:
        """Orders by `created_at`, then id, ascending."""
        if self._sorted is None:
            self._sorted = sorted(self.orders.values(), key=lambda r: (r.created, r.id))
        return self._sorted

    def summary(self) -> dict[str, Any]:
        """What the control API reports about the store."""
        return {
            "store_id": self.store_id,
            "token": self.token,
            "installed": self.installed,
            "suspended": self.suspended,
            "scopes": self.scopes,
            "shape": self.shape,
            "orders": len(self.orders),
            "failing_reads": list(self.failing_reads),
            "webhooks": [hook.to_json() for hook in self.webhooks.values()],
            "counters": self.counters.to_json(),
        }
