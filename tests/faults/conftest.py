"""Fixtures for fault tests: private broker nodes, a private PostgreSQL, TCP proxies, the cluster.

Each one stops what it started in its teardown, which pytest runs after a failure and after
Ctrl-C; what a killed pytest leaves behind is cleaned up by the instance's watchdog, or else by
the next run (see ``workdir``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from tests.faults.broker import RabbitNode
from tests.faults.cluster import RabbitCluster
from tests.faults.postgres import PrivatePostgres
from tests.faults.proxy import TcpProxy


@pytest.fixture
def rabbit_node() -> Iterator[RabbitNode]:
    """A private RabbitMQ node (no plugins), stopped and removed after the test."""
    with RabbitNode() as node:
        yield node


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    """A private PostgreSQL server, stopped and removed after the test."""
    with PrivatePostgres() as server:
        yield server


@pytest.fixture
def tcp_proxy() -> Iterator[Callable[[str, int], TcpProxy]]:
    """Makes started proxies to an upstream host and port; closes them all after the test."""
    proxies: list[TcpProxy] = []

    def make(host: str, port: int) -> TcpProxy:
        proxy = TcpProxy(host, port).start()
        proxies.append(proxy)
        return proxy

    try:
        yield make
    finally:
        for proxy in proxies:
            proxy.close()


@pytest.fixture(scope="session")
def rabbit_cluster() -> Iterator[RabbitCluster]:
    """The three-node cluster (deploy/cluster/cluster.sh) for the session; see tests.faults.cluster."""
    with RabbitCluster() as cluster:
        yield cluster


@pytest.fixture
def cluster(rabbit_cluster: RabbitCluster) -> Iterator[RabbitCluster]:
    """The cluster, with every node and application started again after the test."""
    try:
        yield rabbit_cluster
    finally:
        rabbit_cluster.restore()


@pytest.fixture
def cluster_vhost(cluster: RabbitCluster) -> Iterator[str]:
    """A vhost of the test's own on the cluster, deleted after it."""
    vhost = f"fault-{uuid.uuid4().hex[:12]}"
    cluster.add_vhost(vhost)
    try:
        yield vhost
    finally:
        cluster.restore()
        cluster.delete_vhost(vhost)
