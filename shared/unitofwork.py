"""The unit of work a consumer opens around a batch, and the wiring of a declared consumer.

This module owns what every consuming service used to paste into its handler: for a batch, open
the transaction, claim the inbox (a redelivered message is skipped whole, a duplicate inside the
batch runs once), hand each run of consecutive messages of one type to the handler declared for
it (``shared.subscribers``), stage what the handlers return in the outbox, and commit. The
consumer (``shared.consumer``) then acknowledges and publishes; when a batch fails, its runner
(``shared.retrying``) replays it one message per transaction, which isolates the failing one.

A handler is handed the unit of work: the service's repositories over the transaction and the
clock. ``PostgresUnitOfWork`` is the base of the real ones; ``MemoryUnitOfWork`` the base of
the in-memory ones the use cases' unit tests run against (a failed batch leaves no trace there
either). ``consumer`` builds a service's ``BatchConsumer`` from its declarations in one call.
"""

from __future__ import annotations

import abc
import contextlib
import copy
import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from itertools import groupby
from typing import Any, Generic, TypeAlias, TypeVar

import asyncpg
import structlog

from shared.consumer import BatchConsumer
from shared.contracts import Message
from shared.db import Conn
from shared.delivery import BatchResult, DeadLetterHook, Handler, Incoming
from shared.logging import get_logger
from shared.messaging import Envelope
from shared.outbox import Staged, claim, stage
from shared.runtime import Context
from shared.subscribers import Received, Subscriber, Subscribers

log = get_logger(__name__)

Clock: TypeAlias = Callable[[], dt.datetime]


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UnitOfWork(abc.ABC):
    """One batch's transaction as the handlers see it; services add their repositories."""

    def __init__(self, clock: Clock = utc_now) -> None:
        self.clock = clock

    @abc.abstractmethod
    async def claim(self, message_ids: list[str]) -> set[str]:
        """Record ids in the inbox; those seen for the first time."""

    @abc.abstractmethod
    async def stage(self, envs: list[Envelope]) -> list[Staged]:
        """Put envelopes in the outbox (one already there is skipped); what was staged."""

    @abc.abstractmethod
    def savepoint(self) -> contextlib.AbstractAsyncContextManager[None]:
        """A nested transaction: what it did is undone if it raises."""


class PostgresUnitOfWork(UnitOfWork):
    """Over a connection whose transaction the consumer opened; inbox and outbox of ``schema``."""

    def __init__(self, conn: Conn, schema: str, clock: Clock = utc_now) -> None:
        super().__init__(clock)
        self.conn = conn
        self.schema = schema

    async def claim(self, message_ids: list[str]) -> set[str]:
        return await claim(self.conn, self.schema, message_ids)

    async def stage(self, envs: list[Envelope]) -> list[Staged]:
        return await stage(self.conn, self.schema, envs)

    @contextlib.asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        async with self.conn.transaction():
            yield


class MemoryUnitOfWork(UnitOfWork):
    """State in the instance's attributes; a savepoint or a failed batch restores them."""

    def __init__(self, clock: Clock = utc_now) -> None:
        super().__init__(clock)
        self.inbox: set[str] = set()
        self.outbox: dict[str, Envelope] = {}
        self._next_staged = 0

    async def claim(self, message_ids: list[str]) -> set[str]:
        fresh = set(message_ids) - self.inbox
        self.inbox |= fresh
        return fresh

    async def stage(self, envs: list[Envelope]) -> list[Staged]:
        staged: list[Staged] = []
        for env in envs:
            if env.message_id in self.outbox:
                continue
            self.outbox[env.message_id] = env
            self._next_staged += 1
            staged.append(Staged(self._next_staged, env))
        return staged

    @contextlib.asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        saved = copy.deepcopy({k: v for k, v in vars(self).items() if k != "clock"})
        try:
            yield
        except BaseException:
            vars(self).update(saved)
            raise

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[MemoryUnitOfWork]:
        async with self.savepoint():
            yield self


W = TypeVar("W", bound=UnitOfWork)
Begin: TypeAlias = Callable[[], contextlib.AbstractAsyncContextManager[W]]
InboxId: TypeAlias = Callable[[Received[Message]], str]
Admit: TypeAlias = Callable[
    [W, list[Received[Message]]], Awaitable[tuple[list[Received[Message]], list[Envelope]]]
]


def postgres(pool: asyncpg.Pool, unit_of_work: Callable[[Conn], W]) -> Begin[W]:
    """Begin: a pooled connection, its transaction, and the unit of work over it."""

    @contextlib.asynccontextmanager
    async def begin() -> AsyncIterator[W]:
        async with pool.acquire() as conn, conn.transaction():
            yield unit_of_work(conn)

    return begin


class UnitOfWorkHandler(Generic[W]):
    """The consumer's handler of one queue: a batch in one unit of work, dispatched by type.

    ``inbox_id`` names a message in the inbox when its id alone is not enough (the ledger's
    shards claim their copy of a probe); ``admit`` keeps, after the inbox, the messages this
    consumer acts on and may add envelopes of its own (the ledger's probes).
    """

    def __init__(
        self,
        subscribers: Sequence[Subscriber[W, Any]],
        begin: Begin[W],
        *,
        inbox_id: InboxId | None = None,
        admit: Admit[W] | None = None,
    ) -> None:
        self.routes: dict[type[Message], Subscriber[W, Any]] = {s.model: s for s in subscribers}
        if any(s.own is not None for s in subscribers):
            raise ValueError(
                "handlers with transactions of their own are wired with SessionHandler"
            )
        self.begin = begin
        self.inbox_id = inbox_id
        self.admit = admit

    async def __call__(self, batch: list[Incoming]) -> BatchResult:
        staged = await self.run([Received.of(i) for i in batch])
        return BatchResult([None] * len(batch), staged)

    async def run(self, batch: list[Received[Message]]) -> list[Staged]:
        """The batch in one unit of work, committed; what it staged."""
        async with self.begin() as uow:
            envs = await self.handle(uow, batch)
            return await uow.stage(envs)

    async def handle(self, uow: W, batch: list[Received[Message]]) -> list[Envelope]:
        """Claim, admit and dispatch ``batch`` in ``uow``; the envelopes to stage."""
        ids = [self.inbox_id(r) if self.inbox_id else r.message_id for r in batch]
        fresh = await uow.claim(ids)
        todo: list[Received[Message]] = []
        for received, key in zip(batch, ids, strict=True):
            if key not in fresh:
                log.info("redelivered message skipped", message_id=received.message_id)
                continue
            fresh.discard(key)  # a duplicate inside the batch runs once
            todo.append(received)
        envs: list[Envelope] = []
        if self.admit is not None:
            todo, extra = await self.admit(uow, todo)
            envs += extra
        # Runs keep the order between types: an announcement before the confirmation after it.
        for model, run in groupby(todo, key=lambda r: type(r.message)):
            envs += await self._dispatch(uow, self._route(model), list(run))
        return envs

    def _route(self, model: type[Message]) -> Subscriber[W, Any]:
        route = self.routes.get(model)
        if route is None:
            raise LookupError(f"no handler is declared for {model.routing_key} here")
        return route

    async def _dispatch(
        self, uow: W, route: Subscriber[W, Any], run: list[Received[Any]]
    ) -> list[Envelope]:
        if route.batch is not None:
            return await route.batch(uow, run)
        each = route.each
        if each is None:
            raise TypeError(f"{route.model.__name__}: no handler of one message declared")
        envs: list[Envelope] = []
        for received in run:
            structlog.contextvars.bind_contextvars(message_id=received.message_id)
            try:
                envs += await each(uow, received)
            finally:
                structlog.contextvars.clear_contextvars()
        return envs


S = TypeVar("S")


class SessionHandler(Generic[S]):
    """The handler of a queue whose declared handlers keep their own transactions (no inbox:
    their own keys make a redelivery harmless); ``session`` is what they are handed."""

    def __init__(self, subscribers: Sequence[Subscriber[S, Any]], session: S) -> None:
        self.routes = {s.model: s for s in subscribers}
        self.session = session

    async def __call__(self, batch: list[Incoming]) -> BatchResult:
        staged: list[Staged] = []
        received = [Received.of(i) for i in batch]
        for model, run in groupby(received, key=lambda r: type(r.message)):
            own = self.routes[model].own
            if own is None:
                raise ValueError(f"{model.routing_key} is not declared with its own transactions")
            staged += await own(self.session, list(run))
        return BatchResult([None] * len(batch), staged)


def consumer(
    ctx: Context,
    schema: str,
    queue: str,
    declared: Subscribers[Any],
    handler: Handler,
    *,
    on_dead_letter: DeadLetterHook | None = None,
) -> BatchConsumer:
    """The consumer of ``queue``: decodes what is declared on it, and the settings' batching."""
    settings = ctx.settings
    return BatchConsumer(
        broker=ctx.broker,
        pool=ctx.pool,
        schema=schema,
        queue=queue,
        models=declared.models(queue),
        handler=handler,
        metrics=ctx.metrics,
        publisher=ctx.publisher,
        batch_size=settings.batch_size,
        batch_wait_ms=settings.batch_wait_ms,
        max_retries=settings.max_retries,
        on_dead_letter=on_dead_letter,
    )
