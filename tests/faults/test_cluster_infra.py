"""The three-node cluster (deploy/cluster/cluster.sh): quorum queues outlive the loss of a node.

Marked ``cluster``, which pyproject deselects by default: starting the cluster costs 30-50 s.
Run with ``make cluster-test`` (``pytest -m cluster``).
"""

from __future__ import annotations

import asyncio

import pytest

from tests.faults.cluster import NUMBERS, RabbitCluster, node_name
from tests.faults.messages import consume_all, publish_persistent

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(900)]


async def test_a_quorum_queue_declared_on_node_1_is_consumed_whole_through_node_2_without_it(
    cluster: RabbitCluster, cluster_vhost: str
) -> None:
    await publish_persistent(cluster.amqp_url(1, cluster_vhost), "orders", 100)
    assert await asyncio.to_thread(cluster.queue_leader, "orders", cluster_vhost) in {
        node_name(number) for number in NUMBERS
    }

    await asyncio.to_thread(cluster.stop_app, 1)
    # Until the survivors have elected a leader, a read answers `noproc` and closes the connection.
    leader = await asyncio.to_thread(cluster.wait_for_leader, "orders", cluster_vhost, not_on=1)
    assert leader in (2, 3)
    received = await consume_all(cluster.amqp_url(2, cluster_vhost), "orders", 100)

    assert sorted(received) == list(range(100))


async def test_the_leader_node_stops_leadership_moves_and_the_node_rejoins(
    cluster: RabbitCluster, cluster_vhost: str
) -> None:
    await publish_persistent(cluster.amqp_url(1, cluster_vhost), "sales", 20)
    leader = await asyncio.to_thread(cluster.leader_number, "sales", cluster_vhost)
    survivor = next(number for number in NUMBERS if number != leader)

    await asyncio.to_thread(cluster.stop_node, leader)
    new_leader = await asyncio.to_thread(
        cluster.wait_for_leader, "sales", cluster_vhost, not_on=leader
    )
    assert new_leader in NUMBERS
    assert await consume_all(cluster.amqp_url(survivor, cluster_vhost), "sales", 10) == list(
        range(10)
    )

    await asyncio.to_thread(cluster.start_node, leader)
    running = await asyncio.to_thread(
        cluster.ctl, leader, "-q", "eval", "rabbit_nodes:all_running()."
    )
    assert all(node_name(number) in running for number in NUMBERS)
    # The restarted node serves the queue's remaining messages.
    assert await consume_all(cluster.amqp_url(leader, cluster_vhost), "sales", 10) == list(
        range(10, 20)
    )
