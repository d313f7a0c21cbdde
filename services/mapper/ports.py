"""What the mapper's use cases ask of their unit of work: the repositories, as protocols.

The consumer opens a ``MapperUnitOfWork`` around each batch (``shared.unitofwork``); the use
cases (``handlers``, ``imports``, ``integrations``) read and write through its repositories
only, so they run the same over PostgreSQL (``adapters.postgres``, with the set-based statements
of ``adapters.bulk``) and over dicts (``adapters.memory``, the unit tests). Every method of
``Imports`` takes and returns sets of rows: a batch of one is a set of one. Pure: no I/O here.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Protocol

from services.mapper import domain, rules
from shared.contracts import OrderInvalid, OrderPaid, PrivacyRequest, SaleRejected
from shared.privacy import Person
from shared.subscribers import Received
from shared.unitofwork import UnitOfWork

OrderKey = tuple[int, int]  # store, order
ProductKey = tuple[int, str]  # store, description
SkuKey = tuple[int, str]  # store, SKU
CustomerKey = tuple[int, str, str]  # store, name key, document key
OrderMessage = Received[OrderPaid] | Received[OrderInvalid]


def order_key(received: OrderMessage) -> OrderKey:
    return (received.message.store_id, received.message.order_id)


class UnstorableError(Exception):
    """The store refuses an order's data itself: a text too long for its index, a number too
    large for its column, a character it cannot hold. The message says what, as the store did."""


@dataclass(frozen=True)
class Snapshot:
    """What a batch's decisions read from the store before anything is written."""

    sales: set[OrderKey]  # orders that already have a sale
    settings: dict[int, rules.StoreRules]  # stores with settings (the rest follow the defaults)
    disabled: dict[int, str]  # stores switched off, and why


class Imports(Protocol):
    """Customers, products, sales and rejections of each store, and what an import reads.

    Any method may raise ``UnstorableError``.
    """

    async def snapshot(self, orders: Collection[OrderKey]) -> Snapshot: ...

    async def products(
        self, descriptions: Collection[ProductKey], skus: Collection[SkuKey]
    ) -> tuple[dict[ProductKey, domain.ProductRef], dict[SkuKey, domain.ProductRef]]:
        """Stored products with these descriptions, and the oldest one with each SKU."""

    async def on_hand(self, products: Collection[tuple[int, str]]) -> dict[tuple[int, str], int]:
        """Stock on hand of (store, product id); absent when the ledger holds none."""

    async def customers(
        self, drafts: Sequence[tuple[int, domain.CustomerDraft]]
    ) -> dict[CustomerKey, domain.CustomerRef]:
        """Each draft's customer, created unless one with its key exists (``created`` then)."""

    async def create_products(
        self, drafts: Sequence[tuple[int, domain.ProductDraft]]
    ) -> dict[ProductKey, domain.ProductRef]:
        """Each draft's product, created unless one with its description exists by now."""

    async def add_sales(
        self, sales: Sequence[tuple[str, domain.SaleDraft]], resolved: Collection[OrderKey]
    ) -> set[str]:
        """Store the sales (a sale whose order has one by now is skipped) and resolve the open
        rejections of their orders and of ``resolved``; the ids of the sales stored."""

    async def reject(self, rejected: SaleRejected, received: OrderMessage) -> int:
        """Record (or refresh) the order's rejection; how many times it has been rejected."""


class StoreStatus(Protocol):
    """Which stores are switched off, as ingest announces it (``integrations``)."""

    async def set(self, store_id: int, *, enabled: bool, reason: str | None) -> None: ...


class Privacy(Protocol):
    async def apply(self, request: PrivacyRequest) -> Person | None:
        """Export or redact what the mapper keeps; the person (None: the whole store)."""

    async def redact_queues(self, request: PrivacyRequest, person: Person | None) -> None:
        """The person out of the parked and dead-lettered messages of the mapper's queues."""


class MapperUnitOfWork(UnitOfWork):
    """The mapper's repositories over one batch's transaction, the clock, and the
    installation's calendar (a store's own ``timezone`` setting overrides it)."""

    imports: Imports
    stores: StoreStatus
    privacy: Privacy
    default_timezone: str
