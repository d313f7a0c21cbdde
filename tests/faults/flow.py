"""A flow of paid orders through the three services as separate processes, for fault tests.

``Flow`` starts ``nuvem-ledger run ingest|mapper|ledger`` as child processes against a broker
and a database of the caller's choosing (a private node, a private PostgreSQL, or proxies in
front of them), a simulator in this process (the store: it sends signed webhooks and answers the
API), and an ERP in this process that confirms every pending sale it sees. ``Shop`` pays orders:
half are announced by webhook, half only found by the poller. Afterwards ``reconcile`` reads the
database: every order must have exactly one sale, every sale exactly one posting.

Recovery time is measured from the services' own ``/metrics``: the first moment after the
dependency answered again at which each service's count of processed messages moved.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import asyncpg
import orjson
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage
from aio_pika.exceptions import CONNECTION_EXCEPTIONS

from services.ingest.adapters.nuvemshop import NuvemshopClient
from services.ingest.connections import connect
from services.ingest.tokens import TokenCipher, generate_key
from services.simulator.runner import Running as Simulator
from services.simulator.runner import start_simulator
from services.simulator.webhooks import send_webhook
from shared.contracts import SaleConfirm
from shared.link import Link, Subscription
from shared.messaging import Broker, PublishError, envelope
from shared.topology import shard_count, shard_of
from tests.faults import workdir

SERVICES = ("ingest", "mapper", "ledger")
ERP_QUEUE = "test.erp.pending"
PROCESSED = re.compile(
    r'^nuvem_ledger_messages_total\{[^}]*outcome="processed"[^}]*\} (\S+)$', re.M
)

SHARD_WORK = re.compile(
    r'^nuvem_ledger_messages_total\{outcome="processed",queue="ledger\.sales\.\d+"\} (\S+)$',
    re.M,
)


@dataclass
class Child:
    name: str
    popen: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


@dataclass
class Erp:
    """Confirms every pending sale once; keeps trying while the broker is away."""

    amqp_url: str
    link: Link | None = None
    broker: Broker | None = None
    to_confirm: asyncio.Queue[str] = field(default_factory=asyncio.Queue)
    confirmed: set[str] = field(default_factory=set)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self) -> None:
        async def declare(channel: AbstractChannel) -> None:
            # Quorum, like ours: on a cluster a classic queue dies with its node.
            queue = await channel.declare_queue(
                ERP_QUEUE, durable=True, arguments={"x-queue-type": "quorum"}
            )
            exchange = await channel.declare_exchange(
                "mapper.events", aio_pika.ExchangeType.TOPIC, durable=True
            )
            await queue.bind(exchange, "sale.pending_review")

        self.link = Link(self.amqp_url, "test-erp-consumer", declare=declare)
        await self.link.subscribe(Subscription(ERP_QUEUE, 500, self._seen, lambda: None))
        await self.link.open()
        self.broker = Broker(self.amqp_url, "test-erp")
        await self.broker.connect(deadline=30)
        self.tasks = [
            asyncio.create_task(self.link.run(self.stop)),
            asyncio.create_task(self.broker.run(self.stop)),
            asyncio.create_task(self._confirm()),
        ]

    async def _seen(self, message: AbstractIncomingMessage) -> None:
        await self.to_confirm.put(str(orjson.loads(message.body)["sale_id"]))
        with contextlib.suppress(*CONNECTION_EXCEPTIONS):
            await message.ack()

    async def _confirm(self) -> None:
        assert self.broker is not None
        while not self.stop.is_set():
            try:
                sale_id = await asyncio.wait_for(self.to_confirm.get(), timeout=0.5)
            except TimeoutError:
                continue
            if sale_id in self.confirmed:
                continue
            env = envelope(
                SaleConfirm(sale_id=sale_id, confirmed_by="erp-faults"),
                message_id=f"confirm:{sale_id}",
                correlation_id=None,
            )
            while not self.stop.is_set():
                try:
                    await self.broker.publish(env)
                    break
                except PublishError:
                    await self.broker.wait_up(within=1.0)
            self.confirmed.add(sale_id)

    async def close(self) -> None:
        self.stop.set()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.link is not None:
            await self.link.close()
        if self.broker is not None:
            await self.broker.close()


@dataclass(frozen=True)
class Reconciliation:
    orders: int
    sales: int
    confirmed: int
    postings: int
    lost: int
    doubled: int

    def line(self) -> str:
        return (
            f"orders {self.orders} · sales {self.sales} · confirmed {self.confirmed} · "
            f"postings {self.postings} · lost {self.lost} · doubled {self.doubled}"
        )


class Flow:
    """The services as processes, the simulator and the ERP, on one broker URL and database."""

    def __init__(
        self,
        *,
        amqp_url: str,
        database_url: str,
        direct_amqp_url: str | None = None,
        direct_database_url: str | None = None,
        poll_interval_s: float = 4.0,
        extra_env: dict[str, str] | None = None,
        ledgers: int = 1,
    ) -> None:
        self.amqp_url = amqp_url  # what the services use (maybe through a proxy)
        self.database_url = database_url
        self.direct_amqp_url = direct_amqp_url or amqp_url  # what the test itself uses
        self.direct_database_url = direct_database_url or database_url
        self.poll_interval_s = poll_interval_s
        self.extra_env = extra_env or {}
        # Ledger replicas beyond the first run as children "ledger-2", "ledger-3", ...
        self.names = [*SERVICES, *(f"ledger-{n}" for n in range(2, ledgers + 1))]
        self.key = generate_key()
        self.children: dict[str, Child] = {}
        self.simulator: Simulator | None = None
        self.erp = Erp(self.direct_amqp_url)
        self.logs = Path(tempfile.mkdtemp(prefix="nuvem-ledger-faults-"))
        self.http = aiohttp.ClientSession()
        self.samples: dict[str, list[tuple[float, float]]] = {name: [] for name in self.names}
        # Most messages each child processed from the sales shards (a ledger replica's own work).
        self.shard_work: dict[str, float] = dict.fromkeys(self.names, 0.0)
        self._sampling: asyncio.Task[None] | None = None

    # --- start and stop -------------------------------------------------------------------------

    async def start(self) -> None:
        self.simulator = await start_simulator(rate_limit=True, time_scale=0.001)
        for name in self.names:
            self.children[name] = self._spawn(name)
        for child in self.children.values():
            await self.wait_ready(child, within=60)
        await self.erp.start()
        self._sampling = asyncio.create_task(self._sample())

    def env(self) -> dict[str, str]:
        assert self.simulator is not None
        base = {k: v for k, v in os.environ.items() if not k.startswith(("NUVEMSHOP_", "AMQP_"))}
        return (
            base
            | {
                "AMQP_URL": self.amqp_url,
                "DATABASE_URL": self.database_url,
                "TOKEN_ENCRYPTION_KEY": self.key,
                "CONNECT_LINK_SECRET": "faults-connect-link-secret",
                "NUVEMSHOP_API_URL": self.simulator.api_url,
                "NUVEMSHOP_AUTH_URL": self.simulator.auth_url,
                "NUVEMSHOP_CLIENT_SECRET": self.simulator.state.client_secret,
                "NUVEMSHOP_APP_ID": self.simulator.state.app_id,
                "HTTP_HOST": "127.0.0.1",
                "POLL_INTERVAL_SECONDS": str(self.poll_interval_s),
                "LOG_LEVEL": "INFO",
                "EVENT_LOOP": "asyncio",
            }
            | self.extra_env
        )

    def _spawn(self, name: str) -> Child:
        service = name.split("-", maxsplit=1)[0]
        port = workdir.free_port()
        log = self.logs / f"{name}.log"
        env = self.env() | {f"{service.upper()}_HTTP_PORT": str(port)}
        with log.open("ab") as out:
            popen = subprocess.Popen(
                [sys.executable, "-m", "services.cli", "run", service],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return Child(name, popen, port, log)

    def kill(self, name: str) -> None:
        """``kill -9`` one service, then start it again (as Kubernetes would)."""
        child = self.children[name]
        child.popen.kill()
        child.popen.wait(timeout=10)
        self.children[name] = self._spawn(name)

    async def close(self) -> None:
        if self._sampling is not None:
            self._sampling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampling
        await self.erp.close()
        for child in self.children.values():
            if child.popen.poll() is None:
                child.popen.terminate()
        for child in self.children.values():
            try:
                child.popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.popen.kill()
                child.popen.wait(timeout=10)
        if self.simulator is not None:
            await self.simulator.close()
        await self.http.close()

    # --- health -----------------------------------------------------------------------------------

    async def readiness(self) -> dict[str, tuple[int, Any]]:
        answers: dict[str, tuple[int, Any]] = {}
        for name, child in self.children.items():
            try:
                async with self.http.get(f"{child.url}/readyz", timeout=_SHORT) as reply:
                    answers[name] = (reply.status, await reply.json())
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                answers[name] = (0, str(exc))
        return answers

    async def wait_ready(self, child: Child, within: float) -> None:
        deadline = time.monotonic() + within
        while True:
            if child.popen.poll() is not None:
                raise AssertionError(
                    f"{child.name} exited {child.popen.returncode}\n{child.output()}"
                )
            with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                async with self.http.get(f"{child.url}/readyz", timeout=_SHORT) as reply:
                    if reply.status == 200:
                        return
            if time.monotonic() > deadline:
                raise AssertionError(f"{child.name} not ready within {within} s\n{child.output()}")
            await asyncio.sleep(0.2)

    async def all_ready(self, within: float) -> dict[str, tuple[int, Any]]:
        deadline = time.monotonic() + within
        while True:
            answers = await self.readiness()
            if all(status == 200 for status, _ in answers.values()):
                return answers
            if time.monotonic() > deadline:
                return answers
            await asyncio.sleep(0.5)

    def pids(self) -> dict[str, int]:
        return {name: child.popen.pid for name, child in self.children.items()}

    # --- recovery time ---------------------------------------------------------------------------

    async def _sample(self) -> None:
        while True:
            for name, child in self.children.items():
                with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                    async with self.http.get(f"{child.url}/metrics", timeout=_SHORT) as reply:
                        text = await reply.text()
                    total = sum(float(v) for v in PROCESSED.findall(text))
                    self.samples[name].append((time.monotonic(), total))
                    work = sum(float(v) for v in SHARD_WORK.findall(text))
                    self.shard_work[name] = max(self.shard_work[name], work)
            await asyncio.sleep(0.1)

    async def under_way(self, within: float = 60.0) -> None:
        """Wait until every service has processed messages of the flow (from its metrics)."""
        deadline = time.monotonic() + within
        while not all(self.most_processed(name) > 0 for name in self.children):
            if time.monotonic() > deadline:
                raise AssertionError(f"the flow not under way within {within} s: {self.samples}")
            await asyncio.sleep(0.1)

    def most_processed(self, name: str) -> float:
        """The highest processed count ``name`` showed (a restarted process counts from zero)."""
        return max((value for _, value in self.samples[name]), default=0.0)

    def first_progress_after(self, moment: float) -> dict[str, float | None]:
        """Per service: seconds from ``moment`` until its processed count first moved.

        A restarted process starts counting from zero again: only a rise between two
        consecutive samples counts as progress.
        """
        found: dict[str, float | None] = {}
        for name, samples in self.samples.items():
            found[name] = None
            for (_, before), (at, value) in itertools.pairwise(samples):
                if at > moment and value > before:
                    found[name] = round(at - moment, 2)
                    break
        return found

    # --- the store ------------------------------------------------------------------------------

    async def connect_store(self, store_id: int) -> None:
        assert self.simulator is not None
        token = self.simulator.state.add_store(store_id)
        pool = await asyncpg.create_pool(self.direct_database_url, min_size=1, max_size=2)
        try:
            client = NuvemshopClient(
                self.http, api_url=self.simulator.api_url, user_agent="nuvem-ledger faults"
            )
            await connect(
                pool,
                TokenCipher(self.key),
                client,
                store_id=store_id,
                access_token=token,
                activated_by="erp-user-faults",
                public_url=self.children["ingest"].url,
                activated_at=dt.datetime(2020, 1, 1, tzinfo=dt.UTC),
            )
        finally:
            await pool.close()

    async def pay(self, store_id: int, count: int, per_s: float) -> set[int]:
        """Pay ``count`` orders at ``per_s``: every other one announced only by the poller."""
        assert self.simulator is not None
        sim = self.simulator.state
        ids: set[int] = set()
        for n in range(count):
            order = sim.add_order(store_id, paid=False, notify=False)
            sim.mark_paid(store_id, int(order["id"]), notify=n % 2 == 0)
            ids.add(int(order["id"]))
            await asyncio.sleep(1 / per_s)
        return ids

    async def webhook(self, store_id: int, event: str, order_id: int) -> int:
        """A signed webhook to ingest, as the simulator sends them; its status."""
        assert self.simulator is not None
        return await send_webhook(
            self.http,
            f"{self.children['ingest'].url}/webhooks/nuvemshop",
            self.simulator.state.client_secret,
            store_id,
            event,
            order_id,
        )

    async def reconcile(self, store_id: int, order_ids: set[int]) -> Reconciliation:
        conn = await asyncpg.connect(self.direct_database_url)
        try:
            sales = await conn.fetch(
                "SELECT order_id, count(*) AS n FROM mapper.sales WHERE store_id = $1"
                " AND order_id = ANY($2::bigint[]) GROUP BY order_id",
                store_id,
                list(order_ids),
            )
            posted = await conn.fetch(
                """
                SELECT s.order_id, s.status,
                       (SELECT count(*) FROM ledger.receivables r WHERE r.sale_id = s.sale_id)
                         AS receivables,
                       (SELECT count(*) FROM ledger.stock_movements m
                        WHERE m.sale_id = s.sale_id AND m.direction = 'out') AS moves,
                       (SELECT count(*) FROM ledger.sale_lines l WHERE l.sale_id = s.sale_id)
                         AS lines
                FROM ledger.sales s WHERE s.store_id = $1 AND s.order_id = ANY($2::bigint[])
                """,
                store_id,
                list(order_ids),
            )
        finally:
            await conn.close()
        confirmed = [r for r in posted if r["status"] == "confirmed"]
        doubled = sum(1 for r in sales if r["n"] > 1) + sum(
            1 for r in confirmed if r["receivables"] != 1 or r["moves"] != r["lines"]
        )
        return Reconciliation(
            orders=len(order_ids),
            sales=len(sales),
            confirmed=len(confirmed),
            postings=sum(1 for r in confirmed if r["receivables"] >= 1),
            lost=len(order_ids) - len(confirmed),
            doubled=doubled,
        )

    async def wait_reconciled(
        self, store_id: int, order_ids: set[int], within: float
    ) -> Reconciliation:
        deadline = time.monotonic() + within
        while True:
            found = await self.reconcile(store_id, order_ids)
            if found.confirmed == found.orders or time.monotonic() > deadline:
                return found
            await asyncio.sleep(0.5)

    def diagnosis(self) -> str:
        return "\n".join(f"--- {name}\n{c.output(25)}" for name, c in self.children.items())


def stores_on_every_shard(first: int, per_shard: int) -> list[int]:
    """Store ids from ``first`` on, ``per_shard`` of them on each ledger shard."""
    found: dict[int, list[int]] = {k: [] for k in range(shard_count())}
    for store in itertools.count(first):
        home = found[shard_of(store)]
        if len(home) < per_shard:
            home.append(store)
        if all(len(v) == per_shard for v in found.values()):
            break
    return sorted(s for v in found.values() for s in v)


_SHORT = aiohttp.ClientTimeout(total=2)
