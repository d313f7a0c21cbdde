"""The fault-test infrastructure itself, against real processes: private RabbitMQ nodes, a private
PostgreSQL, the TCP proxy, and the cleanup of what a killed test run leaves behind."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import aio_pika
import aiohttp
import asyncpg
import pytest

from tests.faults import workdir
from tests.faults.broker import RabbitNode, epmd_names
from tests.faults.messages import BareConnection, consume_all, publish_persistent
from tests.faults.postgres import PrivatePostgres
from tests.faults.proxy import TcpProxy

SHARED_PORTS = (5672, 15672, 5432)


def _refuses(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError:
        return True
    return False


# --- private RabbitMQ node -----------------------------------------------------------------------


async def test_a_quorum_queue_keeps_its_persistent_messages_across_app_and_node_restarts(
    rabbit_node: RabbitNode,
) -> None:
    node = rabbit_node
    assert node.name.startswith("fault")
    assert node.amqp_port not in SHARED_PORTS
    assert node.folder is not None
    assert node.folder.name in epmd_names()
    url = await asyncio.to_thread(node.add_vhost, "restarts")
    await publish_persistent(url, "survivor", 50)

    await asyncio.to_thread(node.stop_app)
    assert _refuses(node.amqp_port)
    await asyncio.to_thread(node.start_app)
    assert await consume_all(url, "survivor", 10) == list(range(10))

    await asyncio.to_thread(node.stop_node)
    assert _refuses(node.amqp_port)
    assert node.folder.name not in epmd_names()
    seconds = await asyncio.to_thread(node.start_node)
    assert 0 < seconds < 120
    assert await consume_all(url, "survivor", 40) == list(range(10, 50))


async def test_close_all_connections_by_vhost_then_everywhere_and_management_on_its_own_port() -> (
    None
):
    with RabbitNode(management=True) as node:
        assert node.management_port not in SHARED_PORTS
        await asyncio.to_thread(node.add_vhost, "first")
        await asyncio.to_thread(node.add_vhost, "second")
        first = await BareConnection.open(node.amqp_port, "first")
        second = await BareConnection.open(node.amqp_port, "second")
        try:
            await asyncio.to_thread(node.close_all_connections, "first")
            assert await first.closed_by_broker()
            assert not await second.closed_by_broker(within=1)

            await asyncio.to_thread(node.close_all_connections)
            assert await second.closed_by_broker()

            basic = base64.b64encode(b"guest:guest").decode()
            async with (
                aiohttp.ClientSession(headers={"authorization": f"Basic {basic}"}) as http,
                http.get(f"{node.management_url}/api/overview") as answer,
            ):
                assert answer.status == 200
                assert (await answer.json())["node"] == node.name
        finally:
            await first.close()
            await second.close()
    assert _refuses(node.amqp_port)


class _Misconfigured(RabbitNode):
    def _configure(self, folder: Path) -> None:
        super()._configure(folder)
        (folder / "rabbitmq.conf").write_text("listeners.tcp.local = not-a-port\n")


def test_a_node_that_cannot_start_fails_at_once_and_leaves_nothing_behind() -> None:
    node = _Misconfigured()
    began = time.monotonic()
    with pytest.raises(RuntimeError, match="did not start"):
        node.__enter__()
    assert time.monotonic() - began < 60
    assert node.folder is None
    short_name = node.name.split("@")[0]
    assert short_name not in epmd_names()
    assert not (workdir.BASE / "rabbit" / short_name).exists()


_OWNER = """
import sys, time
from tests.faults.{module} import {cls}
instance = {cls}()
instance.__enter__()
print(instance.folder, instance._watchdog.pid, flush=True)
time.sleep(600)
"""


def _start_owner(module: str, cls: str) -> tuple[subprocess.Popen[str], Path, int]:
    """A separate Python process that starts an instance and then waits to be killed."""
    owner = subprocess.Popen(
        [sys.executable, "-c", _OWNER.format(module=module, cls=cls)],
        cwd=workdir.REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert owner.stdout is not None
    folder, watchdog = owner.stdout.readline().split()
    return owner, Path(folder), int(watchdog)


def _kill(owner: subprocess.Popen[str]) -> None:
    owner.send_signal(signal.SIGKILL)
    owner.wait()
    assert owner.stdout is not None
    owner.stdout.close()


def _eventually(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


def test_a_node_whose_test_process_was_killed_is_stopped_by_its_watchdog() -> None:
    owner, folder, _ = _start_owner("broker", "RabbitNode")
    try:
        assert folder.name in epmd_names()
    finally:
        _kill(owner)  # as `kill -9` of pytest would: no finally runs in the owner
    assert _eventually(lambda: folder.name not in epmd_names() and not folder.exists(), 90)


def test_leftovers_of_a_run_killed_with_its_watchdog_are_reaped_by_the_next_one() -> None:
    owner, folder, watchdog = _start_owner("postgres", "PrivatePostgres")
    os.kill(watchdog, signal.SIGKILL)
    _kill(owner)
    postmaster = int((folder / "data" / "postmaster.pid").read_text().split()[0])
    assert workdir.start_time(postmaster) is not None  # the orphaned server still runs

    assert folder.name in workdir.reap("postgres")
    assert not folder.exists()
    assert _eventually(lambda: workdir.start_time(postmaster) is None, 10)


# --- private PostgreSQL ----------------------------------------------------------------------------


async def test_committed_rows_survive_an_immediate_stop(private_postgres: PrivatePostgres) -> None:
    server = private_postgres
    assert server.port not in SHARED_PORTS
    url = await asyncio.to_thread(server.create_database, "faults")
    connection = await asyncpg.connect(url)
    await connection.execute("CREATE TABLE t (n int); INSERT INTO t SELECT generate_series(1, 100)")
    unfinished = await asyncpg.connect(url)
    await unfinished.execute("BEGIN; INSERT INTO t VALUES (-1)")

    await asyncio.to_thread(server.stop, "immediate")
    assert not server.running()
    with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, OSError)):
        await connection.fetchval("SELECT 1")
    seconds = await asyncio.to_thread(server.start)
    assert 0 < seconds < 60
    connection = await asyncpg.connect(url)
    assert await connection.fetchval("SELECT count(*) FROM t WHERE n > 0") == 100
    assert await connection.fetchval("SELECT count(*) FROM t WHERE n < 0") == 0
    await connection.close()
    unfinished.terminate()

    await asyncio.to_thread(server.restart)
    connection = await asyncpg.connect(url)
    assert await connection.fetchval("SELECT sum(n) FROM t") == 5050
    await connection.close()


# --- TCP proxy -------------------------------------------------------------------------------------


async def _through(proxy: TcpProxy) -> asyncpg.Connection:
    return await asyncpg.connect(
        host="127.0.0.1", port=proxy.port, user="postgres", database="postgres"
    )


async def test_a_paused_proxy_holds_connections_and_bytes_for_20_seconds(
    private_postgres: PrivatePostgres, tcp_proxy: Callable[[str, int], TcpProxy]
) -> None:
    proxy = tcp_proxy("127.0.0.1", private_postgres.port)
    answering, asking = await _through(proxy), await _through(proxy)
    assert await answering.fetchval("SELECT 1") == 1
    # The server answers this one while the proxy is paused: held on the way back.
    answer = asyncio.create_task(answering.fetchval("SELECT 'late' FROM pg_sleep(1)"))
    await asyncio.sleep(0.3)
    proxy.pause()
    sent = proxy.bytes_up, proxy.bytes_down
    # This one is asked during the pause: held on the way there.
    question = asyncio.create_task(asking.fetchval("SELECT 2"))
    connecting = asyncio.create_task(_through(proxy))  # a new connection hangs too

    await asyncio.sleep(20)
    assert not answer.done()
    assert not question.done()
    assert not connecting.done()
    assert not answering.is_closed()
    assert not asking.is_closed()
    assert proxy.connections_open == 3
    assert (proxy.bytes_up, proxy.bytes_down) == sent

    proxy.resume()
    async with asyncio.timeout(10):
        assert await answer == "late"
        assert await question == 2
        late_comer = await connecting
    assert await late_comer.fetchval("SELECT 3") == 3
    assert proxy.bytes_up > sent[0]
    assert proxy.bytes_down > sent[1]
    assert proxy.connections_total == 3
    assert proxy.connections_severed == 0
    for connection in (answering, asking, late_comer):
        await connection.close()


async def test_sever_closes_every_connection_and_new_ones_still_pass(
    private_postgres: PrivatePostgres, tcp_proxy: Callable[[str, int], TcpProxy]
) -> None:
    proxy = tcp_proxy("127.0.0.1", private_postgres.port)
    connections = [await _through(proxy) for _ in range(3)]
    assert proxy.connections_open == 3

    assert await asyncio.to_thread(proxy.sever) == 3
    for connection in connections:
        with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, OSError)):
            await connection.fetchval("SELECT 1")
        assert connection.is_closed()
    assert proxy.connections_open == 0
    assert proxy.connections_severed == 3

    again = await _through(proxy)
    assert await again.fetchval("SELECT 1") == 1
    await again.close()


async def test_the_proxy_carries_amqp_and_pausing_a_broker_link_keeps_it_open(
    rabbit_node: RabbitNode, tcp_proxy: Callable[[str, int], TcpProxy]
) -> None:
    proxy = tcp_proxy("127.0.0.1", rabbit_node.amqp_port)
    url = rabbit_node.amqp_url().replace(str(rabbit_node.amqp_port), str(proxy.port))
    await publish_persistent(url, "through", 5)
    connection = await aio_pika.connect(url)
    channel = await connection.channel()
    queue = await channel.declare_queue(
        "through", durable=True, arguments={"x-queue-type": "quorum"}
    )
    proxy.pause()
    taking = asyncio.create_task(queue.get(timeout=60))
    await asyncio.sleep(5)
    assert not taking.done()
    assert not connection.is_closed
    proxy.resume()
    message = await asyncio.wait_for(taking, 10)
    assert json.loads(message.body) == 0
    await message.ack()
    await connection.close()
