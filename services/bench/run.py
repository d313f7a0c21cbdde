"""``nuvem-ledger bench``: throughput and latency of each path, measured end to end on this machine.

Phases: (a) poll path, (b) webhook path, (c) confirmations, (d) latency at a steady 100 orders/s,
(e) the floor (bare publish → consume → INSERT), (f) peak RSS of each service, (g) the poll path
again with a large catalog (COPY-loaded customers and products). Progress goes to stderr; the
table (or ``--json``) to stdout. ``--quick`` runs every phase small, as CI's smoke test.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from services.bench.floor import floors
from services.bench.infra import (
    SIM_SECRET,
    Cluster,
    Observer,
    SimControl,
    fresh_database,
    fresh_vhost,
    percentile,
    start_cluster,
)
from services.bench.phases import (
    flash_sale,
    paced_accept,
    paced_webhooks,
    steady_many_stores,
    thousands_of_stores,
)
from services.bench.profile import Profiler, Spans
from services.bench.progress import Shown, say, wait_until
from services.bench.table import render_table
from services.ingest.connections import store_connection
from services.ingest.tokens import cipher_from_settings, generate_key
from services.simulator.webhooks import send_webhook
from shared.contracts import SaleConfirm
from shared.messaging import Broker, envelope
from shared.settings import Settings

# (a) poll, (b) webhooks, (b') webhooks at a paced 500/s, (c) confirmations, (d) steady, (d') many stores, (e) floors,
# (g) large catalog, (h) flash sale, (i) thousands of stores.
ALL_PHASES = frozenset({"a", "b", "b'", "c", "d", "d'", "e", "g", "h", "i"})


@dataclass(frozen=True)
class Sizes:
    stores: int
    poll_orders: int  # per store
    webhook_orders: int  # per store
    steady_rate: int
    steady_seconds: float
    floor_messages: int
    catalog_customers: int
    catalog_products: int
    many_stores: int  # (d') the steady rate spread over this many stores
    flash_orders: int  # one store, paid within flash_seconds
    flash_seconds: float
    connected_stores: int  # thousands of stores, connected in bulk
    poll_interval_s: float

    @classmethod
    def for_mode(cls, quick: bool) -> Sizes:
        if quick:
            return cls(2, 100, 100, 50, 3, 1000, 10_000, 1_000, 20, 150, 3, 100, 10)
        return cls(10, 1000, 500, 100, 30, 20_000, 1_000_000, 100_000, 500, 3000, 60, 2000, 60)


class Bench:
    def __init__(
        self,
        cluster: Cluster,
        pool: asyncpg.Pool,
        sim: SimControl,
        observer: Observer,
        sizes: Sizes,
    ) -> None:
        self.cluster = cluster
        self.pool = pool
        self.sim = sim
        self.observer = observer
        self.sizes = sizes
        self.cipher = cipher_from_settings(cluster.settings)
        self._next_store = 7_000_000

    def new_stores(self, count: int | None = None) -> list[int]:
        first = self._next_store
        self._next_store += 10_000
        return [first + n for n in range(count or self.sizes.stores)]

    async def connect(self, store_id: int, token: str) -> None:
        await store_connection(
            self.pool,
            self.cipher,
            store_id=store_id,
            access_token=token,
            activated_by="bench-user",
            activated_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=1),
        )

    async def connect_idle(self, stores: list[int]) -> None:
        """Connect stores with no orders yet and wait for their first (empty) poll."""
        for store_id in stores:
            await self.connect(store_id, await self.sim.add_store(store_id))

        async def synced() -> int:
            return int(
                await self.pool.fetchval(
                    "SELECT count(*) FROM ingest.stores WHERE store_id = ANY($1::bigint[])"
                    " AND last_synced_at IS NOT NULL",
                    stores,
                )
            )

        deadline = time.monotonic() + 60
        while await synced() < len(stores):
            if time.monotonic() > deadline:
                raise TimeoutError("the first poll of the benchmark stores did not finish")
            await asyncio.sleep(0.2)

    def pending_of(self, stores: list[int]) -> int:
        wanted = set(stores)
        return sum(1 for (store, _) in self.observer.pending if store in wanted)

    async def poll_path(self, stores: list[int], label: str) -> float:
        per_store = self.sizes.poll_orders
        tokens = {s: await self.sim.add_store(s) for s in stores}
        for store_id in stores:
            await self.sim.add_orders(store_id, per_store, paid=True)
        total = per_store * len(stores)
        started = time.perf_counter()
        for store_id in stores:
            await self.connect(store_id, tokens[store_id])
        await wait_until(f"{label}: pending sales", lambda: self.pending_of(stores), total, 600)
        last = max(t for (s, _), t in self.observer.pending.items() if s in set(stores))
        return total / (last - started)

    async def webhook_path(self, stores: list[int]) -> dict[str, float]:
        await self.connect_idle(stores)
        jobs: list[tuple[int, int]] = []
        for store_id in stores:
            ids = await self.sim.add_orders(store_id, self.sizes.webhook_orders, paid=True)
            jobs += [(store_id, order_id) for order_id in ids]
        jobs.sort(key=lambda job: job[1])
        throttled_before = await self.sim.throttled()
        latencies: list[float] = []
        accepted: list[float] = []
        refused: list[int] = []
        queue: asyncio.Queue[tuple[int, int]] = asyncio.Queue()
        for job in jobs:
            queue.put_nowait(job)
        url = f"{self.cluster.ingest_url}/webhooks/nuvemshop"
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=60)) as session:

            async def sender() -> None:
                while not queue.empty():
                    store_id, order_id = queue.get_nowait()
                    sent = time.perf_counter()
                    try:
                        status = await send_webhook(
                            session, url, SIM_SECRET, store_id, "order/paid", order_id
                        )
                    except (aiohttp.ClientError, TimeoutError):
                        status = 0
                    if status != 200:
                        # A 503 (the broker did not confirm in time) is retried, as Nuvemshop
                        # retries: counted, out of the accept latencies.
                        refused.append(status)
                        await asyncio.sleep(0.5)
                        queue.put_nowait((store_id, order_id))
                        continue
                    now = time.perf_counter()
                    latencies.append(now - sent)
                    accepted.append(now)

            started = time.perf_counter()
            say(f"  webhook path: firing {len(jobs)} webhooks with 50 concurrent senders")
            await asyncio.gather(*(sender() for _ in range(50)))
        accept_rate = len(jobs) / (max(accepted) - started)
        await wait_until(
            "webhook path: pending sales", lambda: self.pending_of(stores), len(jobs), 600
        )
        last = max(t for (s, _), t in self.observer.pending.items() if s in set(stores))
        return {
            "webhook_accepted_per_s": accept_rate,
            "webhook_accept_p50_ms": percentile(latencies, 50) * 1000,
            "webhook_accept_p99_ms": percentile(latencies, 99) * 1000,
            "webhook_orders_per_s": len(jobs) / (last - started),
            "throttled_429": float(await self.sim.throttled() - throttled_before),
            "webhook_not_accepted": float(len(refused)),
        }

    async def confirmations(self) -> float:
        sale_ids = [
            sid for sid in self.observer.pending_sales if sid not in self.observer.confirmed
        ]
        broker = Broker(self.cluster.settings.amqp_url, app_id="bench-erp")
        await broker.connect(deadline=30)
        try:
            started = time.perf_counter()
            for start in range(0, len(sale_ids), 500):
                await broker.publish_many(
                    [
                        envelope(
                            SaleConfirm(sale_id=sid, confirmed_by="bench-erp"),
                            message_id=f"bench-confirm:{sid}",
                            correlation_id=None,
                        )
                        for sid in sale_ids[start : start + 500]
                    ]
                )
            wanted = set(sale_ids)
            await wait_until(
                "confirmations",
                lambda: sum(1 for s in self.observer.confirmed if s in wanted),
                len(wanted),
                600,
            )
            last = max(self.observer.confirmed[s] for s in wanted)
            return len(wanted) / (last - started)
        finally:
            await broker.close()

    async def steady(self, stores: list[int]) -> dict[str, float]:
        await self.connect_idle(stores)
        say(
            f"  steady load: {self.sizes.steady_rate} orders/s over {len(stores)} stores"
            f" for {self.sizes.steady_seconds:.0f} s"
        )
        jobs, fired_at = await paced_webhooks(
            self, stores, self.sizes.steady_rate, self.sizes.steady_seconds
        )
        await wait_until(
            "steady load: pending sales", lambda: self.pending_of(stores), len(jobs), 300
        )
        latencies = [self.observer.pending[job] - fired_at[job] for job in jobs if job in fired_at]
        return {
            "steady_p50_ms": percentile(latencies, 50) * 1000,
            "steady_p99_ms": percentile(latencies, 99) * 1000,
        }

    async def load_catalog(self, stores: list[int]) -> None:
        customers, products = self.sizes.catalog_customers, self.sizes.catalog_products
        say(f"  loading {customers:,} customers and {products:,} products with COPY")
        async with self.pool.acquire() as conn:
            await conn.copy_records_to_table(
                "customers",
                schema_name="mapper",
                columns=["store_id", "name", "name_key", "document_key"],
                records=(
                    (stores[n % len(stores)], f"Cliente {n}", f"Cliente {n}", f"{n:011d}")
                    for n in range(customers)
                ),
            )
            await conn.copy_records_to_table(
                "products",
                schema_name="mapper",
                columns=["store_id", "description", "sku", "price"],
                records=(
                    (stores[n % len(stores)], f"Produto de catálogo {n}", f"CAT-{n}", 10)
                    for n in range(products)
                ),
            )
            await conn.execute("ANALYZE mapper.customers; ANALYZE mapper.products")
            # Write the load out now, so (g) does not pay for the checkpoint the COPY caused.
            with contextlib.suppress(asyncpg.PostgresError):
                await conn.execute("CHECKPOINT")


async def run_bench(
    settings: Settings,
    *,
    quick: bool,
    as_json: bool,
    ledger_replicas: int = 2,
    only: frozenset[str] = ALL_PHASES,
    profile: Path | None = None,
) -> int:
    """Run the phases in ``only`` (all by default); ``profile``: a directory for py-spy's
    samples of each service during (a), (b), (c) and (d'), and their CPU per message."""
    sizes = Sizes.for_mode(quick)
    say(
        f"nuvem-ledger bench ({'quick' if quick else 'full'}): RabbitMQ vhost and database of its own"
    )
    amqp = fresh_vhost(settings.amqp_url)
    database = await fresh_database(settings.database_url)
    log_dir = Path(".bench-logs")
    log_dir.mkdir(exist_ok=True)  # noqa: ASYNC240 - once, before anything runs
    cluster = await start_cluster(
        amqp,
        database,
        generate_key(),
        log_dir,
        ledger_replicas=ledger_replicas,
        poll_interval_s=sizes.poll_interval_s,
    )
    results: dict[str, Any] = {
        "mode": "quick" if quick else "full",
        "sizes": sizes.__dict__,
        "ledger_replicas": ledger_replicas,
    }
    pool = await asyncpg.create_pool(database, min_size=1, max_size=4)
    assert pool is not None
    observer = await Observer.start(amqp)
    session = aiohttp.ClientSession()
    try:
        bench = Bench(cluster, pool, SimControl(session, cluster.sim_url), observer, sizes)
        profiler = Profiler(cluster, profile) if profile is not None else None
        results |= await _phases(bench, profiler, only)
        if profiler is not None:
            say(profiler.write_cpu_table())
            results["cpu_ms_per_message"] = {p.name: p.per_message_ms() for p in profiler.phases}
    finally:
        await session.close()
        await observer.close()
        await pool.close()
        cluster.stop()
    if "e" in only:
        results |= await floors(amqp, database, sizes.floor_messages)
    results["run_id"] = str(uuid.uuid4())
    if as_json:
        sys.stdout.write(json.dumps(results, indent=2, default=str) + "\n")
    else:
        sys.stdout.write(render_table(results) + "\n")
    return 0


async def _phases(
    bench: Bench, profiler: Profiler | None = None, only: frozenset[str] = ALL_PHASES
) -> dict[str, Any]:
    """The phases in ``only`` on the running services, in order; their figures. With a
    ``profiler``, (a), (b), (c) and (d') are each recorded (``services.bench.profile``)."""
    cluster, sizes = bench.cluster, bench.sizes
    results = Shown()
    spans = Spans(profiler, bench.observer)
    if "a" in only:
        say("(a) poll path")
        async with spans("poll"):
            results["poll_orders_per_s"] = await bench.poll_path(bench.new_stores(), "poll path")
        cluster.sample_rss()
    if "b" in only:
        say("(b) webhook path")
        async with spans("webhook"):
            results |= await bench.webhook_path(bench.new_stores())
        cluster.sample_rss()
    if "b'" in only:
        say("(b') webhook acceptance at a paced 500/s, 50 senders at most")
        async with spans("accept"):
            results |= await paced_accept(
                bench, bench.new_stores(), sizes.steady_rate * 5, sizes.steady_seconds / 3
            )
        cluster.sample_rss()
    if "c" in only:
        say("(c) confirmation path")
        async with spans("confirm"):
            results["confirmations_per_s"] = await bench.confirmations()
        cluster.sample_rss()
    if "d" in only:
        say("(d) latency under steady load")
        results |= await bench.steady(bench.new_stores())
        cluster.sample_rss()
    if "d'" in only:
        say("(d') latency under steady load over many stores")
        async with spans("steady_many"):
            results |= await steady_many_stores(bench, bench.new_stores(sizes.many_stores))
        cluster.sample_rss()
    if "h" in only:
        say("(h) flash sale on one store")
        results |= await flash_sale(bench, bench.new_stores(1)[0])
        cluster.sample_rss()
    if "g" in only:
        say("(g) poll path with a large catalog")
        big = bench.new_stores()
        await bench.load_catalog(big)
        results["poll_orders_per_s_large_catalog"] = await bench.poll_path(
            big, "poll path, large catalog"
        )
        cluster.sample_rss()
    if "i" in only:
        say("(i) thousands of stores")
        results |= await thousands_of_stores(bench, bench.new_stores(sizes.connected_stores))
    results["rss_mb"] = {name: round(p.peak_rss_mb, 1) for name, p in cluster.services.items()}
    return results
