"""Ingest's tables: store connections, the ledger of orders it has announced, the poll lock.

The (store_id, order_id) primary key of ``ingest.orders`` is what makes an import happen at most
once: a webhook, a poll, a backfill and a redelivery that see the same paid order all race for
the same row, and only the one whose insert (or first ``paid_announced_at``) wins stages the
``order.paid`` message, in the same transaction.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg

from shared.db import Conn, Executor


@dataclass(frozen=True)
class StoreRecord:
    store_id: int
    access_token: bytes  # encrypted; decrypt only where a request is made
    enabled: bool
    disabled_reason: str | None
    activated_at: dt.datetime
    activated_by: str
    poll_cursor: dt.datetime | None
    last_synced_at: dt.datetime | None
    paused_until: dt.datetime | None


_STORE_COLUMNS = (
    "store_id, access_token, enabled, disabled_reason, activated_at, activated_by,"
    " poll_cursor, last_synced_at, paused_until"
)


def _store(row: asyncpg.Record) -> StoreRecord:
    return StoreRecord(
        store_id=row["store_id"],
        access_token=bytes(row["access_token"]),
        enabled=row["enabled"],
        disabled_reason=row["disabled_reason"],
        activated_at=row["activated_at"],
        activated_by=row["activated_by"],
        poll_cursor=row["poll_cursor"],
        last_synced_at=row["last_synced_at"],
        paused_until=row["paused_until"],
    )


async def connect_store(
    conn: Conn,
    *,
    store_id: int,
    encrypted_token: bytes,
    activated_by: str,
    activated_at: dt.datetime,
) -> tuple[StoreRecord, bool, bool]:
    """Store a connection, enabled. Returns (store, created, was_disabled).

    Reconnecting replaces the token and re-enables the store but keeps its original activation
    date and activating user: orders paid while it was off are caught up from the poll cursor.
    """
    previous = await conn.fetchrow(
        "SELECT enabled FROM ingest.stores WHERE store_id = $1 FOR UPDATE", store_id
    )
    row = await conn.fetchrow(
        f"""
        INSERT INTO ingest.stores (store_id, access_token, activated_at, activated_by)
        VALUES ($1, $2, $3, $4)
        ON CONFLICT (store_id) DO UPDATE SET
            access_token = excluded.access_token, enabled = true, disabled_reason = NULL,
            disabled_at = NULL, paused_until = NULL, next_poll_at = now(), updated_at = now()
        RETURNING {_STORE_COLUMNS}
        """,
        store_id,
        encrypted_token,
        activated_at,
        activated_by,
    )
    assert row is not None
    was_disabled = previous is not None and not previous["enabled"]
    return _store(row), previous is None, was_disabled


async def load_stores(conn: Executor, ids: list[int]) -> dict[int, StoreRecord]:
    rows = await conn.fetch(
        f"SELECT {_STORE_COLUMNS} FROM ingest.stores WHERE store_id = ANY($1::bigint[])", ids
    )
    return {r["store_id"]: _store(r) for r in rows}


async def all_stores(conn: Executor) -> list[StoreRecord]:
    rows = await conn.fetch(f"SELECT {_STORE_COLUMNS} FROM ingest.stores ORDER BY store_id")
    return [_store(r) for r in rows]


async def set_enabled(
    conn: Conn, store_id: int, *, enabled: bool, reason: str | None
) -> bool | None:
    """Switch a store on or off. Returns whether it changed (None: unknown store)."""
    row = await conn.fetchrow(
        "SELECT enabled FROM ingest.stores WHERE store_id = $1 FOR UPDATE", store_id
    )
    if row is None:
        return None
    await conn.execute(
        """
        UPDATE ingest.stores SET enabled = $2,
            disabled_reason = CASE WHEN $2 THEN NULL ELSE $3 END,
            disabled_at = CASE WHEN $2 THEN NULL ELSE now() END,
            paused_until = NULL, next_poll_at = now(), updated_at = now()
        WHERE store_id = $1
        """,
        store_id,
        enabled,
        reason,
    )
    return bool(row["enabled"] != enabled)


async def claim_paid(conn: Conn, store_id: int, orders: list[tuple[int, int | None]]) -> set[int]:
    """Mark paid orders announced; returns the ids announced by this call (the others were already)."""
    if not orders:
        return set()
    rows = await conn.fetch(
        """
        INSERT INTO ingest.orders AS o (store_id, order_id, order_number, paid_announced_at)
        SELECT $1, t.order_id, t.order_number, now()
        FROM unnest($2::bigint[], $3::bigint[]) AS t(order_id, order_number)
        ON CONFLICT (store_id, order_id) DO UPDATE
            SET paid_announced_at = now(), order_number = excluded.order_number,
                invalid_detail = NULL, updated_at = now()
            WHERE o.paid_announced_at IS NULL
        RETURNING order_id
        """,
        store_id,
        [o[0] for o in orders],
        [o[1] for o in orders],
    )
    return {r["order_id"] for r in rows}


async def claim_partially_refunded(conn: Conn, store_id: int, order_ids: list[int]) -> set[int]:
    """Note partial refunds of announced, not cancelled orders; returns those noted by this call
    (once per order)."""
    if not order_ids:
        return set()
    rows = await conn.fetch(
        """
        UPDATE ingest.orders SET partially_refunded_announced_at = now(), updated_at = now()
        WHERE store_id = $1 AND order_id = ANY($2::bigint[])
          AND paid_announced_at IS NOT NULL AND partially_refunded_announced_at IS NULL
          AND cancelled_announced_at IS NULL
        RETURNING order_id
        """,
        store_id,
        order_ids,
    )
    return {r["order_id"] for r in rows}


async def claim_cancelled(conn: Conn, store_id: int, order_ids: list[int]) -> set[int]:
    """Mark imported orders cancelled; returns those cancelled by this call (once per order)."""
    if not order_ids:
        return set()
    rows = await conn.fetch(
        """
        UPDATE ingest.orders SET cancelled_announced_at = now(), updated_at = now()
        WHERE store_id = $1 AND order_id = ANY($2::bigint[])
          AND paid_announced_at IS NOT NULL AND cancelled_announced_at IS NULL
        RETURNING order_id
        """,
        store_id,
        order_ids,
    )
    return {r["order_id"] for r in rows}


async def claim_invalid(conn: Conn, store_id: int, order_id: int, detail: str) -> bool:
    """Record an unreadable order once per distinct problem; True when it is news."""
    row = await conn.fetchrow(
        """
        INSERT INTO ingest.orders AS o (store_id, order_id, invalid_detail)
        VALUES ($1, $2, $3)
        ON CONFLICT (store_id, order_id) DO UPDATE SET invalid_detail = excluded.invalid_detail,
            updated_at = now()
            WHERE o.paid_announced_at IS NULL
              AND o.invalid_detail IS DISTINCT FROM excluded.invalid_detail
        RETURNING order_id
        """,
        store_id,
        order_id,
        detail,
    )
    return row is not None


async def mark_synced(conn: Executor, store_id: int, cursor: dt.datetime | None) -> None:
    await conn.execute(
        """
        UPDATE ingest.stores SET last_synced_at = now(), error_count = 0,
            poll_cursor = GREATEST(COALESCE(poll_cursor, $2), $2)
        WHERE store_id = $1
        """,
        store_id,
        cursor,
    )


ERROR_BACKOFF_FIRST_S = 15.0
ERROR_BACKOFF_CAP_S = 900.0


async def record_store_error(conn: Executor, store_id: int, error: str, interval_s: float) -> float:
    """Record a store's failed poll and push its next one back; returns the pause in seconds.

    The pause doubles with each failure in a row (15 s, 30 s, ...) up to the larger of the poll
    interval and 15 minutes, so a broken store costs little and a mended one is seen soon.
    """
    pause = await conn.fetchval(
        """
        UPDATE ingest.stores SET last_error = $2, last_error_at = now(),
            error_count = error_count + 1,
            next_poll_at = now() + make_interval(
                secs => LEAST($3 * power(2, LEAST(error_count, 16)), $4))
        WHERE store_id = $1
        RETURNING EXTRACT(EPOCH FROM next_poll_at - now())::float8
        """,
        store_id,
        error,
        ERROR_BACKOFF_FIRST_S,
        max(interval_s, ERROR_BACKOFF_CAP_S),
    )
    return float(pause or 0.0)


async def pause(conn: Executor, store_id: int, until: dt.datetime) -> None:
    await conn.execute(
        "UPDATE ingest.stores SET paused_until = $2, updated_at = now() WHERE store_id = $1",
        store_id,
        until,
    )


async def due_stores(conn: Executor, limit: int = 100) -> list[StoreRecord]:
    """Enabled, unpaused stores whose next poll is due, most overdue first."""
    rows = await conn.fetch(
        f"""
        SELECT {_STORE_COLUMNS} FROM ingest.stores
        WHERE enabled AND next_poll_at <= now() AND (paused_until IS NULL OR paused_until <= now())
        ORDER BY next_poll_at LIMIT $1
        """,
        limit,
    )
    return [_store(r) for r in rows]


async def schedule_poll(conn: Executor, store_id: int, after_s: float) -> None:
    await conn.execute(
        "UPDATE ingest.stores SET next_poll_at = now() + make_interval(secs => $2) WHERE store_id = $1",
        store_id,
        after_s,
    )


async def store_lags(conn: Executor) -> tuple[list[float], int]:
    """For the metrics: each enabled store's poll lag in seconds (since its cursor, or since it
    was connected when never polled), and how many stores are disabled."""
    rows = await conn.fetch(
        "SELECT enabled, EXTRACT(EPOCH FROM now() - COALESCE(poll_cursor, created_at))::float8"
        " AS lag FROM ingest.stores"
    )
    enabled = [float(r["lag"]) for r in rows if r["enabled"]]
    return enabled, len(rows) - len(enabled)


def poll_lock_key(store_id: int) -> int:
    """The advisory lock held while a store is polled: two replicas never poll it at once."""
    return (0x706F6C6C << 32) ^ store_id


@contextlib.asynccontextmanager
async def poll_lock(pool: asyncpg.Pool, store_id: int) -> AsyncIterator[bool]:
    """Hold the store's poll lock on a connection of its own for the block: yields False (and
    holds nothing) when another poll holds it; released on exit."""
    async with pool.acquire() as conn:
        if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", poll_lock_key(store_id)):
            yield False
            return
        try:
            yield True
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", poll_lock_key(store_id))


async def announced(
    conn: Executor, store_id: int, order_ids: list[int]
) -> tuple[set[int], set[int]]:
    """Of ``order_ids``: those whose payment, and those whose cancellation, was announced."""
    rows = await conn.fetch(
        "SELECT order_id, paid_announced_at IS NOT NULL AS paid,"
        " cancelled_announced_at IS NOT NULL AS cancelled"
        " FROM ingest.orders WHERE store_id = $1 AND order_id = ANY($2::bigint[])",
        store_id,
        order_ids,
    )
    return {r["order_id"] for r in rows if r["paid"]}, {
        r["order_id"] for r in rows if r["cancelled"]
    }


async def lock_tokens(conn: Conn) -> list[tuple[int, bytes]]:
    """Every store's encrypted token, locked until the caller's transaction ends."""
    rows = await conn.fetch(
        "SELECT store_id, access_token FROM ingest.stores ORDER BY store_id FOR UPDATE"
    )
    return [(r["store_id"], bytes(r["access_token"])) for r in rows]


async def set_token(conn: Conn, store_id: int, encrypted_token: bytes) -> None:
    await conn.execute(
        "UPDATE ingest.stores SET access_token = $2 WHERE store_id = $1", store_id, encrypted_token
    )


async def claim_oauth_state(conn: Executor, nonce: str, expires: dt.datetime) -> bool:
    """Spend an OAuth state's nonce: True the first time, False ever after. A nonce is kept until
    a day after its state expired (a state past its expiry is refused anyway; the day covers
    clocks that differ between replicas), and those older are pruned here."""
    await conn.execute(
        "DELETE FROM ingest.oauth_states WHERE expires_at < now() - interval '1 day'"
    )
    row = await conn.fetchrow(
        "INSERT INTO ingest.oauth_states (nonce, expires_at) VALUES ($1, $2)"
        " ON CONFLICT (nonce) DO NOTHING RETURNING nonce",
        nonce,
        expires,
    )
    return row is not None
