"""The consumer's unit of work (shared/unitofwork.py) over declared subscribers, in memory."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest

from shared.contracts import Message, SaleConfirm, SaleDiscard
from shared.messaging import Envelope
from shared.subscribers import Received, Subscribers, serves
from shared.unitofwork import MemoryUnitOfWork, UnitOfWorkHandler


class Book(MemoryUnitOfWork):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []


TEST = Subscribers[Book]("test")


@TEST.batch(SaleConfirm, "test.queue", "test.shard.<k>")
async def confirm_all(uow: Book, run: list[Received[SaleConfirm]]) -> list[Envelope]:
    uow.seen.append("confirm:" + ",".join(r.message.sale_id for r in run))
    return [_env(f"confirmed:{r.message.sale_id}") for r in run]


@TEST.each(SaleDiscard, "test.queue")
async def discard(uow: Book, received: Received[SaleDiscard]) -> list[Envelope]:
    uow.seen.append(f"discard:{received.message.sale_id}")
    if received.message.sale_id == "boom":
        raise RuntimeError("boom")
    return [_env(f"discarded:{received.message.sale_id}")]


def _env(message_id: str) -> Envelope:
    return Envelope("ledger.events", "x", b"{}", message_id, "x.v1")


def _confirm(sale_id: str, message_id: str) -> Received[Message]:
    return Received.message_of(SaleConfirm(sale_id=sale_id, confirmed_by="u"), message_id)


def _discard(sale_id: str, message_id: str) -> Received[Message]:
    return Received.message_of(SaleDiscard(sale_id=sale_id, discarded_by="u"), message_id)


def _handler(book: Book, queue: str = "test.queue") -> UnitOfWorkHandler[Book]:
    @contextlib.asynccontextmanager
    async def begin() -> AsyncIterator[Book]:
        async with book.savepoint():
            yield book

    return UnitOfWorkHandler(TEST.on(queue), begin)


async def test_runs_are_dispatched_by_type_in_order() -> None:
    book = Book()
    batch = [_confirm("a", "1"), _confirm("b", "2"), _discard("c", "3"), _confirm("d", "4")]
    envs = await _handler(book).handle(book, batch)
    assert book.seen == ["confirm:a,b", "discard:c", "confirm:d"]
    assert [e.message_id for e in envs] == [
        "confirmed:a",
        "confirmed:b",
        "discarded:c",
        "confirmed:d",
    ]


async def test_the_inbox_skips_redeliveries_and_duplicates_in_a_batch() -> None:
    book = Book()
    handler = _handler(book)
    await handler.handle(book, [_confirm("a", "1"), _confirm("a", "1")])
    await handler.handle(book, [_confirm("a", "1"), _confirm("b", "2")])
    assert book.seen == ["confirm:a", "confirm:b"]


async def test_a_failed_batch_leaves_nothing_behind() -> None:
    book = Book()
    handler = _handler(book)
    with pytest.raises(RuntimeError):
        async with handler.begin() as uow:
            await handler.handle(uow, [_confirm("a", "1"), _discard("boom", "2")])
    assert (book.seen, book.inbox, book.outbox) == ([], set(), {})


async def test_declarations_give_each_queue_its_models() -> None:
    assert TEST.models("test.queue") == {"sale.confirm": SaleConfirm, "sale.discard": SaleDiscard}
    assert TEST.models("test.shard.3") == {"sale.confirm": SaleConfirm}
    assert serves("test.shard.<k>", "test.shard.12")
    assert not serves("test.shard.<k>", "test.shard.x")
    with pytest.raises(LookupError):
        TEST.on("test.other")
    with pytest.raises(ValueError, match="declared twice"):
        TEST.each(SaleDiscard, "test.queue")(discard)


async def test_a_message_without_its_handler_here_fails_the_batch() -> None:
    book = Book()
    with pytest.raises(LookupError):
        await _handler(book, "test.shard.1").handle(book, [_discard("c", "1")])
