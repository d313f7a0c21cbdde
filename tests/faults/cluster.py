"""The three-node RabbitMQ cluster of ``deploy/cluster/cluster.sh``, driven from tests.

The script is the one source of how the cluster is made (``make cluster`` runs it too): nodes
hare1..3@localhost, AMQP ports 5701-5703. Its names and ports are fixed, so one pytest session at a
time may use it: ``RabbitCluster`` holds a session lock (another session waits for it).

As a context manager (or the ``rabbit_cluster`` fixture): starts the cluster if it is not running
and then stops it (removing its data) on exit, whatever ends the session; a cluster that was
already running (``make cluster``) is left running, with every node and application started again.
Methods are synchronous (each CLI call takes seconds): from async code use ``asyncio.to_thread``.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from contextlib import suppress
from pathlib import Path
from types import TracebackType
from typing import IO
from urllib.parse import quote

from tests.faults import workdir
from tests.faults.broker import epmd_names, rabbitmqctl

SCRIPT = workdir.REPO_ROOT / "deploy" / "cluster" / "cluster.sh"
CLUSTER_DIR = Path(os.environ.get("NUVEM_CLUSTER_DIR", "/tmp/nuvem-ledger-cluster"))
NUMBERS = (1, 2, 3)
LOCK_TIMEOUT = 900.0


def node_name(number: int) -> str:
    if number not in NUMBERS:
        raise ValueError(f"the cluster has nodes 1, 2 and 3, not {number}")
    return f"hare{number}@localhost"


class RabbitCluster:
    def __init__(self) -> None:
        self.started_here = False
        self.start_seconds: float | None = None
        self._stopped_nodes: set[int] = set()
        self._stopped_apps: set[int] = set()
        self._lock: IO[str] | None = None

    # --- life cycle ------------------------------------------------------------------------------

    def __enter__(self) -> RabbitCluster:
        self._acquire()
        try:
            self.start()
        except BaseException:
            self._leave()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._leave()

    def start(self) -> float:
        """Start whatever of the cluster is not running; the seconds it took."""
        running = {name for name in epmd_names() if name.startswith("hare")}
        self.started_here = self.started_here or not running
        began = time.monotonic()
        self.script("start", timeout=600)
        self.start_seconds = time.monotonic() - began
        self._stopped_nodes.clear()
        self._stopped_apps.clear()
        return self.start_seconds

    def stop(self) -> None:
        """Stop the three nodes and remove their data."""
        self.script("stop")
        self._stopped_nodes = set(NUMBERS)

    def restore(self) -> None:
        """Start again every node and application a test stopped."""
        for number in sorted(self._stopped_nodes):
            self.start_node(number)
        for number in sorted(self._stopped_apps):
            self.start_app(number)

    def script(self, *args: str, timeout: float = 300) -> str:
        return workdir.run(["bash", str(SCRIPT), *args], timeout=timeout).stdout

    # --- faults ----------------------------------------------------------------------------------

    def stop_app(self, number: int) -> None:
        """Stop node ``number``'s RabbitMQ application (its connections close, the VM stays)."""
        self._stopped_apps.add(number)
        self.ctl(number, "stop_app")

    def start_app(self, number: int) -> None:
        self.ctl(number, "start_app")
        self._stopped_apps.discard(number)

    def stop_node(self, number: int) -> None:
        """Stop node ``number``'s VM, keeping its data (a node failure)."""
        self._stopped_nodes.add(number)
        self.script("stop-node", str(number))

    def start_node(self, number: int) -> None:
        """Start node ``number`` again with its data: it rejoins the cluster."""
        self.script("start-node", str(number))
        self._stopped_nodes.discard(number)
        self._stopped_apps.discard(number)

    # --- set-up and inspection -------------------------------------------------------------------

    def ctl(self, number: int, *args: str, tool: str = "rabbitmqctl", timeout: float = 120) -> str:
        return rabbitmqctl(node_name(number), *args, tool=tool, timeout=timeout)

    def add_vhost(self, vhost: str) -> None:
        """Create ``vhost`` (cluster-wide) with full permissions for guest."""
        number = self._a_running_node()
        self.ctl(number, "add_vhost", vhost)
        self.ctl(number, "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")

    def delete_vhost(self, vhost: str) -> None:
        self.ctl(self._a_running_node(), "delete_vhost", vhost)

    def amqp_url(self, number: int, vhost: str = "/") -> str:
        node_name(number)
        path = "" if vhost == "/" else quote(vhost, safe="")
        return f"amqp://guest:guest@127.0.0.1:{5700 + number}/{path}"

    def amqp_urls(self, vhost: str = "/") -> list[str]:
        return [self.amqp_url(number, vhost) for number in NUMBERS]

    def queue_leader(self, queue: str, vhost: str = "/") -> str:
        """The node leading quorum queue ``queue`` now, e.g. ``hare2@localhost``."""
        listing = self.ctl(
            self._a_running_node(),
            *("list_queues", "-q", "-p", vhost, "name", "type", "leader", "--formatter", "json"),
        )
        for row in json.loads(listing):
            if row["name"] == queue:
                if row["type"] != "quorum":
                    raise ValueError(
                        f"{queue} is a {row['type']} queue: only quorum queues have a leader"
                    )
                return str(row["leader"])
        raise LookupError(f"no queue {queue!r} in vhost {vhost!r}")

    def leader_number(self, queue: str, vhost: str = "/") -> int:
        return int(self.queue_leader(queue, vhost).split("@")[0].removeprefix("hare"))

    def wait_for_leader(
        self, queue: str, vhost: str = "/", *, not_on: int, within: float = 60
    ) -> int:
        """Wait until a node other than ``not_on`` leads ``queue``; its number."""
        deadline = time.monotonic() + within
        while True:
            with suppress(RuntimeError, LookupError, ValueError):
                number = self.leader_number(queue, vhost)
                if number != not_on:
                    return number
            if time.monotonic() > deadline:
                raise TimeoutError(f"{queue} is still led by {node_name(not_on)} after {within} s")
            time.sleep(1)

    # --- internals -------------------------------------------------------------------------------

    def _a_running_node(self) -> int:
        for number in NUMBERS:
            if number not in self._stopped_nodes | self._stopped_apps:
                return number
        raise RuntimeError("every node of the cluster is stopped")

    def _acquire(self) -> None:
        """Wait (up to LOCK_TIMEOUT) until no other session uses the cluster."""
        CLUSTER_DIR.parent.mkdir(parents=True, exist_ok=True)
        lock = CLUSTER_DIR.with_name(CLUSTER_DIR.name + ".session.lock").open("a")
        deadline = time.monotonic() + LOCK_TIMEOUT
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    lock.close()
                    raise TimeoutError("another pytest session holds the cluster") from None
                time.sleep(1)
        self._lock = lock

    def _leave(self) -> None:
        try:
            if self.started_here:
                self.stop()
            else:
                self.restore()
        finally:
            if self._lock is not None:
                self._lock.close()
                self._lock = None
