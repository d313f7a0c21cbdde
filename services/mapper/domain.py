"""The mapper's business rules, pure: how a paid store order becomes a sale pending review.

Nothing here does I/O or reads a clock. The service around it validates the order
(``validate_order``), derives the customer (``customer_from_order``) and the products
(``product_drafts``), looks them up or creates them in its store, then builds the sale
(``build_sale``), checks stock when the store asks for it (``check_stock``) and publishes the
result (``pending_review`` or one of the rejections). Money is ``Decimal`` throughout and is never
rounded here: the sale total is the order total, exactly, and its single cash installment too.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from shared.contracts import (
    Address,
    Installment,
    OrderItem,
    OrderPaid,
    RejectedItem,
    SaleCustomer,
    SaleItem,
    SalePayment,
    SalePendingReview,
    SaleProduct,
    SaleRejected,
    StorePayment,
)
from shared.documents import (
    DocumentCheck,
    DocumentKind,
    classify_document,
    mask_document,
    normalize_document,
)

CASH: Final = "cash"
INVALID_ORDER: Final = "invalid_order"
INSUFFICIENT_STOCK: Final = "insufficient_stock"
_ZERO: Final = Decimal(0)
_MISSING_NAME: Final = "customer has no name (nor contact or billing name)"


class InvalidOrderError(ValueError):
    """The order cannot become a sale; ``problems`` says why, one reason per entry."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(self.problems))


class UnresolvedProductError(LookupError):
    """``build_sale`` got no product for a line: the caller skipped the lookup or creation."""

    def __init__(self, description: str) -> None:
        self.description = description
        super().__init__(f"no product resolved for line {description!r}")


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


@dataclass(frozen=True, slots=True)
class CustomerRef:
    """A stored customer as a sale shows it; ``created`` says whether this sale created it."""

    id: str
    name: str
    document: str | None
    mobile_phone: str | None
    business_phone: str | None
    created: bool

    @classmethod
    def new(cls, draft: CustomerDraft, customer_id: str) -> CustomerRef:
        """The reference of a customer just created from ``draft``."""
        return cls(
            id=customer_id,
            name=draft.name,
            document=draft.document,
            mobile_phone=draft.mobile_phone,
            business_phone=draft.business_phone,
            created=True,
        )


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


@dataclass(frozen=True, slots=True)
class ProductRef:
    """A catalog product as a sale line shows it; ``created`` says whether this sale created it."""

    id: str
    description: str
    created: bool


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


# --- the sale ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SaleLine:
    """One sale line: the order item's name, quantity and price, and the product it resolved to."""

    product: ProductRef
    description: str
    quantity: int
    unit_price: Decimal
    total: Decimal


@dataclass(frozen=True, slots=True)
class InstallmentDraft:
    """One installment of a payment, numbered from 1."""

    number: int
    amount: Decimal
    due_date: dt.date


@dataclass(frozen=True, slots=True)
class PaymentDraft:
    """How the sale is paid: a method and its installments."""

    method: str
    installments: tuple[InstallmentDraft, ...]


@dataclass(frozen=True, slots=True)
class SaleDraft:
    """A sale pending review, before it has an id."""

    store_id: int
    order_id: int
    order_number: int | None
    seller_id: str | None
    sale_date: dt.date
    customer: CustomerRef
    lines: tuple[SaleLine, ...]
    subtotal: Decimal
    shipping: Decimal
    discount: Decimal
    total: Decimal
    payment: PaymentDraft
    warnings: tuple[str, ...]
    # SPEC §8.2-8.3: facts of the order carried for the reviewer, none of them required.
    store_payment: StorePayment | None = None
    customer_address: Address | None = None
    shipping_address: Address | None = None


def cash_payment(total: Decimal, due_date: dt.date) -> PaymentDraft:
    """The default payment: cash, one installment of the whole total."""
    return PaymentDraft(CASH, (InstallmentDraft(1, total, due_date),))


def build_sale(
    order: OrderPaid,
    customer: CustomerRef,
    products: Mapping[str, ProductRef],
    seller_id: str | None,
    sale_date: dt.date,
) -> SaleDraft:
    """The sale for ``order``, with ``products`` keyed by exact line description.

    The total is the order's, even when the lines disagree with it (a warning then says by how
    much): the buyer paid the order total, and the receivable must match what was paid.
    Raises ``InvalidOrderError`` or ``UnresolvedProductError``.
    """
    problems = validate_order(order)
    if problems:
        raise InvalidOrderError(problems)
    lines = tuple(_sale_line(item, products) for item in order.items)
    subtotal = sum((line.total for line in lines), _ZERO)
    warnings = customer_from_order(order).warnings + _total_warnings(order, subtotal)
    return SaleDraft(
        store_id=order.store_id,
        order_id=order.order_id,
        order_number=order.order_number,
        seller_id=seller_id,
        sale_date=sale_date,
        customer=customer,
        lines=lines,
        subtotal=subtotal,
        shipping=order.shipping,
        discount=order.discount,
        total=order.total,
        payment=cash_payment(order.total, sale_date),
        warnings=warnings,
        store_payment=order.store_payment,
        customer_address=order.customer.address,
        shipping_address=order.shipping_address,
    )


def _sale_line(item: OrderItem, products: Mapping[str, ProductRef]) -> SaleLine:
    product = products.get(item.name)
    if product is None:
        raise UnresolvedProductError(item.name)
    return SaleLine(
        product=product,
        description=item.name,
        quantity=item.quantity,
        unit_price=item.unit_price,
        total=item.quantity * item.unit_price,
    )


def _total_warnings(order: OrderPaid, subtotal: Decimal) -> tuple[str, ...]:
    computed = subtotal - order.discount + order.shipping
    if computed == order.total:
        return ()
    return (
        f"order total {_plain(order.total)} differs from items {_plain(subtotal)}"
        f" - discount {_plain(order.discount)} + shipping {_plain(order.shipping)}"
        f" = {_plain(computed)} by {_plain(order.total - computed)};"
        " the sale keeps the order total",
    )


def _plain(amount: Decimal) -> str:
    # Fixed-point and unrounded: a warning about a difference must show it exactly.
    return format(amount, "f")


def pending_review(sale: SaleDraft, sale_id: str) -> SalePendingReview:
    """The ``sale.pending_review`` message announcing ``sale`` under ``sale_id``."""
    return SalePendingReview(
        sale_id=sale_id,
        store_id=sale.store_id,
        order_id=sale.order_id,
        order_number=sale.order_number,
        seller_id=sale.seller_id,
        customer=_sale_customer(sale.customer, sale.customer_address),
        items=[_sale_item(line) for line in sale.lines],
        subtotal=sale.subtotal,
        shipping=sale.shipping,
        discount=sale.discount,
        total=sale.total,
        payment=SalePayment(
            method=sale.payment.method,
            installments=[
                Installment(number=i.number, amount=i.amount, due_date=i.due_date)
                for i in sale.payment.installments
            ],
        ),
        sale_date=sale.sale_date,
        warnings=list(sale.warnings),
        store_payment=sale.store_payment,
        shipping_address=sale.shipping_address,
    )


def _sale_customer(customer: CustomerRef, address: Address | None) -> SaleCustomer:
    return SaleCustomer(
        id=customer.id,
        name=customer.name,
        document=customer.document,
        business_phone=customer.business_phone,
        mobile_phone=customer.mobile_phone,
        created=customer.created,
        address=address,
    )


def _sale_item(line: SaleLine) -> SaleItem:
    product = SaleProduct(
        id=line.product.id, description=line.product.description, created=line.product.created
    )
    return SaleItem(
        product=product,
        description=line.description,
        quantity=line.quantity,
        unit_price=line.unit_price,
        total=line.total,
    )


# --- stock and rejections ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Shortage:
    """A product the sale needs more of than the stock holds."""

    description: str
    product_id: str
    requested: int
    available: int

    def to_contract(self) -> RejectedItem:
        """The ``items[]`` entry of a ``sale.rejected`` message."""
        return RejectedItem(
            description=self.description,
            product_id=self.product_id,
            requested=self.requested,
            available=self.available,
        )


def check_stock(lines: Iterable[SaleLine], available: Mapping[str, int]) -> list[Shortage]:
    """Shortages per product, quantities summed over all lines of that product.

    A product absent from ``available`` has none (a product this sale would create has no stock).
    """
    requested: dict[str, int] = {}
    descriptions: dict[str, str] = {}
    for line in lines:
        product_id = line.product.id
        requested[product_id] = requested.get(product_id, 0) + line.quantity
        descriptions.setdefault(product_id, line.description)
    return [
        Shortage(descriptions[product_id], product_id, quantity, available.get(product_id, 0))
        for product_id, quantity in requested.items()
        if quantity > available.get(product_id, 0)
    ]


def invalid_order_rejection(order: OrderPaid, problems: Sequence[str]) -> SaleRejected:
    """The ``sale.rejected`` message for an order that cannot be read as a sale."""
    return SaleRejected(
        store_id=order.store_id,
        order_id=order.order_id,
        reason=INVALID_ORDER,
        detail="; ".join(problems),
    )


def insufficient_stock_rejection(order: OrderPaid, shortages: Sequence[Shortage]) -> SaleRejected:
    """The ``sale.rejected`` message for an order whose products lack stock."""
    detail = "; ".join(
        f"{s.description}: requested {s.requested}, available {s.available}" for s in shortages
    )
    return SaleRejected(
        store_id=order.store_id,
        order_id=order.order_id,
        reason=INSUFFICIENT_STOCK,
        detail=f"insufficient stock: {detail}",
        items=[shortage.to_contract() for shortage in shortages],
    )
