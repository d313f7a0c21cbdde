"""What the benchmark runs on: its own vhost and database, the simulator and the three services as
separate processes, an observer timestamping every event, and the simulator's control API.

The services run exactly as in production (``nuvem-ledger run <service>``, durable quorum queues,
persistent messages, publisher confirms, synchronous commit); only their vhost and database are
the benchmark's own, so a run never mixes with the demo's or anyone's data.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import aio_pika
import aiohttp
import asyncpg
import orjson
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, AbstractRobustConnection
from pydantic import SecretStr

from services import system
from shared.db import migrate
from shared.settings import Settings

# BENCH_NAME keeps one run apart from another on a shared machine (a CI smoke test, say).
_SUFFIX = "".join(c for c in os.environ.get("BENCH_NAME", "") if c.isalnum())
BENCH_VHOST = "nuvem-ledger-bench" + (f"-{_SUFFIX}" if _SUFFIX else "")
BENCH_DB = "nuvem_ledger_bench" + (f"_{_SUFFIX}" if _SUFFIX else "")
SIM_SECRET = "bench-client-secret"  # noqa: S105 - the simulator's, for signing webhooks
BENCH_LINK_SECRET = "bench-connect-link-secret"  # noqa: S105 - the bench signs no link


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _with_path(url: str, path: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def _management(amqp_url: str, method: str, path: str, body: bytes = b"{}") -> None:
    parts = urlsplit(amqp_url)
    auth = base64.b64encode(
        f"{parts.username or 'guest'}:{parts.password or 'guest'}".encode()
    ).decode()
    request = urllib.request.Request(
        f"http://{parts.hostname or '127.0.0.1'}:15672{path}",
        method=method,
        data=body,
        headers={"content-type": "application/json", "authorization": f"Basic {auth}"},
    )
    with urllib.request.urlopen(request, timeout=30):  # noqa: S310
        pass


def fresh_vhost(amqp_url: str) -> str:
    """Recreate the benchmark's vhost (management API, else rabbitmqctl); its AMQP URL."""
    name = quote(BENCH_VHOST, safe="")
    user = urlsplit(amqp_url).username or "guest"
    try:
        with contextlib.suppress(OSError):
            _management(amqp_url, "DELETE", f"/api/vhosts/{name}")
        _management(amqp_url, "PUT", f"/api/vhosts/{name}")
        perms = b'{"configure": ".*", "write": ".*", "read": ".*"}'
        _management(amqp_url, "PUT", f"/api/permissions/{name}/{quote(user, safe='')}", perms)
    except OSError:
        # No management API: the CLI tool does the same, only slower.
        ctl = shutil.which("rabbitmqctl") or "rabbitmqctl"
        subprocess.run([ctl, "delete_vhost", BENCH_VHOST], capture_output=True, check=False)  # noqa: S603
        subprocess.run([ctl, "add_vhost", BENCH_VHOST], capture_output=True, check=True)  # noqa: S603
        grant = [ctl, "set_permissions", "-p", BENCH_VHOST, user, ".*", ".*", ".*"]
        subprocess.run(grant, capture_output=True, check=True)  # noqa: S603
    return _with_path(amqp_url, "/" + name)


async def fresh_database(database_url: str) -> str:
    admin = await asyncpg.connect(_with_path(database_url, "/postgres"))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
    finally:
        await admin.close()
    url = _with_path(database_url, f"/{BENCH_DB}")
    await migrate(url, system.migrations())
    return url


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    port: int
    peak_rss_mb: float = 0.0
    rss_now_mb: float = 0.0

    def sample_rss(self) -> None:
        try:
            status = Path(f"/proc/{self.popen.pid}/status").read_text()
        except OSError:
            return
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                self.peak_rss_mb = max(self.peak_rss_mb, int(line.split()[1]) / 1024)
            elif line.startswith("VmRSS:"):
                self.rss_now_mb = int(line.split()[1]) / 1024

    def stop(self) -> None:
        self.sample_rss()
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.popen.kill()


async def wait_http(url: str, process: Process, timeout_s: float = 60.0) -> None:
    """Wait for ``url`` to answer 200; fail at once, pointing at its log, if ``process`` died."""
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if process.popen.poll() is not None:
                raise RuntimeError(f"{process.name} exited (see .bench-logs/{process.name}.log)")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not answer within {timeout_s:.0f} s")
            await asyncio.sleep(0.2)


def _spawn(name: str, args: list[str], env: dict[str, str], port: int, log_dir: Path) -> Process:
    log = (log_dir / f"{name}.log").open("wb")
    command = [sys.executable, "-m", "services.cli", *args]
    popen = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
    spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if os.environ.get("BENCH_PROFILE") and spy and name != "simulator":
        # BENCH_PROFILE=1: py-spy samples each service until it exits and writes collapsed
        # stacks beside the logs (one line per stack, with its sample count).
        out = str(log_dir / f"{name}.profile.txt")
        subprocess.Popen(  # noqa: S603
            [
                spy,
                "record",
                "--pid",
                str(popen.pid),
                "-f",
                "raw",
                "-o",
                out,
                "-r",
                "100",
                "--nonblocking",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    return Process(name, popen, port)


@dataclass
class Cluster:
    """The simulator and the three services, each its own process."""

    settings: Settings
    env: dict[str, str]
    simulator: Process
    services: dict[str, Process] = field(default_factory=dict)
    poll_interval_s: float = 3600.0

    @property
    def sim_url(self) -> str:
        return f"http://127.0.0.1:{self.simulator.port}"

    @property
    def ingest_url(self) -> str:
        return f"http://127.0.0.1:{self.services['ingest'].port}"

    def sample_rss(self) -> None:
        for process in self.services.values():
            process.sample_rss()

    def stop(self) -> None:
        for process in [*self.services.values(), self.simulator]:
            process.stop()


async def start_cluster(
    amqp_url: str,
    database_url: str,
    key: str,
    log_dir: Path,
    *,
    ledger_replicas: int = 1,
    poll_interval_s: float = 3600.0,
) -> Cluster:
    """Start the simulator and the services (the ledger ``ledger_replicas`` times, as
    "ledger", "ledger-2", ...); ``log_dir`` (existing) receives their output."""
    sim_port = free_port()
    base_env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("NUVEMSHOP_", "INGEST_", "MAPPER_", "LEDGER_"))
    }
    simulator = _spawn(
        "simulator",
        [
            "simulate",
            "--host",
            "127.0.0.1",
            "--port",
            str(sim_port),
            "--client-secret",
            SIM_SECRET,
            "--time-scale",
            "0.001",
        ],
        base_env,
        sim_port,
        log_dir,
    )
    names = ["ingest", "mapper", "ledger", *(f"ledger-{n}" for n in range(2, ledger_replicas + 1))]
    ports = {name: free_port() for name in names}
    env = base_env | {
        "AMQP_URL": amqp_url,
        "DATABASE_URL": database_url,
        "TOKEN_ENCRYPTION_KEY": key,
        "CONNECT_LINK_SECRET": BENCH_LINK_SECRET,
        "NUVEMSHOP_API_URL": f"http://127.0.0.1:{sim_port}/v1",
        "NUVEMSHOP_AUTH_URL": f"http://127.0.0.1:{sim_port}",
        "NUVEMSHOP_CLIENT_SECRET": SIM_SECRET,
        "NUVEMSHOP_APP_ID": "1234",
        "INGEST_HTTP_PORT": str(ports["ingest"]),
        "MAPPER_HTTP_PORT": str(ports["mapper"]),
        "LEDGER_HTTP_PORT": str(ports["ledger"]),
        "HTTP_HOST": "127.0.0.1",
        "POLL_INTERVAL_SECONDS": str(poll_interval_s),
        "LOG_LEVEL": "WARNING",
    }
    settings = Settings(
        _env_file=None,
        amqp_url=amqp_url,
        database_url=database_url,
        token_encryption_key=SecretStr(key),
        connect_link_secret=SecretStr(BENCH_LINK_SECRET),
        nuvemshop_api_url=env["NUVEMSHOP_API_URL"],
    )
    cluster = Cluster(settings, env, simulator, poll_interval_s=poll_interval_s)
    await wait_http(f"{cluster.sim_url}/_sim/health", simulator)
    for name, port in ports.items():
        service = name.split("-", maxsplit=1)[0]
        own = env | {f"{service.upper()}_HTTP_PORT": str(port)}
        cluster.services[name] = _spawn(name, ["run", service], own, port, log_dir)
    for name, port in ports.items():
        await wait_http(f"http://127.0.0.1:{port}/readyz", cluster.services[name])
    return cluster


class SimControl:
    """The simulator's ``/_sim/`` control API."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self.session = session
        self.base = base_url

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        async with self.session.request(method, f"{self.base}/_sim{path}", json=body) as response:
            payload = await response.json()
            if response.status >= 300:
                raise RuntimeError(f"simulator {method} {path}: {response.status} {payload}")
            return payload

    async def add_store(self, store_id: int) -> str:
        return str((await self._call("POST", "/stores", {"store_id": store_id}))["token"])

    async def add_orders(self, store_id: int, count: int, **spec: Any) -> list[int]:
        ids: list[int] = []
        while len(ids) < count:
            chunk = min(2000, count - len(ids))
            body = {"count": chunk, "notify": False, "interval_s": 0.01} | spec
            if chunk == 1:
                body.pop("count")
            ids += [
                int(i)
                for i in (await self._call("POST", f"/stores/{store_id}/orders", body))["ids"]
            ]
        return ids

    async def pay(self, store_id: int, order_id: int) -> None:
        await self._call("POST", f"/stores/{store_id}/orders/{order_id}/pay", {"notify": False})

    async def counters(self) -> dict[str, dict[str, Any]]:
        """The simulator's request counters by store id (as text)."""
        return {str(k): v for k, v in (await self._call("GET", "/counters"))["stores"].items()}

    async def throttled(self) -> int:
        table = (await self._call("GET", "/counters"))["stores"]
        return sum(int(row.get("throttled", 0)) for row in table.values())

    async def requests(self) -> int:
        table = (await self._call("GET", "/counters"))["stores"]
        return sum(int(row.get("requests", 0)) for row in table.values())


@dataclass
class Observer:
    """Arrival time of every ``sale.pending_review`` (by order) and ``sale.confirmed`` (by
    sale), and of ``order.paid`` (by order) while ``timing_paid`` is open."""

    connection: AbstractRobustConnection
    queue: AbstractQueue | None = None
    paid: dict[tuple[int, int], float] = field(default_factory=dict)
    pending: dict[tuple[int, int], float] = field(default_factory=dict)
    pending_sales: dict[str, tuple[int, int]] = field(default_factory=dict)
    confirmed: dict[str, float] = field(default_factory=dict)

    @classmethod
    async def start(cls, amqp_url: str) -> Observer:
        connection = await aio_pika.connect_robust(amqp_url)
        observer = cls(connection)
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=2000)
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        observer.queue = queue
        await queue.bind("mapper.events", "sale.pending_review")
        await queue.bind("ledger.events", "sale.confirmed")
        await queue.consume(observer._on_message, no_ack=True)
        return observer

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        now = time.perf_counter()
        body = orjson.loads(message.body)
        if message.routing_key == "sale.pending_review":
            key = (int(body["store_id"]), int(body["order_id"]))
            self.pending.setdefault(key, now)
            self.pending_sales[body["sale_id"]] = key
        elif message.routing_key == "order.paid":
            self.paid.setdefault((int(body["store_id"]), int(body["order_id"])), now)
        else:
            self.confirmed.setdefault(body["sale_id"], now)

    @contextlib.asynccontextmanager
    async def timing_paid(self) -> AsyncIterator[None]:
        """Also time ``order.paid`` inside (one phase's legs), not on every phase's broker."""
        assert self.queue is not None
        await self.queue.bind("ingest.events", "order.paid")
        try:
            yield
        finally:
            await self.queue.unbind("ingest.events", "order.paid")

    async def close(self) -> None:
        await self.connection.close()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]
