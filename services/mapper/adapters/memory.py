"""The mapper's unit of work in dicts: the use cases' unit tests run against it, fast.

It keeps the same keys the database does (store + name key + document key for customers, store
+ description for products, store + order for sales), so a use case that would break one breaks
it here too: the oldest product with a SKU wins, a sale of an order that has one is skipped, a
rejection counts its attempts until a sale resolves it, and a text holding a NUL character is
refused as PostgreSQL refuses it (``UnstorableError``). A failed batch leaves nothing behind
(``MemoryUnitOfWork``).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Collection, Sequence
from dataclasses import dataclass, field

from services.mapper import domain, rules
from services.mapper.ports import (
    CustomerKey,
    MapperUnitOfWork,
    OrderKey,
    OrderMessage,
    ProductKey,
    SkuKey,
    Snapshot,
    UnstorableError,
)
from shared.contracts import PrivacyRequest, SaleRejected
from shared.privacy import Person
from shared.unitofwork import Begin, Clock, MemoryUnitOfWork, utc_now


@dataclass
class Product:
    id: str
    store_id: int
    description: str
    sku: str | None
    order: int  # creation order: the oldest product with a SKU wins


@dataclass
class Rejection:
    reason: str
    detail: str
    items: list[dict[str, object]] | None
    message_id: str
    attempts: int = 1
    resolved: bool = False


def _storable(*texts: str | None) -> None:
    if any(t is not None and "\x00" in t for t in texts):
        raise UnstorableError('invalid byte sequence for encoding "UTF8": 0x00')


@dataclass
class MemoryImports:
    """Every table of an import, as dicts; ``settings`` and ``stock`` are set by the test (the
    operator's and the ledger's parts), ``disabled`` by ``MemoryStoreStatus``."""

    settings: dict[int, rules.StoreRules] = field(default_factory=dict)
    disabled: dict[int, str] = field(default_factory=dict)
    stock: dict[tuple[int, str], int] = field(default_factory=dict)
    customers_by_key: dict[CustomerKey, domain.CustomerRef] = field(default_factory=dict)
    products_by_key: dict[ProductKey, Product] = field(default_factory=dict)
    sales: dict[OrderKey, tuple[str, domain.SaleDraft]] = field(default_factory=dict)
    rejections: dict[OrderKey, Rejection] = field(default_factory=dict)
    last_id: int = 0

    def _id(self, kind: str) -> str:
        self.last_id += 1
        return f"{kind}-{self.last_id}"

    def add_product(self, store_id: int, description: str, sku: str | None = None) -> str:
        """A product catalogued by the operator; its id."""
        product = Product(self._id("product"), store_id, description, sku, self.last_id)
        self.products_by_key[(store_id, description)] = product
        return product.id

    async def snapshot(self, orders: Collection[OrderKey]) -> Snapshot:
        stores = {s for s, _ in orders}
        return Snapshot(
            sales={k for k in orders if k in self.sales},
            settings={s: r for s, r in self.settings.items() if s in stores},
            disabled={s: r for s, r in self.disabled.items() if s in stores},
        )

    async def products(
        self, descriptions: Collection[ProductKey], skus: Collection[SkuKey]
    ) -> tuple[dict[ProductKey, domain.ProductRef], dict[SkuKey, domain.ProductRef]]:
        found = {
            k: domain.ProductRef(p.id, p.description, created=False)
            for k in descriptions
            if (p := self.products_by_key.get(k)) is not None
        }
        oldest: dict[SkuKey, domain.ProductRef] = {}
        for p in sorted(self.products_by_key.values(), key=lambda p: p.order):
            key = (p.store_id, p.sku or "")
            if p.sku and key in skus and key not in oldest:
                oldest[key] = domain.ProductRef(p.id, p.description, created=False)
        return found, oldest

    async def on_hand(self, products: Collection[tuple[int, str]]) -> dict[tuple[int, str], int]:
        return {k: n for k, n in self.stock.items() if k in products}

    async def customers(
        self, drafts: Sequence[tuple[int, domain.CustomerDraft]]
    ) -> dict[CustomerKey, domain.CustomerRef]:
        refs: dict[CustomerKey, domain.CustomerRef] = {}
        for store_id, draft in drafts:
            _storable(draft.name, draft.email, draft.mobile_phone, draft.business_phone)
            key = (store_id, *draft.key)
            stored = self.customers_by_key.get(key)
            if stored is None:
                refs[key] = domain.CustomerRef.new(draft, self._id("customer"))
                self.customers_by_key[key] = domain.CustomerRef.new(draft, refs[key].id)
            else:
                refs[key] = domain.CustomerRef(
                    stored.id,
                    stored.name,
                    stored.document,
                    stored.mobile_phone,
                    stored.business_phone,
                    created=False,
                )
        return refs

    async def create_products(
        self, drafts: Sequence[tuple[int, domain.ProductDraft]]
    ) -> dict[ProductKey, domain.ProductRef]:
        refs: dict[ProductKey, domain.ProductRef] = {}
        for store_id, draft in drafts:
            _storable(draft.description, draft.sku)
            key = (store_id, draft.description)
            stored = self.products_by_key.get(key)
            if stored is None:
                product_id = self.add_product(store_id, draft.description, draft.sku)
                refs[key] = domain.ProductRef(product_id, draft.description, created=True)
            else:
                refs[key] = domain.ProductRef(stored.id, draft.description, created=False)
        return refs

    async def add_sales(
        self, sales: Sequence[tuple[str, domain.SaleDraft]], resolved: Collection[OrderKey]
    ) -> set[str]:
        stored: set[str] = set()
        for sale_id, sale in sales:
            key = (sale.store_id, sale.order_id)
            if key not in self.sales:
                self.sales[key] = (sale_id, sale)
                stored.add(sale_id)
                self._resolve(key)
        for key in resolved:
            self._resolve(key)
        return stored

    def _resolve(self, key: OrderKey) -> None:
        if key in self.rejections:
            self.rejections[key].resolved = True

    async def reject(self, rejected: SaleRejected, received: OrderMessage) -> int:
        key = (rejected.store_id, rejected.order_id)
        items = (
            [i.model_dump(mode="json") for i in rejected.items]
            if rejected.items is not None
            else None
        )
        earlier = self.rejections.get(key)
        attempts = earlier.attempts + 1 if earlier is not None else 1
        self.rejections[key] = Rejection(
            rejected.reason, rejected.detail, items, received.message_id, attempts
        )
        return attempts

    def open_rejections(self) -> dict[OrderKey, Rejection]:
        return {k: r for k, r in self.rejections.items() if not r.resolved}


@dataclass
class MemoryStoreStatus:
    imports: MemoryImports

    async def set(self, store_id: int, *, enabled: bool, reason: str | None) -> None:
        if enabled:
            self.imports.disabled.pop(store_id, None)
        else:
            self.imports.disabled[store_id] = reason or "switched_off"


@dataclass
class MemoryPrivacy:
    requests: list[PrivacyRequest]

    async def apply(self, request: PrivacyRequest) -> Person | None:
        self.requests.append(request)
        return None

    async def redact_queues(self, request: PrivacyRequest, person: Person | None) -> None:
        """No queues in memory."""


class MemoryMapper(MemoryUnitOfWork, MapperUnitOfWork):
    def __init__(
        self, default_timezone: str = rules.DEFAULT_TIMEZONE, clock: Clock = utc_now
    ) -> None:
        super().__init__(clock)
        self.tables = MemoryImports()
        self.imports = self.tables
        self.stores = MemoryStoreStatus(self.tables)
        self.privacy_requests: list[PrivacyRequest] = []  # those applied, in order
        self.privacy = MemoryPrivacy(self.privacy_requests)
        self.default_timezone = default_timezone


def begin(uow: MemoryMapper) -> Begin[MapperUnitOfWork]:
    """Every batch in ``uow``, undone if it fails."""

    @contextlib.asynccontextmanager
    async def batch() -> AsyncIterator[MapperUnitOfWork]:
        async with uow.savepoint():
            yield uow

    return batch
