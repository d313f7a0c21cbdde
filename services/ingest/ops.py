"""Ingest's operator actions: connecting stores, switching them on and off, backfills.

Ingest owns the store connections (``ingest.stores``) and the orders it announced; these are
the only functions through which an operator (the CLI, the demo) changes them. Switching a store
off announces ``integration.disabled`` through ingest's outbox, as the OAuth uninstall does.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any

import aiohttp
import asyncpg

from services.ingest import connect_links
from services.ingest.adapters import postgres as stores
from services.ingest.adapters.nuvemshop import NuvemshopClient
from services.ingest.connections import Connected, connect
from services.ingest.handlers import SCHEMA, announce_enabled, disable_store
from services.ingest.sync import SyncResult, backfill
from services.ingest.tokens import TokenCipher, TokenKeyError, cipher_from_settings, rotate_tokens
from shared.db import Executor
from shared.messaging import Broker
from shared.operations import OperatorError, iso
from shared.outbox import Staged, publish_staged
from shared.settings import Settings


async def integrations(db: Executor, store_id: int | None = None) -> list[dict[str, Any]]:
    """Each connected store (or the one asked for) as ingest knows it, with its announced orders."""
    rows = await db.fetch(
        """
        SELECT s.store_id, s.enabled, s.disabled_reason, s.disabled_at, s.activated_at,
               s.activated_by, s.last_synced_at, s.poll_cursor, s.paused_until,
               s.last_error, s.last_error_at,
               (SELECT count(*) FROM ingest.orders o
                 WHERE o.store_id = s.store_id AND o.paid_announced_at IS NOT NULL) AS announced
        FROM ingest.stores s
        WHERE $1::bigint IS NULL OR s.store_id = $1
        ORDER BY s.store_id
        """,
        store_id,
    )
    return [
        {
            "store_id": r["store_id"],
            "enabled": r["enabled"],
            "disabled_reason": r["disabled_reason"],
            "disabled_at": iso(r["disabled_at"]),
            "activated_at": iso(r["activated_at"]),
            "activated_by": r["activated_by"],
            "last_synced_at": iso(r["last_synced_at"]),
            "poll_cursor": iso(r["poll_cursor"]),
            "paused_until": iso(r["paused_until"]),
            "last_error": r["last_error"],
            "last_error_at": iso(r["last_error_at"]),
            "announced": r["announced"],
        }
        for r in rows
    ]


async def integration_rows(db: Executor, store_id: int | None = None) -> list[dict[str, Any]]:
    """Each connected store as operators see it (``integration show|list --json``, the ops API):
    ingest's row and what became of its orders, from the mapper's view
    ``mapper.store_import_counts`` (imported, rejected); announced and neither is pending."""
    rows = await integrations(db, store_id)
    counts: dict[int, tuple[int, int]] = {}
    if await db.fetchval("SELECT to_regclass('mapper.store_import_counts') IS NOT NULL"):
        found = await db.fetch(
            "SELECT store_id, imported, rejected FROM mapper.store_import_counts"
            " WHERE store_id = ANY($1::bigint[])",
            [r["store_id"] for r in rows],
        )
        counts = {r["store_id"]: (r["imported"], r["rejected"]) for r in found}
    shown = []
    for row in rows:
        announced = row.pop("announced")
        imported, rejected = counts.get(row["store_id"], (0, 0))
        pending = max(0, announced - imported - rejected)
        shown.append(row | {"imported": imported, "rejected": rejected, "pending": pending})
    return shown


async def integration(db: Executor, store_id: int) -> dict[str, Any]:
    """One connected store (``integration show --json``); refused when it is not connected."""
    rows = await integration_rows(db, store_id)
    if not rows:
        raise OperatorError(f"store {store_id} is not connected")
    return rows[0]


async def set_enabled(pool: asyncpg.Pool, broker: Broker, store_id: int, *, enabled: bool) -> bool:
    """Switch a connected store on or off; returns whether it changed.

    Off announces ``integration.disabled`` (reason ``switched_off``), once: switching off a store
    that is off changes nothing and announces nothing. On announces ``integration.enabled`` the
    same way (the mapper then imports the store's orders again, retried ones included).
    """
    async with pool.acquire() as conn, conn.transaction():
        if enabled:
            changed = await stores.set_enabled(conn, store_id, enabled=True, reason=None)
            staged: list[Staged] = await announce_enabled(conn, store_id) if changed else []
        else:
            known = await stores.load_stores(conn, [store_id])
            changed = None if store_id not in known else known[store_id].enabled
            staged = await disable_store(conn, store_id, "switched_off") if changed else []
    if changed is None:
        raise OperatorError(f"store {store_id} is not connected")
    await publish_staged(pool, SCHEMA, broker, staged)
    return changed


async def switch_off(
    pool: asyncpg.Pool, broker: Broker, store_ids: Sequence[int], reason: str = "switched_off"
) -> list[int]:
    """Switch several stores off (those that are on), announcing each; returns those switched."""
    switched: list[int] = []
    staged: list[Staged] = []
    async with pool.acquire() as conn, conn.transaction():
        for store_id in sorted(set(store_ids)):
            announced = await disable_store(conn, store_id, reason)
            if announced:
                switched.append(store_id)
                staged += announced
    await publish_staged(pool, SCHEMA, broker, staged)
    return switched


def _client(session: aiohttp.ClientSession, settings: Settings, **options: Any) -> NuvemshopClient:
    return NuvemshopClient(
        session,
        api_url=settings.nuvemshop_api_url,
        token_header=settings.nuvemshop_token_header,
        user_agent=settings.nuvemshop_user_agent,
        **options,
    )


def _cipher(settings: Settings) -> TokenCipher:
    try:
        return cipher_from_settings(settings)
    except TokenKeyError as exc:
        raise OperatorError(str(exc)) from exc


async def connect_store(
    pool: asyncpg.Pool,
    settings: Settings,
    *,
    store_id: int,
    access_token: str,
    activated_by: str,
    activated_at: dt.datetime | None,
) -> Connected:
    """Connect a store without the OAuth screen: the same effects as the OAuth callback."""
    cipher = _cipher(settings)
    async with aiohttp.ClientSession() as session:
        return await connect(
            pool,
            cipher,
            _client(session, settings, max_retries=1),
            store_id=store_id,
            access_token=access_token,
            activated_by=activated_by,
            public_url=settings.public_url(),
            activated_at=activated_at,
        )


async def backfill_store(
    pool: asyncpg.Pool,
    broker: Broker,
    settings: Settings,
    *,
    store_id: int,
    since: dt.datetime,
    until: dt.datetime,
    progress: Callable[[SyncResult, int], None] | None = None,
) -> tuple[SyncResult, int]:
    """Import the paid orders of an explicit (older) range; returns the result and the matches."""
    if until <= since:
        raise OperatorError("--until must be after --since")
    cipher = _cipher(settings)
    store = (await stores.load_stores(pool, [store_id])).get(store_id)
    if store is None:
        raise OperatorError(f"store {store_id} is not connected")
    if not store.enabled:
        raise OperatorError(f"store {store_id} is disabled ({store.disabled_reason})")
    async with aiohttp.ClientSession() as session:
        return await backfill(
            pool,
            broker,
            _client(session, settings),
            cipher,
            store,
            since=since,
            until=until,
            progress=progress,
        )


def connect_link(settings: Settings, user: str, ttl_s: int) -> dict[str, Any]:
    """The signed link the ERP hands ``user`` to connect a store (``connect_links``)."""
    try:
        made = connect_links.link_from_settings(settings, user, ttl_s)
    except (connect_links.BadLinkRequest, connect_links.ConnectLinkSecretError) as exc:
        raise OperatorError(str(exc)) from exc
    return {"url": made.url, "expires": made.expires}


async def rotate_stored_tokens(pool: asyncpg.Pool, settings: Settings) -> dict[str, Any]:
    """Re-encrypt every stored token with the first key of ``TOKEN_ENCRYPTION_KEY``; a token no
    key reads is left as it was and refused by store id (the others are rotated)."""
    done = await rotate_tokens(pool, _cipher(settings))
    if done.unreadable:
        raise OperatorError(
            f"re-encrypted {done.rotated} token(s); no key reads the token of store(s) "
            f"{', '.join(map(str, done.unreadable))}: connect them again"
        )
    return {"rotated": done.rotated}
