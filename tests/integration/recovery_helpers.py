"""Helpers of the recovery tests: broker events scoped to the test's own vhost, a paying shop
and an ERP that confirms, and the reconciliation of what the system stored.

The machine's broker is shared by every test (and every developer's session), so these tests
never stop it: ``vhost_outage`` makes the broker refuse the test's vhost (a connection limit of
0) and closes its connections, which every service sees exactly as a broker going away; lifting
the limit is the broker coming back. Whole-broker and whole-database faults run against private
instances in ``tests/faults``.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import aiohttp
import asyncpg

from shared.contracts import SaleConfirm
from shared.link import Link
from shared.messaging import PublishError, envelope
from tests.harness import System


def vhost_of(amqp_url: str) -> str:
    return unquote(urlsplit(amqp_url).path.lstrip("/")) or "/"


async def rabbitmqctl(*args: str) -> str:
    ctl = shutil.which("rabbitmqctl") or "rabbitmqctl"
    proc = await asyncio.create_subprocess_exec(
        ctl, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    if proc.returncode != 0:
        raise AssertionError(f"rabbitmqctl {' '.join(args)} failed: {out.decode()}")
    return out.decode()


async def close_connections(amqp_url: str, why: str = "maintenance") -> None:
    """``rabbitmqctl close_all_connections`` for the test's vhost: fault (a) of issue 9."""
    await rabbitmqctl("close_all_connections", "-p", vhost_of(amqp_url), why)


@contextlib.asynccontextmanager
async def vhost_outage(amqp_url: str) -> AsyncIterator[None]:
    """The broker away for this vhost: every connection closed and new ones refused."""
    vhost = vhost_of(amqp_url)
    await rabbitmqctl("set_vhost_limits", "-p", vhost, '{"max-connections": 0}')
    try:
        await rabbitmqctl("close_all_connections", "-p", vhost, "outage")
        yield
    finally:
        await rabbitmqctl("clear_vhost_limits", "-p", vhost)


def links(system: System) -> list[Link]:
    """The broker link of every running service (replicas included)."""
    running = [*system.services.values(), *(r for rs in system.replicas.values() for r in rs)]
    return [r.ctx.broker.link for r in running]


@dataclass
class Erp:
    """Confirms every pending sale it sees, retrying while the broker is away."""

    system: System
    confirmed: set[str] = field(default_factory=set)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            for seen in self.system.observer.of("sale.pending_review"):
                sale_id = str(seen.body["sale_id"])
                if sale_id in self.confirmed:
                    continue
                confirm = SaleConfirm(sale_id=sale_id, confirmed_by="erp-recovery")
                env = envelope(confirm, message_id=f"confirm:{sale_id}", correlation_id=None)
                try:
                    await self.system.erp.publish(env)
                except PublishError:
                    break  # the broker is away: try again in a moment
                self.confirmed.add(sale_id)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=0.2)


@dataclass(frozen=True)
class Reconciliation:
    orders: int
    sales: int
    confirmed: int
    receivables: int
    doubled_sales: int
    doubled_postings: int

    @property
    def lost(self) -> int:
        return self.orders - self.sales


async def reconcile(system: System, store_id: int, order_ids: set[int]) -> Reconciliation:
    """What the database holds for ``order_ids``: sales, confirmations, receivables, doubles."""
    conn = await asyncpg.connect(system.settings.database_url)
    try:
        sales = await conn.fetch(
            "SELECT order_id, count(*) AS n FROM mapper.sales WHERE store_id = $1"
            " GROUP BY order_id",
            store_id,
        )
        ledger = await conn.fetch(
            """
            SELECT s.order_id, s.status, (SELECT count(*) FROM ledger.receivables r
                                          WHERE r.sale_id = s.sale_id) AS receivables,
                   (SELECT count(*) FROM ledger.receivables r WHERE r.sale_id = s.sale_id
                      AND r.number = 1) AS firsts
            FROM ledger.sales s WHERE s.store_id = $1
            """,
            store_id,
        )
    finally:
        await conn.close()
    mine = [r for r in sales if r["order_id"] in order_ids]
    posted = [r for r in ledger if r["order_id"] in order_ids]
    return Reconciliation(
        orders=len(order_ids),
        sales=len(mine),
        confirmed=sum(1 for r in posted if r["status"] == "confirmed"),
        receivables=sum(int(r["receivables"]) for r in posted),
        doubled_sales=sum(1 for r in mine if r["n"] > 1),
        doubled_postings=sum(1 for r in posted if r["firsts"] > 1),
    )


async def wait_reconciled(
    system: System, store_id: int, order_ids: set[int], within: float
) -> Reconciliation:
    """Wait until every order has a confirmed sale; the last reconciliation either way."""
    deadline = time.monotonic() + within
    while True:
        found = await reconcile(system, store_id, order_ids)
        if found.sales == found.orders and found.confirmed == found.orders:
            return found
        if time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.5)


async def readiness(system: System) -> dict[str, tuple[int, Any]]:
    """Each service's ``/readyz`` status and body."""
    answers: dict[str, tuple[int, Any]] = {}
    async with aiohttp.ClientSession() as http:
        for name in system.services:
            async with http.get(f"{system.url_of(name)}/readyz") as reply:
                answers[name] = (reply.status, await reply.json())
    return answers


async def all_ready(system: System, within: float = 30.0) -> dict[str, tuple[int, Any]]:
    deadline = time.monotonic() + within
    while True:
        answers = await readiness(system)
        if all(status == 200 for status, _ in answers.values()):
            return answers
        if time.monotonic() > deadline:
            return answers
        await asyncio.sleep(0.5)
