"""The store-dependent rules of an import (SPEC §4, §8), pure: no I/O, no clock.

A store's settings (``StoreRules``) decide how its lines find their products (``plan_products``:
by exact description, or by SKU first) and which calendar dates its sales (``sale_day``). Two
reasons keep an order out of the ERP before anything is created: a currency other than reais
(``currency_rejection``) and a store switched off while the order was in flight
(``store_disabled_rejection``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

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
