"""Issue 13, 2: the system on the three-node cluster; the node leading the queues stops mid-flow.

The three services run as processes with ``AMQP_URL`` naming the three nodes (the first one
first, so every connection starts on node 1, where the quorum queues are declared and led).
Once every service has processed messages of a flow of paid orders over stores on every ledger shard, with an ERP
confirming every sale, the node leading ``mapper.orders`` and the sales shards is stopped
(its VM, as a machine failure would). The services reconnect to another node by themselves,
the queues' leadership moves to a surviving node, and afterwards every order has exactly one
sale and one posting, no process was restarted, and every service is ready. The figures (each
service's seconds from the node's exit to its next processed message, the reconciliation) are printed
and kept in ``.fault-figures.json`` under ``cluster-leader-stop``.

Marked ``cluster`` (``make cluster-test``): starting the cluster costs 30-50 s.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from shared.topology import ledger_shard
from tests.faults.cluster import NUMBERS, RabbitCluster
from tests.faults.flow import Flow, stores_on_every_shard

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(900)]

ORDERS_PER_STORE = 30
PER_S = 3.0
FIGURES = Path(__file__).resolve().parents[2] / ".fault-figures.json"


async def test_the_leader_node_stops_mid_flow_and_nothing_is_lost_or_doubled(
    cluster: RabbitCluster, cluster_vhost: str, database_url: str
) -> None:
    amqp = ",".join(cluster.amqp_urls(cluster_vhost))
    flow = Flow(amqp_url=amqp, database_url=database_url)
    stores = stores_on_every_shard(960_000, 1)
    try:
        await flow.start()
        for store in stores:
            await flow.connect_store(store)
        pids = flow.pids()
        paying = [asyncio.create_task(flow.pay(s, ORDERS_PER_STORE, PER_S)) for s in stores]
        await flow.under_way()  # every service has processed some: stop the leader mid-flow

        leader = await asyncio.to_thread(cluster.leader_number, "mapper.orders", cluster_vhost)
        shard = ledger_shard(0).name
        stopped_at = time.monotonic()
        await asyncio.to_thread(cluster.stop_node, leader)
        gone_at = time.monotonic()  # the node's VM has exited
        stop_s = gone_at - stopped_at
        moved_to = await asyncio.to_thread(
            cluster.wait_for_leader, shard, cluster_vhost, not_on=leader
        )

        paid = await asyncio.gather(*paying)
        results = [
            await flow.wait_reconciled(s, ids, within=180)
            for s, ids in zip(stores, paid, strict=True)
        ]
        ready = await flow.all_ready(within=60)
        recovery = flow.first_progress_after(gone_at)
        lines = [r.line() for r in results]
        figures = {
            "stopped_node": leader,
            "leadership_moved_to": moved_to,
            "stop_node_s": round(stop_s, 1),
            "first_progress_after_node_gone_s": recovery,
            "orders": sum(r.orders for r in results),
            "lost": sum(r.lost for r in results),
            "doubled": sum(r.doubled for r in results),
        }
        print(f"cluster leader stop: {figures}; {lines}")
        _record(figures)
        for result in results:
            assert (result.lost, result.doubled) == (0, 0), (result, flow.diagnosis())
            assert result.sales == result.orders == result.confirmed == result.postings
        assert moved_to in NUMBERS
        assert moved_to != leader
        assert {n: status for n, (status, _) in ready.items()} == dict.fromkeys(ready, 200), ready
        assert flow.pids() == pids, "a service was restarted instead of reconnecting"
        assert all(s is not None for s in recovery.values()), recovery
    finally:
        await flow.close()


def _record(figures: dict[str, object]) -> None:
    known = json.loads(FIGURES.read_text()) if FIGURES.exists() else {}
    known["cluster-leader-stop"] = figures
    FIGURES.write_text(json.dumps(known, indent=2, sort_keys=True) + "\n")
