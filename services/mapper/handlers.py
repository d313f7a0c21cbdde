"""The mapper's declarations and handlers: what it consumes on which queue, and what it does.

``mapper.orders``: ``order.paid`` and ``order.invalid`` become pending sales or recorded
rejections (``imports.import_orders``, set-based for a run of any length, one included);
``privacy.request`` exports or redacts a person. ``mapper.integrations``: ``integration.disabled``
/ ``integration.enabled`` keep which stores are switched off (``integrations``).

The consumer of each queue opens the unit of work around a batch, claims the inbox (a redelivered
message is skipped whole; a duplicate inside the batch runs once), hands each run of one message
type to the handler declared for it here, in arrival order, and stages what the handlers return
(``shared.unitofwork``).

The one fallback: when the database refuses an order's data (``ports.UnstorableError``: a text
too long for its index, a number too large for its column, a character PostgreSQL cannot hold),
the set-based statement fails for its whole run, and the batch fails: the consumer replays it one
message per transaction (``shared.retrying``). An order alone goes through the same use case in a
savepoint, so the one at fault is rejected (SPEC §4) instead of dead-lettered.
"""

from __future__ import annotations

from collections.abc import Sequence

from services.mapper import domain, imports, integrations
from services.mapper.ports import MapperUnitOfWork, OrderMessage, UnstorableError
from shared.contracts import (
    IntegrationDisabled,
    IntegrationEnabled,
    OrderInvalid,
    OrderPaid,
    PrivacyRequest,
    SaleRejected,
)
from shared.logging import get_logger
from shared.messaging import Envelope
from shared.subscribers import Received, Subscribers
from shared.topology import MAPPER_INTEGRATIONS, MAPPER_ORDERS

log = get_logger(__name__)

SCHEMA = "mapper"
ORDERS = MAPPER_ORDERS.name
INTEGRATIONS = MAPPER_INTEGRATIONS.name

MAPPER = Subscribers[MapperUnitOfWork]("mapper")

MAPPER.each(IntegrationDisabled, INTEGRATIONS)(integrations.switched_off)
MAPPER.each(IntegrationEnabled, INTEGRATIONS)(integrations.switched_on)


@MAPPER.batch(OrderPaid, ORDERS)
async def order_paid(uow: MapperUnitOfWork, run: list[Received[OrderPaid]]) -> list[Envelope]:
    return await import_run(uow, run)


@MAPPER.batch(OrderInvalid, ORDERS)
async def order_invalid(uow: MapperUnitOfWork, run: list[Received[OrderInvalid]]) -> list[Envelope]:
    return await import_run(uow, run)


@MAPPER.each(PrivacyRequest, ORDERS)
async def privacy_request(
    uow: MapperUnitOfWork, received: Received[PrivacyRequest]
) -> list[Envelope]:
    person = await uow.privacy.apply(received.message)
    await uow.privacy.redact_queues(received.message, person)
    return []


async def import_run(uow: MapperUnitOfWork, run: Sequence[OrderMessage]) -> list[Envelope]:
    """A run of order messages through the one path; an order alone in a savepoint."""
    if len(run) > 1:
        return await imports.import_orders(uow.imports, run, uow.default_timezone)
    (received,) = run
    try:
        async with uow.savepoint():
            return await imports.import_orders(uow.imports, run, uow.default_timezone)
    except UnstorableError as exc:
        if not isinstance(received.message, OrderPaid):
            raise
        # SPEC §4: an order that cannot become a sale is recorded as rejected, with a
        # reason an operator understands, not lost among dead letters.
        async with uow.savepoint():
            return await imports.reject(uow.imports, received, _unstorable(received.message, exc))


def _unstorable(order: OrderPaid, exc: Exception) -> SaleRejected:
    return SaleRejected(
        store_id=order.store_id,
        order_id=order.order_id,
        reason=domain.INVALID_ORDER,
        detail=f"the order's data cannot be stored: {exc}",
    )
