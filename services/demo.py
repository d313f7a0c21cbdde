"""``nuvem-ledger demo``: the whole system against the simulator, shown working, ending by itself.

It uses the local RabbitMQ and PostgreSQL (or containers, where those are missing and a Docker
engine answers), starts the Nuvemshop simulator and the three services in this process, connects
simulated stores (which registers their webhooks), pays a stream of orders (the simulator then
sends signed ``order/paid`` webhooks, some of them twice), plays the ERP that confirms every
pending sale, prints progress, and ends with a summary and where to look.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import random
import socket
import sys
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import aio_pika
import aiohttp
import orjson
from aio_pika.abc import AbstractIncomingMessage
from pydantic import SecretStr

from services.ingest.adapters.nuvemshop import NuvemshopClient
from services.ingest.connections import connect
from services.ingest.tokens import cipher_from_settings, generate_key
from shared.containers import docker_answers
from shared.contracts import ConfirmPayment, PaymentInstallment, SaleConfirm
from shared.logging import configure_logging
from shared.messaging import Broker, envelope
from shared.runtime import Running, start_service
from shared.settings import Settings

PRODUCTS = (
    ("Camiseta Nuvem", "59.90"),
    ("Caneca Azul", "34.50"),
    ("Mesa de Roble", "6000.00"),
    ("Caderno Pautado", "18.00"),
    ("Mochila Urbana", "189.00"),
)
CUSTOMERS = (
    {"name": "Maria Silva", "identification": "75839566500"},
    {"name": "Nuvem Shop LTDA", "identification": "11.222.333/0001-81"},
    {"name": "Ana  Souza", "identification": "16727230000197"},
    {"name": "João Pereira", "identification": "123"},  # invalid: imported without a document
)


@dataclass
class Tally:
    paid: int = 0
    pending: set[str] = field(default_factory=set)
    confirmed: set[str] = field(default_factory=set)
    receivables: int = 0
    receivable_total: Decimal = Decimal(0)
    stock_moved: int = 0
    warnings: int = 0
    customers_created: int = 0
    products_created: int = 0
    example: dict[str, Any] | None = None


def _answers(url: str, port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or port), timeout=2
        ):
            return True
    except OSError:
        return False


_OUT = {"stream": sys.stdout}


def _say(text: str) -> None:
    # With --json the progress goes to stderr, so stdout carries only the JSON result.
    stream = _OUT["stream"]
    stream.write(text + "\n")
    stream.flush()


async def _infrastructure(settings: Settings) -> tuple[Settings, list[Any]]:
    """The configured broker and database, or containers when they are missing and Docker answers."""
    if _answers(settings.amqp_url, 5672) and _answers(settings.database_url, 5432):
        return settings, []
    if not docker_answers():
        raise RuntimeError(
            "RabbitMQ or PostgreSQL is not answering (AMQP_URL / DATABASE_URL) and no Docker engine "
            "is available. Start them: `rabbitmq-server -detached` and "
            "`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`."
        )
    from testcontainers.postgres import PostgresContainer
    from testcontainers.rabbitmq import RabbitMqContainer

    _say("starting RabbitMQ and PostgreSQL containers ...")
    rabbit = RabbitMqContainer("rabbitmq:3.13-management").start()
    postgres = PostgresContainer("postgres:16", driver=None).start()
    amqp = f"amqp://guest:guest@{rabbit.get_container_host_ip()}:{rabbit.get_exposed_port(5672)}/"
    database = postgres.get_connection_url().rsplit("/", 1)[0] + "/nuvem_ledger"
    return settings.model_copy(update={"amqp_url": amqp, "database_url": database}), [
        rabbit,
        postgres,
    ]


class Erp:
    """Plays the ERP: confirms each pending sale (some in three installments) and counts results."""

    def __init__(self, settings: Settings, tally: Tally, stores: set[int]) -> None:
        self.settings = settings
        self.tally = tally
        self.stores = stores
        self.broker = Broker(settings.amqp_url, app_id="demo-erp")
        self.connection: aio_pika.abc.AbstractRobustConnection | None = None

    async def start(self) -> None:
        await self.broker.connect(deadline=30)
        self.connection = await aio_pika.connect_robust(self.settings.amqp_url)
        channel = await self.connection.channel()
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind("mapper.events", "sale.pending_review")
        await queue.bind("ledger.events", "sale.confirmed")
        await queue.consume(self._on_message, no_ack=True)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        body = orjson.loads(message.body)
        if int(body.get("store_id", 0)) not in self.stores:
            return
        if message.routing_key == "sale.pending_review":
            await self._confirm(body)
        elif (
            message.routing_key == "sale.confirmed" and body["sale_id"] not in self.tally.confirmed
        ):
            self.tally.confirmed.add(body["sale_id"])
            self.tally.receivables += len(body["receivables"])
            self.tally.receivable_total += sum(Decimal(r["amount"]) for r in body["receivables"])
            self.tally.stock_moved += sum(m["quantity"] for m in body["stock_movements"])

    async def _confirm(self, sale: dict[str, Any]) -> None:
        if sale["sale_id"] in self.tally.pending:
            return
        self.tally.pending.add(sale["sale_id"])
        self.tally.warnings += len(sale["warnings"])
        self.tally.customers_created += int(sale["customer"]["created"])
        self.tally.products_created += sum(int(i["product"]["created"]) for i in sale["items"])
        self.tally.example = self.tally.example or sale
        payment = None
        total = Decimal(sale["total"])
        if len(self.tally.pending) % 3 == 0 and total >= Decimal("3.00"):
            # Every third sale: the ERP user changes the payment to three monthly installments.
            first = (total / 3).quantize(Decimal("0.01"))
            day = dt.date.fromisoformat(sale["sale_date"])
            amounts = [first, first, total - 2 * first]
            payment = ConfirmPayment(
                method="credit_card",
                installments=[
                    PaymentInstallment(amount=a, due_date=day + dt.timedelta(days=30 * (n + 1)))
                    for n, a in enumerate(amounts)
                ],
            )
        confirm = SaleConfirm(
            sale_id=sale["sale_id"], confirmed_by="erp-demo-user", payment=payment
        )
        await self.broker.publish(
            envelope(confirm, message_id=f"demo-confirm:{sale['sale_id']}", correlation_id=None)
        )

    async def close(self) -> None:
        await self.broker.close()
        if self.connection is not None:
            await self.connection.close()


async def _start_services(settings: Settings) -> dict[str, Running]:
    from services.cli import _factories

    factories = _factories()
    running: dict[str, Running] = {}
    for name in ("ingest", "mapper", "ledger"):
        port = settings.http_port(name)
        with contextlib.suppress(OSError):
            running[name] = await start_service(
                name, factories[name], settings, port=port, connect_deadline=30
            )
            continue
        # The usual port is taken (another instance running?): any free port will do for a demo.
        running[name] = await start_service(
            name, factories[name], settings, port=0, connect_deadline=30
        )
    return running


async def run_demo(
    settings: Settings, *, orders: int = 60, stores: int = 2, as_json: bool = False
) -> int:
    configure_logging("WARNING", "console", sys.stderr)
    _OUT["stream"] = sys.stderr if as_json else sys.stdout
    if settings.token_encryption_key is None:
        settings = settings.model_copy(update={"token_encryption_key": SecretStr(generate_key())})
        _say("demo: TOKEN_ENCRYPTION_KEY not set, using a key generated for this run")
    try:
        settings, containers = await _infrastructure(settings)
    except RuntimeError as exc:
        sys.stderr.write(f"nuvem-ledger demo: {exc}\n")
        return 1
    try:
        return await _demo(settings, orders=orders, stores=stores)
    finally:
        for container in containers:
            container.stop()


async def _demo(settings: Settings, *, orders: int, stores: int) -> int:
    from services.simulator.runner import start_simulator

    simulator = await start_simulator(rate_limit=True, time_scale=0.001)
    settings = settings.model_copy(
        update={
            "nuvemshop_api_url": simulator.api_url,
            "nuvemshop_auth_url": simulator.auth_url,
            "nuvemshop_client_secret": SecretStr(simulator.state.client_secret),
            "nuvemshop_app_id": simulator.state.app_id,
            "demo_mode": True,
        }
    )
    _say(f"simulator (Nuvemshop API) at {simulator.api_url}")
    services = await _start_services(settings)
    ingest_url = f"http://127.0.0.1:{services['ingest'].port}"
    for name, running in services.items():
        _say(f"{name:<7} running, health at http://127.0.0.1:{running.port}/healthz")
    base = int(time.time()) % 100_000 * 100
    store_ids = [base + n + 1 for n in range(stores)]
    tally = Tally()
    erp = Erp(settings, tally, set(store_ids))
    await erp.start()
    started = time.monotonic()
    try:
        await _connect_stores(settings, simulator, services, store_ids, ingest_url)
        waiting = asyncio.create_task(_wait(tally, orders, started))
        await _pay_orders(simulator, store_ids, orders, tally)
        ok = await waiting
    finally:
        await erp.close()
        # The simulated stores end with the demo: switched off, so no later run polls them.
        await services["ingest"].ctx.pool.execute(
            "UPDATE ingest.stores SET enabled = false, disabled_reason = 'switched_off',"
            " disabled_at = now() WHERE store_id = ANY($1::bigint[])",
            store_ids,
        )
        await asyncio.gather(*(r.stop(grace_s=5) for r in services.values()))
        await simulator.close()
    _summary(tally, store_ids, time.monotonic() - started, ok)
    if _OUT["stream"] is sys.stderr:
        sys.stdout.write(json.dumps(_summary_json(tally, store_ids, ok), default=str) + "\n")
    return 0 if ok else 1


async def _connect_stores(
    settings: Settings,
    simulator: Any,
    services: dict[str, Running],
    store_ids: list[int],
    ingest_url: str,
) -> None:
    cipher = cipher_from_settings(settings)
    async with aiohttp.ClientSession() as session:
        client = NuvemshopClient(
            session, api_url=simulator.api_url, user_agent=settings.nuvemshop_user_agent
        )
        for store_id in store_ids:
            token = simulator.state.add_store(store_id)
            done = await connect(
                services["ingest"].ctx.pool,
                cipher,
                client,
                store_id=store_id,
                access_token=token,
                activated_by="erp-demo-user",
                public_url=ingest_url,
                activated_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1),
            )
            _say(
                f"store {store_id} connected; webhooks registered: {len(done.webhooks_registered)}"
            )


async def _pay_orders(simulator: Any, store_ids: list[int], count: int, tally: Tally) -> None:
    rng = random.Random(7)  # noqa: S311 - demo data
    state = simulator.state
    _say(
        f"paying {count} orders across {len(store_ids)} stores (the simulator sends the webhooks) ..."
    )
    for n in range(count):
        store_id = store_ids[n % len(store_ids)]
        lines = [
            {"name": name, "price": price, "quantity": rng.randint(1, 3), "sku": f"SKU-{i}"}
            for i, (name, price) in enumerate(PRODUCTS)
            if rng.random() < 0.4
        ] or [{"name": PRODUCTS[0][0], "price": PRODUCTS[0][1], "quantity": 1}]
        order = state.add_order(
            store_id, customer=rng.choice(CUSTOMERS), products=lines, notify=False
        )
        state.mark_paid(store_id, int(order["id"]))
        if n % 10 == 0:
            # Nuvemshop sometimes delivers a webhook twice: the import still happens once.
            simulator.dispatcher.fire(store_id, "order/paid", int(order["id"]), duplicates=2)
        tally.paid += 1
        await asyncio.sleep(0.02)


async def _wait(tally: Tally, orders: int, started: float, deadline_s: float = 120.0) -> bool:
    last = ""
    while time.monotonic() - started < deadline_s:
        line = (
            f"  paid {tally.paid}/{orders} · pending sales {len(tally.pending)} · "
            f"confirmed {len(tally.confirmed)} · receivables {tally.receivables}"
        )
        if line != last:
            _say(line)
            last = line
        if len(tally.confirmed) >= orders:
            return True
        await asyncio.sleep(0.5)
    return False


def _summary_json(tally: Tally, store_ids: list[int], ok: bool) -> dict[str, Any]:
    return {
        "complete": ok,
        "stores": store_ids,
        "orders_paid": tally.paid,
        "pending_sales": len(tally.pending),
        "confirmed_sales": len(tally.confirmed),
        "receivables": tally.receivables,
        "receivables_total": tally.receivable_total,
        "stock_moved": tally.stock_moved,
        "customers_created": tally.customers_created,
        "products_created": tally.products_created,
        "warnings": tally.warnings,
    }


def _summary(tally: Tally, store_ids: list[int], elapsed: float, ok: bool) -> None:
    _say("")
    _say("summary" + ("" if ok else " (INCOMPLETE: not every order was confirmed in time)"))
    _say(f"  orders paid            {tally.paid}")
    _say(
        f"  pending sales created  {len(tally.pending)}  (customers created {tally.customers_created}, "
        f"products created {tally.products_created}, warnings {tally.warnings})"
    )
    _say(f"  sales confirmed        {len(tally.confirmed)}")
    _say(f"  receivables            {tally.receivables}  (total {tally.receivable_total})")
    _say(f"  stock moved out        {tally.stock_moved} units")
    _say(f"  elapsed                {elapsed:.1f} s")
    if tally.example is not None:
        ex = tally.example
        _say(
            f"  example: order {ex['order_id']} of store {ex['store_id']} → sale {ex['sale_id']} "
            f"for {ex['customer']['name']}, total {ex['total']}"
        )
    _say("  (the demo's stores are switched off at the end: their simulator stops with the demo)")
    _say("")
    _say("where to look:")
    _say("  RabbitMQ management UI  http://127.0.0.1:15672/#/queues  (guest/guest)")
    first = store_ids[0]
    _say(f"  nuvem-ledger integration show {first}")
    _say(f"  nuvem-ledger receivables list --store-id {first}")
    if tally.example is not None:
        _say(
            f"  nuvem-ledger sales show --store-id {tally.example['store_id']} --order-id {tally.example['order_id']}"
        )
    _say("  nuvem-ledger orders rejected")
