"""``shared.db.migrate`` against the real PostgreSQL: creates the database, applies each file once
even when raced, applies nothing the second time, and refuses a file changed after it ran."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from services import system
from shared.db import MigrationError, SchemaMigrations, migrate
from tests import infra

REGISTERED = system.migrations()
FILES = {r.schema: r.files() for r in REGISTERED}
TOTAL = sum(len(files) for files in FILES.values())


@pytest.fixture
async def fresh_url(infrastructure: infra.Infrastructure) -> AsyncIterator[str]:
    """The URL of a database that does not exist yet; dropped after the test."""
    url = infra.with_database(infrastructure.database_url, f"nl_mig_{uuid.uuid4().hex[:12]}")
    yield url
    await infra.drop_database(infrastructure, url)


async def _exists(infrastructure: infra.Infrastructure, url: str) -> bool:
    admin = await asyncpg.connect(infra.with_database(infrastructure.database_url, "postgres"))
    try:
        name = url.rsplit("/", 1)[1]
        return bool(await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name))
    finally:
        await admin.close()


async def _applied(url: str) -> dict[str, list[str]]:
    conn = await asyncpg.connect(url)
    try:
        return {
            schema: [
                r["version"]
                for r in await conn.fetch(
                    f"SELECT version FROM {schema}.schema_migrations ORDER BY version"
                )
            ]
            for schema in FILES
        }
    finally:
        await conn.close()


async def test_migrate_creates_a_missing_database(
    fresh_url: str, infrastructure: infra.Infrastructure
) -> None:
    assert not await _exists(infrastructure, fresh_url)
    assert await migrate(fresh_url, REGISTERED) == TOTAL
    assert await _exists(infrastructure, fresh_url)
    assert await _applied(fresh_url) == {
        schema: [m.version for m in files] for schema, files in FILES.items()
    }


async def test_concurrent_migrations_apply_each_file_once(fresh_url: str) -> None:
    results = await asyncio.wait_for(
        asyncio.gather(*(migrate(fresh_url, REGISTERED) for _ in range(5)), return_exceptions=True),
        timeout=25,
    )
    errors = [r for r in results if isinstance(r, BaseException)]
    assert errors == [], errors
    assert sum(r for r in results if isinstance(r, int)) == TOTAL
    conn = await asyncpg.connect(fresh_url)
    try:
        for schema, files in FILES.items():
            rows = await conn.fetch(
                f"SELECT version, count(*) AS n FROM {schema}.schema_migrations GROUP BY version"
            )
            assert {r["version"]: r["n"] for r in rows} == {m.version: 1 for m in files}, schema
    finally:
        await conn.close()
    # Repeating is a no-op.
    assert await migrate(fresh_url, REGISTERED) == 0
    assert await asyncio.gather(*(migrate(fresh_url, REGISTERED) for _ in range(3))) == [0, 0, 0]


async def test_a_changed_migration_is_refused(fresh_url: str) -> None:
    await migrate(fresh_url, REGISTERED)
    conn = await asyncpg.connect(fresh_url)
    try:
        first = FILES["ledger"][0]
        await conn.execute(
            "UPDATE ledger.schema_migrations SET checksum = $1 WHERE version = $2",
            "0" * 64,
            first.version,
        )
    finally:
        await conn.close()
    with pytest.raises(MigrationError, match=first.version):
        await asyncio.wait_for(migrate(fresh_url, REGISTERED), timeout=10)
    # The refusal released the advisory lock: the next run answers (refusing again), not hangs.
    with pytest.raises(MigrationError):
        await asyncio.wait_for(migrate(fresh_url, REGISTERED), timeout=10)


def _first_files_only(tmp: Path, registration: SchemaMigrations) -> SchemaMigrations:
    """The schema as the first release shipped it: its 0001 file alone."""
    directory = tmp / registration.schema
    directory.mkdir()
    first = registration.files()[0]
    (directory / f"{first.version}.sql").write_text(first.sql, encoding="utf-8")
    return SchemaMigrations(registration.schema, directory, registration.after)


@pytest.mark.parametrize("first", ["ledger", "mapper"])
async def test_store_settings_move_to_the_mapper_whichever_schema_migrates_first(
    fresh_url: str, tmp_path: Path, first: str
) -> None:
    """A database of the first release keeps its settings: mapper/0002 takes the ledger's rows."""
    by_schema = {r.schema: r for r in REGISTERED}
    old = [_first_files_only(tmp_path, by_schema[s]) for s in ("ingest", "ledger", "mapper")]
    await migrate(fresh_url, old)
    conn = await asyncpg.connect(fresh_url)
    try:
        await conn.execute(
            "INSERT INTO ledger.store_settings (store_id, stock_check) VALUES (1, true), (2, false)"
        )
        # Each service migrates its own schema at start, in whatever order they start.
        second = "mapper" if first == "ledger" else "ledger"
        await migrate(fresh_url, [by_schema[first]])
        await migrate(fresh_url, [by_schema[second]])
        moved = await conn.fetch(
            "SELECT store_id, stock_check FROM mapper.store_settings ORDER BY store_id"
        )
        assert [tuple(r) for r in moved] == [(1, True), (2, False)]
        view = await conn.fetch("SELECT store_id, stock_check FROM mapper.store_settings_view")
        assert sorted(tuple(r) for r in view) == [(1, True), (2, False)]
        assert await conn.fetchval("SELECT to_regclass('ledger.store_settings')") is None
        assert await conn.fetchval("SELECT to_regclass('ledger.store_settings_retired')")
    finally:
        await conn.close()
    # What the first release did not ship of ingest's schema (0002 on): the other two are done.
    assert await migrate(fresh_url, REGISTERED) == len(by_schema["ingest"].files()) - 1
