"""Issue 13, 1: the ledger scales out. Three ledger replicas as processes on one vhost.

The sales stream is sharded by store (``ledger.sales.0..3``); each replica consumes the shards
assigned to it (services/ledger/shards.py). With stores on every shard, a flow of paid orders and
an ERP confirming every sale, all three replicas do work (each processes messages of its own shards, read from
its own ``/metrics``), every order
ends with one sale and one posting (a confirmation handled before its announcement would have
been refused, leaving the sale unconfirmed), and one replica killed with ``kill -9`` in the
middle (and started again, as Kubernetes would) changes nothing in the result.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from shared.settings import Settings
from tests.faults.flow import Flow, stores_on_every_shard

pytestmark = pytest.mark.timeout(240)

REPLICAS = ("ledger", "ledger-2", "ledger-3")
ORDERS_PER_STORE = 12
PER_S = 6.0


async def test_three_replicas_all_work_and_a_killed_one_loses_and_doubles_nothing(
    settings: Settings,
) -> None:
    stores = stores_on_every_shard(940_000, 2)
    flow = Flow(amqp_url=settings.amqp_url, database_url=settings.database_url, ledgers=3)
    try:
        await flow.start()
        for store in stores:
            await flow.connect_store(store)
        paying = [asyncio.create_task(flow.pay(s, ORDERS_PER_STORE, PER_S)) for s in stores]
        await _until(lambda: all(flow.shard_work[r] > 0 for r in REPLICAS), within=30)
        flow.kill("ledger-2")  # kill -9 in the middle of the flow, then started again
        paid = await asyncio.gather(*paying)
        results = [
            await flow.wait_reconciled(s, ids, within=90)
            for s, ids in zip(stores, paid, strict=True)
        ]
        work = {r: flow.shard_work[r] for r in REPLICAS}
        processed = {r: flow.most_processed(r) for r in REPLICAS}
        print(f"three ledger replicas: shard messages {work}, all messages {processed}")
        for result in results:
            assert (result.lost, result.doubled) == (0, 0), (result, flow.diagnosis())
            assert result.sales == result.orders == result.confirmed == result.postings
        assert all(count > 0 for count in work.values()), work
        ready = await flow.all_ready(within=30)
        assert {n: status for n, (status, _) in ready.items()} == dict.fromkeys(ready, 200), ready
    finally:
        await flow.close()


async def _until(condition: Callable[[], bool], within: float) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("replicas did not all start working")
        await asyncio.sleep(0.1)
