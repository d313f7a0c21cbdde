"""Connecting a store: what the OAuth callback and ``integration connect`` both do.

Store the (encrypted) token with the activation date and activating user, enabled; register
the webhooks the integration needs on the store. Reconnecting replaces the token, re-enables
the store and keeps its original activation date; the poller catches up what was paid meanwhile.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import asyncpg

from services.ingest.adapters import postgres as db
from services.ingest.adapters.nuvemshop import NuvemshopClient, NuvemshopError
from services.ingest.handlers import announce_enabled
from services.ingest.tokens import TokenCipher
from shared.logging import get_logger
from shared.outbox import OutboxPublisher

log = get_logger(__name__)

# The LGPD webhooks (store/redact, customers/redact, customers/data_request) are not registered
# here: the reference has their URLs set in the app's partner panel, one per event, and
# POST /webhooks does not accept them (docs/nuvemshop.md).
WEBHOOK_EVENTS: tuple[str, ...] = (
    "order/paid",
    "order/updated",
    "order/cancelled",
    "order/voided",
    "app/uninstalled",
)


@dataclass(frozen=True)
class Connected:
    store: db.StoreRecord
    created: bool
    reenabled: bool
    webhooks_registered: list[str]
    webhook_error: str | None


async def store_connection(
    pool: asyncpg.Pool,
    cipher: TokenCipher,
    *,
    store_id: int,
    access_token: str,
    activated_by: str,
    activated_at: dt.datetime | None = None,
    publisher: OutboxPublisher | None = None,
) -> tuple[db.StoreRecord, bool, bool]:
    """Store the connection, enabled; returns (store, created, re-enabled).

    A store connected again after it was switched off is announced ``integration.enabled``: by
    ``publisher`` right after the commit when there is one (the service), else by the relay.
    """
    # Whole seconds: the API's timestamps have no fraction, and an order created in the second of
    # activation must not read as created before it (it would never be imported).
    when = (activated_at or dt.datetime.now(dt.UTC)).replace(microsecond=0)
    async with pool.acquire() as conn, conn.transaction():
        store, created, was_disabled = await db.connect_store(
            conn,
            store_id=store_id,
            encrypted_token=cipher.encrypt(access_token),
            activated_by=activated_by,
            activated_at=when,
        )
        staged = await announce_enabled(conn, store_id) if was_disabled else []
    if publisher is not None:
        await publisher.submit(staged)
    log.info("store connected", store_id=store_id, created=created, reenabled=was_disabled)
    return store, created, was_disabled


async def register_webhooks(
    client: NuvemshopClient, store_id: int, access_token: str, public_url: str
) -> list[str]:
    """Register every webhook the integration needs, skipping those already registered."""
    target = f"{public_url}/webhooks/nuvemshop"
    existing = await client.list_webhooks(store_id, access_token)
    have = {(str(w.get("event")), str(w.get("url"))) for w in existing}
    registered: list[str] = []
    for event in WEBHOOK_EVENTS:
        if (event, target) not in have:
            await client.register_webhook(store_id, access_token, event, target)
        registered.append(event)
    return registered


async def connect(
    pool: asyncpg.Pool,
    cipher: TokenCipher,
    client: NuvemshopClient,
    *,
    store_id: int,
    access_token: str,
    activated_by: str,
    public_url: str,
    activated_at: dt.datetime | None = None,
    publisher: OutboxPublisher | None = None,
) -> Connected:
    """Store the connection, then register webhooks; a registration failure is reported, not fatal.

    The poller imports every paid order even without webhooks, so a store whose webhooks could
    not be registered still works, only slower; the caller shows the error to the operator.
    """
    store, created, reenabled = await store_connection(
        pool,
        cipher,
        store_id=store_id,
        access_token=access_token,
        activated_by=activated_by,
        activated_at=activated_at,
        publisher=publisher,
    )
    try:
        events = await register_webhooks(client, store_id, access_token, public_url)
        error = None
    except (NuvemshopError, OSError, TimeoutError) as exc:
        events, error = [], f"{type(exc).__name__}: {exc}"
        log.warning("webhooks not registered", store_id=store_id, error=error)
    return Connected(store, created, reenabled, events, error)
