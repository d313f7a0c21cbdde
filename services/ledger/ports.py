"""What the ledger's use cases ask of their unit of work: the repositories, as protocols.

The consumer opens a ``LedgerUnitOfWork`` around each batch (``shared.unitofwork``); the use
cases (``handlers``, ``confirming``) read and write through its repositories only, so they run
the same over PostgreSQL (``adapters.postgres``, row locks and set-based statements) and over
dicts (``adapters.memory``, the unit tests). Every method takes and returns sets of rows: a
batch of one is a set of one. Pure: no I/O here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from services.ledger.domain import PlannedInstallment, PlannedMovement, SaleLine
from shared.contracts import (
    PrivacyRequest,
    Receivable,
    SaleConfirm,
    SalePendingReview,
    StockMovement,
)
from shared.privacy import Person
from shared.unitofwork import UnitOfWork


@dataclass(frozen=True)
class SaleRow:
    sale_id: str
    store_id: int
    order_id: int
    status: str
    seller_id: str | None
    total: Decimal
    sale_date: dt.date
    confirm_message_id: str | None


@dataclass(frozen=True)
class Posting:
    """A confirmation that passed every check: what to post for its sale."""

    sale: SaleRow
    request: SaleConfirm
    message_id: str
    installments: list[PlannedInstallment]
    movements: list[PlannedMovement]


Posted = tuple[list[Receivable], list[StockMovement]]
StockKey = tuple[int, str]  # (store id, product id)


@dataclass(frozen=True)
class NotedRefund:
    sale_id: str
    store_id: int
    order_id: int
    noted_at: dt.datetime


class Sales(Protocol):
    async def add(self, sales: Sequence[SalePendingReview]) -> set[str]:
        """Keep announced sales with their lines; the ids inserted (the others were known)."""

    async def lock(self, sale_ids: Sequence[str]) -> dict[str, SaleRow]:
        """The known ones, locked against every other transaction until the batch commits."""

    async def lock_of_order(self, store_id: int, order_id: int) -> SaleRow | None: ...

    async def owners(self, sale_ids: Sequence[str]) -> dict[str, int]:
        """The store of each known sale."""

    async def lines(self, sale_ids: Sequence[str]) -> dict[str, list[SaleLine]]: ...

    async def confirm(self, postings: Sequence[Posting]) -> dict[str, Posted]:
        """Post receivables and movements out and mark each sale confirmed."""

    async def set_cancelled(self, sale_id: str, reason: str) -> None: ...

    async def note_refund(self, store_id: int, order_id: int, at: dt.datetime) -> str | None:
        """Note a partial refund on the order's sale (once); its id, None if nothing changed."""

    async def known_order(self, store_id: int, order_id: int) -> bool: ...


class Receivables(Protocol):
    async def of(self, sale_ids: Sequence[str]) -> dict[str, list[Receivable]]:
        """Each sale's receivables by number."""

    async def cancel_open(self, sale_id: str) -> list[Receivable]:
        """Cancel the open ones; those cancelled now, by number."""


class Stock(Protocol):
    async def checked_stores(self, store_ids: set[int]) -> set[int]:
        """The stores whose confirmations must find the stock on hand."""

    async def lock_and_count(self, keys: Sequence[StockKey]) -> dict[StockKey, int]:
        """Serialise stock checks per product (in a fixed order), then read what is on hand."""

    async def movements(
        self, sale_ids: Sequence[str], direction: str
    ) -> dict[str, list[tuple[int, StockMovement]]]:
        """Each sale's movements in ``direction`` with their line numbers, by line."""

    async def post(
        self, sale: SaleRow, plan: Sequence[PlannedMovement], reason: str
    ) -> list[StockMovement]: ...


class Early(Protocol):
    """What arrived before its sale: cancellations and partial refunds, kept until it comes."""

    async def remember_cancellation(
        self, store_id: int, order_id: int, at: dt.datetime, reason: str
    ) -> None: ...

    async def take_cancellations(self, sale_ids: Sequence[str]) -> dict[str, str]:
        """Those remembered for sales just kept, forgotten now: sale id -> reason."""

    async def remember_refund(self, store_id: int, order_id: int, at: dt.datetime) -> None: ...

    async def take_refunds(self, sale_ids: Sequence[str]) -> list[NotedRefund]:
        """Note on sales just kept the refunds remembered for them; the sales noted now."""


class Probes(Protocol):
    async def note(self, message_ids: Sequence[str], shard: int) -> dict[str, int]:
        """Note that ``shard`` saw these probes about unknown sales; how many shards have."""


class Privacy(Protocol):
    async def apply(self, request: PrivacyRequest) -> Person | None:
        """Export or redact what the ledger keeps; the person (None: the whole store)."""

    async def redact_dead_letters(self, request: PrivacyRequest, person: Person | None) -> None:
        """The person out of the dead-lettered messages of this consumer's queues."""


class LedgerUnitOfWork(UnitOfWork):
    """The ledger's repositories over one batch's transaction, and the clock."""

    sales: Sales
    receivables: Receivables
    stock: Stock
    early: Early
    probes: Probes
    privacy: Privacy
