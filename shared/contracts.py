"""The messages of CONTRACT.md, one pydantic model each, and the list of them (``ALL_MESSAGES``).

Every model knows its exchange and routing key, so publishing code never spells them twice.
``store_id``/``order_id`` are integers and ids of our own records are strings; money, timestamps
and days are the wire's types of ``shared.wire`` (``Message``, the base of every model, is
re-exported here for code that handles messages of any type).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, ClassVar, Literal

from pydantic import Field

from shared.wire import Day, Money, Part, Timestamp
from shared.wire import Message as Message  # noqa: PLC0414 - re-exported (see above)

# --- ingest.events ---------------------------------------------------------------------------


class Address(Part):
    """A postal address as the store order gives it; any part may be missing."""

    street: str | None = None
    number: str | None = None
    complement: str | None = None
    locality: str | None = None  # the neighbourhood (bairro)
    city: str | None = None
    state: str | None = None
    zipcode: str | None = None
    country: str | None = None


class StorePayment(Part):
    """What the buyer paid the store with: information for the reviewer, not the sale's payment."""

    method: str | None = None  # payment_details.method: credit_card, pix, boleto, ...
    gateway: str | None = None  # gateway_name, else gateway
    card_company: str | None = None
    installments: int | None = None


class OrderCustomer(Part):
    name: str | None = None
    document: str | None = None
    email: str | None = None
    mobile_phone: str | None = None
    business_phone: str | None = None
    # Added (SPEC §8.3): the billing address, or None.
    address: Address | None = None


class OrderItem(Part):
    name: str
    sku: str | None = None
    quantity: int
    unit_price: Money


class OrderPaid(Message):
    exchange: ClassVar[str] = "ingest.events"
    routing_key: ClassVar[str] = "order.paid"

    store_id: int
    order_id: int
    order_number: int | None = None
    created_at: Timestamp
    paid_at: Timestamp | None = None
    currency: str
    subtotal: Money
    discount: Money = Decimal(0)
    shipping: Money = Decimal(0)
    total: Money
    customer: OrderCustomer
    items: list[OrderItem]
    # Added to the contract: the ERP user who activated the integration (the sale's seller).
    activated_by: str | None = None
    # Added (SPEC §8.2, §8.3); optional so that messages published before them still read.
    store_payment: StorePayment | None = None
    shipping_address: Address | None = None


class OrderPartiallyRefunded(Message):
    """Added (SPEC §8.6): an announced order whose payment was partly refunded, once."""

    exchange: ClassVar[str] = "ingest.events"
    routing_key: ClassVar[str] = "order.partially_refunded"

    store_id: int
    order_id: int
    noted_at: Timestamp


class OrderCancelled(Message):
    exchange: ClassVar[str] = "ingest.events"
    routing_key: ClassVar[str] = "order.cancelled"

    store_id: int
    order_id: int
    cancelled_at: Timestamp
    reason: str


class OrderInvalid(Message):
    """Added to the contract: an order the API returned that cannot be read (malformed)."""

    exchange: ClassVar[str] = "ingest.events"
    routing_key: ClassVar[str] = "order.invalid"

    store_id: int
    order_id: int
    detail: str


class IntegrationDisabled(Message):
    exchange: ClassVar[str] = "ingest.events"
    routing_key: ClassVar[str] = "integration.disabled"

    store_id: int
    reason: Literal["credentials_revoked", "app_uninstalled", "switched_off"]


class IntegrationEnabled(Message):
    """Added (SPEC §4): a store switched on again; its rejected orders may now be retried."""

    exchange: ClassVar[str] = "ingest.events"
    routing_key: ClassVar[str] = "integration.enabled"

    store_id: int


class WebhookReceived(Message):
    """Ingest's own durable record of an accepted webhook (queue ``ingest.webhooks``)."""

    exchange: ClassVar[str] = "ingest.events"
    routing_key: ClassVar[str] = "webhook.received"

    store_id: int
    event: str
    id: int | None = None
    received_at: Timestamp
    # The whole body, kept only for the LGPD events (their customer and order lists matter).
    payload: dict[str, Any] | None = None


class PrivacyCustomer(Part):
    id: int | None = None
    email: str | None = None
    phone: str | None = None
    identification: str | None = None


class PrivacyRequest(Message):
    """Added to the contract: an LGPD request from Nuvemshop, for every service holding personal data."""

    exchange: ClassVar[str] = "ingest.events"
    routing_key: ClassVar[str] = "privacy.request"

    store_id: int
    kind: Literal["store_redact", "customers_redact", "data_request"]
    customer: PrivacyCustomer | None = None
    order_ids: list[int] = Field(default_factory=list)
    # Added: ingest's record of the request (``privacy requests``); each service files its part
    # of a data request's export under it.
    request_id: str | None = None


# --- mapper.events ---------------------------------------------------------------------------


class SaleCustomer(Part):
    id: str
    name: str
    document: str | None = None
    business_phone: str | None = None
    mobile_phone: str | None = None
    created: bool
    # Added (SPEC §8.3): the order's billing address, or None.
    address: Address | None = None


class SaleProduct(Part):
    id: str
    description: str
    created: bool


class SaleItem(Part):
    product: SaleProduct
    description: str
    quantity: int
    unit_price: Money
    total: Money


class Installment(Part):
    number: int
    amount: Money
    due_date: Day


class SalePayment(Part):
    method: str
    installments: list[Installment]


class SalePendingReview(Message):
    exchange: ClassVar[str] = "mapper.events"
    routing_key: ClassVar[str] = "sale.pending_review"

    sale_id: str
    store_id: int
    order_id: int
    order_number: int | None = None
    status: Literal["pending_review"] = "pending_review"
    seller_id: str | None = None
    customer: SaleCustomer
    items: list[SaleItem]
    subtotal: Money
    shipping: Money
    discount: Money
    total: Money
    payment: SalePayment
    sale_date: Day
    warnings: list[str] = Field(default_factory=list)
    # Added (SPEC §8.2, §8.3): what the buyer paid the store with (information for the reviewer,
    # not the sale's payment) and where the order is delivered.
    store_payment: StorePayment | None = None
    shipping_address: Address | None = None


class RejectedItem(Part):
    description: str
    product_id: str | None = None
    requested: int
    available: int


class SaleRejected(Message):
    exchange: ClassVar[str] = "mapper.events"
    routing_key: ClassVar[str] = "sale.rejected"

    store_id: int
    order_id: int
    reason: str
    detail: str
    items: list[RejectedItem] | None = None


# --- ledger.events ---------------------------------------------------------------------------


class Receivable(Part):
    id: str
    number: int
    amount: Money
    due_date: Day
    method: str
    status: Literal["open", "cancelled", "paid"]


class StockMovement(Part):
    id: str
    product_id: str
    quantity: int
    direction: Literal["in", "out"]


class SaleConfirmed(Message):
    exchange: ClassVar[str] = "ledger.events"
    routing_key: ClassVar[str] = "sale.confirmed"

    sale_id: str
    store_id: int
    order_id: int
    seller_id: str | None = None
    receivables: list[Receivable]
    stock_movements: list[StockMovement]


class SaleConfirmationRefused(Message):
    exchange: ClassVar[str] = "ledger.events"
    routing_key: ClassVar[str] = "sale.confirmation_refused"

    sale_id: str | None = None
    reason: str
    detail: str
    store_id: int | None = None
    order_id: int | None = None


class SalePartiallyRefunded(Message):
    """Added (SPEC §8.6): an imported order was partly refunded; nothing is reversed."""

    exchange: ClassVar[str] = "ledger.events"
    routing_key: ClassVar[str] = "sale.partially_refunded"

    sale_id: str
    store_id: int
    order_id: int
    noted_at: Timestamp


class SaleCancelled(Message):
    exchange: ClassVar[str] = "ledger.events"
    routing_key: ClassVar[str] = "sale.cancelled"

    sale_id: str
    store_id: int
    order_id: int
    receivables: list[Receivable]
    stock_movements: list[StockMovement]


# --- erp.events (the ERP publishes, we consume) --------------------------------------------------


class PaymentInstallment(Part):
    amount: Money
    due_date: Day


class ConfirmPayment(Part):
    method: str
    installments: list[PaymentInstallment]


class SaleConfirm(Message):
    exchange: ClassVar[str] = "erp.events"
    routing_key: ClassVar[str] = "sale.confirm"

    sale_id: str
    confirmed_by: str
    seller_id: str | None = None
    payment: ConfirmPayment | None = None


class SaleDiscard(Message):
    exchange: ClassVar[str] = "erp.events"
    routing_key: ClassVar[str] = "sale.discard"

    sale_id: str
    discarded_by: str


EXCHANGES: tuple[str, ...] = ("ingest.events", "mapper.events", "ledger.events", "erp.events")

ALL_MESSAGES: tuple[type[Message], ...] = (
    OrderPaid,
    OrderCancelled,
    OrderPartiallyRefunded,
    OrderInvalid,
    IntegrationDisabled,
    IntegrationEnabled,
    WebhookReceived,
    PrivacyRequest,
    SalePendingReview,
    SaleRejected,
    SaleConfirmed,
    SaleConfirmationRefused,
    SaleCancelled,
    SalePartiallyRefunded,
    SaleConfirm,
    SaleDiscard,
)
