"""Small helpers shared by the integration tests: raw AMQP, the management API, subprocesses.

Everything here talks to the real broker and database the fixtures of ``tests/conftest.py``
provide (one vhost and one database per test); nothing is mocked.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import itertools
import os
import signal
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import aio_pika
import aiohttp
import orjson

from shared.contracts import OrderCustomer, OrderItem, OrderPaid
from shared.settings import Settings
from tests import infra

# Every variable Settings reads: a subprocess must see only what the test gives it.
_SETTINGS_ENV = frozenset(name.upper() for name in Settings.model_fields)
CLI = str(Path(sys.executable).with_name("nuvem-ledger"))

_store_ids = itertools.count(int(uuid.uuid4().int % 900_000) * 1000 + 1_000_000)


def unique_store_id() -> int:
    """A store id no other test of this session uses."""
    return next(_store_ids)


def order_paid(
    store_id: int,
    order_id: int,
    *,
    customer_name: str = "Maria Silva",
    document: str | None = "75839566500",
    items: list[tuple[str, int, str]] | None = None,
    shipping: str = "10.00",
) -> OrderPaid:
    """A valid ``order.paid`` body built with the contract's own model."""
    lines = items or [("Cadeira de Madeira", 2, "150.00")]
    subtotal = sum((Decimal(price) * qty for _, qty, price in lines), Decimal(0))
    when = dt.datetime(2026, 1, 2, 12, 0, tzinfo=dt.UTC)
    return OrderPaid(
        store_id=store_id,
        order_id=order_id,
        order_number=order_id % 100_000,
        created_at=when,
        paid_at=when + dt.timedelta(minutes=5),
        currency="BRL",
        subtotal=subtotal,
        discount=Decimal(0),
        shipping=Decimal(shipping),
        total=subtotal + Decimal(shipping),
        customer=OrderCustomer(name=customer_name, document=document, email="maria@example.com"),
        items=[
            OrderItem(name=name, sku=f"SKU-{n}", quantity=qty, unit_price=Decimal(price))
            for n, (name, qty, price) in enumerate(lines, start=1)
        ],
        activated_by="erp-user-1",
    )


# --- AMQP ---------------------------------------------------------------------------------------


async def publish_raw(
    amqp_url: str,
    exchange: str,
    routing_key: str,
    body: bytes,
    *,
    message_id: str | None = None,
    content_type: str = "application/json",
) -> None:
    """Publish arbitrary bytes with publisher confirms, as a careless producer might."""
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        target = await channel.get_exchange(exchange, ensure=False)
        await target.publish(
            aio_pika.Message(
                body,
                content_type=content_type,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=message_id,
            ),
            routing_key=routing_key,
        )
    finally:
        await connection.close()


@dataclass(frozen=True)
class Taken:
    """A message read off a queue (acknowledged: the queue no longer holds it)."""

    body: bytes
    headers: dict[str, Any]
    message_id: str | None
    type: str | None
    correlation_id: str | None
    content_type: str | None
    persistent: bool

    def header(self, name: str) -> str | None:
        value = self.headers.get(name)
        if isinstance(value, bytes):
            return value.decode()
        return None if value is None else str(value)


async def take(amqp_url: str, queue: str, count: int, within: float = 10.0) -> list[Taken]:
    """Read ``count`` messages from ``queue`` (waiting up to ``within`` s), then whatever is left."""
    taken: list[Taken] = []
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        source = await channel.get_queue(queue, ensure=False)
        deadline = time.monotonic() + within
        while True:
            message = await source.get(no_ack=True, fail=False)
            if message is not None:
                taken.append(
                    Taken(
                        body=message.body,
                        headers=dict(message.headers or {}),
                        message_id=message.message_id,
                        type=message.type,
                        correlation_id=message.correlation_id,
                        content_type=message.content_type,
                        persistent=message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT,
                    )
                )
                continue
            if len(taken) >= count or time.monotonic() > deadline:
                return taken
            await asyncio.sleep(0.1)
    finally:
        await connection.close()


# --- the management API -------------------------------------------------------------------------


def vhost_of(amqp_url: str) -> str:
    return unquote(urlsplit(amqp_url).path.lstrip("/")) or "/"


async def management_get(infrastructure: infra.Infrastructure, amqp_url: str, path: str) -> Any:
    """``GET /api/<path>`` where ``{vhost}`` in ``path`` is the test's vhost, URL-quoted."""
    assert infrastructure.management_url is not None, "the management API is needed here"
    parts = urlsplit(infrastructure.amqp_url)
    credentials = f"{parts.username or 'guest'}:{parts.password or 'guest'}"
    headers = {"authorization": "Basic " + base64.b64encode(credentials.encode()).decode()}
    url = (
        infrastructure.management_url
        + "/api/"
        + path.format(vhost=quote(vhost_of(amqp_url), safe=""))
    )
    async with (
        aiohttp.ClientSession(headers=headers) as session,
        session.get(url, timeout=aiohttp.ClientTimeout(total=10)) as response,
    ):
        assert response.status == 200, f"GET {url}: {response.status} {await response.text()}"
        return await response.json()


# --- subprocesses -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def closed_port() -> int:
    """A local port nothing listens on (bound then released)."""
    return free_port()


def child_env(**values: str) -> dict[str, str]:
    """The parent's environment without any of our settings, plus ``values`` (upper-cased)."""
    env = {k: v for k, v in os.environ.items() if k.upper() not in _SETTINGS_ENV}
    env.update({k.upper(): v for k, v in values.items()})
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass(frozen=True)
class Completed:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    def lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]

    def json(self) -> Any:
        assert self.returncode == 0, self.describe()
        return orjson.loads(self.stdout)

    def describe(self) -> str:
        return (
            f"`nuvem-ledger {' '.join(self.args)}` exited {self.returncode}\n"
            f"stdout: {self.stdout!r}\nstderr: {self.stderr[-2000:]!r}"
        )


async def run_cli(*args: str, env: Mapping[str, str], cwd: Path, within: float = 25.0) -> Completed:
    """Run the console command to completion; the child is always killed on the way out."""
    proc = await asyncio.create_subprocess_exec(
        CLI,
        *args,
        env=dict(env),
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=within)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return Completed(args, proc.returncode, out.decode(), err.decode())


@dataclass
class Child:
    """A long-running child process whose output goes to files (no pipe can fill up)."""

    proc: asyncio.subprocess.Process
    stdout_path: Path
    stderr_path: Path

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def output(self) -> str:
        return f"stdout: {self.stdout!r}\nstderr: {self.stderr!r}"

    async def terminate(self, within: float = 15.0) -> int:
        """SIGTERM and wait up to ``within`` seconds for the exit code."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.proc.wait(), timeout=within)


@contextlib.asynccontextmanager
async def spawn(
    command: list[str], *, env: Mapping[str, str], cwd: Path, name: str = "child"
) -> AsyncIterator[Child]:
    """Start ``command``; on the way out it is killed if it still runs."""
    out_path, err_path = cwd / f"{name}.stdout", cwd / f"{name}.stderr"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            *command,
            env=dict(env),
            cwd=cwd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=err,
        )
    try:
        yield Child(proc, out_path, err_path)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
