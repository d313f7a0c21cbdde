"""Helpers of the ledger's integration tests: sales announced on the bus, the ERP's messages, rows.

The ledger runs alone (``start_system(settings, services=("ledger",))``) on the test's own vhost
and database. Tests drive it only through messages of ``shared.contracts`` (or raw bytes, where
the contract's own serialiser would hide the edge case) and read its tables through its pool.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import itertools
import os
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import aio_pika
import aiohttp
import asyncpg
import orjson
from aio_pika.abc import AbstractIncomingMessage

from services.ledger.app import LedgerService
from services.mapper import ops as mapper_ops
from shared.consumer import Incoming, decode
from shared.contracts import (
    ConfirmPayment,
    Installment,
    Message,
    OrderCancelled,
    PaymentInstallment,
    PrivacyRequest,
    SaleConfirm,
    SaleCustomer,
    SaleDiscard,
    SaleItem,
    SalePayment,
    SalePendingReview,
    SaleProduct,
)
from shared.messaging import amqp_message, correlation, envelope
from shared.runtime import Running, start_service
from shared.settings import Settings
from shared.topology import LEDGER_ERP, LEDGER_SHARDS
from tests.harness import Observer, Seen, System, start_system
from tests.integration import helpers

SALE_DATE = dt.date(2026, 1, 2)
CONFIRMER = "erp-user-9"
SELLER = "erp-user-1"
LEDGER_QUEUES = (LEDGER_ERP.name, *(spec.name for spec in LEDGER_SHARDS))
# The ERP's messages wait in ledger.erp: a malformed one is dead-lettered there.
LEDGER_DEAD = LEDGER_ERP.dead_name

_order_ids = itertools.count(int(uuid.uuid4().int % 9_000) * 100_000 + 10_000_000)


def next_order_id() -> int:
    return next(_order_ids)


def product_id() -> str:
    """A product id as the mapper would make it (the ledger treats it as an opaque string)."""
    return str(uuid.uuid4())


Line = tuple[str, int, str]  # (product id, quantity, unit price)


def pending_sale(
    store_id: int,
    order_id: int,
    lines: Sequence[Line],
    *,
    shipping: str = "0.00",
    discount: str = "0.00",
    seller_id: str | None = SELLER,
    sale_date: dt.date = SALE_DATE,
    sale_id: str | None = None,
) -> SalePendingReview:
    """A ``sale.pending_review`` as the mapper announces it: cash, one installment of the total."""
    items = [
        SaleItem(
            product=SaleProduct(id=pid, description=f"Produto {n}", created=False),
            description=f"Produto {n}",
            quantity=qty,
            unit_price=Decimal(price),
            total=Decimal(price) * qty,
        )
        for n, (pid, qty, price) in enumerate(lines, start=1)
    ]
    subtotal = sum((item.total for item in items), Decimal(0))
    total = subtotal - Decimal(discount) + Decimal(shipping)
    return SalePendingReview(
        sale_id=sale_id or str(uuid.uuid4()),
        store_id=store_id,
        order_id=order_id,
        order_number=order_id % 100_000,
        seller_id=seller_id,
        customer=SaleCustomer(id=str(uuid.uuid4()), name="Maria Silva", created=True),
        items=items,
        subtotal=subtotal,
        shipping=Decimal(shipping),
        discount=Decimal(discount),
        total=total,
        payment=SalePayment(
            method="cash",
            installments=[Installment(number=1, amount=total, due_date=sale_date)],
        ),
        sale_date=sale_date,
    )


def payment(method: str, *installments: tuple[str, dt.date]) -> ConfirmPayment:
    return ConfirmPayment(
        method=method,
        installments=[PaymentInstallment(amount=Decimal(a), due_date=d) for a, d in installments],
    )


def days(n: int) -> dt.date:
    """The sale date plus ``n`` days."""
    return SALE_DATE + dt.timedelta(days=n)


async def wait_until(
    check: Callable[[], Awaitable[bool]], *, within: float = 10.0, what: str = "condition"
) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {within}s for {what}")
        await asyncio.sleep(0.05)


async def start_ledger(settings: Settings) -> System:
    """The ledger alone (with the harness's observer and ERP publisher)."""
    return await start_system(settings, services=("ledger",))


async def start_second_ledger(system: System) -> Running:
    """Another ledger instance on the same vhost and database (two pods of one deployment),
    which the system's barriers flush too."""
    running = await start_service(
        "ledger", LedgerService, system.settings, port=0, host="127.0.0.1", connect_deadline=20
    )
    system.replicas.setdefault("ledger", []).append(running)
    return running


class Tables(ABC):
    """The ledger's rows, read (and stock entered) through a pool."""

    @property
    @abstractmethod
    def pool(self) -> asyncpg.Pool:
        """The pool the rows are read through (each subclass says which)."""

    async def status(self, sale_id: str) -> str | None:
        value = await self.pool.fetchval(
            "SELECT status FROM ledger.sales WHERE sale_id = $1", sale_id
        )
        return None if value is None else str(value)

    async def sale(self, sale_id: str) -> asyncpg.Record:
        row = await self.pool.fetchrow("SELECT * FROM ledger.sales WHERE sale_id = $1", sale_id)
        assert row is not None, f"no sale {sale_id}"
        return row

    async def wait_status(self, sale_id: str, status: str, within: float = 10.0) -> None:
        async def reached() -> bool:
            return await self.status(sale_id) == status

        await wait_until(reached, within=within, what=f"sale {sale_id} {status}")

    async def receivables(self, sale_id: str) -> list[asyncpg.Record]:
        return list(
            await self.pool.fetch(
                "SELECT id::text, number, amount, due_date, method, status, store_id"
                " FROM ledger.receivables WHERE sale_id = $1 ORDER BY number",
                sale_id,
            )
        )

    async def movements(self, sale_id: str) -> list[asyncpg.Record]:
        return list(
            await self.pool.fetch(
                "SELECT id::text, product_id, quantity, direction, reason, line_number"
                " FROM ledger.stock_movements WHERE sale_id = $1"
                " ORDER BY direction DESC, line_number",
                sale_id,
            )
        )

    async def posted(self, sale_id: str) -> tuple[int, int]:
        """How many receivables and stock movements the sale has."""
        row = await self.pool.fetchrow(
            "SELECT (SELECT count(*) FROM ledger.receivables WHERE sale_id = $1) AS r,"
            " (SELECT count(*) FROM ledger.stock_movements WHERE sale_id = $1) AS m",
            sale_id,
        )
        assert row is not None
        return int(row["r"]), int(row["m"])

    async def on_hand(self, store_id: int, product: str) -> int:
        value = await self.pool.fetchval(
            "SELECT on_hand FROM ledger.stock_on_hand WHERE store_id = $1 AND product_id = $2",
            store_id,
            product,
        )
        return 0 if value is None else int(value)

    async def add_stock(self, store_id: int, product: str, quantity: int) -> None:
        await self.pool.execute(
            "INSERT INTO ledger.stock_movements (store_id, product_id, quantity, direction, reason)"
            " VALUES ($1, $2, $3, 'in', 'initial')",
            store_id,
            product,
            quantity,
        )

    async def stock_check_on(self, store_id: int) -> None:
        await mapper_ops.set_stock_check(self.pool, store_id, on=True)


class Rows(Tables):
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @property
    def pool(self) -> asyncpg.Pool:
        return self._pool


class Ledger(Tables):
    """The running ledger seen from the outside: what to publish to it, what to read back."""

    def __init__(self, system: System) -> None:
        self.system = system

    @property
    def pool(self) -> asyncpg.Pool:
        return self.system.services["ledger"].ctx.pool

    @property
    def observer(self) -> Observer:
        return self.system.observer

    @property
    def amqp_url(self) -> str:
        return self.system.settings.amqp_url

    async def settled(self) -> None:
        """Everything published to the ledger so far was handled and its events observed."""
        await self.system.ledger_settled()

    # --- publishing ---------------------------------------------------------------------------

    async def publish(self, message: Message, message_id: str) -> None:
        key = correlation(getattr(message, "store_id", None), getattr(message, "order_id", None))
        await self.system.erp.publish(envelope(message, message_id=message_id, correlation_id=key))

    async def announce(self, sale: SalePendingReview, *, wait: bool = True) -> None:
        """Publish ``sale.pending_review`` on mapper.events; by default wait until it is kept."""
        await self.publish(sale, f"sale.pending_review:{sale.sale_id}")
        if wait:
            await self.wait_status(sale.sale_id, "pending_review")

    async def confirm(
        self,
        sale_id: str,
        message_id: str,
        *,
        seller_id: str | None = None,
        pay: ConfirmPayment | None = None,
        confirmed_by: str = CONFIRMER,
    ) -> None:
        request = SaleConfirm(
            sale_id=sale_id, confirmed_by=confirmed_by, seller_id=seller_id, payment=pay
        )
        await self.publish(request, message_id)

    async def confirm_raw(self, body: dict[str, Any], message_id: str) -> None:
        """A ``sale.confirm`` whose JSON is written by hand (amounts the model would normalise)."""
        await self.publish_raw("erp.events", "sale.confirm", orjson.dumps(body), message_id)

    async def discard(self, sale_id: str, message_id: str) -> None:
        await self.publish(SaleDiscard(sale_id=sale_id, discarded_by=CONFIRMER), message_id)

    async def cancel_order(
        self, store_id: int, order_id: int, message_id: str, reason: str = "cancelled"
    ) -> None:
        message = OrderCancelled(
            store_id=store_id,
            order_id=order_id,
            cancelled_at=dt.datetime(2026, 1, 3, 9, 0, tzinfo=dt.UTC),
            reason=reason,
        )
        await self.publish(message, message_id)

    async def publish_raw(
        self, exchange: str, routing_key: str, body: bytes, message_id: str | None
    ) -> None:
        connection = await aio_pika.connect(self.amqp_url)
        try:
            channel = await connection.channel(publisher_confirms=True)
            target = await channel.get_exchange(exchange, ensure=False)
            await target.publish(
                aio_pika.Message(
                    body,
                    content_type="application/json",
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    message_id=message_id,
                ),
                routing_key=routing_key,
            )
        finally:
            await connection.close()

    async def take_dead(self, count: int, within: float = 10.0) -> list[AbstractIncomingMessage]:
        """Take (and acknowledge) ``count`` messages off ``ledger.erp.dead``, then what is left."""
        taken: list[AbstractIncomingMessage] = []
        connection = await aio_pika.connect(self.amqp_url)
        try:
            channel = await connection.channel()
            queue = await channel.get_queue(LEDGER_DEAD, ensure=False)
            deadline = time.monotonic() + within
            while True:
                message = await queue.get(no_ack=True, fail=False)
                if message is not None:
                    taken.append(message)
                    continue
                if len(taken) >= count or time.monotonic() > deadline:
                    return taken
                await asyncio.sleep(0.05)
        finally:
            await connection.close()

    # --- events -------------------------------------------------------------------------------

    async def refused(self, sale_id: str | None, within: float = 10.0) -> Seen:
        found = await self.observer.wait_for(
            "sale.confirmation_refused", sale_id=sale_id, within=within
        )
        return found[-1]

    async def confirmed(self, sale_id: str, within: float = 10.0) -> Seen:
        return (await self.observer.wait_for("sale.confirmed", sale_id=sale_id, within=within))[-1]

    async def cancelled(self, sale_id: str, within: float = 10.0) -> Seen:
        return (await self.observer.wait_for("sale.cancelled", sale_id=sale_id, within=within))[-1]

    async def outcome(self, sale_id: str, within: float = 10.0) -> tuple[str, str]:
        """Wait for the first answer to a confirmation: ("sale.confirmed", "") or a refusal."""
        deadline = time.monotonic() + within
        while True:
            for seen in self.observer.seen:
                if seen.body.get("sale_id") != sale_id:
                    continue
                if seen.routing_key == "sale.confirmed":
                    return seen.routing_key, ""
                if seen.routing_key == "sale.confirmation_refused":
                    return seen.routing_key, str(seen.body["reason"])
            if time.monotonic() > deadline:
                raise AssertionError(f"no answer to the confirmation of {sale_id} in {within}s")
            await asyncio.sleep(0.05)

    def events(self, routing_key: str, sale_id: str) -> list[Seen]:
        return self.observer.of(routing_key, sale_id=sale_id)

    def processed(self, running: Running | None = None) -> float:
        """Messages the (given) ledger instance has consumed and processed so far."""
        metrics = (running or self.system.services["ledger"]).ctx.metrics
        total = 0.0
        for queue in LEDGER_QUEUES:
            value = metrics.registry.get_sample_value(
                "nuvem_ledger_messages_total", {"queue": queue, "outcome": "processed"}
            )
            total += 0.0 if value is None else float(value)
        return total


LEDGER_MODELS: dict[str, type[Message]] = {
    m.routing_key: m
    for m in (SalePendingReview, SaleConfirm, SaleDiscard, OrderCancelled, PrivacyRequest)
}


async def deliveries_of(amqp_url: str, messages: Sequence[tuple[Message, str]]) -> list[Incoming]:
    """Real broker deliveries of ``messages`` (with their message ids), decoded as the consumer does.

    They travel through their own exchange and routing key to a private queue, so the ledger's
    handler can then be called directly, as many times and as concurrently as a test wants:
    that is how two ledger transactions on the same sale are made to overlap for sure, whatever
    the broker's consumer arrangement.
    """
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        for message, _ in messages:
            exchange = await channel.declare_exchange(
                message.exchange, aio_pika.ExchangeType.TOPIC, durable=True
            )
            await queue.bind(exchange, message.routing_key)
        for message, message_id in messages:
            env = envelope(
                message,
                message_id=message_id,
                correlation_id=correlation(
                    getattr(message, "store_id", None), getattr(message, "order_id", None)
                ),
            )
            exchange = await channel.get_exchange(env.exchange, ensure=False)
            await exchange.publish(amqp_message(env, "test"), routing_key=env.routing_key)
        taken: list[AbstractIncomingMessage] = []
        deadline = time.monotonic() + 10
        while len(taken) < len(messages):
            got = await queue.get(no_ack=True, fail=False)
            if got is not None:
                taken.append(got)
            elif time.monotonic() > deadline:
                raise AssertionError(f"got {len(taken)} of {len(messages)} deliveries")
            else:
                await asyncio.sleep(0.02)
    finally:
        await connection.close()
    return [decode(d, LEDGER_MODELS) for d in taken]


async def publish_via_management(
    management_url: str, amqp_url: str, exchange: str, routing_key: str, body: bytes
) -> None:
    """Publish as an operator does from the management UI: no ``message_id`` property at all.

    (aio-pika and aiormq always fill one in, so they cannot produce such a message.)
    """
    parts = urlsplit(amqp_url)
    vhost = quote(unquote(parts.path.lstrip("/")) or "/", safe="")
    credentials = f"{parts.username or 'guest'}:{parts.password or 'guest'}"
    headers = {"authorization": "Basic " + base64.b64encode(credentials.encode()).decode()}
    payload = {
        "properties": {"content_type": "application/json", "delivery_mode": 2},
        "routing_key": routing_key,
        "payload": body.decode(),
        "payload_encoding": "string",
    }
    url = f"{management_url}/api/exchanges/{vhost}/{quote(exchange, safe='')}/publish"
    async with (
        aiohttp.ClientSession(headers=headers) as session,
        session.post(url, json=payload, timeout=aiohttp.ClientTimeout(total=10)) as response,
    ):
        assert response.status == 200, await response.text()
        assert (await response.json()).get("routed") is True


def receivable_view(body: dict[str, Any]) -> list[tuple[int, str, str, str, str]]:
    """The receivables of an event as (number, amount, due_date, method, status)."""
    return [
        (r["number"], r["amount"], r["due_date"], r["method"], r["status"])
        for r in body["receivables"]
    ]


def cli_env(settings: Settings) -> dict[str, str]:
    """The environment of a ``services.cli`` subprocess: only this test's settings."""
    names = {name.upper() for name in Settings.model_fields}
    env = {k: v for k, v in os.environ.items() if k.upper() not in names}
    key = settings.token_encryption_key
    env |= {
        "AMQP_URL": settings.amqp_url,
        "DATABASE_URL": settings.database_url,
        "TOKEN_ENCRYPTION_KEY": key.get_secret_value() if key is not None else "",
        "PYTHONUNBUFFERED": "1",
    }
    return env


@dataclass(frozen=True)
class CliResult:
    returncode: int
    stdout: str
    stderr: str

    def describe(self) -> str:
        return f"exit {self.returncode}\nstdout: {self.stdout!r}\nstderr: {self.stderr!r}"

    def json(self) -> Any:
        assert self.returncode == 0, self.describe()
        return orjson.loads(self.stdout)


async def run_cli(*args: str, settings: Settings, cwd: Path, limit_s: float = 20.0) -> CliResult:
    """``nuvem-ledger ARGS`` as an operator runs it; the child is killed on timeout."""
    done = await helpers.run_cli(*args, env=cli_env(settings), cwd=cwd, within=limit_s)
    return CliResult(done.returncode, done.stdout, done.stderr)
