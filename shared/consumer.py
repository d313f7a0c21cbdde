"""The batch consumer every service runs: decode, handle in one transaction, publish, ack.

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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import asyncpg
import orjson
import pydantic
import structlog
from aio_pika.abc import AbstractIncomingMessage
from aio_pika.exceptions import CONNECTION_EXCEPTIONS, AMQPError, ChannelInvalidStateError

from shared.contracts import Message
from shared.link import Subscription
from shared.logging import get_logger
from shared.messaging import Broker, Envelope, PublishError, content_id
from shared.metrics import ServiceMetrics
from shared.outbox import OutboxPublisher, Staged

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


@dataclass(frozen=True)
class Incoming:
    """A decoded message handed to a handler."""

    message: Message
    message_id: str
    routing_key: str
    delivery: AbstractIncomingMessage


@dataclass(frozen=True)
class DeadLetter:
    """The handler's verdict that a message cannot be processed (it goes to ``<queue>.dead``)."""

    reason: str
    detail: str


Outcome = DeadLetter | None


@dataclass
class BatchResult:
    """Per-message outcomes (same order as the batch) and what the transaction staged to publish."""

    outcomes: list[Outcome]
    staged: list[Staged] = field(default_factory=list)


class TransientError(Exception):
    """Raised by a handler for a failure that a later retry can fix (the batch is retried)."""


class MalformedError(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


Handler = Callable[[list[Incoming]], Awaitable[BatchResult]]
DeadLetterHook = Callable[[AbstractIncomingMessage, str, str], Awaitable[list[Envelope]]]


def decode(delivery: AbstractIncomingMessage, models: dict[str, type[Message]]) -> Incoming:
    """Turn a delivery into its contract model, or raise ``MalformedError`` with a reason code."""
    key = delivery.routing_key or ""
    model = models.get(key)
    if model is None:
        raise MalformedError("unknown_message", f"no message is expected with routing key {key!r}")
    try:
        data = orjson.loads(delivery.body)
    except orjson.JSONDecodeError as exc:
        raise MalformedError("invalid_json", f"body is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise MalformedError("invalid_message", "body is not a JSON object")
    try:
        message = model.model_validate(data)
    except (TypeError, ValueError) as exc:
        if not isinstance(exc, pydantic.ValidationError):
            raise MalformedError("invalid_message", f"{model.__name__}: {exc}") from exc
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}"
            for err in exc.errors()
        )
        raise MalformedError("invalid_message", f"{model.__name__}: {problems}") from exc
    # Without a message_id (the management UI publishes none) the content names the fact: a
    # delivery tag would repeat after a restart and make the inbox skip a new message.
    message_id = delivery.message_id or content_id(key, delivery.body)
    return Incoming(message, message_id, key, delivery)


DEFAULT_MAX_RETRIES = 10
MAX_PAUSE_S = 10.0


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
        self._inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        self._attempts: dict[str, int] = {}
        self._pause = 0.5
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
        result = await self._handle_until_done(valid, stopping) if valid else BatchResult([])
        if result is None:
            return None
        for incoming, outcome in zip(valid, result.outcomes, strict=True):
            if outcome is None:
                self.metrics.messages.labels(self.queue, "processed").inc()
            else:
                await self._dead_letter(incoming.delivery, outcome.reason, outcome.detail)
        return result

    async def _handle_until_done(
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
