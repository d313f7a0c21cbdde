"""An incoming paid order read as the mapper needs it, pure: is it a sale, whose, of what.

Before anything is looked up: what stops the order from becoming a sale (``validate_order``,
``InvalidOrderError``), the customer it names, normalised, and the key a stored customer must
match (``customer_from_order``, ``customer_key``), and the products its lines name
(``product_drafts``, ``products_to_create``). Nothing here does I/O; ``services.mapper.domain``
builds the sale from what the service found or created for these drafts.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from shared.contracts import Address, OrderItem, OrderPaid
from shared.documents import (
    DocumentCheck,
    DocumentKind,
    classify_document,
    mask_document,
    normalize_document,
)

_ZERO: Final = Decimal(0)
_MISSING_NAME: Final = "customer has no name (nor contact or billing name)"


class InvalidOrderError(ValueError):
    """The order cannot become a sale; ``problems`` says why, one reason per entry."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(self.problems))


# --- customers ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CustomerDraft:
    """The customer an order describes, normalised, before it is matched or created."""

    name: str
    document: str | None
    document_kind: DocumentKind | None
    email: str | None
    mobile_phone: str | None
    business_phone: str | None
    warnings: tuple[str, ...] = ()
    address: Address | None = None  # the billing address, stored on a customer this creates

    @property
    def key(self) -> tuple[str, str]:
        """The match key of this customer (see ``customer_key``)."""
        return customer_key(self.name, self.document)


def normalize_name(name: str) -> str:
    """Trim and collapse inner whitespace; case and accents are kept (they are part of a name)."""
    return " ".join(name.split())


def customer_key(name: str, document: str | None) -> tuple[str, str]:
    """What must match for a stored customer to be reused: the name and the document, both.

    A customer without a document has the empty string as its document part, so it matches only
    another customer of the same name who has no document either.
    """
    return normalize_name(name), normalize_document(document or "")


def customer_from_order(order: OrderPaid) -> CustomerDraft:
    """The order's customer, normalised; an invalid or missing document is dropped with a warning.

    Raises ``InvalidOrderError`` when the order names no customer at all.
    """
    source = order.customer
    name = normalize_name(source.name or "")
    if not name:
        raise InvalidOrderError([_MISSING_NAME])
    check = classify_document(source.document)
    return CustomerDraft(
        name=name,
        document=check.normalized,
        document_kind=check.kind,
        email=_optional_text(source.email),
        mobile_phone=_optional_text(source.mobile_phone),
        business_phone=_optional_text(source.business_phone),
        warnings=_document_warnings(source.document, check),
        address=source.address,
    )


def _optional_text(value: str | None) -> str | None:
    stripped = (value or "").strip()
    return stripped or None


def _document_warnings(raw: str | None, check: DocumentCheck) -> tuple[str, ...]:
    if check.is_valid:
        return ()
    if not normalize_document(raw or ""):
        return ("customer has no CPF or CNPJ: imported without a document",)
    # Masked: warnings travel in messages and logs, where a full document number must never go.
    return (f"document {mask_document(raw or '')} dropped: {check.reason}",)


# --- validation --------------------------------------------------------------------------------


def validate_order(order: OrderPaid) -> list[str]:
    """Everything that stops this order from becoming a sale (empty when it can)."""
    problems = [*_amount_problems(order), *_item_problems(order.items)]
    if not normalize_name(order.customer.name or ""):
        problems.append(_MISSING_NAME)
    return problems


def _amount_problems(order: OrderPaid) -> list[str]:
    amounts = {"total": order.total, "discount": order.discount, "shipping": order.shipping}
    return [f"negative {label}: {amount}" for label, amount in amounts.items() if amount < _ZERO]


def _item_problems(items: Sequence[OrderItem]) -> list[str]:
    if not items:
        return ["order has no items"]
    problems: list[str] = []
    for position, item in enumerate(items, start=1):
        if not item.name.strip():
            problems.append(f"item {position} has no name")
        if item.quantity <= 0:
            problems.append(f"item {position} has quantity {item.quantity}")
        if item.unit_price < _ZERO:
            problems.append(f"item {position} has negative unit price {item.unit_price}")
    return problems


# --- products ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProductDraft:
    """A product to create when the catalog has none with exactly this description."""

    description: str
    sku: str | None
    unit_price: Decimal


def product_drafts(order: OrderPaid) -> list[ProductDraft]:
    """One draft per distinct line name, in first-seen order, with that first line's SKU and price.

    Names are compared exactly (case-sensitive, untrimmed), as the catalog lookup is.
    """
    drafts: dict[str, ProductDraft] = {}
    for item in order.items:
        if item.name not in drafts:
            drafts[item.name] = ProductDraft(item.name, item.sku, item.unit_price)
    return list(drafts.values())


def products_to_create(order: OrderPaid, existing: Collection[str]) -> list[ProductDraft]:
    """The drafts whose description is not exactly one of the catalog's ``existing`` ones."""
    return [draft for draft in product_drafts(order) if draft.description not in existing]
