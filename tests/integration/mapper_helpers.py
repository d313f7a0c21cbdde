"""Helpers of the mapper's integration tests: orders, publishing, waiting, the database, the CLI.

The mapper is driven the way ingest drives it: ``order.paid`` (or ``order.invalid``) messages
published on ``ingest.events``, observed on ``mapper.events`` by the harness's observer, checked in
the database through the running mapper's own pool, and operated through the real
``nuvem-ledger`` console command in a subprocess. Nothing is mocked.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import json
import os
import secrets
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import aio_pika
import aiohttp
import asyncpg

from services.mapper.app import MapperService
from shared.contracts import Message, OrderCustomer, OrderItem, OrderPaid
from shared.messaging import Envelope, envelope
from shared.runtime import Running, start_service
from shared.settings import Settings
from tests import infra
from tests.harness import Seen, System, start_system
from tests.integration import helpers

CPF = "75839566500"
CPF_FORMATTED = "758.395.665-00"
OTHER_CPF = "52998224725"
CNPJ = "11222333000181"
CNPJ_FORMATTED = "11.222.333/0001-81"
CNPJ_ALPHANUMERIC = "12ABC34501DE35"
SELLER = "erp-user-1"
PAID_AT = dt.datetime(2026, 8, 3, 13, 5, tzinfo=dt.UTC)
WAIT_S = 10.0

# Every variable Settings reads: the CLI child must see only what the test gives it.
_SETTINGS_ENV = frozenset(name.upper() for name in Settings.model_fields)


# --- orders ------------------------------------------------------------------------------------


def line(name: str, quantity: int = 1, price: str = "10.00", sku: str | None = None) -> OrderItem:
    """One order item; money given as the decimal string the wire carries."""
    return OrderItem(name=name, sku=sku, quantity=quantity, unit_price=Decimal(price))


def make_order(
    store_id: int,
    order_id: int,
    *,
    name: str | None = "Maria Silva",
    document: str | None = CPF,
    email: str | None = "maria@example.com",
    mobile_phone: str | None = "+55 11 99999-0000",
    business_phone: str | None = "+55 11 3333-0000",
    items: Iterable[OrderItem] | None = None,
    shipping: str = "0",
    discount: str = "0",
    total: str | None = None,
    paid_at: dt.datetime | None = PAID_AT,
    activated_by: str | None = SELLER,
) -> OrderPaid:
    """An ``order.paid`` as ingest announces it; the total is consistent unless ``total`` is given."""
    lines = list(items) if items is not None else [line("Cadeira de Madeira", 2, "150.00", "CAD-1")]
    subtotal = sum((i.unit_price * i.quantity for i in lines), Decimal(0))
    computed = subtotal - Decimal(discount) + Decimal(shipping)
    return OrderPaid(
        store_id=store_id,
        order_id=order_id,
        order_number=order_id + 1000,
        created_at=(paid_at or PAID_AT) - dt.timedelta(minutes=5),
        paid_at=paid_at,
        currency="BRL",
        subtotal=subtotal,
        discount=Decimal(discount),
        shipping=Decimal(shipping),
        total=Decimal(total) if total is not None else computed,
        customer=OrderCustomer(
            name=name,
            document=document,
            email=email,
            mobile_phone=mobile_phone,
            business_phone=business_phone,
        ),
        items=lines,
        activated_by=activated_by,
    )


def order_envelope(message: Message, message_id: str | None = None) -> Envelope:
    """``message`` with the properties ingest gives it (stable id, correlation store:order)."""
    store_id = getattr(message, "store_id", None)
    order_id = getattr(message, "order_id", None)
    return envelope(
        message,
        message_id=message_id or f"{message.routing_key}:{store_id}:{order_id}",
        correlation_id=f"{store_id}:{order_id}",
    )


async def publish(system: System, message: Message, message_id: str | None = None) -> Envelope:
    """Publish ``message`` on its exchange with publisher confirms; returns what was sent."""
    env = order_envelope(message, message_id)
    await system.erp.publish(env)
    return env


async def publish_raw(
    system: System, routing_key: str, body: bytes, message_id: str, exchange: str = "ingest.events"
) -> Envelope:
    """Publish arbitrary bytes (a poison message) as if a careless producer had."""
    env = Envelope(
        exchange=exchange,
        routing_key=routing_key,
        body=body,
        message_id=message_id,
        type=f"{routing_key}.v1",
    )
    await system.erp.publish(env)
    return env


async def pending_sale(system: System, order: OrderPaid, within: float = WAIT_S) -> dict[str, Any]:
    """The body of the ``sale.pending_review`` of ``order`` (waiting for it)."""
    seen = await system.observer.wait_for(
        "sale.pending_review", within=within, store_id=order.store_id, order_id=order.order_id
    )
    return seen[0].body


async def import_order(system: System, order: OrderPaid) -> dict[str, Any]:
    """Publish ``order`` and return its pending sale."""
    await publish(system, order)
    return await pending_sale(system, order)


async def rejection(
    system: System, store_id: int, order_id: int, count: int = 1, within: float = WAIT_S
) -> Seen:
    """The ``count``-th ``sale.rejected`` of an order (waiting for it)."""
    seen = await system.observer.wait_for(
        "sale.rejected", count=count, within=within, store_id=store_id, order_id=order_id
    )
    return seen[count - 1]


# --- the running mapper ------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def running_mapper(
    settings: Settings, *, services: tuple[str, ...] = ("mapper",), **overrides: Any
) -> AsyncIterator[System]:
    """The mapper (and whatever else is named) on the test's vhost and database."""
    tuned = settings.model_copy(update=overrides) if overrides else settings
    system = await start_system(tuned, services=services)
    try:
        yield system
    finally:
        await system.stop()


async def add_mapper(system: System, name: str) -> Running:
    """Start one more mapper instance on the same vhost and database (stopped with the system)."""
    running = await start_service(
        "mapper", MapperService, system.settings, port=0, host="127.0.0.1", connect_deadline=20
    )
    system.services[name] = running
    return running


async def wait_consumers(amqp_url: str, queue: str, count: int, within: float = WAIT_S) -> int:
    """Wait until ``queue`` has ``count`` consumers (the broker's own, real-time count)."""
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        deadline = time.monotonic() + within
        while True:
            declared = await channel.declare_queue(queue, passive=True)
            consumers = declared.declaration_result.consumer_count or 0
            if consumers >= count or time.monotonic() > deadline:
                return consumers
            await asyncio.sleep(0.05)
    finally:
        await connection.close()


def pool(system: System) -> asyncpg.Pool:
    return system.services["mapper"].ctx.pool


def processed(running: Running, outcome: str = "processed") -> float:
    """How many messages of ``mapper.orders`` this instance counted with ``outcome``."""
    value = running.ctx.metrics.registry.get_sample_value(
        "nuvem_ledger_messages_total", {"queue": "mapper.orders", "outcome": outcome}
    )
    return value or 0.0


async def handled_by(
    system: System, instances: Sequence[Running], count: int, within: float = WAIT_S
) -> None:
    """Wait until ``instances`` together finished batches of ``count`` messages of
    ``mapper.orders``, then until what they published is observed (with several mappers a
    sentinel message could overtake the messages under test on another instance)."""

    async def handled() -> bool:
        return sum(batches(r)[1] for r in instances) >= count

    if await wait_until(handled, True, within) is not True:
        raise AssertionError(f"waited {within}s for {count} messages handled")
    for running in instances:
        await running.ctx.publisher.flush()
    await system.observer.echo(system.erp)


def batches(running: Running) -> tuple[float, float]:
    """(batches handled, messages in them) of ``mapper.orders`` on this instance."""
    registry = running.ctx.metrics.registry
    labels = {"queue": "mapper.orders"}
    count = registry.get_sample_value("nuvem_ledger_batch_size_count", labels) or 0.0
    total = registry.get_sample_value("nuvem_ledger_batch_size_sum", labels) or 0.0
    return count, total


@dataclass(frozen=True)
class Counts:
    customers: int
    products: int
    sales: int
    sale_items: int


async def counts(system: System, store_id: int) -> Counts:
    row = await pool(system).fetchrow(
        """
        SELECT (SELECT count(*) FROM mapper.customers WHERE store_id = $1) AS customers,
               (SELECT count(*) FROM mapper.products WHERE store_id = $1) AS products,
               (SELECT count(*) FROM mapper.sales WHERE store_id = $1) AS sales,
               (SELECT count(*) FROM mapper.sale_items i JOIN mapper.sales s ON s.id = i.sale_id
                 WHERE s.store_id = $1) AS sale_items
        """,
        store_id,
    )
    assert row is not None
    return Counts(row["customers"], row["products"], row["sales"], row["sale_items"])


async def wait_until(
    probe: Any, expected: Any, within: float = WAIT_S, interval: float = 0.1
) -> Any:
    """Call the async ``probe`` until it returns ``expected``; returns the last value seen."""
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if value == expected or time.monotonic() > deadline:
            return value
        await asyncio.sleep(interval)


async def add_stock(system: System, store_id: int, product_id: str, quantity: int) -> None:
    """Stock entered on an existing product: an ``in`` adjustment in the ledger's movements."""
    await pool(system).execute(
        "INSERT INTO ledger.stock_movements (store_id, product_id, quantity, direction, reason)"
        " VALUES ($1, $2, $3, 'in', 'adjustment')",
        store_id,
        product_id,
        quantity,
    )


def random_text(length: int) -> str:
    """Incompressible text: too long for a btree index entry when ``length`` > ~2700."""
    return base64.b64encode(secrets.token_bytes(length)).decode()[:length]


# --- queues as operators see them --------------------------------------------------------------


def _vhost(amqp_url: str) -> str:
    return unquote(urlsplit(amqp_url).path.lstrip("/")) or "/"


@dataclass(frozen=True)
class QueuedMessage:
    """A message as the management UI's "Get messages" shows it (and hands it back)."""

    body: bytes
    headers: dict[str, Any]
    message_id: str | None
    correlation_id: str | None
    type: str | None
    content_type: str | None
    persistent: bool


async def peek_queue(
    infrastructure: infra.Infrastructure, amqp_url: str, queue: str, count: int = 100
) -> list[QueuedMessage]:
    """The messages of ``queue`` through the management API, requeued (nothing is consumed)."""
    assert infrastructure.management_url is not None, "the management API is needed here"
    parts = urlsplit(infrastructure.amqp_url)
    credentials = f"{parts.username or 'guest'}:{parts.password or 'guest'}"
    auth = {"authorization": "Basic " + base64.b64encode(credentials.encode()).decode()}
    url = (
        f"{infrastructure.management_url}/api/queues/"
        f"{quote(_vhost(amqp_url), safe='')}/{quote(queue, safe='')}/get"
    )
    request = {"count": count, "ackmode": "ack_requeue_true", "encoding": "base64"}
    async with (
        aiohttp.ClientSession(headers=auth) as session,
        session.post(url, json=request, timeout=aiohttp.ClientTimeout(total=10)) as response,
    ):
        assert response.status == 200, f"POST {url}: {response.status} {await response.text()}"
        found = await response.json()
    return [
        QueuedMessage(
            body=base64.b64decode(m["payload"]),
            headers=dict(m["properties"].get("headers") or {}),
            message_id=m["properties"].get("message_id"),
            correlation_id=m["properties"].get("correlation_id"),
            type=m["properties"].get("type"),
            content_type=m["properties"].get("content_type"),
            persistent=m["properties"].get("delivery_mode") == 2,
        )
        for m in found
    ]


async def wait_queue(
    infrastructure: infra.Infrastructure,
    amqp_url: str,
    queue: str,
    count: int,
    within: float = WAIT_S,
) -> list[QueuedMessage]:
    """Peek ``queue`` until it holds at least ``count`` messages (or ``within`` runs out)."""
    deadline = time.monotonic() + within
    while True:
        found = await peek_queue(infrastructure, amqp_url, queue)
        if len(found) >= count or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.2)


# --- the operator's command --------------------------------------------------------------------


@dataclass(frozen=True)
class CliResult:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    def describe(self) -> str:
        return (
            f"`nuvem-ledger {' '.join(self.args)}` exited {self.returncode}\n"
            f"stdout: {self.stdout!r}\nstderr: {self.stderr!r}"
        )

    def json(self) -> Any:
        assert self.returncode == 0, self.describe()
        return json.loads(self.stdout)


@dataclass(frozen=True)
class Cli:
    """``nuvem-ledger`` run as an operator runs it, against the test's broker and database."""

    settings: Settings
    cwd: Path

    async def run(self, *args: str, limit_s: float = 20.0) -> CliResult:
        env = {k: v for k, v in os.environ.items() if k.upper() not in _SETTINGS_ENV}
        env |= {
            "AMQP_URL": self.settings.amqp_url,
            "DATABASE_URL": self.settings.database_url,
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
        done = await helpers.run_cli(*args, env=env, cwd=self.cwd, within=limit_s)
        return CliResult(args, done.returncode, done.stdout, done.stderr)

    async def json(self, *args: str) -> Any:
        """Run a command with ``--json`` (at the end, as the contract says) and parse stdout."""
        return (await self.run(*args, "--json")).json()
