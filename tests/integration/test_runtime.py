"""The services as Kubernetes runs them: real processes, health and metrics over HTTP, SIGTERM.

Each test starts ``python -m services.<name>`` or ``nuvem-ledger run <name>`` on the test's own
vhost and database with its HTTP port on a free port, and always kills the child on the way out.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
import time
from pathlib import Path

import aio_pika
import aiohttp
import asyncpg
import pytest

from services.ingest.tokens import generate_key
from shared.messaging import declare_topology
from tests.harness import Observer
from tests.integration.helpers import (
    CLI,
    Child,
    child_env,
    closed_port,
    free_port,
    order_paid,
    spawn,
    take,
    unique_store_id,
)

START_S = 15.0
STOP_S = 15.0

COMMANDS: dict[str, tuple[list[str], str]] = {
    "python -m services.mapper": ([sys.executable, "-m", "services.mapper"], "MAPPER_HTTP_PORT"),
    "nuvem-ledger run ledger": ([CLI, "run", "ledger"], "LEDGER_HTTP_PORT"),
    "nuvem-ledger run ingest": ([CLI, "run", "ingest"], "INGEST_HTTP_PORT"),
}


def _env(vhost_url: str, database_url: str, **extra: str) -> dict[str, str]:
    return child_env(
        AMQP_URL=vhost_url,
        DATABASE_URL=database_url,
        TOKEN_ENCRYPTION_KEY=generate_key(),
        CONNECT_LINK_SECRET=secrets.token_urlsafe(32),
        NUVEMSHOP_API_URL=f"http://127.0.0.1:{closed_port()}/v1",
        HTTP_HOST="127.0.0.1",
        **extra,
    )


async def _get(session: aiohttp.ClientSession, url: str) -> tuple[int, str] | None:
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=3)) as response:
            return response.status, await response.text()
    except (aiohttp.ClientError, OSError, TimeoutError):
        return None


async def _wait_http(
    session: aiohttp.ClientSession, child: Child, url: str, status: int, within: float = START_S
) -> str:
    """Poll ``url`` until it answers ``status``; fail early if the child died."""
    deadline = time.monotonic() + within
    last: tuple[int, str] | None = None
    while time.monotonic() < deadline:
        if child.proc.returncode is not None:
            raise AssertionError(f"the service exited {child.proc.returncode}\n{child.output()}")
        last = await _get(session, url)
        if last is not None and last[0] == status:
            return last[1]
        await asyncio.sleep(0.2)
    raise AssertionError(f"{url} never answered {status} (last: {last})\n{child.output()}")


async def _wait_output(child: Child, text: str, within: float = START_S, count: int = 1) -> None:
    """Wait until the child wrote ``text`` ``count`` times; fail early if it died."""
    deadline = time.monotonic() + within
    while (child.stdout + child.stderr).count(text) < count:
        if child.proc.returncode is not None:
            raise AssertionError(f"the service exited {child.proc.returncode}\n{child.output()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"never logged {text!r}\n{child.output()}")
        await asyncio.sleep(0.2)


@pytest.mark.parametrize("command", list(COMMANDS))
async def test_service_serves_health_and_metrics_and_stops_on_sigterm(
    command: str, vhost_url: str, database_url: str, tmp_path: Path
) -> None:
    argv, port_var = COMMANDS[command]
    port = free_port()
    env = _env(vhost_url, database_url, **{port_var: str(port)})
    base = f"http://127.0.0.1:{port}"
    async with spawn(argv, env=env, cwd=tmp_path) as child, aiohttp.ClientSession() as session:
        health = await _wait_http(session, child, f"{base}/healthz", 200)
        assert json.loads(health)["status"] == "ok"
        await _wait_http(session, child, f"{base}/readyz", 200)
        metrics = await _wait_http(session, child, f"{base}/metrics", 200)
        assert "nuvem_ledger_" in metrics

        started = time.monotonic()
        code = await child.terminate(STOP_S)
        assert code == 0, child.output()
        assert time.monotonic() - started < STOP_S
        assert "Traceback" not in child.stdout + child.stderr, child.output()
        # Structured logs: JSON lines on stdout (LOG_FORMAT defaults to json).
        lines = [line for line in child.stdout.splitlines() if line.strip()]
        assert lines, child.output()
        events = [json.loads(line) for line in lines]
        assert any(e.get("event") == "service started" for e in events), child.output()


async def test_run_all_serves_the_three_services(
    vhost_url: str, database_url: str, tmp_path: Path
) -> None:
    ports = {name: free_port() for name in ("ingest", "mapper", "ledger")}
    env = _env(vhost_url, database_url, **{f"{n}_HTTP_PORT": str(p) for n, p in ports.items()})
    async with (
        spawn([CLI, "run", "all"], env=env, cwd=tmp_path) as child,
        aiohttp.ClientSession() as session,
    ):
        for name, port in ports.items():
            health = await _wait_http(session, child, f"http://127.0.0.1:{port}/healthz", 200)
            assert json.loads(health)["service"] == name
            await _wait_http(session, child, f"http://127.0.0.1:{port}/readyz", 200)
        assert await child.terminate(STOP_S) == 0, child.output()


async def test_ingest_without_a_token_key_refuses_to_start_in_one_line(
    vhost_url: str, database_url: str, tmp_path: Path
) -> None:
    env = child_env(
        AMQP_URL=vhost_url,
        DATABASE_URL=database_url,
        INGEST_HTTP_PORT=str(free_port()),
        HTTP_HOST="127.0.0.1",
    )
    async with spawn([CLI, "run", "ingest"], env=env, cwd=tmp_path) as child:
        code = await asyncio.wait_for(child.proc.wait(), timeout=START_S)
        assert code != 0, child.output()
        lines = [line for line in child.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, child.output()
        assert "TOKEN_ENCRYPTION_KEY" in lines[0]
        assert "Traceback" not in child.stdout, child.output()


async def test_unreachable_broker_is_retried_until_sigterm(
    database_url: str, tmp_path: Path
) -> None:
    port = free_port()
    env = _env(
        f"amqp://guest:guest@127.0.0.1:{closed_port()}/", database_url, MAPPER_HTTP_PORT=str(port)
    )
    async with spawn([CLI, "run", "mapper"], env=env, cwd=tmp_path) as child:
        await _wait_output(child, "unreachable, retrying")
        # It keeps waiting rather than crashing: two more attempts, each logged.
        await _wait_output(child, "unreachable, retrying", count=3)
        assert child.proc.returncode is None, child.output()
        output = child.stdout + child.stderr
        assert "Traceback" not in output, child.output()
        assert "broker unreachable, retrying" in output, child.output()
        assert await child.terminate(STOP_S) == 0, child.output()
        assert "Traceback" not in child.stdout + child.stderr, child.output()


async def test_health_answers_while_the_broker_is_unreachable(
    database_url: str, tmp_path: Path
) -> None:
    """Liveness is not readiness: a service waiting for its broker is alive but not ready.

    CONTRACT.md: ``/healthz`` is liveness and ``/readyz`` readiness (broker and database
    reachable). A service that serves nothing while it waits for RabbitMQ fails its liveness
    probe and is restarted by Kubernetes: the crash loop the waiting is meant to avoid.
    """
    port = free_port()
    env = _env(
        f"amqp://guest:guest@127.0.0.1:{closed_port()}/", database_url, MAPPER_HTTP_PORT=str(port)
    )
    base = f"http://127.0.0.1:{port}"
    async with (
        spawn([CLI, "run", "mapper"], env=env, cwd=tmp_path) as child,
        aiohttp.ClientSession() as session,
    ):
        await _wait_output(child, "unreachable, retrying")
        await _wait_http(session, child, f"{base}/healthz", 200, within=5)
        await _wait_http(session, child, f"{base}/readyz", 503, within=5)
        assert await child.terminate(STOP_S) == 0, child.output()


async def _publish_orders(amqp_url: str, store: int, count: int) -> None:
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        await declare_topology(channel)
        exchange = await channel.get_exchange("ingest.events", ensure=False)
        await asyncio.gather(
            *(
                exchange.publish(
                    aio_pika.Message(
                        order_paid(store, order_id).model_dump_json().encode(),
                        content_type="application/json",
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        message_id=f"order.paid:{store}:{order_id}",
                    ),
                    routing_key="order.paid",
                )
                for order_id in range(1, count + 1)
            )
        )
    finally:
        await connection.close()


async def test_sigterm_mid_stream_loses_and_doubles_nothing(
    vhost_url: str, database_url: str, tmp_path: Path
) -> None:
    """SIGTERM while orders stream in: exit 0; what was not finished is handed back, not lost."""
    store, total = unique_store_id(), 200
    env = _env(vhost_url, database_url, MAPPER_HTTP_PORT=str(free_port()), BATCH_SIZE="5")
    observer = await Observer.start(vhost_url)
    try:
        await _publish_orders(vhost_url, store, total)
        async with spawn(
            [sys.executable, "-m", "services.mapper"], env=env, cwd=tmp_path, name="first"
        ) as child:
            await observer.wait_for("sale.pending_review", store_id=store)
            assert await child.terminate(STOP_S) == 0, child.output()
            assert "Traceback" not in child.stdout + child.stderr, child.output()
        conn = await asyncpg.connect(database_url)
        try:
            done_first = await conn.fetchval(
                "SELECT count(*) FROM mapper.sales WHERE store_id = $1", store
            )
        finally:
            await conn.close()
        assert 0 < done_first <= total

        env["MAPPER_HTTP_PORT"] = str(free_port())
        async with spawn(
            [sys.executable, "-m", "services.mapper"], env=env, cwd=tmp_path, name="second"
        ) as child:
            deadline = time.monotonic() + 20
            while (
                len(
                    {s.body["order_id"] for s in observer.of("sale.pending_review", store_id=store)}
                )
                < total
            ):
                assert time.monotonic() < deadline, (
                    f"only {len(observer.of('sale.pending_review'))} sales\n{child.output()}"
                )
                await asyncio.sleep(0.2)
            assert await child.terminate(STOP_S) == 0, child.output()  # published all it had
        await observer.echo()
    finally:
        await observer.close()
    announced = observer.of("sale.pending_review", store_id=store)
    assert len({s.body["order_id"] for s in announced}) == total
    # A republish after a crash carries the same message id; distinct ids are distinct sales.
    assert len({s.message_id for s in announced}) == total
    conn = await asyncpg.connect(database_url)
    try:
        assert (
            await conn.fetchval("SELECT count(*) FROM mapper.sales WHERE store_id = $1", store)
            == total
        )
    finally:
        await conn.close()
    assert await take(vhost_url, "mapper.orders.dead", count=0, within=0) == []
