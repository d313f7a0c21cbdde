"""The bench phases of issue 13: latency over many stores, a flash sale, thousands of stores.

Each takes the running ``Bench`` (services/bench/run.py) and returns its figures.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any, Protocol

import aiohttp
import asyncpg

from services.bench.infra import SIM_SECRET, Cluster, Observer, SimControl, percentile
from services.bench.probes import probing
from services.bench.progress import say as _say
from services.bench.progress import wait_until
from services.simulator.webhooks import send_webhook


class Bench(Protocol):
    """What the phases use of ``services.bench.run.Bench``."""

    cluster: Cluster
    pool: asyncpg.Pool
    sim: SimControl
    observer: Observer

    @property
    def sizes(self) -> Any: ...

    async def connect(self, store_id: int, token: str) -> None: ...

    async def connect_idle(self, stores: list[int]) -> None: ...

    def pending_of(self, stores: list[int]) -> int: ...


async def paced_webhooks(
    bench: Bench, stores: list[int], rate: float, seconds: float
) -> tuple[list[tuple[int, int]], dict[tuple[int, int], float]]:
    """Pay ``rate × seconds`` orders spread over ``stores``, one by one at ``rate`` per second,
    each followed by its signed ``order/paid`` webhook; when each webhook left."""
    total = int(rate * seconds)
    per_store = -(-total // len(stores))
    by_store: list[list[tuple[int, int]]] = []
    for store_id in stores:
        # Unpaid until their moment comes: a listing must not find an order paid early.
        by_store.append([(store_id, o) for o in await bench.sim.add_orders(store_id, per_store)])
    # Round robin over the stores, so each store sees rate / len(stores) orders per second.
    jobs = [orders[n] for n in range(per_store) for orders in by_store][:total]
    fired_at: dict[tuple[int, int], float] = {}
    failed: list[tuple[int, int]] = []
    url = f"{bench.cluster.ingest_url}/webhooks/nuvemshop"
    async with aiohttp.ClientSession() as session:

        async def fire(job: tuple[int, int]) -> None:
            await bench.sim.pay(job[0], job[1])
            # From the moment the webhook leaves: it includes the accept time, so it is an
            # upper bound of "accepted → pending sale published".
            fired_at[job] = time.perf_counter()
            try:
                status = await send_webhook(session, url, SIM_SECRET, job[0], "order/paid", job[1])
            except (aiohttp.ClientError, TimeoutError):
                status = 0  # as Nuvemshop would, leave it: the poller finds the paid order
            if status != 200:
                fired_at.pop(job, None)
                failed.append(job)

        tasks = []
        started = time.perf_counter()
        for n, job in enumerate(jobs):
            delay = started + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(fire(job)))
        await asyncio.gather(*tasks)
    if failed:
        _say(f"  {len(failed)} webhooks not accepted (left to the poller, out of the latencies)")
    return jobs, fired_at


async def steady_many_stores(bench: Bench, stores: list[int]) -> dict[str, float]:
    """(d') 100 orders/s spread over many stores: webhook sent → ``sale.pending_review``."""
    sizes = bench.sizes
    await bench.connect_idle(stores)
    _say(
        f"  {sizes.steady_rate} orders/s over {len(stores)} stores for {sizes.steady_seconds:.0f} s"
    )
    async with bench.observer.timing_paid():
        jobs, fired_at = await paced_webhooks(
            bench, stores, sizes.steady_rate, sizes.steady_seconds
        )
        await wait_until(
            "many stores: pending sales", lambda: bench.pending_of(stores), len(jobs), 300
        )
    seen = bench.observer
    timed = [j for j in jobs if j in fired_at]
    latencies = [seen.pending[j] - fired_at[j] for j in timed]
    # Where the time goes: webhook sent → order.paid seen (ingest), order.paid → pending (mapper).
    ingest = [seen.paid[j] - fired_at[j] for j in timed if j in seen.paid]
    mapper = [seen.pending[j] - seen.paid[j] for j in timed if j in seen.paid]
    return {
        "steady_many_stores_p50_ms": percentile(latencies, 50) * 1000,
        "steady_many_stores_p99_ms": percentile(latencies, 99) * 1000,
        "steady_many_stores_ingest_p99_ms": percentile(ingest, 99) * 1000,
        "steady_many_stores_mapper_p99_ms": percentile(mapper, 99) * 1000,
    }


async def flash_sale(bench: Bench, store: int) -> dict[str, float]:
    """One store, ``flash_orders`` paid within ``flash_seconds`` (50/s against its 2 requests/s):
    seconds from the first payment to the last ``sale.pending_review``, API requests, 429s."""
    sizes = bench.sizes
    await bench.connect_idle([store])
    before = (await bench.sim.counters()).get(str(store), {})
    rate = sizes.flash_orders / sizes.flash_seconds
    _say(f"  flash sale: {sizes.flash_orders} orders on one store in {sizes.flash_seconds:.0f} s")
    started = time.perf_counter()
    jobs, _ = await paced_webhooks(bench, [store], rate, sizes.flash_seconds)
    await wait_until("flash sale: pending sales", lambda: bench.pending_of([store]), len(jobs), 600)
    last = max(t for (s, _), t in bench.observer.pending.items() if s == store)
    after = (await bench.sim.counters()).get(str(store), {})
    return {
        "flash_sale_orders": float(len(jobs)),
        "flash_sale_seconds": last - started,
        "flash_sale_requests": float(after.get("requests", 0) - before.get("requests", 0)),
        "flash_sale_429": float(after.get("throttled", 0) - before.get("throttled", 0)),
    }


async def thousands_of_stores(bench: Bench, stores: list[int]) -> dict[str, Any]:
    """Connect ``stores`` in bulk (written directly, as the issue allows), wait for their first
    poll and for the cycle after it (every store polled again, at its own slot), then watch one
    interval: API requests per store, how evenly they fall (requests per second), each
    service's RSS."""
    interval = bench.cluster.poll_interval_s
    _say(f"  connecting {len(stores)} stores in bulk (poll interval {interval:.0f} s)")
    limit = asyncio.Semaphore(16)

    async def add(store_id: int) -> None:
        async with limit:
            await bench.connect(store_id, await bench.sim.add_store(store_id))

    connecting = time.perf_counter()
    await asyncio.gather(*(add(s) for s in stores))
    first = await _all_polled_since(bench, stores, None, 600)
    catch_up_s = time.perf_counter() - connecting
    _say(f"  every store polled once {catch_up_s:.1f} s after the bulk connection; one cycle now")
    # The first cycle after a bulk connection: every store polled again at its own slot.
    cycle_started = time.perf_counter()
    await _all_polled_since(bench, stores, first, 3 * interval + 60)
    cycle_s = time.perf_counter() - cycle_started
    # Then one interval in the steady state: requests per store, and how evenly they fall.
    wanted = {str(s) for s in stores}
    rates: list[float] = []
    counted = start = await _requests(bench, wanted)
    window_end = time.perf_counter() + interval
    while time.perf_counter() < window_end:
        await asyncio.sleep(1.0)
        now_count = await _requests(bench, wanted)
        rates.append(now_count - counted)
        counted = now_count
    spent = counted - start
    bench.cluster.sample_rss()
    mean = statistics.fmean(rates) if rates else 0.0
    return {
        "stores_connected": len(stores),
        "stores_first_poll_seconds": catch_up_s,
        "poll_cycle_seconds": cycle_s,
        "poll_interval_seconds": interval,
        "requests_per_store_per_interval": spent / len(stores),
        "poll_requests_per_s_mean": mean,
        "poll_requests_per_s_max": max(rates, default=0.0),
        "rss_mb_stores": {n: round(p.rss_now_mb, 1) for n, p in bench.cluster.services.items()},
    }


async def _requests(bench: Bench, wanted: set[str]) -> float:
    table = await bench.sim.counters()
    return float(sum(int(row.get("requests", 0)) for key, row in table.items() if key in wanted))


async def _all_polled_since(bench: Bench, stores: list[int], since: Any, timeout_s: float) -> Any:
    """Wait until every store's last poll is after ``since`` (None: polled at all); the latest."""
    deadline = time.monotonic() + timeout_s
    while True:
        row = await bench.pool.fetchrow(
            "SELECT count(*) FILTER (WHERE last_synced_at IS NOT NULL"
            " AND ($2::timestamptz IS NULL OR last_synced_at > $2)) AS done,"
            " max(last_synced_at) AS latest"
            " FROM ingest.stores WHERE store_id = ANY($1::bigint[])",
            stores,
            since,
        )
        assert row is not None
        if row["done"] >= len(stores):
            return row["latest"]
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {row['done']}/{len(stores)} stores polled in {timeout_s} s")
        await asyncio.sleep(0.5)


async def paced_accept(
    bench: Bench, stores: list[int], rate: float, seconds: float, senders: int = 50
) -> dict[str, float]:
    """(b') Webhooks sent at a steady ``rate`` by at most ``senders`` at once (issue 13 item 6:
    accept p99 at ≥ 500/s with 50 concurrent senders), while the pipeline imports them: accept
    latency (request sent → 2xx) and the rate reached. A sender that falls behind the schedule
    sends at once, so a slow accept shows as a lower rate as well as a higher latency."""
    await bench.connect_idle(stores)
    total = int(rate * seconds)
    jobs: list[tuple[int, int]] = []
    for index, store_id in enumerate(stores):
        count = total // len(stores) + (1 if index < total % len(stores) else 0)
        jobs += [(store_id, o) for o in await bench.sim.add_orders(store_id, count, paid=True)]
    jobs.sort(key=lambda job: job[1])
    latencies: list[float] = []
    refused = 0
    limit = asyncio.Semaphore(senders)
    url = f"{bench.cluster.ingest_url}/webhooks/nuvemshop"
    _say(f"  {total} webhooks at {rate:.0f}/s, at most {senders} at once")
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=senders + 10)) as session:

        async def send(job: tuple[int, int]) -> None:
            nonlocal refused
            try:
                sent = time.perf_counter()
                try:
                    status = await send_webhook(
                        session, url, SIM_SECRET, *job[:1], "order/paid", job[1]
                    )
                except (aiohttp.ClientError, TimeoutError):
                    status = 0
                if status == 200:
                    latencies.append(time.perf_counter() - sent)
                else:
                    refused += 1  # left to the poller, out of the latencies
            finally:
                limit.release()

        tasks = []
        amqp = bench.cluster.env["AMQP_URL"]
        async with probing(amqp, bench.cluster.ingest_url) as probes:
            started = time.perf_counter()
            for n, job in enumerate(jobs):
                delay = started + n / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                await limit.acquire()
                tasks.append(asyncio.create_task(send(job)))
            await asyncio.gather(*tasks)
            elapsed = time.perf_counter() - started
    await wait_until(
        "paced webhooks: pending sales", lambda: bench.pending_of(stores), total - refused, 600
    )
    return {
        "paced_accept_rate_per_s": len(latencies) / elapsed,
        "paced_accept_p50_ms": percentile(latencies, 50) * 1000,
        "paced_accept_p99_ms": percentile(latencies, 99) * 1000,
        "paced_accept_refused": float(refused),
    } | probes
