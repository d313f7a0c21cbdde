"""Issue 9, 1(a)-(e): each fault in the middle of a flow, the three services as processes.

A private RabbitMQ node and a private PostgreSQL (never the machine's own) carry a flow of
120 paid orders, half announced by webhook and half only found by the poller, and an ERP
confirming every pending sale. In the middle of the flow one fault happens:

- (a) the broker closes every connection;
- (b) the broker application restarts (``stop_app``, 3 s, ``start_app``);
- (c) the whole broker node restarts;
- (d) PostgreSQL crashes (``stop -m immediate``, 3 s, start);
- (e) the network stalls for 20 s between the services and the broker, or the database (a TCP
  proxy that stops forwarding but keeps the connections open).

Afterwards every order has exactly one sale and one posting, every service answers ``/readyz``
200, and no service process was restarted. The seconds from the dependency's return to each
service's first processed message are written to ``.fault-figures.json`` (docs/reliability.md).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from services.system import migrations
from shared.db import migrate
from tests.faults.broker import RabbitNode
from tests.faults.flow import Flow
from tests.faults.postgres import PrivatePostgres
from tests.faults.proxy import TcpProxy

STORE = 930_001
ORDERS = 120
PER_S = 12.0
RECOVERY_LIMIT_S = 30.0
FIGURES = Path(__file__).resolve().parents[2] / ".fault-figures.json"

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def node() -> Iterator[RabbitNode]:
    with RabbitNode(prefix="faultflow") as started:
        yield started


@pytest.fixture(scope="module")
def postgres() -> Iterator[PrivatePostgres]:
    with PrivatePostgres() as started:
        yield started


Cause = Callable[[RabbitNode, PrivatePostgres, dict[str, TcpProxy]], Awaitable[None]]


async def _close_connections(node: RabbitNode, _: PrivatePostgres, __: dict[str, TcpProxy]) -> None:
    await asyncio.to_thread(node.close_all_connections)


async def _app_restart(node: RabbitNode, _: PrivatePostgres, __: dict[str, TcpProxy]) -> None:
    await asyncio.to_thread(node.stop_app)
    await asyncio.sleep(3)
    await asyncio.to_thread(node.start_app)


async def _node_restart(node: RabbitNode, _: PrivatePostgres, __: dict[str, TcpProxy]) -> None:
    await asyncio.to_thread(node.stop_node)
    await asyncio.to_thread(node.start_node)


async def _postgres_restart(_: RabbitNode, pg: PrivatePostgres, __: dict[str, TcpProxy]) -> None:
    await asyncio.to_thread(pg.stop, "immediate")
    await asyncio.sleep(3)
    await asyncio.to_thread(pg.start)


def _stall(which: str) -> Cause:
    async def cause(_: RabbitNode, __: PrivatePostgres, proxies: dict[str, TcpProxy]) -> None:
        await asyncio.to_thread(proxies[which].pause)
        await asyncio.sleep(20)
        await asyncio.to_thread(proxies[which].resume)

    return cause


async def _while_stalled(flow: Flow, which: str) -> None:
    """Ten seconds into a stall: readiness says why, and a webhook is answered 503 in 1 s."""
    await asyncio.sleep(10)
    ready = await flow.readiness()
    reason = "broker not confirming" if which == "broker" else "database unreachable"
    for name, (status, body) in ready.items():
        if which == "database" or name == "ingest":
            assert status == 503, (name, body)
            assert any(reason in why for why in body["why"]), (name, body)
    if which == "broker":
        started = time.monotonic()
        status = await flow.webhook(STORE, "order/paid", 1)
        assert status == 503
        assert time.monotonic() - started < 1.0


FAULTS: dict[str, Cause] = {
    "a-close-connections": _close_connections,
    "b-app-restart": _app_restart,
    "c-node-restart": _node_restart,
    "d-postgres-crash": _postgres_restart,
    "e-broker-stall": _stall("broker"),
    "e-database-stall": _stall("database"),
}


def _record(fault: str, figures: dict[str, object]) -> None:
    known = json.loads(FIGURES.read_text()) if FIGURES.exists() else {}
    known[fault] = figures
    FIGURES.write_text(json.dumps(known, indent=2, sort_keys=True) + "\n")


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_the_services_heal_without_a_restart(
    fault: str, node: RabbitNode, postgres: PrivatePostgres
) -> None:
    name = f"f{uuid.uuid4().hex[:10]}"
    amqp = await asyncio.to_thread(node.add_vhost, name)
    database = await asyncio.to_thread(postgres.create_database, name)
    await migrate(database, migrations())
    proxies = {
        "broker": TcpProxy("127.0.0.1", node.amqp_port).start(),
        "database": TcpProxy("127.0.0.1", postgres.port).start(),
    }
    flow = Flow(
        amqp_url=amqp.replace(f":{node.amqp_port}/", f":{proxies['broker'].port}/"),
        database_url=database.replace(f":{postgres.port}/", f":{proxies['database'].port}/"),
        direct_amqp_url=amqp,
        direct_database_url=database,
    )
    try:
        await flow.start()
        await flow.connect_store(STORE)
        pids = flow.pids()
        paying = asyncio.create_task(flow.pay(STORE, ORDERS, PER_S))
        await asyncio.sleep(3)
        stalled = fault.split("-")[1] if fault.startswith("e-") else None
        during = asyncio.create_task(_while_stalled(flow, stalled)) if stalled else None
        await FAULTS[fault](node, postgres, proxies)
        back = time.monotonic()
        if during is not None:
            await during
        order_ids = await paying
        result = await flow.wait_reconciled(STORE, order_ids, within=120)
        ready = await flow.all_ready(within=RECOVERY_LIMIT_S)
        recovery = flow.first_progress_after(back)
        _record(fault, {"reconciliation": result.line(), "recovery_s": recovery})
        print(f"{fault}: {result.line()} · recovery {recovery}")
        assert (result.lost, result.doubled) == (0, 0), (result, flow.diagnosis())
        assert result.sales == result.orders == result.confirmed == result.postings
        assert {n: status for n, (status, _) in ready.items()} == dict.fromkeys(ready, 200), ready
        assert flow.pids() == pids
        assert all(c.popen.poll() is None for c in flow.children.values())
        assert all(s is not None and s <= RECOVERY_LIMIT_S for s in recovery.values()), recovery
    finally:
        await flow.close()
        for proxy in proxies.values():
            proxy.close()
