"""PostgreSQL: the database's creation, the connection pool and the schema migrations.

Migrations are plain SQL files per service schema, forward-only and checksummed: a file that
changed after it was applied stops the runner with a clear error instead of leaving two databases
with different shapes. The runner knows no service: each service registers its own schema and
files (a ``SchemaMigrations``, exposed by ``services.<name>.migrations``) and whoever migrates
hands the runner the ones it wants: a service at start its own, ``nuvem-ledger migrate`` every
service's. The runner holds a PostgreSQL advisory lock, so several processes migrating at once
(three services starting together, ``nuvem-ledger migrate`` run twice) apply each file exactly once.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
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

_MIGRATION_LOCK = 0x6E75_7665  # "nuve": one advisory lock key for every migration run
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


@dataclass(frozen=True)
class SchemaMigrations:
    """One service's schema and the directory of its ``NNNN_*.sql`` files, in version order.

    ``after`` names the schemas whose objects these migrations read (a view over another
    service's view, a hand-over of rows): migrated in the same run, those are applied first. A
    service started alone migrates only its own schema, so such a migration must also hold when
    the other schema is not there yet (a view that needs it fails, and the start retries).
    """

    schema: str
    directory: Path
    after: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in (self.schema, *self.after):
            if not _NAME.match(name):
                raise MigrationError(f"unsupported schema name {name!r}")

    def files(self) -> list[Migration]:
        return [
            Migration(self.schema, f.stem, f.read_text(encoding="utf-8"))
            for f in sorted(self.directory.glob("*.sql"))
        ]


def in_dependency_order(registered: Iterable[SchemaMigrations]) -> list[SchemaMigrations]:
    """The registered schemas, each after the registered schemas it reads (else as given).

    A schema named in ``after`` but not registered in this run is not waited for (see
    ``SchemaMigrations``); a cycle or a schema registered twice is a programming error.
    """
    pending = list(registered)
    names = [r.schema for r in pending]
    if len(set(names)) != len(names):
        raise MigrationError(f"a schema is registered twice: {names}")
    ordered: list[SchemaMigrations] = []
    done: set[str] = set()
    while pending:
        ready = next(
            (r for r in pending if all(a in done or a not in names for a in r.after)), None
        )
        if ready is None:
            cycle = ", ".join(f"{r.schema} after {'/'.join(r.after)}" for r in pending)
            raise MigrationError(f"schemas that read each other cannot be ordered: {cycle}")
        ordered.append(ready)
        done.add(ready.schema)
        pending.remove(ready)
    return ordered


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
    errors: tuple[type[BaseException], ...] = (),
) -> T:
    """Call ``attempt`` until it succeeds, one log line per failure, backing off to ``max_wait``.

    A service started before its broker or database says so and waits instead of crash-looping.
    ``deadline`` (seconds) bounds the wait for commands that must not hang forever.
    """
    catch: tuple[type[BaseException], ...] = (
        TimeoutError,
        OSError,
        asyncpg.PostgresError,
        ConnectionError,
        *errors,
    )
    delay = 0.5
    loop = asyncio.get_running_loop()
    started = loop.time()
    while True:
        try:
            return await attempt()
        except catch as exc:
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


async def apply_migrations(conn: asyncpg.Connection, registered: Sequence[SchemaMigrations]) -> int:
    """Apply the pending files of ``registered`` under the advisory lock; returns how many ran."""
    applied_now = 0
    ordered = in_dependency_order(registered)
    await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
    try:
        for registration in ordered:
            schema = registration.schema
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            await conn.execute(
                f"CREATE TABLE IF NOT EXISTS {schema}.schema_migrations ("
                " version text PRIMARY KEY, checksum text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            rows = await conn.fetch(f"SELECT version, checksum FROM {schema}.schema_migrations")
            done = {r["version"]: r["checksum"] for r in rows}
            for migration in registration.files():
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


async def migrate(dsn: str, registered: Sequence[SchemaMigrations]) -> int:
    """Create the database if needed and apply every pending migration of ``registered``."""
    await ensure_database(dsn)
    conn = await asyncpg.connect(dsn)
    try:
        return await apply_migrations(conn, registered)
    finally:
        await conn.close()


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    """An asyncpg pool; statements are prepared per connection and cached by asyncpg."""
    pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size)
    if pool is None:  # pragma: no cover - asyncpg returns None only when used as an initializer
        raise RuntimeError("asyncpg returned no pool")
    return pool


async def connect_database(
    dsn: str, registered: Sequence[SchemaMigrations], *, deadline: float | None = None
) -> asyncpg.Pool:
    """Wait for PostgreSQL, apply ``registered``, and return a pool: every service's start."""

    async def attempt() -> asyncpg.Pool:
        await migrate(dsn, registered)
        return await create_pool(dsn)

    return await retry_until_up("database", attempt, deadline=deadline)
