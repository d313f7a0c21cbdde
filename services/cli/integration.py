"""``nuvem-ledger integration ...`` and ``backfill``: store connections, through ingest's operations.

What an operator sees of a store joins ingest's own row (state, activation, polling) with the
mapper's counts of what became of its orders (imported, rejected); what is neither is pending.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from typing import Any

import asyncpg

from services.cli.base import (
    CommandError,
    Subparsers,
    broker,
    command,
    database,
    emit,
    emit_rows,
    group,
    parse_when,
)
from services.ingest import ops as ingest
from shared.settings import Settings


def register(sub: Subparsers) -> None:
    integ = group(sub, "integration", "store connections")
    connect = command(
        integ, "connect", _connect, help_text="connect a store without the OAuth screen"
    )
    connect.add_argument("--store-id", type=int, required=True)
    connect.add_argument("--access-token", required=True)
    connect.add_argument(
        "--user", required=True, help="the activating ERP user (the sales' seller)"
    )
    connect.add_argument("--activated-at", type=parse_when, help="ISO 8601 (default: now)")
    for name, handler in (("show", _show), ("enable", _toggle), ("disable", _toggle)):
        cmd = command(integ, name, handler)
        cmd.add_argument("store_id", type=int)
    command(integ, "list", _list)
    link = command(
        integ,
        "connect-link",
        _connect_link,
        help_text="the ERP-signed URL that starts an OAuth install",
    )
    link.add_argument("--user", required=True, help="the ERP user who becomes the sales' seller")
    link.add_argument("--ttl", type=int, default=900, help="seconds the link is good for (900)")
    command(
        integ,
        "rotate-tokens",
        _rotate_tokens,
        help_text="re-encrypt stored tokens with the first key",
    )


def register_backfill(sub: Subparsers) -> None:
    back = command(
        sub, "backfill", _backfill, help_text="import paid orders of an explicit (older) date range"
    )
    back.add_argument("--store-id", type=int, required=True)
    back.add_argument("--since", type=parse_when, required=True, help="ISO 8601 date or datetime")
    back.add_argument("--until", type=parse_when, help="ISO 8601 (default: now)")


async def integration_rows(pool: asyncpg.Pool, store_id: int | None = None) -> list[dict[str, Any]]:
    """Each connected store as operators see it: ingest's row and the mapper's counts."""
    return await ingest.integration_rows(pool, store_id)


async def integration_show(pool: asyncpg.Pool, store_id: int) -> dict[str, Any]:
    return await ingest.integration(pool, store_id)


def integration_text(row: dict[str, Any]) -> str:
    state = "enabled" if row["enabled"] else f"disabled ({row['disabled_reason']})"
    return (
        f"store {row['store_id']}: {state}; activated {row['activated_at']} by {row['activated_by']}; "
        f"last sync {row['last_synced_at'] or 'never'}; imported {row['imported']}, "
        f"rejected {row['rejected']}, pending {row['pending']}"
    )


async def _show(args: argparse.Namespace, settings: Settings) -> None:
    async with database(settings) as pool:
        emit(args, await integration_show(pool, args.store_id), integration_text)


async def _list(args: argparse.Namespace, settings: Settings) -> None:
    async with database(settings) as pool:
        rows = await integration_rows(pool)
    emit_rows(args, rows, integration_text, "no store connected")


async def _toggle(args: argparse.Namespace, settings: Settings) -> None:
    async with database(settings) as pool, broker(settings) as publisher:
        enabled = args.action == "enable"
        changed = await ingest.set_enabled(pool, publisher, args.store_id, enabled=enabled)
        row = await integration_show(pool, args.store_id)
    emit(args, row | {"changed": changed}, integration_text)


async def _connect(args: argparse.Namespace, settings: Settings) -> None:
    async with database(settings) as pool:
        done = await ingest.connect_store(
            pool,
            settings,
            store_id=args.store_id,
            access_token=args.access_token,
            activated_by=args.user,
            activated_at=args.activated_at,
        )
        shown = await integration_show(pool, args.store_id)
    if done.webhook_error:
        sys.stderr.write(
            f"warning: webhooks not registered ({done.webhook_error}); polling still imports\n"
        )
    result = shown | {
        "created": done.created,
        "webhooks_registered": done.webhooks_registered,
        "webhook_error": done.webhook_error,
    }
    emit(args, result, integration_text)


async def _connect_link(args: argparse.Namespace, settings: Settings) -> None:
    emit(args, ingest.connect_link(settings, args.user, args.ttl), lambda r: r["url"])


async def _rotate_tokens(args: argparse.Namespace, settings: Settings) -> None:
    async with database(settings) as pool:
        done = await ingest.rotate_stored_tokens(pool, settings)
    emit(args, done, lambda r: f"re-encrypted {r['rotated']} stored token(s)")


def _progress_bar(done: int, total: int, width: int = 30) -> None:
    filled = width if total == 0 else min(width, width * done // max(total, 1))
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} orders")
    sys.stderr.flush()


async def _backfill(args: argparse.Namespace, settings: Settings) -> None:
    until = args.until or dt.datetime.now(dt.UTC)
    async with database(settings) as pool, broker(settings) as publisher:
        result, total = await ingest.backfill_store(
            pool,
            publisher,
            settings,
            store_id=args.store_id,
            since=args.since,
            until=until,
            progress=lambda r, t: _progress_bar(r.orders_seen, t),
        )
    sys.stderr.write("\n")
    if result.outcome != "ok":
        raise CommandError(f"backfill stopped: the store answered {result.outcome}")
    summary = {
        "store_id": args.store_id,
        "since": args.since,
        "until": until,
        "matched": total,
        "seen": result.orders_seen,
        "imported": result.paid,
        "cancelled": result.cancelled,
        "invalid": result.invalid,
        "pages": result.pages,
    }
    emit(
        args,
        summary,
        lambda r: (
            f"backfill of store {r['store_id']}: {r['imported']} order(s) imported "
            f"of {r['matched']} paid in range ({r['seen']} read, {r['pages']} page(s))"
        ),
    )
