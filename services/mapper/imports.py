"""The mapper's use case: announced orders become pending sales, or recorded rejections.

One path for every batch, a batch of one included. ``import_orders`` takes a run of
``order.paid`` / ``order.invalid`` messages in the order they arrived and:

1. reads once what the batch depends on (``ports.Imports.snapshot``: which of its orders already
   have a sale, the settings of its stores, the stores switched off; then the stored products its
   lines could match, and the stock of those in stores with the stock check);
2. decides every message in arrival order, purely (``triage``), exactly as if each had been
   imported alone after the ones before it: an order already imported is skipped (its open
   rejection resolved), ``rules.refusal`` and the stock check reject, and an order accepted
   earlier in the batch makes a later message about it a repeat;
3. records each rejection, then creates the accepted sales' customers, products and sales with a
   fixed handful of set-based statements (``adapters/bulk.py``);
4. returns what to publish, in arrival order: ``sale.pending_review``, or ``sale.rejected`` and
   the parked copy of the message (``mapper.orders.parked``).

The rules themselves are pure, in ``rules.py`` and ``domain.py``; the store is a port
(``ports.Imports``), so the same use case runs on PostgreSQL and, in unit tests, in memory.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace

from services.mapper import domain, rules
from services.mapper.ports import (
    CustomerKey,
    Imports,
    OrderKey,
    OrderMessage,
    ProductKey,
    SkuKey,
    Snapshot,
    order_key,
)
from shared.contracts import OrderInvalid, OrderPaid, RejectedItem, SaleRejected
from shared.logging import get_logger
from shared.messaging import Envelope, correlation, envelope, error_headers
from shared.topology import MAPPER_PARKED

log = get_logger(__name__)

# --- deciding, purely ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Accepted:
    """An order that becomes a sale: its customer drafted, its lines' products planned."""

    received: OrderMessage
    order: OrderPaid
    customer: domain.CustomerDraft
    plan: rules.ProductPlan


@dataclass(frozen=True)
class Refused:
    received: OrderMessage
    rejection: SaleRejected


Decision = Accepted | Refused


@dataclass(frozen=True)
class Triage:
    decisions: list[Decision]  # in arrival order; a message without one changes nothing
    resolved: set[OrderKey]  # orders found imported: their open rejections are resolved


def triage(
    received: Sequence[OrderMessage],
    snapshot: Snapshot,
    catalogs: Mapping[int, rules.Catalog],
    stock: Mapping[tuple[int, str], int],
) -> Triage:
    """Every message's fate, each decided as if imported alone after the ones before it."""
    decisions: list[Decision] = []
    resolved: set[OrderKey] = set()
    accepted: set[OrderKey] = set()
    for item in received:
        message, key = item.message, order_key(item)
        imported = key in snapshot.sales or key in accepted
        if isinstance(message, OrderInvalid):
            if imported:
                # Arrived after the order was imported (reordered or re-sent): nothing to reject.
                log.info("order.invalid for an imported order ignored", order_id=message.order_id)
            else:
                decisions.append(Refused(item, _invalid(message)))
            continue
        if imported:
            log.info("order already imported", store_id=key[0], order_id=key[1])
            resolved.add(key)
            continue
        refused = rules.refusal(message, snapshot.disabled.get(message.store_id))
        if refused is not None:
            decisions.append(Refused(item, refused))
            continue
        catalog = catalogs[message.store_id]
        plan = catalog.plan(domain.product_drafts(message))
        if snapshot.settings.get(message.store_id, rules.StoreRules()).stock_check:
            available = {
                product_id: n for (store, product_id), n in stock.items() if store == key[0]
            }
            short = rules.shortages(message, plan, available)
            if short:
                decisions.append(Refused(item, domain.insufficient_stock_rejection(message, short)))
                continue
        catalog.add(plan)
        accepted.add(key)
        decisions.append(Accepted(item, message, domain.customer_from_order(message), plan))
    return Triage(decisions, resolved)


def _invalid(message: OrderInvalid) -> SaleRejected:
    return SaleRejected(
        store_id=message.store_id,
        order_id=message.order_id,
        reason=domain.INVALID_ORDER,
        detail=message.detail,
    )


# --- the use case -------------------------------------------------------------------------------


async def import_orders(
    store: Imports, received: Sequence[OrderMessage], default_timezone: str
) -> list[Envelope]:
    """Import a run of order messages (see the module's docstring); what to publish."""
    snapshot = await store.snapshot({order_key(r) for r in received})
    fresh = [
        r.message
        for r in received
        if isinstance(r.message, OrderPaid) and order_key(r) not in snapshot.sales
    ]
    catalogs = await _catalogs(store, fresh, snapshot)
    stock = await _stock(store, catalogs, snapshot)
    decided = triage(received, snapshot, catalogs, stock)
    published: dict[int, list[Envelope]] = {}
    for decision in decided.decisions:
        if isinstance(decision, Refused):
            published[id(decision)] = await reject(store, decision.received, decision.rejection)
    accepted = [d for d in decided.decisions if isinstance(d, Accepted)]
    if accepted or decided.resolved:
        zones = {
            s: snapshot.settings.get(s, rules.StoreRules()).zone(default_timezone)
            for s in {a.order.store_id for a in accepted}
        }
        for decision, announced in await _create(store, accepted, decided.resolved, zones):
            published[id(decision)] = [announced]
    return [env for d in decided.decisions for env in published.get(id(d), [])]


async def _catalogs(
    store: Imports, orders: Sequence[OrderPaid], snapshot: Snapshot
) -> dict[int, rules.Catalog]:
    """Each store's catalog as the batch starts: the stored products its lines could match."""
    match = {
        o.store_id: snapshot.settings.get(o.store_id, rules.StoreRules()).product_match
        for o in orders
    }
    descriptions: set[ProductKey] = set()
    skus: set[SkuKey] = set()
    for order in orders:
        for item in order.items:
            descriptions.add((order.store_id, item.name))
            if item.sku and match[order.store_id] == rules.BY_SKU:
                skus.add((order.store_id, item.sku))
    by_description, by_sku = await store.products(descriptions, skus) if orders else ({}, {})
    catalogs = {s: rules.Catalog(m) for s, m in match.items()}
    for (s, description), ref in by_description.items():
        catalogs[s].by_description[description] = ref
    for (s, sku), ref in by_sku.items():
        catalogs[s].by_sku[sku] = ref
    return catalogs


async def _stock(
    store: Imports, catalogs: Mapping[int, rules.Catalog], snapshot: Snapshot
) -> dict[tuple[int, str], int]:
    """Stock on hand of every stored product a line could take, in stores with the stock check."""
    wanted = {
        (s, ref.id)
        for s, catalog in catalogs.items()
        if snapshot.settings.get(s, rules.StoreRules()).stock_check
        for ref in [*catalog.by_sku.values(), *catalog.by_description.values()]
    }
    return await store.on_hand(wanted) if wanted else {}


async def _create(
    store: Imports,
    accepted: Sequence[Accepted],
    resolved: Collection[OrderKey],
    zones: Mapping[int, dt.tzinfo],
) -> list[tuple[Accepted, Envelope]]:
    """Customers, products and sales of the accepted orders; each stored sale's announcement."""
    first: dict[CustomerKey, domain.CustomerDraft] = {}
    for a in accepted:
        first.setdefault((a.order.store_id, *a.customer.key), a.customer)
    customers = await store.customers([(k[0], d) for k, d in first.items()]) if first else {}
    drafts = [(a.order.store_id, d) for a in accepted for d in a.plan.create]
    created = await store.create_products(drafts) if drafts else {}
    claimed: set[CustomerKey] = set()
    sales: list[tuple[str, domain.SaleDraft, Accepted]] = []
    for a in accepted:
        store_id = a.order.store_id
        ckey = (store_id, *a.customer.key)
        customer = customers[ckey]
        if ckey in claimed:  # ``created`` belongs to the first sale that needed the new row
            customer = replace(customer, created=False)
        claimed.add(ckey)
        products = _products(store_id, a.plan, created)
        sale_date = rules.sale_day(a.order, zones[store_id])
        sale = domain.build_sale(a.order, customer, products, a.order.activated_by, sale_date)
        sales.append((str(uuid.uuid4()), sale, a))
    stored = await store.add_sales([(i, s) for i, s, _ in sales], resolved)
    announced: list[tuple[Accepted, Envelope]] = []
    for sale_id, sale, a in sales:
        if sale_id not in stored:
            log.info("sale created by another worker first", order_id=sale.order_id)
            continue
        key = correlation(sale.store_id, sale.order_id)
        log.info(
            "pending sale created",
            store_id=sale.store_id,
            order_id=sale.order_id,
            sale_id=sale_id,
            total=str(sale.total),
            warnings=len(sale.warnings),
        )
        message = domain.pending_review(sale, sale_id)
        env = envelope(message, message_id=f"sale.pending_review:{sale_id}", correlation_id=key)
        announced.append((a, env))
    return announced


def _products(
    store_id: int, plan: rules.ProductPlan, created: Mapping[ProductKey, domain.ProductRef]
) -> dict[str, domain.ProductRef]:
    """The lines' products once the batch's new products exist (``created``)."""
    found = {
        d: replace(created[(store_id, ref.description)], created=False)
        if rules.is_new_product(ref.id)
        else ref
        for d, ref in plan.found.items()
    }
    mine = {d.description: created[(store_id, d.description)] for d in plan.create}
    return rules.resolve_plan(replace(plan, found=found), mine)


# --- rejections ---------------------------------------------------------------------------------


async def reject(store: Imports, received: OrderMessage, rejected: SaleRejected) -> list[Envelope]:
    """Record ``rejected``; its announcement and the parked copy of the message (SPEC §4)."""
    if rejected.items is not None:
        # Products the sale would have created do not exist: no id to show.
        rejected = rejected.model_copy(
            update={"items": [_without_new(item) for item in rejected.items]}
        )
    attempts = await store.reject(rejected, received)
    key = correlation(rejected.store_id, rejected.order_id)
    log.warning(
        "order rejected",
        store_id=rejected.store_id,
        order_id=rejected.order_id,
        reason=rejected.reason,
        detail=rejected.detail,
        attempts=attempts,
    )
    parked = Envelope(
        exchange="",
        routing_key=MAPPER_PARKED.name,
        body=received.body,
        message_id=f"{received.message_id}:parked:{attempts}",
        type=received.type or "",
        correlation_id=key,
        headers=error_headers(rejected.reason, rejected.detail)
        | {
            "x-original-routing-key": received.routing_key,
            "x-original-message-id": received.message_id,
        },
    )
    announced = envelope(rejected, message_id=f"sale.rejected:{key}:{attempts}", correlation_id=key)
    return [announced, parked]


def _without_new(item: RejectedItem) -> RejectedItem:
    if item.product_id is not None and rules.is_new_product(item.product_id):
        return item.model_copy(update={"product_id": None})
    return item
