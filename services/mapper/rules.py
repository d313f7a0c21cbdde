"""The store-dependent rules of an import (SPEC §4, §8), pure: no I/O, no clock.

A store's settings (``StoreRules``) decide how its lines find their products (``plan_products``:
by exact description, or by SKU first; ``Catalog``: the store's products as a batch of imports
sees them, those its earlier sales create included) and which calendar dates its sales
(``sale_day``). Before anything is created an order is kept out (``refusal``), in this order,
when its store was switched off while it was in flight (``store_disabled_rejection``), when it is
not in reais (``currency_rejection``) or when it cannot be read as a sale; then, in a store with
the stock check, when its products lack stock (``shortages``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from services.mapper import domain
from services.mapper.domain import ProductDraft, ProductRef
from shared.contracts import OrderPaid, SaleRejected

ProductMatch = Literal["description", "sku"]
BY_DESCRIPTION: Final = "description"
BY_SKU: Final = "sku"
PRODUCT_MATCHES: Final = (BY_DESCRIPTION, BY_SKU)
DEFAULT_TIMEZONE: Final = "America/Sao_Paulo"
CURRENCY: Final = "BRL"
UNSUPPORTED_CURRENCY: Final = "unsupported_currency"
STORE_DISABLED: Final = "store_disabled"
NEW_PRODUCT: Final = "new:"  # the id prefix of a product a sale would create (it has no id yet)


class UnknownTimezoneError(ValueError):
    """A name that is not an IANA time zone."""


def parse_timezone(name: str) -> ZoneInfo:
    """The IANA zone ``name`` (``America/Sao_Paulo``); ``UnknownTimezoneError`` when it is none.

    Only names of the tz database are accepted (``ZoneInfo`` alone refuses paths, but would take
    any file under the zone directory); where the list of zones is unavailable, what ``ZoneInfo``
    loads is accepted.
    """
    known = _known_zones()
    if known and name not in known:
        msg = f"{name!r} is not an IANA time zone (e.g. America/Sao_Paulo, America/Manaus)"
        raise UnknownTimezoneError(msg)
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        msg = f"{name!r} is not an IANA time zone: {exc}"
        raise UnknownTimezoneError(msg) from exc


_ZONES: set[str] = set()


def _known_zones() -> set[str]:
    if not _ZONES:
        _ZONES.update(available_timezones())
    return _ZONES


@dataclass(frozen=True, slots=True)
class StoreRules:
    """A store's import settings; ``timezone`` None means the installation's default."""

    stock_check: bool = False
    product_match: ProductMatch = BY_DESCRIPTION
    timezone: str | None = None

    def zone(self, default: str) -> ZoneInfo:
        return parse_timezone(self.timezone or default)


def sale_day(order: OrderPaid, zone: dt.tzinfo) -> dt.date:
    """The day the order was paid (else created) on the store's calendar (SPEC §8.5)."""
    return (order.paid_at or order.created_at).astimezone(zone).date()


def currency_rejection(order: OrderPaid) -> SaleRejected | None:
    """The rejection of an order not in reais (SPEC §8.4), or None when it is in reais."""
    currency = (order.currency or "").strip().upper()
    if currency == CURRENCY:
        return None
    return SaleRejected(
        store_id=order.store_id,
        order_id=order.order_id,
        reason=UNSUPPORTED_CURRENCY,
        detail=f"the order is in {order.currency or 'no currency'!s}; sales are in reais (BRL)",
    )


def store_disabled_rejection(order: OrderPaid, reason: str | None) -> SaleRejected:
    """The rejection of an order whose store was switched off before it was imported (SPEC §4)."""
    why = f" ({reason})" if reason else ""
    return SaleRejected(
        store_id=order.store_id,
        order_id=order.order_id,
        reason=STORE_DISABLED,
        detail=f"store {order.store_id} was switched off{why}; enable it and retry the order",
    )


def refusal(order: OrderPaid, disabled_reason: str | None) -> SaleRejected | None:
    """Why the order is kept out before anything is looked up or created, None when nothing keeps
    it out: its store is off (``disabled_reason`` not None), its currency is not the real, or it
    cannot be read as a sale (SPEC §4, §8.4), checked in that order."""
    if disabled_reason is not None:
        return store_disabled_rejection(order, disabled_reason)
    currency = currency_rejection(order)
    if currency is not None:
        return currency
    problems = domain.validate_order(order)
    try:
        domain.customer_from_order(order)
    except domain.InvalidOrderError as exc:
        problems += [p for p in exc.problems if p not in problems]
    return domain.invalid_order_rejection(order, problems) if problems else None


@dataclass(frozen=True, slots=True)
class ProductPlan:
    """How a sale's distinct lines find their products.

    ``found``: line description → an existing product. ``create``: drafts of products to create.
    ``same_as``: line description → the description of an earlier line of ``create`` whose new
    product it shares (same SKU, with matching by SKU).
    """

    found: dict[str, ProductRef] = field(default_factory=dict)
    create: list[ProductDraft] = field(default_factory=list)
    same_as: dict[str, str] = field(default_factory=dict)


def plan_products(
    drafts: Sequence[ProductDraft],
    match: ProductMatch,
    by_sku: Mapping[str, ProductRef],
    by_description: Mapping[str, ProductRef],
) -> ProductPlan:
    """SPEC §3 and §8.1: with ``sku``, a line with a SKU takes the product with that SKU (from the
    catalog, else one this plan creates for an earlier line); any other line takes the product
    with exactly its description; the rest are created, each keeping its line's SKU.
    """
    plan = ProductPlan()
    created_sku: dict[str, str] = {}
    for draft in drafts:
        sku = draft.sku if match == BY_SKU and draft.sku else None
        if sku is not None and sku in by_sku:
            plan.found[draft.description] = by_sku[sku]
        elif sku is not None and sku in created_sku:
            plan.same_as[draft.description] = created_sku[sku]
        elif draft.description in by_description:
            plan.found[draft.description] = by_description[draft.description]
        else:
            plan.create.append(draft)
            if sku is not None:
                created_sku[sku] = draft.description
    return plan


def resolve_plan(plan: ProductPlan, created: Mapping[str, ProductRef]) -> dict[str, ProductRef]:
    """Every line's product once ``plan.create`` exists as ``created`` (by description)."""
    refs = dict(plan.found) | dict(created)
    for description, owner in plan.same_as.items():
        ref = refs[owner]
        refs[description] = ProductRef(ref.id, ref.description, created=False)
    return refs


def new_product(draft: ProductDraft) -> ProductRef:
    """The stand-in of a product a sale would create, until it exists (``NEW_PRODUCT`` id)."""
    return ProductRef(
        id=f"{NEW_PRODUCT}{draft.description}", description=draft.description, created=True
    )


def is_new_product(product_id: str) -> bool:
    return product_id.startswith(NEW_PRODUCT)


@dataclass(slots=True)
class Catalog:
    """A store's products as the imports of one batch see them, in the batch's order.

    Starts as the store's stored products that the batch's lines could match (``by_sku``: SKU →
    the oldest product with it; ``by_description``); each sale accepted adds the products it will
    create (``add``), under ``new_product`` ids, so a later sale of the batch finds them as it
    would had the earlier one been imported alone before it.
    """

    match: ProductMatch = BY_DESCRIPTION
    by_sku: dict[str, ProductRef] = field(default_factory=dict)
    by_description: dict[str, ProductRef] = field(default_factory=dict)

    def plan(self, drafts: Sequence[ProductDraft]) -> ProductPlan:
        return plan_products(drafts, self.match, self.by_sku, self.by_description)

    def add(self, plan: ProductPlan) -> None:
        """The products ``plan`` creates, as later sales find them (not created by those)."""
        for draft in plan.create:
            ref = ProductRef(new_product(draft).id, draft.description, created=False)
            self.by_description[draft.description] = ref
            if draft.sku and draft.sku not in self.by_sku:
                self.by_sku[draft.sku] = ref


_NO_CUSTOMER: Final = domain.CustomerRef(
    id="", name="", document=None, mobile_phone=None, business_phone=None, created=False
)


def shortages(
    order: OrderPaid, plan: ProductPlan, available: Mapping[str, int]
) -> list[domain.Shortage]:
    """SPEC §4's stock check of ``order`` whose lines take the products of ``plan``; ``available``
    is the stock on hand by product id (a product the sale would create has none)."""
    refs = resolve_plan(plan, {d.description: new_product(d) for d in plan.create})
    # Only the lines matter; the customer is not created before the check passes.
    lines = domain.build_sale(order, _NO_CUSTOMER, refs, None, dt.date.min).lines
    return domain.check_stock(lines, available)
