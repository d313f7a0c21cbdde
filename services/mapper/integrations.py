"""Which stores are switched off, as ingest announces it (SPEC §4).

An order of a store switched off while it was in flight is rejected with ``store_disabled``
(``rules.refusal``), never imported behind the operator's back; ``orders retry`` imports it once
ingest announces the store switched on again. The announcements come on their own queue
(``mapper.integrations``, declared in ``handlers``), so a switch-off is not stuck behind the
orders it must stop.
"""

from __future__ import annotations

from services.mapper.ports import MapperUnitOfWork
from shared.contracts import IntegrationDisabled, IntegrationEnabled
from shared.logging import get_logger
from shared.messaging import Envelope
from shared.subscribers import Received

log = get_logger(__name__)


async def switched_off(
    uow: MapperUnitOfWork, received: Received[IntegrationDisabled]
) -> list[Envelope]:
    store_id, reason = received.message.store_id, received.message.reason
    await uow.stores.set(store_id, enabled=False, reason=reason)
    log.info("store status", store_id=store_id, enabled=False, reason=reason)
    return []


async def switched_on(
    uow: MapperUnitOfWork, received: Received[IntegrationEnabled]
) -> list[Envelope]:
    store_id = received.message.store_id
    await uow.stores.set(store_id, enabled=True, reason=None)
    log.info("store status", store_id=store_id, enabled=True, reason=None)
    return []
