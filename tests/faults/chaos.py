"""``make chaos``: 10,000 paid orders while services are killed and the broker and database fail.

The three services run as processes on a private RabbitMQ node and a private PostgreSQL (the
machine's own are never touched). While the shop pays orders across several stores (half
announced by webhook, half found only by the poller) and an ERP confirms every pending sale:

- every few seconds a random service is killed with SIGKILL and started again (as Kubernetes
  would restart it);
- at 20 %, 40 %, 60 % and 80 % of the flow, one each of: the broker closes every connection,
  the broker application restarts, the broker node restarts, PostgreSQL crashes and restarts.

At the end it prints the reconciliation (orders, sales, postings, lost, doubled) and exits 1 if
anything was lost or doubled. ``python -m tests.faults.chaos --orders 2000`` for a shorter run.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import sys
import time
import uuid

from services.system import migrations
from shared.db import migrate
from tests.faults.broker import RabbitNode
from tests.faults.flow import SERVICES, Flow, Reconciliation
from tests.faults.postgres import PrivatePostgres

STORES = tuple(range(940_001, 940_011))


def say(text: str) -> None:
    print(text, flush=True)


async def _faults(node: RabbitNode, pg: PrivatePostgres, flow: Flow, at: float) -> None:
    """The four dependency faults, each once, as the flow passes 20/40/60/80 % of ``at`` s."""

    def app_restart() -> None:
        node.stop_app()
        time.sleep(3)
        node.start_app()

    def node_restart() -> None:
        node.stop_node()
        node.start_node()

    def postgres_crash() -> None:
        pg.stop("immediate")
        time.sleep(3)
        pg.start()

    steps = [
        ("(a) broker closes every connection", node.close_all_connections),
        ("(b) broker application restart", app_restart),
        ("(c) broker node restart", node_restart),
        ("(d) PostgreSQL crash and restart", postgres_crash),
    ]
    started = time.monotonic()
    for n, (name, cause) in enumerate(steps, start=1):
        await asyncio.sleep(max(0.0, started + at * n / 5 - time.monotonic()))
        began = time.monotonic()
        await asyncio.to_thread(cause)
        back = time.monotonic()
        await asyncio.sleep(5)
        progress = flow.first_progress_after(back)
        say(f"  {name}: took {back - began:.1f} s; first progress after it: {progress}")


async def _kills(flow: Flow, stop: asyncio.Event, every_s: float) -> int:
    kills = 0
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), timeout=every_s * random.uniform(0.5, 1.5))
        except TimeoutError:
            victim = random.choice(SERVICES)
            flow.kill(victim)
            kills += 1
            say(f"  kill -9 {victim} (#{kills})")
    return kills


async def chaos(orders: int, per_s: float, kill_every_s: float) -> Reconciliation:
    with RabbitNode(prefix="chaos") as node, PrivatePostgres() as pg:
        name = f"chaos{uuid.uuid4().hex[:8]}"
        amqp = await asyncio.to_thread(node.add_vhost, name)
        database = await asyncio.to_thread(pg.create_database, name)
        await migrate(database, migrations())
        flow = Flow(amqp_url=amqp, database_url=database, poll_interval_s=5.0)
        try:
            await flow.start()
            for store in STORES:
                await flow.connect_store(store)
            say(f"chaos: {orders} orders over {len(STORES)} stores at {per_s:.0f}/s")
            started = time.monotonic()
            stop = asyncio.Event()
            killer = asyncio.create_task(_kills(flow, stop, kill_every_s))
            faults = asyncio.create_task(_faults(node, pg, flow, orders / per_s))
            per_store = orders // len(STORES)
            paid = await asyncio.gather(
                *(flow.pay(s, per_store, per_s / len(STORES)) for s in STORES)
            )
            await faults
            stop.set()
            kills = await killer
            say(f"paid {orders} in {time.monotonic() - started:.0f} s; {kills} kills; reconciling")
            results = [
                await flow.wait_reconciled(store, ids, within=600)
                for store, ids in zip(STORES, paid, strict=True)
            ]
            total = Reconciliation(
                orders=sum(r.orders for r in results),
                sales=sum(r.sales for r in results),
                confirmed=sum(r.confirmed for r in results),
                postings=sum(r.postings for r in results),
                lost=sum(r.lost for r in results),
                doubled=sum(r.doubled for r in results),
            )
            say(f"done in {time.monotonic() - started:.0f} s")
            say(f"reconciliation: {total.line()}")
            ready = await flow.all_ready(within=30)
            say("readiness: " + ", ".join(f"{n} {s}" for n, (s, _) in ready.items()))
            return total
        finally:
            await flow.close()


def main() -> int:
    logging.getLogger("aiormq").setLevel(logging.CRITICAL)  # the ERP's reconnects, said by us
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=10_000)
    parser.add_argument("--per-s", type=float, default=60.0)
    parser.add_argument("--kill-every", type=float, default=4.0, help="seconds between kills")
    args = parser.parse_args()
    result = asyncio.run(chaos(args.orders, args.per_s, args.kill_every))
    return 0 if result.lost == 0 and result.doubled == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
