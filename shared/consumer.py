"""The batch consumer every service runs: decode, handle in one transaction, publish, ack.

This module owns the consuming loop: gathering a batch, dead-lettering what cannot be decoded,
submitting what the transaction staged to the outbox publisher, acknowledging, and handing back
what is buffered on stop. What a handler receives and answers is ``shared.delivery``; how a
batch rides out failures (waits, retries, isolation) is ``shared.retrying``. The names other
modules import from here are re-exported.

A batch is up to ``batch_size`` messages or whatever arrived within ``batch_wait_ms`` of the
first. Messages that are not JSON or not the contract never reach a handler: they are copied to
``<queue>.dead`` with ``x-error-reason``/``x-error-detail`` and acknowledged, so they cannot block
the queue. The handler commits its transaction (domain rows and outbox rows together) and says,
per message, processed or dead-letter; only then are messages acknowledged, with one
``ack(multiple=True)``. If a batch fails as a whole the consumer replays it one message at a
time, so one bad message is dead-lettered alone and its batch-mates go through.

Failures that are not the message's fault are told apart from those that may be:
- the database or the broker unreachable: the batch waits in-process with a growing pause, as
  long as it takes, and no message is blamed (a long outage must not dead-letter healthy ones);
- a handler's ``TransientError`` (a store's API down, say): the messages that still fail alone
  are retried with a pause, and one that failed ``max_retries`` times goes to ``<queue>.dead``
  with ``x-error-reason: retries_exhausted`` and the last error, so it never blocks the queue.

The broker link may be rebuilt under the consumer at any time (``shared.link``): deliveries of
the old channel are dropped (the broker redelivers them, and the inbox makes that harmless), and
a batch whose acknowledgement or dead-lettering failed is simply left unacknowledged.
On stop, the consumer is cancelled first, the batch in hand is finished, and anything buffered
but not started is handed back (nack with requeue).
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import asyncpg
import structlog
from aio_pika.abc import AbstractIncomingMessage
from aio_pika.exceptions import CONNECTION_EXCEPTIONS, ChannelInvalidStateError

from shared.contracts import Message
from shared.delivery import (
    BatchResult,
    DeadLetter,
    DeadLetterHook,
    Handler,
    Incoming,
    MalformedError,
    Outcome,
    TransientError,
    decode,
)
from shared.link import Subscription
from shared.logging import get_logger
from shared.messaging import Broker, PublishError
from shared.metrics import ServiceMetrics
from shared.outbox import OutboxPublisher
from shared.retrying import (
    DEFAULT_MAX_RETRIES,
    RETRYABLE_DB_ERRORS,
    TRANSIENT_ERRORS,
    HandlerRunner,
)

__all__ = [
    "DEFAULT_MAX_RETRIES",
    "RETRYABLE_DB_ERRORS",
    "TRANSIENT_ERRORS",
    "BatchConsumer",
    "BatchResult",
    "DeadLetter",
    "DeadLetterHook",
    "Handler",
    "Incoming",
    "MalformedError",
    "Outcome",
    "TransientError",
    "decode",
]

log = get_logger(__name__)


class _UndeliverableError(Exception):
    """Dead-lettering failed (the broker is away): leave the batch unacknowledged."""


class BatchConsumer:
    def __init__(
        self,
        *,
        broker: Broker,
        pool: asyncpg.Pool,
        schema: str,
        queue: str,
        models: dict[str, type[Message]],
        handler: Handler,
        metrics: ServiceMetrics,
        publisher: OutboxPublisher,
        batch_size: int = 200,
        batch_wait_ms: int = 20,
        on_dead_letter: DeadLetterHook | None = None,
        max_retries: int = DEFAULT_MAX_RETRIES,
    ) -> None:
        self.broker = broker
        self.pool = pool
        self.schema = schema
        self.queue = queue
        self.models = models
        self.handler = handler
        self.metrics = metrics
        self.publisher = publisher
        self.batch_size = batch_size
        self.batch_wait = batch_wait_ms / 1000
        self.on_dead_letter = on_dead_letter
        self.max_retries = max_retries
        self.runner = HandlerRunner(queue, handler, max_retries)
        self._inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        self.last_processed_at: float | None = None

    @property
    def name(self) -> str:
        return f"consumer:{self.queue}"

    async def run(self, stopping: asyncio.Event) -> None:
        """Consume until ``stopping`` is set; then finish the batch in hand and hand back the rest."""
        subscription = Subscription(
            queue=self.queue,
            prefetch=self.batch_size * 2,
            on_message=self._inbox.put,
            on_reset=self._drop_buffered,
        )
        await self.broker.subscribe(subscription)
        log.info("consuming", queue=self.queue, batch_size=self.batch_size)
        try:
            while not stopping.is_set():
                batch = await self._next_batch(stopping)
                if batch:
                    await self._process(batch, stopping)
        finally:
            await self.broker.unsubscribe(subscription)
            await self._hand_back()
            log.info("stopped consuming", queue=self.queue)

    def _drop_buffered(self) -> None:
        """The channel these deliveries came on is gone: the broker redelivers them."""
        dropped = 0
        while not self._inbox.empty():
            self._inbox.get_nowait()
            dropped += 1
        if dropped:
            log.info(
                "buffered deliveries dropped after a broker event", queue=self.queue, count=dropped
            )

    async def _next_batch(self, stopping: asyncio.Event) -> list[AbstractIncomingMessage]:
        getter = asyncio.ensure_future(self._inbox.get())
        stopper = asyncio.ensure_future(stopping.wait())
        done, _ = await asyncio.wait({getter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if getter not in done:
            getter.cancel()
            return []
        batch = [getter.result()]
        deadline = time.monotonic() + self.batch_wait
        while len(batch) < self.batch_size:
            try:
                batch.append(self._inbox.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._inbox.get(), timeout=remaining))
            except TimeoutError:
                break
        return [d for d in batch if _alive(d)]

    async def _hand_back(self) -> None:
        while not self._inbox.empty():
            delivery = self._inbox.get_nowait()
            with contextlib.suppress(*CONNECTION_EXCEPTIONS):
                await delivery.nack(requeue=True)
            self.metrics.messages.labels(self.queue, "requeued").inc()

    async def _process(
        self, deliveries: list[AbstractIncomingMessage], stopping: asyncio.Event
    ) -> None:
        started = time.perf_counter()
        try:
            result = await self._decode_and_handle(deliveries, stopping)
        except _UndeliverableError as exc:
            log.warning(
                "batch left unacknowledged, the broker redelivers it",
                queue=self.queue,
                error=str(exc),
            )
            return
        if result is None:
            await self._requeue(deliveries)
            return
        # Committed rows are durable: acknowledging need not wait for the broker's confirms.
        await self.publisher.submit(result.staged)
        for staged in result.staged:
            self.metrics.published.labels(staged.envelope.routing_key).inc()
        await self._ack(deliveries)
        self.last_processed_at = time.monotonic()
        self.metrics.batch_size.labels(self.queue).observe(len(deliveries))
        self.metrics.batch_seconds.labels(self.queue).observe(time.perf_counter() - started)

    async def _decode_and_handle(
        self, deliveries: list[AbstractIncomingMessage], stopping: asyncio.Event
    ) -> BatchResult | None:
        valid: list[Incoming] = []
        for delivery in deliveries:
            try:
                valid.append(decode(delivery, self.models))
            except MalformedError as bad:
                await self._dead_letter(delivery, bad.reason, bad.detail)
                # Acked at once, so handing the batch back later cannot dead-letter it twice.
                await self._ack([delivery], multiple=False)
        result = await self.runner.handle_until_done(valid, stopping) if valid else BatchResult([])
        if result is None:
            return None
        for incoming, outcome in zip(valid, result.outcomes, strict=True):
            if outcome is None:
                self.metrics.messages.labels(self.queue, "processed").inc()
            else:
                await self._dead_letter(incoming.delivery, outcome.reason, outcome.detail)
        return result

    async def _dead_letter(
        self, delivery: AbstractIncomingMessage, reason: str, detail: str
    ) -> None:
        try:
            await self.broker.dead_letter(self.queue, delivery, reason, detail)
            if self.on_dead_letter is not None:
                # A message that cannot be processed may still owe its sender an answer (the ERP's).
                extra = await self.on_dead_letter(delivery, reason, detail)
                await self.broker.publish_many(extra)
        except PublishError as exc:
            raise _UndeliverableError(f"dead-lettering failed: {exc}") from exc
        self.metrics.messages.labels(self.queue, "dead_lettered").inc()
        structlog.get_logger(__name__).warning(
            "message dead-lettered",
            queue=self.queue,
            message_id=delivery.message_id,
            routing_key=delivery.routing_key,
            reason=reason,
            detail=detail,
        )

    async def _ack(
        self, deliveries: list[AbstractIncomingMessage], *, multiple: bool = True
    ) -> None:
        pending = [d for d in deliveries if not d.processed]
        if not pending:
            return
        try:
            await pending[-1].ack(multiple=multiple)
        except CONNECTION_EXCEPTIONS as exc:
            # The channel died after our commit: the broker redelivers, and the handler finds the
            # facts already stored, so nothing is done twice.
            log.warning(
                "ack failed, messages will be redelivered", queue=self.queue, error=str(exc)
            )

    async def _requeue(self, deliveries: list[AbstractIncomingMessage]) -> None:
        """Hand a batch back to the broker (only when stopping with a batch that cannot finish)."""
        pending = [d for d in deliveries if not d.processed]
        if pending:
            with contextlib.suppress(*CONNECTION_EXCEPTIONS):
                await pending[-1].nack(multiple=True, requeue=True)
        self.metrics.messages.labels(self.queue, "requeued").inc(len(pending))


def _alive(delivery: AbstractIncomingMessage) -> bool:
    """Whether the delivery's channel still exists (else the broker has taken it back)."""
    try:
        _ = delivery.channel
    except ChannelInvalidStateError:
        return False
    return True
