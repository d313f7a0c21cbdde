"""The mapper's business rules, pure: how a paid store order becomes a sale pending review.

Nothing here does I/O or reads a clock. The service around it validates the order
(``validate_order``), derives the customer (``customer_from_order``) and the products
(``product_drafts``) (those three read the order: ``services.mapper.orders``, re-exported here so
that ``domain`` names every rule), looks them up or creates them in its store, then builds the
sale (``build_sale``), checks stock when the store asks for it (``check_stock``) and publishes
the result (``pending_review`` or one of the rejections). This module owns the sale: its lines,
totals and payment, the messages announcing it or rejecting the order, and the stock check.
Money is ``Decimal`` throughout and is never rounded here: the sale total is the order total,
exactly, and its single cash installment too.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from services.mapper.orders import (
    CustomerDraft,
    InvalidOrderError,
    ProductDraft,
    customer_from_order,
    customer_key,
    normalize_name,
    product_drafts,
    products_to_create,
    validate_order,
)
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

__all__ = [
    "CASH",
    "INSUFFICIENT_STOCK",
    "INVALID_ORDER",
    "CustomerDraft",
    "CustomerRef",
    "InstallmentDraft",
    "InvalidOrderError",
    "PaymentDraft",
    "ProductDraft",
    "ProductRef",
    "SaleDraft",
    "SaleLine",
    "Shortage",
    "UnresolvedProductError",
    "build_sale",
    "cash_payment",
    "check_stock",
    "customer_from_order",
    "customer_key",
    "insufficient_stock_rejection",
    "invalid_order_rejection",
    "normalize_name",
    "pending_review",
    "product_drafts",
    "products_to_create",
    "validate_order",
]

CASH: Final = "cash"
INVALID_ORDER: Final = "invalid_order"
INSUFFICIENT_STOCK: Final = "insufficient_stock"
_ZERO: Final = Decimal(0)


class UnresolvedProductError(LookupError):
    """``build_sale`` got no product for a line: the caller skipped the lookup or creation."""

    def __init__(self, description: str) -> None:
        self.description = description
        super().__init__(f"no product resolved for line {description!r}")


# --- what the service found or created for the order's drafts ---------------------------------


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


@dataclass(frozen=True, slots=True)
class ProductRef:
    """A catalog product as a sale line shows it; ``created`` says whether this sale created it."""

    id: str
    description: str
    created: bool


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
