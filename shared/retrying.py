"""Riding out a batch's failures: which errors are not the message's fault, retries, isolation.

This module owns how a batch is handed to its handler until it is done (``HandlerRunner``):
- the database or the broker unreachable (``TRANSIENT_ERRORS``): the batch waits in-process with
  a growing pause, as long as it takes, and no message is blamed;
- serialization failures and deadlocks (``RETRYABLE_DB_ERRORS``): retried at once, a few times;
- a handler's ``TransientError``: each message is tried alone, and one that failed
  ``max_retries`` times gets the verdict ``retries_exhausted`` (so it never blocks the queue);
- any other exception: the batch is replayed one message at a time, so only the message that
  fails alone is dead-lettered (``handler_error``).
The consumer (``shared.consumer``) decides what to do with the verdicts; nothing here touches
the broker.
"""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
from aio_pika.exceptions import AMQPError

from shared.delivery import BatchResult, DeadLetter, Handler, Incoming, Outcome, TransientError
from shared.logging import get_logger
from shared.outbox import Staged

log = get_logger(__name__)

# The database or the broker, not the message: wait without blaming it.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    ConnectionError,
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    AMQPError,
)
RETRYABLE_DB_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.SerializationError,
    asyncpg.DeadlockDetectedError,
)

DEFAULT_MAX_RETRIES = 10
MAX_PAUSE_S = 10.0


class HandlerRunner:
    """Runs one queue's handler over a batch until every message has a verdict (or stopping)."""

    def __init__(self, queue: str, handler: Handler, max_retries: int) -> None:
        self.queue = queue
        self.handler = handler
        self.max_retries = max_retries
        self._attempts: dict[str, int] = {}
        self._pause = 0.5

    async def handle_until_done(
        self, batch: list[Incoming], stopping: asyncio.Event
    ) -> BatchResult | None:
        """Handle the batch, riding out failures in-process; None if stopped meanwhile.

        The batch is kept (not handed back) while the database or the API is down: every hand-back
        counts as a delivery, and the queue's delivery limit would dead-letter healthy messages
        during a long outage.
        """
        done: dict[str, Outcome] = {}
        staged: list[Staged] = []
        pending = batch
        while pending:
            try:
                result = await self._handle(pending)
            except TRANSIENT_ERRORS as exc:
                self._log_retry("batch waits for the database or the broker", exc, pending)
            except TransientError as exc:
                pending = await self._isolate_transient(pending, exc, done, staged)
                if not pending:
                    break
            else:
                done |= {i.message_id: o for i, o in zip(pending, result.outcomes, strict=True)}
                staged += result.staged
                break
            if not await self._pause_unless(stopping):
                return None
        self._pause = 0.5
        return BatchResult([done[i.message_id] for i in batch], staged)

    async def _isolate_transient(
        self,
        pending: list[Incoming],
        error: TransientError,
        done: dict[str, Outcome],
        staged: list[Staged],
    ) -> list[Incoming]:
        """Try each message alone; count the failures of those that still fail; give up on some."""
        failing: list[tuple[Incoming, BaseException]] = []
        if len(pending) == 1:
            failing = [(pending[0], error)]
        else:
            for incoming in pending:
                try:
                    single = await self._handle([incoming])
                except TransientError as single_error:
                    failing.append((incoming, single_error))
                    continue
                done[incoming.message_id] = single.outcomes[0]
                staged += single.staged
        still: list[Incoming] = []
        for incoming, last in failing:
            attempts = self._attempts.get(incoming.message_id, 0) + 1
            if attempts >= self.max_retries:
                self._attempts.pop(incoming.message_id, None)
                detail = f"{attempts} attempts; last error: {type(last).__name__}: {last}"
                done[incoming.message_id] = DeadLetter("retries_exhausted", detail)
                continue
            self._attempts[incoming.message_id] = attempts
            still.append(incoming)
        if still:
            self._log_retry("messages failed on a transient error, retrying", error, still)
        return still

    def _log_retry(self, what: str, exc: BaseException, batch: list[Incoming]) -> None:
        log.warning(
            what,
            queue=self.queue,
            count=len(batch),
            error=f"{type(exc).__name__}: {exc}",
            pause_s=self._pause,
        )

    async def _pause_unless(self, stopping: asyncio.Event) -> bool:
        """Pause before another attempt; False when stopping (the batch is handed back)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), timeout=self._pause)
        self._pause = min(self._pause * 2, MAX_PAUSE_S)
        return not stopping.is_set()

    async def _handle(self, batch: list[Incoming]) -> BatchResult:
        for attempt in range(3):
            try:
                return await self.handler(batch)
            except RETRYABLE_DB_ERRORS:
                if attempt == 2:
                    break
                await asyncio.sleep(0.01 * (attempt + 1))
            except TRANSIENT_ERRORS:
                raise
            except TransientError:
                raise
            except Exception as exc:
                if len(batch) == 1:
                    log.exception(
                        "handler failed", queue=self.queue, message_id=batch[0].message_id
                    )
                    return BatchResult(
                        [DeadLetter("handler_error", f"{type(exc).__name__}: {exc}")]
                    )
                break
        if len(batch) == 1:
            return BatchResult([DeadLetter("handler_error", "retryable conflicts persisted")])
        # Isolate: replay one by one so one bad message cannot fail its batch-mates.
        outcomes: list[Outcome] = []
        staged: list[Staged] = []
        for incoming in batch:
            single = await self._handle([incoming])
            outcomes.extend(single.outcomes)
            staged.extend(single.staged)
        return BatchResult(outcomes, staged)
