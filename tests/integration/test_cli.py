"""The ``nuvem-ledger`` console command as operators run it: a subprocess with its environment.

Every command prints only its result on stdout (JSON with ``--json``), keeps its logs on stderr,
and fails with one line on stderr and a non-zero exit code on bad input.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
import pytest

from services import system
from services.ingest.tokens import generate_key
from services.simulator.runner import Running as Simulator
from services.simulator.runner import start_simulator
from shared.messaging import declare_topology
from tests import infra
from tests.harness import Observer
from tests.integration.helpers import (
    Completed,
    child_env,
    closed_port,
    run_cli,
    unique_store_id,
)


@pytest.fixture
def env(vhost_url: str, database_url: str) -> dict[str, str]:
    return child_env(
        AMQP_URL=vhost_url,
        DATABASE_URL=database_url,
        TOKEN_ENCRYPTION_KEY=generate_key(),
        CONNECT_LINK_SECRET=secrets.token_urlsafe(32),
        NUVEMSHOP_API_URL=f"http://127.0.0.1:{closed_port()}/v1",
    )


@pytest.fixture
async def simulator() -> AsyncIterator[Simulator]:
    running = await start_simulator()
    yield running
    await running.close()


def ok_json(result: Completed) -> Any:
    """The command succeeded and stdout is exactly one JSON document."""
    assert result.returncode == 0, result.describe()
    try:
        return json.loads(result.stdout)
    except json.JSONDecodeError as exc:
        raise AssertionError(f"stdout is not only JSON ({exc})\n{result.describe()}") from exc


def one_line_error(result: Completed) -> str:
    """The command failed with exactly one line on stderr and nothing on stdout."""
    assert result.returncode != 0, result.describe()
    assert len(result.lines()) == 1, result.describe()
    assert result.stdout == "", result.describe()
    return result.lines()[0]


async def _connect(
    env: dict[str, str], cwd: Path, store: int, token: str = "tok-1", user: str = "erp-user-5"
) -> Completed:
    return await run_cli(
        "integration",
        "connect",
        "--store-id",
        str(store),
        "--access-token",
        token,
        "--user",
        user,
        "--activated-at",
        "2026-01-01T00:00:00Z",
        "--json",
        env=env,
        cwd=cwd,
    )


# --- migrate ------------------------------------------------------------------------------------


async def test_migrate_creates_the_database_concurrently_and_repeatedly(
    infrastructure: infra.Infrastructure, tmp_path: Path
) -> None:
    url = infra.with_database(infrastructure.database_url, f"nl_cli_{uuid.uuid4().hex[:12]}")
    env = child_env(DATABASE_URL=url, LOG_LEVEL="INFO")
    files = {r.schema: r.files() for r in system.migrations()}
    total = sum(len(f) for f in files.values())
    try:
        first = await asyncio.gather(*(run_cli("migrate", env=env, cwd=tmp_path) for _ in range(3)))
        for result in first:
            assert result.returncode == 0, result.describe()
        applied = [int(re.findall(r"\d+", r.stdout)[-1]) for r in first]
        assert sum(applied) == total, [r.describe() for r in first]
        # Logs went to stderr (the one that applied the files said so), never to stdout.
        assert any("migration applied" in r.stderr for r in first), [r.describe() for r in first]
        assert all("migration applied" not in r.stdout for r in first)
        conn = await asyncpg.connect(url)
        try:
            for schema, applied_files in files.items():
                count = await conn.fetchval(f"SELECT count(*) FROM {schema}.schema_migrations")
                assert count == len(applied_files), schema
        finally:
            await conn.close()
        again = await run_cli("migrate", env=env, cwd=tmp_path)
        assert again.returncode == 0, again.describe()
        assert re.findall(r"\d+", again.stdout) == ["0"], again.describe()
    finally:
        await infra.drop_database(infrastructure, url)


async def test_migrate_json(database_url: str, tmp_path: Path) -> None:
    """CONTRACT.md: every command prints its result as JSON with ``--json``."""
    result = await run_cli(
        "migrate", "--json", env=child_env(DATABASE_URL=database_url), cwd=tmp_path
    )
    assert ok_json(result) == {"applied": 0}


# --- integrations -------------------------------------------------------------------------------


async def test_integration_connect_show_disable_enable_list(
    env: dict[str, str], vhost_url: str, simulator: Simulator, tmp_path: Path
) -> None:
    store = unique_store_id()
    token = simulator.state.add_store(store)
    env = env | {"NUVEMSHOP_API_URL": simulator.api_url}
    observer = await Observer.start(vhost_url)  # binds ingest.events before anything is published
    try:
        connected = ok_json(await _connect(env, tmp_path, store, token=token, user="erp-user-5"))
        assert connected["store_id"] == store
        assert connected["enabled"] is True
        assert connected["webhook_error"] is None
        assert "order/paid" in connected["webhooks_registered"]
        assert simulator.state.store(store).webhooks, "connect registers the webhooks"

        shown = ok_json(
            await run_cli("integration", "show", str(store), "--json", env=env, cwd=tmp_path)
        )
        assert shown["store_id"] == store
        assert shown["enabled"] is True
        assert shown["disabled_reason"] is None
        assert shown["activated_at"].startswith("2026-01-01T00:00:00")
        assert shown["activated_at"].endswith("+00:00")
        assert shown["activated_by"] == "erp-user-5"
        assert shown["last_synced_at"] is None
        assert shown["imported"] == 0
        assert shown["rejected"] == 0

        disabled = ok_json(
            await run_cli("integration", "disable", str(store), "--json", env=env, cwd=tmp_path)
        )
        assert disabled["enabled"] is False
        assert disabled["disabled_reason"] == "switched_off"
        event = (await observer.wait_for("integration.disabled", store_id=store))[0]
        assert event.exchange == "ingest.events"
        assert event.body["reason"] == "switched_off"
        assert event.type == "integration.disabled.v1"
        assert event.content_type == "application/json"
        assert event.persistent
        assert event.message_id

        # Disabling a disabled store changes nothing and announces nothing new.
        again = ok_json(
            await run_cli("integration", "disable", str(store), "--json", env=env, cwd=tmp_path)
        )
        assert again["enabled"] is False
        assert again["disabled_reason"] == "switched_off"

        enabled = ok_json(
            await run_cli("integration", "enable", str(store), "--json", env=env, cwd=tmp_path)
        )
        assert enabled["enabled"] is True
        assert enabled["disabled_reason"] is None

        listed, text = await asyncio.gather(
            run_cli("integration", "list", "--json", env=env, cwd=tmp_path),
            run_cli("integration", "show", str(store), env=env, cwd=tmp_path),
        )
        rows = ok_json(listed)
        assert isinstance(rows, list)
        assert [r["store_id"] for r in rows] == [store]
        assert rows[0]["enabled"] is True
        assert text.returncode == 0, text.describe()
        assert str(store) in text.stdout
        await observer.echo()  # the commands published before they exited
        assert len(observer.of("integration.disabled", store_id=store)) == 1
    finally:
        await observer.close()


async def test_connect_with_an_unreachable_api_warns_and_succeeds(
    env: dict[str, str], tmp_path: Path
) -> None:
    store = unique_store_id()
    result = await _connect(env, tmp_path, store)
    connected = ok_json(result)
    assert connected["store_id"] == store
    assert connected["enabled"] is True
    assert connected["webhook_error"]
    assert "warning" in result.stderr.lower(), result.describe()
    shown = ok_json(
        await run_cli("integration", "show", str(store), "--json", env=env, cwd=tmp_path)
    )
    assert shown["enabled"] is True
    assert shown["activated_by"] == "erp-user-5"


# --- catalog and settings -----------------------------------------------------------------------


async def test_catalog_and_settings(env: dict[str, str], database_url: str, tmp_path: Path) -> None:
    store = unique_store_id()
    product_args = (
        "catalog",
        "add-product",
        "--store-id",
        str(store),
        "--description",
        "Mesa de Jantar",
        "--price",
        "899.90",
    )
    product = ok_json(
        await run_cli(
            *product_args, "--sku", "MJ-1", "--stock", "5", "--json", env=env, cwd=tmp_path
        )
    )
    assert product["id"]
    assert product["description"] == "Mesa de Jantar"
    assert product["stock"] == 5

    duplicate, customer, bad_document, setting = await asyncio.gather(
        run_cli(*product_args, "--json", env=env, cwd=tmp_path),
        run_cli(
            "catalog",
            "add-customer",
            "--store-id",
            str(store),
            "--name",
            "Ana Lima",
            "--document",
            "75839566500",
            "--json",
            env=env,
            cwd=tmp_path,
        ),
        run_cli(
            "catalog",
            "add-customer",
            "--store-id",
            str(store),
            "--name",
            "Ana Lima",
            "--document",
            "12345678900",
            "--json",
            env=env,
            cwd=tmp_path,
        ),
        run_cli(
            "settings", "set", "--store-id", str(store), "stock-check", "on", env=env, cwd=tmp_path
        ),
    )
    assert "Mesa de Jantar" in one_line_error(duplicate)
    assert ok_json(customer)["id"]
    assert "document" in one_line_error(bad_document)
    assert setting.returncode == 0, setting.describe()

    conn = await asyncpg.connect(database_url)
    try:
        products = await conn.fetchval(
            "SELECT count(*) FROM mapper.products WHERE store_id = $1", store
        )
        assert products == 1
        stock = await conn.fetchval(
            "SELECT sum(quantity) FROM ledger.stock_movements WHERE store_id = $1 AND direction = 'in'",
            store,
        )
        assert stock == 5
        assert (
            await conn.fetchval(
                "SELECT stock_check FROM mapper.store_settings WHERE store_id = $1", store
            )
            is True
        )
    finally:
        await conn.close()


# --- rejected orders and dead letters -----------------------------------------------------------


async def test_orders_rejected_and_dead_list(
    env: dict[str, str], vhost_url: str, tmp_path: Path
) -> None:
    connection = await aio_pika.connect(vhost_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        await declare_topology(channel)
        await channel.default_exchange.publish(
            aio_pika.Message(
                b"not json",
                message_id="dead-cli-1",
                headers={"x-error-reason": "invalid_json", "x-error-detail": "body is not JSON"},
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key="mapper.orders.dead",
        )
    finally:
        await connection.close()

    rejected, rejected_store, dead, empty = await asyncio.gather(
        run_cli("orders", "rejected", "--json", env=env, cwd=tmp_path),
        run_cli("orders", "rejected", "--store-id", "12", "--json", env=env, cwd=tmp_path),
        run_cli("dead", "list", "mapper.orders.dead", "--json", env=env, cwd=tmp_path),
        run_cli("dead", "list", "ledger.erp.dead", "--json", env=env, cwd=tmp_path),
    )
    assert ok_json(rejected) == []
    assert ok_json(rejected_store) == []
    listed = ok_json(dead)
    assert isinstance(listed, list)
    assert [(m["message_id"], m["reason"], m["detail"], m["body"]) for m in listed] == [
        ("dead-cli-1", "invalid_json", "body is not JSON", "not json")
    ]
    assert ok_json(empty) == []
    # Listing consumed nothing.
    again = ok_json(
        await run_cli("dead", "list", "mapper.orders.dead", "--json", env=env, cwd=tmp_path)
    )
    assert [m["message_id"] for m in again] == ["dead-cli-1"]


# --- bad input ----------------------------------------------------------------------------------


async def test_bad_input_fails_with_one_line(
    env: dict[str, str], vhost_url: str, tmp_path: Path
) -> None:
    connection = await aio_pika.connect(vhost_url)
    try:
        await declare_topology(await connection.channel())
    finally:
        await connection.close()
    cases: dict[str, tuple[str, ...]] = {
        "unknown store": ("integration", "show", "999999", "--json"),
        "missing --store-id": (
            "catalog",
            "add-product",
            "--description",
            "X",
            "--price",
            "1.00",
            "--json",
        ),
        "bad --price": (
            "catalog",
            "add-product",
            "--store-id",
            "1",
            "--description",
            "X",
            "--price",
            "abc",
        ),
        "bad --activated-at": (
            "integration",
            "connect",
            "--store-id",
            "1",
            "--access-token",
            "t",
            "--user",
            "u",
            "--activated-at",
            "yesterday",
        ),
        "bad setting value": ("settings", "set", "--store-id", "1", "stock-check", "maybe"),
        "negative --stock": (
            "catalog",
            "add-product",
            "--store-id",
            "1",
            "--description",
            "X",
            "--price",
            "1",
            "--stock",
            "-1",
        ),
        "enable an unknown store": ("integration", "enable", "424242", "--json"),
        "disable an unknown store": ("integration", "disable", "424242", "--json"),
        "unknown command": ("frobnicate",),
        "no command": (),
        "unknown queue": ("dead", "list", "no.such.queue", "--json"),
        "retry of an order that is not rejected": (
            "orders",
            "retry",
            "--store-id",
            "1",
            "--order-id",
            "2",
        ),
    }
    results = await asyncio.gather(
        *(run_cli(*args, env=env, cwd=tmp_path) for args in cases.values())
    )
    for (case, _), result in zip(cases.items(), results, strict=True):
        line = one_line_error(result)
        assert line.startswith("nuvem-ledger"), f"{case}: {result.describe()}"
    assert "999999" in one_line_error(results[0])
