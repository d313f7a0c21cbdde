"""The ledger's unit of work in dicts: the use cases' unit tests run against it, fast.

It keeps the same keys the database does (a sale per id and per order, a receivable per (sale,
number), a movement per (sale, line, direction)), so a use case that would break one breaks it
here too; a failed batch leaves nothing behind (``MemoryUnitOfWork``). Locks are no-ops: one
batch runs at a time. Stock on hand is what the movements add up to.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace

from services.ledger.domain import PlannedMovement, SaleLine
from services.ledger.ports import LedgerUnitOfWork, NotedRefund, Posted, Posting, SaleRow, StockKey
from shared.contracts import PrivacyRequest, Receivable, SalePendingReview, StockMovement
from shared.privacy import Person
from shared.unitofwork import Begin, Clock, MemoryUnitOfWork, utc_now


@dataclass
class Kept:
    """A sale as the ledger's tables hold it."""

    row: SaleRow
    lines: list[SaleLine]
    announcement: SalePendingReview
    confirmed_by: str | None = None
    cancel_reason: str | None = None
    partially_refunded_at: dt.datetime | None = None


@dataclass
class Moved:
    store_id: int
    sale_id: str | None
    line_number: int | None
    reason: str
    movement: StockMovement


@dataclass
class Tables:
    sales: dict[str, Kept] = field(default_factory=dict)
    receivables: dict[str, list[Receivable]] = field(default_factory=dict)
    movements: list[Moved] = field(default_factory=list)
    stock_checked: set[int] = field(default_factory=set)
    early_cancellations: dict[tuple[int, int], tuple[dt.datetime, str]] = field(
        default_factory=dict
    )
    early_refunds: dict[tuple[int, int], dt.datetime] = field(default_factory=dict)
    unowned: dict[str, set[int]] = field(default_factory=dict)
    privacy: list[PrivacyRequest] = field(default_factory=list)
    last_id: int = 0

    def next_id(self) -> str:
        self.last_id += 1
        return str(self.last_id)

    def of_order(self, store_id: int, order_id: int) -> Kept | None:
        return next(
            (k for k in self.sales.values() if (k.row.store_id, k.row.order_id) == (store_id, order_id)),
            None,
        )  # fmt: skip

    def on_hand(self, store_id: int, product_id: str) -> int:
        return sum(
            m.movement.quantity if m.movement.direction == "in" else -m.movement.quantity
            for m in self.movements
            if (m.store_id, m.movement.product_id) == (store_id, product_id)
        )

    def post(
        self, sale: SaleRow, plan: Sequence[PlannedMovement], reason: str
    ) -> list[StockMovement]:
        taken = {(m.sale_id, m.line_number, m.movement.direction) for m in self.movements}
        out: list[StockMovement] = []
        for p in plan:
            if (sale.sale_id, p.line_number, p.direction) in taken:
                continue
            moved = StockMovement(
                id=self.next_id(),
                product_id=p.product_id,
                quantity=p.quantity,
                direction=p.direction,
            )
            self.movements.append(Moved(sale.store_id, sale.sale_id, p.line_number, reason, moved))
            out.append(moved)
        return out


class MemorySales:
    def __init__(self, t: Tables) -> None:
        self.t = t

    async def add(self, sales: Sequence[SalePendingReview]) -> set[str]:
        inserted: set[str] = set()
        for s in sales:
            if s.sale_id in self.t.sales or self.t.of_order(s.store_id, s.order_id):
                continue
            row = SaleRow(
                s.sale_id,
                s.store_id,
                s.order_id,
                "pending_review",
                s.seller_id,
                s.total,
                s.sale_date,
                None,
            )
            lines = [
                SaleLine(n, i.product.id, i.quantity, i.description)
                for n, i in enumerate(s.items, 1)
            ]
            self.t.sales[s.sale_id] = Kept(row, lines, s)
            inserted.add(s.sale_id)
        return inserted  # fmt: skip

    async def lock(self, sale_ids: Sequence[str]) -> dict[str, SaleRow]:
        return {i: self.t.sales[i].row for i in sorted(sale_ids) if i in self.t.sales}

    async def lock_of_order(self, store_id: int, order_id: int) -> SaleRow | None:
        kept = self.t.of_order(store_id, order_id)
        return kept.row if kept else None

    async def owners(self, sale_ids: Sequence[str]) -> dict[str, int]:
        return {i: self.t.sales[i].row.store_id for i in sale_ids if i in self.t.sales}

    async def lines(self, sale_ids: Sequence[str]) -> dict[str, list[SaleLine]]:
        return {i: list(self.t.sales[i].lines) for i in sale_ids if i in self.t.sales}

    async def confirm(self, postings: Sequence[Posting]) -> dict[str, Posted]:
        out: dict[str, Posted] = {}
        for p in postings:
            receivables = [
                Receivable(id=self.t.next_id(), number=i.number, amount=i.amount, due_date=i.due_date, method=i.method, status="open")
                for i in p.installments
            ]  # fmt: skip
            self.t.receivables.setdefault(p.sale.sale_id, []).extend(receivables)
            moved = self.t.post(p.sale, p.movements, "sale")
            kept = self.t.sales[p.sale.sale_id]
            seller = p.request.seller_id or p.sale.seller_id
            kept.row = replace(
                kept.row, status="confirmed", seller_id=seller, confirm_message_id=p.message_id
            )
            kept.confirmed_by = p.request.confirmed_by
            out[p.sale.sale_id] = (receivables, moved)
        return out  # fmt: skip

    async def set_cancelled(self, sale_id: str, reason: str) -> None:
        kept = self.t.sales[sale_id]
        kept.row = replace(kept.row, status="cancelled")
        kept.cancel_reason = reason

    async def note_refund(self, store_id: int, order_id: int, at: dt.datetime) -> str | None:
        kept = self.t.of_order(store_id, order_id)
        if kept is None or kept.partially_refunded_at is not None:
            return None
        kept.partially_refunded_at = at
        return kept.row.sale_id

    async def known_order(self, store_id: int, order_id: int) -> bool:
        return self.t.of_order(store_id, order_id) is not None


class MemoryReceivables:
    def __init__(self, t: Tables) -> None:
        self.t = t

    async def of(self, sale_ids: Sequence[str]) -> dict[str, list[Receivable]]:
        return {i: list(self.t.receivables[i]) for i in sale_ids if i in self.t.receivables}

    async def cancel_open(self, sale_id: str) -> list[Receivable]:
        held = self.t.receivables.get(sale_id, [])
        cancelled = [
            r.model_copy(update={"status": "cancelled"}) for r in held if r.status == "open"
        ]
        by_id = {r.id: r for r in cancelled}
        self.t.receivables[sale_id] = [by_id.get(r.id, r) for r in held]
        return cancelled  # fmt: skip


class MemoryStock:
    def __init__(self, t: Tables) -> None:
        self.t = t

    async def checked_stores(self, store_ids: set[int]) -> set[int]:
        return store_ids & self.t.stock_checked

    async def lock_and_count(self, keys: Sequence[StockKey]) -> dict[StockKey, int]:
        return {k: self.t.on_hand(*k) for k in keys}

    async def movements(
        self, sale_ids: Sequence[str], direction: str
    ) -> dict[str, list[tuple[int, StockMovement]]]:
        out: dict[str, list[tuple[int, StockMovement]]] = {}
        for m in sorted(self.t.movements, key=lambda m: m.line_number or 0):
            if (
                m.sale_id is not None
                and m.sale_id in sale_ids
                and m.movement.direction == direction
            ):
                out.setdefault(m.sale_id, []).append((m.line_number or 0, m.movement))
        return out

    async def post(
        self, sale: SaleRow, plan: Sequence[PlannedMovement], reason: str
    ) -> list[StockMovement]:
        return self.t.post(sale, plan, reason)


class MemoryEarly:
    def __init__(self, t: Tables) -> None:
        self.t = t

    async def remember_cancellation(
        self, store_id: int, order_id: int, at: dt.datetime, reason: str
    ) -> None:
        self.t.early_cancellations.setdefault((store_id, order_id), (at, reason))

    async def take_cancellations(self, sale_ids: Sequence[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for sale_id in sale_ids:
            row = self.t.sales[sale_id].row
            taken = self.t.early_cancellations.pop((row.store_id, row.order_id), None)
            if taken is not None:
                out[sale_id] = taken[1]
        return out

    async def remember_refund(self, store_id: int, order_id: int, at: dt.datetime) -> None:
        self.t.early_refunds.setdefault((store_id, order_id), at)

    async def take_refunds(self, sale_ids: Sequence[str]) -> list[NotedRefund]:
        out: list[NotedRefund] = []
        for sale_id in sale_ids:
            kept = self.t.sales[sale_id]
            at = self.t.early_refunds.pop((kept.row.store_id, kept.row.order_id), None)
            if at is not None and kept.partially_refunded_at is None:
                kept.partially_refunded_at = at
                out.append(NotedRefund(sale_id, kept.row.store_id, kept.row.order_id, at))
        return out


class MemoryProbes:
    def __init__(self, t: Tables) -> None:
        self.t = t

    async def note(self, message_ids: Sequence[str], shard: int) -> dict[str, int]:
        for message_id in message_ids:
            self.t.unowned.setdefault(message_id, set()).add(shard)
        return {m: len(self.t.unowned[m]) for m in message_ids}


class MemoryPrivacy:
    def __init__(self, t: Tables) -> None:
        self.t = t

    async def apply(self, request: PrivacyRequest) -> Person | None:
        self.t.privacy.append(request)
        return None

    async def redact_dead_letters(self, request: PrivacyRequest, person: Person | None) -> None:
        """No dead queues in memory."""


class MemoryLedger(MemoryUnitOfWork, LedgerUnitOfWork):
    def __init__(self, clock: Clock = utc_now) -> None:
        super().__init__(clock)
        self.tables = Tables()
        self.sales = MemorySales(self.tables)
        self.receivables = MemoryReceivables(self.tables)
        self.stock = MemoryStock(self.tables)
        self.early = MemoryEarly(self.tables)
        self.probes = MemoryProbes(self.tables)
        self.privacy = MemoryPrivacy(self.tables)

    def add_stock(self, store_id: int, product_id: str, quantity: int) -> None:
        moved = StockMovement(
            id=self.tables.next_id(), product_id=product_id, quantity=quantity, direction="in"
        )
        self.tables.movements.append(Moved(store_id, None, None, "adjustment", moved))


def begin(uow: MemoryLedger) -> Begin[LedgerUnitOfWork]:
    """Every batch in ``uow``, undone if it fails."""

    @contextlib.asynccontextmanager
    async def batch() -> AsyncIterator[LedgerUnitOfWork]:
        async with uow.savepoint():
            yield uow

    return batch
