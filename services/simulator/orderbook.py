"""Orders of the simulated stores: creation (one realistic order, or thousands at once for a
benchmark) and the lifecycle a merchant drives — payment, cancellation, void, refund, edits. Order
ids grow across the simulator, `number` grows per store, line ids exceed 32 bits. Every change
moves `updated_at` to the clock's time and announces the matching webhook event through `emit`,
unless `notify=False` (the way to "lose" a webhook so that only polling can find the order).
"""

from __future__ import annotations

import datetime as dt
import random
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any, Literal

import orjson

from services.simulator.fakedata import (
    CATALOGUE,
    GATEWAYS,
    SHIPPING_OPTIONS,
    apply_customer_spec,
    catalogue_line,
    make_customer,
)
from services.simulator.fulfillment import Shipment, ulid
from services.simulator.model import OrderRecord, Store, WebhookEvent
from services.simulator.orders import Draft, Shape, money, render, subtotal_of, to_decimal
from services.simulator.timefmt import Clock, format_ts, to_utc_second

Amount = Decimal | int | str
LINE_ID_BASE = 2**32 + 1_069_053_829
REUSE_KEYS = ("id", "identification", "email")  # a buyer seen before keeps their customer id
PAID_STATUSES = frozenset(("paid", "partially_refunded"))  # statuses that carry a `paid_at`
LINE_KEYS = frozenset(("name", "price", "quantity", "sku", "barcode", "product_id", "variant_id"))


def _copy(body: dict[str, Any]) -> dict[str, Any]:
    """A detached copy of a JSON body (faster than deepcopy)."""
    copied: dict[str, Any] = orjson.loads(orjson.dumps(body))
    return copied


def _paid_moment(
    status: str, paid_at: dt.datetime | None, created: dt.datetime
) -> dt.datetime | None:
    """When an order of `status` was paid: `paid_at`, else its creation; None if not paid."""
    if status not in PAID_STATUSES:
        return None
    return to_utc_second(paid_at) if paid_at else created


class UnknownStoreError(LookupError):
    """No such store."""


class UnknownOrderError(LookupError):
    """No such order in that store."""


class OrderBook(ABC):
    """Stores and their orders; `SimState` adds tokens, OAuth and webhooks on top."""

    def __init__(self, *, clock: Clock, rng: random.Random) -> None:
        self.clock = clock
        self.rng = rng
        self.stores: dict[int, Store] = {}
        self._next_order_id = 1_000_000_001
        self._next_line_id = LINE_ID_BASE
        self._next_customer_id = 105_799_009

    def now(self) -> dt.datetime:
        """The injected clock, normalised to UTC whole seconds."""
        return to_utc_second(self.clock())

    @abstractmethod
    def emit(self, store_id: int, event: str, entity_id: int) -> WebhookEvent | None:
        """Announce an event (implemented by `SimState`)."""

    def store(self, store_id: int) -> Store:
        """The store, or UnknownStoreError."""
        try:
            return self.stores[store_id]
        except KeyError:
            raise UnknownStoreError(f"no store {store_id}") from None

    def record(self, store_id: int, order_id: int) -> OrderRecord:
        """The order record, or UnknownOrderError."""
        try:
            return self.store(store_id).orders[order_id]
        except KeyError:
            raise UnknownOrderError(f"no order {order_id} in store {store_id}") from None

    def get_order(self, store_id: int, order_id: int) -> dict[str, Any]:
        """A copy of the order's API body."""
        return _copy(self.record(store_id, order_id).body)

    # --- creation

    def _customer(self, store: Store, spec: Mapping[str, Any] | None) -> dict[str, Any]:
        if spec is None and store.customers and self.rng.random() < 0.25:
            return self.rng.choice(store.customers)
        if spec is not None:
            for known in store.customers:
                if any(key in spec and known.get(key) == spec[key] for key in REUSE_KEYS):
                    return {**known, **spec}
        self._next_customer_id += 1
        customer = make_customer(self.rng, self._next_customer_id)
        if spec is not None:
            customer = apply_customer_spec(customer, spec)
        store.customers.append(customer)
        return customer

    def _lines(self, specs: Sequence[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
        if specs is None:
            chosen = self.rng.sample(range(len(CATALOGUE)), self.rng.choice((1, 1, 2, 3)))
            specs = [catalogue_line(self.rng, index) for index in chosen]
        lines = []
        for spec in specs:
            complete = spec.keys() >= LINE_KEYS
            line = dict(spec) if complete else {**catalogue_line(self.rng), **spec}
            line["price"] = to_decimal(line["price"])
            line["quantity"] = int(line["quantity"])
            line.setdefault("id", self._next_line_id)
            self._next_line_id += self.rng.randrange(1, 50)
            lines.append(line)
        return lines

    def _shipments(
        self,
        lines: list[dict[str, Any]],
        shipping: Amount | None,
        shipments: Sequence[Amount] | None,
        shipping_owner: Amount | None,
    ) -> list[Shipment]:
        """The order's fulfillment orders: one (a random option, or `shipping`), or one per
        amount of `shipments`, the lines dealt out among them in turn."""
        if shipments is not None:
            costs = [to_decimal(cost) for cost in shipments]
            if not 1 <= len(costs) <= len(lines):
                raise ValueError("shipments: between one and as many as the order has lines")
            option = (costs[0], Decimal(0), "Correios", "PAC")
        else:
            option = self.rng.choice(SHIPPING_OPTIONS)
            if shipping is not None:
                option = (to_decimal(shipping), Decimal(0), "Correios", "PAC")
            costs = [option[0]]
        owner = to_decimal(shipping_owner) if shipping_owner is not None else option[1]
        made = [
            Shipment(
                id=ulid(self.rng.getrandbits(110)),
                consumer_cost=cost,
                merchant_cost=owner if index == 0 else Decimal(0),
                carrier=option[2],
                option=option[3],
            )
            for index, cost in enumerate(costs)
        ]
        for index in range(len(lines)):
            made[index % len(made)].lines.append(index)
        return made

    def _payment(
        self,
        lines: list[dict[str, Any]],
        payment_method: str | None,
        installments: int | None,
        discount: Amount | None,
    ) -> tuple[tuple[str, str, str | None, str | None, int], int, Decimal]:
        """The gateway, the number of installments and the discount (5% off by pix)."""
        gateways = [g for g in GATEWAYS if payment_method in (None, g[2])] or list(GATEWAYS)
        gateway = self.rng.choice(gateways)
        count = installments if installments is not None else self.rng.randint(1, gateway[4])
        if discount is not None:
            return gateway, count, to_decimal(discount)
        pix_off = (subtotal_of(lines) * Decimal("0.05")).quantize(Decimal("0.01"))
        return gateway, count, pix_off if gateway[2] == "pix" else Decimal(0)

    def _destination(
        self, customer: dict[str, Any], spec: Mapping[str, Any] | Literal[False] | None
    ) -> dict[str, Any] | None:
        """The shipping address: the buyer's, with `spec`'s parts over it; False for none."""
        if spec is False:
            return None
        return {**customer["address"], **(spec or {})}

    def add_order(
        self,
        store_id: int,
        *,
        paid: bool = False,
        created_at: dt.datetime | None = None,
        paid_at: dt.datetime | None = None,
        customer: Mapping[str, Any] | None = None,
        products: Sequence[Mapping[str, Any]] | None = None,
        shipping: Amount | None = None,
        shipments: Sequence[Amount] | None = None,
        shipping_owner: Amount | None = None,
        shipping_address: Mapping[str, Any] | Literal[False] | None = None,
        discount: Amount | None = None,
        payment_method: str | None = None,
        installments: int | None = None,
        payment_status: str | None = None,
        currency: str = "BRL",
        number: int | None = None,
        shape: Shape | None = None,
        quirks: bool = True,
        notify: bool = True,
        detached: bool = True,
    ) -> dict[str, Any]:
        """Create one order and return its API body: a copy, or with `detached=False` the live
        stored dict (faster; editing it edits the order).

        `customer` and each of `products` are partial overrides over generated data (a product
        needs at least `name` and `price`; a customer's `address` is the billing address);
        `shipping_address` overrides parts of the buyer's address for delivery, or is False for
        an order without one; `shipments` splits the order into fulfillment orders, one per
        consumer shipping cost. Announces `order/created`, and `order/paid` too when created
        paid, unless `notify` is False.
        """
        store = self.store(store_id)
        created = to_utc_second(created_at) if created_at else self.now()
        lines = self._lines(products)
        gateway, count, off = self._payment(lines, payment_method, installments, discount)
        status = payment_status or ("paid" if paid else "pending")
        buyer = self._customer(store, customer)
        draft = Draft(
            order_id=self._next_order_id,
            store_id=store_id,
            number=store.take_number(number),
            created_at=created,
            customer=buyer,
            lines=lines,
            shipments=self._shipments(lines, shipping, shipments, shipping_owner),
            discount=off,
            gateway=gateway,
            installments=count,
            destination=self._destination(buyer, shipping_address),
            currency=currency,
            payment_status=status,
            paid_at=_paid_moment(status, paid_at, created),
            shape=shape or store.shape,
            quirks=quirks,
        )
        body = self._keep(store, draft, notify=notify)
        return _copy(body) if detached else body

    def _keep(self, store: Store, draft: Draft, *, notify: bool) -> dict[str, Any]:
        """Render and store the drafted order; announce it (created, and paid) when `notify`."""
        self._next_order_id += self.rng.randrange(1, 7)
        body = render(self.rng, draft)
        record = OrderRecord(body, draft.created_at, draft.created_at, draft.shape, draft.shipments)
        store.add(record)
        if notify:
            self.emit(draft.store_id, "order/created", record.id)
            if draft.payment_status == "paid":
                self.emit(draft.store_id, "order/paid", record.id)
        return body

    def add_orders(
        self,
        store_id: int,
        count: int,
        *,
        start: dt.datetime | None = None,
        interval: dt.timedelta = dt.timedelta(minutes=1),
        notify: bool = False,
        **spec: Any,
    ) -> list[int]:
        """Create `count` orders quickly (benchmarks): created `interval` apart from `start`
        (default: the last one now), each with the `add_order` keywords in `spec`. Returns
        their ids. No webhooks unless `notify`."""
        first = to_utc_second(start) if start else self.now() - interval * max(count - 1, 0)
        ids = []
        for index in range(count):
            body = self.add_order(
                store_id,
                created_at=first + interval * index,
                notify=notify,
                detached=False,
                **spec,
            )
            ids.append(int(body["id"]))
        return ids

    # --- lifecycle

    def _touch(self, record: OrderRecord, changes: Mapping[str, Any]) -> None:
        record.body.update(changes)
        record.updated = max(self.now(), record.created)
        record.body["updated_at"] = format_ts(record.updated)

    def _change(
        self,
        store_id: int,
        order_id: int,
        changes: Mapping[str, Any],
        events: Iterable[str],
        notify: bool,
    ) -> dict[str, Any]:
        record = self.record(store_id, order_id)
        self._touch(record, changes)
        if notify:
            for event in events:
                self.emit(store_id, event, order_id)
        return _copy(record.body)

    def mark_paid(
        self, store_id: int, order_id: int, at: dt.datetime | None = None, *, notify: bool = True
    ) -> dict[str, Any]:
        """Payment confirmed: `payment_status=paid`, `paid_at`; sends `order/paid`."""
        moment = format_ts(at or self.now())
        changes = {"payment_status": "paid", "paid_at": moment}
        return self._change(store_id, order_id, changes, ["order/paid"], notify)

    def cancel(
        self,
        store_id: int,
        order_id: int,
        reason: str = "customer",
        at: dt.datetime | None = None,
        *,
        notify: bool = True,
    ) -> dict[str, Any]:
        """Order cancelled (`status=cancelled`, `cancelled_at`, `cancel_reason`); `order/cancelled`."""
        changes = {
            "status": "cancelled",
            "cancelled_at": format_ts(at or self.now()),
            "cancel_reason": reason,
        }
        return self._change(store_id, order_id, changes, ["order/cancelled"], notify)

    def void(
        self, store_id: int, order_id: int, at: dt.datetime | None = None, *, notify: bool = True
    ) -> dict[str, Any]:
        """Payment voided: `payment_status=voided`, order cancelled; sends `order/voided`."""
        record = self.record(store_id, order_id)
        changes: dict[str, Any] = {"payment_status": "voided", "status": "cancelled"}
        if record.body.get("cancelled_at") is None:
            changes["cancelled_at"] = format_ts(at or self.now())
        return self._change(store_id, order_id, changes, ["order/voided"], notify)

    def refund(
        self,
        store_id: int,
        order_id: int,
        amount: Amount | None = None,
        *,
        notify: bool = True,
    ) -> dict[str, Any]:
        """Refunded in full (`refunded`) or in part (`partially_refunded`); sends `order/updated`."""
        record = self.record(store_id, order_id)
        total = to_decimal(record.body["total"])
        partial = amount is not None and to_decimal(amount) < total
        changes: dict[str, Any] = {
            "payment_status": "partially_refunded" if partial else "refunded",
        }
        if amount is not None:
            changes["refunded_amount"] = money(to_decimal(amount))
        return self._change(store_id, order_id, changes, ["order/updated"], notify)

    def update_order(
        self,
        store_id: int,
        order_id: int,
        changes: Mapping[str, Any] | None = None,
        *,
        notify: bool = True,
    ) -> dict[str, Any]:
        """Merge top-level `changes` into the order (may be empty); sends `order/updated`."""
        return self._change(store_id, order_id, dict(changes or {}), ["order/updated"], notify)
