"""PostgreSQL: the database's creation, the connection pool and the schema migrations.

Migrations are plain SQL files per service schema (``services/<name>/migrations/NNNN_*.sql``),
forward-only and checksummed: a file that changed after it was applied stops the runner with a
clear error instead of leaving two databases with different shapes. The runner holds a
PostgreSQL advisory lock, so several processes migrating at once (three services starting
together, ``nuvem-ledger migrate`` run twice) apply each file exactly once.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import asyncpg.pool

from shared.logging import get_logger

log = get_logger(__name__)

T = TypeVar("T")

# A connection, whether opened alone or borrowed from a pool; ``Executor`` also admits the pool.
Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy
Executor = Conn | asyncpg.Pool

# The order matters: the mapper's views read the ledger's tables.
SCHEMAS: tuple[str, ...] = ("ingest", "ledger", "mapper")
_MIGRATION_LOCK = 0x6E75_7665  # "nuve": one advisory lock key for every migration run
_SERVICES_DIR = Path(__file__).resolve().parent.parent / "services"
_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")


class MigrationError(RuntimeError):
    """A migration file changed after it was applied, or the database refused one."""


@dataclass(frozen=True)
class Migration:
    schema: str
    version: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def migrations_for(schema: str) -> list[Migration]:
    """The migration files of one schema, in version order."""
    directory = _SERVICES_DIR / schema / "migrations"
    files = sorted(directory.glob("*.sql"))
    return [Migration(schema, f.stem, f.read_text(encoding="utf-8")) for f in files]


def database_name(dsn: str) -> str:
    return urlsplit(dsn).path.lstrip("/") or "postgres"


def _with_database(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


async def retry_until_up(
    what: str,
    attempt: Callable[[], Awaitable[T]],
    *,
    max_wait: float = 10.0,
    deadline: float | None = None,
) -> T:
    """Call ``attempt`` until it succeeds, one log line per failure, backing off to ``max_wait``.

    A service started before its broker or database says so and waits instead of crash-looping.
    ``deadline`` (seconds) bounds the wait for commands that must not hang forever.
    """
    delay = 0.5
    loop = asyncio.get_running_loop()
    started = loop.time()
    while True:
        try:
            return await attempt()
        except (TimeoutError, OSError, asyncpg.PostgresError, ConnectionError) as exc:
            waited = loop.time() - started
            if deadline is not None and waited + delay > deadline:
                raise
            log.warning(
                f"{what} unreachable, retrying", error=str(exc) or type(exc).__name__, in_s=delay
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_wait)


async def ensure_database(dsn: str) -> None:
    """Create the database named in ``dsn`` when it is missing (safe when raced)."""
    name = database_name(dsn)
    try:
        # The usual case: it exists. Only a missing one needs the maintenance database (which a
        # managed PostgreSQL may not let us open).
        existing = await asyncpg.connect(dsn)
    except asyncpg.InvalidCatalogNameError:
        pass
    else:
        await existing.close()
        return
    if not _NAME.match(name):
        raise MigrationError(f"unsupported database name {name!r}")
    conn = await asyncpg.connect(_with_database(dsn, "postgres"))
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            try:
                await conn.execute(f'CREATE DATABASE "{name}"')
                log.info("database created", database=name)
            except (asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
                pass  # another process created it between our check and our CREATE
    finally:
        await conn.close()


async def apply_migrations(conn: asyncpg.Connection, schemas: tuple[str, ...] = SCHEMAS) -> int:
    """Apply pending migrations of ``schemas`` under the advisory lock; returns how many ran."""
    applied_now = 0
    await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
    try:
        for schema in schemas:
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            await conn.execute(
                f"CREATE TABLE IF NOT EXISTS {schema}.schema_migrations ("
                " version text PRIMARY KEY, checksum text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            rows = await conn.fetch(f"SELECT version, checksum FROM {schema}.schema_migrations")
            done = {r["version"]: r["checksum"] for r in rows}
            for migration in migrations_for(schema):
                known = done.get(migration.version)
                if known == migration.checksum:
                    continue
                if known is not None:
                    raise MigrationError(
                        f"{schema}/{migration.version}.sql changed after it was applied; "
                        "migrations are forward-only: add a new file instead"
                    )
                async with conn.transaction():
                    await conn.execute(migration.sql)
                    await conn.execute(
                        f"INSERT INTO {schema}.schema_migrations (version, checksum)"
                        " VALUES ($1, $2)",
                        migration.version,
                        migration.checksum,
                    )
                applied_now += 1
                log.info("migration applied", schema=schema, version=migration.version)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
    return applied_now


async def migrate(dsn: str, schemas: tuple[str, ...] = SCHEMAS) -> int:
    """Create the database if needed and apply every pending migration."""
    await ensure_database(dsn)
    conn = await asyncpg.connect(dsn)
    try:
        return await apply_migrations(conn, schemas)
    finally:
        await conn.close()


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    """An asyncpg pool; statements are prepared per connection and cached by asyncpg."""
    pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size)
    if pool is None:  # pragma: no cover - asyncpg returns None only when used as an initializer
        raise RuntimeError("asyncpg returned no pool")
    return pool


async def connect_database(dsn: str, *, deadline: float | None = None) -> asyncpg.Pool:
    """Wait for PostgreSQL, migrate, and return a pool: what every service does at start."""

    async def attempt() -> asyncpg.Pool:
        await migrate(dsn)
        return await create_pool(dsn)

    return await retry_until_up("database", attempt, deadline=deadline)
