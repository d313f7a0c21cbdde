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
import secrets
import socket
import sys
import time
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from pydantic import SecretStr

from services import system
from services.cli.demo.erp import Erp, Progress, Tally, say
from services.cli.demo.report import summary, summary_json
from services.ingest import ops as ingest
from services.ingest.tokens import generate_key
from services.mapper import ops as mapper
from services.mapper.adapters import settings as store_settings
from shared.containers import docker_answers
from shared.logging import configure_logging
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
# The showcase order (SPEC §8): paid by card in installments, with a billing and a shipping
# address, and a variant line whose SKU matches a product the ERP already has.
SHOWCASE_SKU = "CAM-NUVEM-P-AZ"
SHOWCASE_PRODUCT = "Camiseta Nuvem P azul (catálogo do ERP)"
SHOWCASE_LINE = {"name": "Camiseta Nuvem (P, Azul)", "price": "59.90", "quantity": 2}
SHOWCASE_CUSTOMER = {
    "name": "Carla Mendes",
    "identification": "52998224725",
    "address": {"street": "Rua Augusta", "number": "1500", "floor": "Apto 12"},
}
SHOWCASE_SHIPPING = {"street": "Avenida Paulista", "number": "1000", "floor": "Conj. 41"}


def _answers(url: str, port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or port), timeout=2
        ):
            return True
    except OSError:
        return False


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

    say("starting RabbitMQ and PostgreSQL containers ...")
    rabbit = RabbitMqContainer("rabbitmq:3.13-management").start()
    postgres = PostgresContainer("postgres:16", driver=None).start()
    amqp = f"amqp://guest:guest@{rabbit.get_container_host_ip()}:{rabbit.get_exposed_port(5672)}/"
    database = postgres.get_connection_url().rsplit("/", 1)[0] + "/nuvem_ledger"
    return settings.model_copy(update={"amqp_url": amqp, "database_url": database}), [
        rabbit,
        postgres,
    ]


async def _start_services(settings: Settings) -> dict[str, Running]:
    factories = system.factories()
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
    Progress.stream = sys.stderr if as_json else sys.stdout
    if settings.token_encryption_key is None:
        settings = settings.model_copy(update={"token_encryption_key": SecretStr(generate_key())})
        say("demo: TOKEN_ENCRYPTION_KEY not set, using a key generated for this run")
    if settings.connect_link_secret is None:
        settings = settings.model_copy(
            update={"connect_link_secret": SecretStr(secrets.token_urlsafe(32))}
        )
        say("demo: CONNECT_LINK_SECRET not set, using a secret generated for this run")
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
    say(f"simulator (Nuvemshop API) at {simulator.api_url}")
    services = await _start_services(settings)
    for name, running in services.items():
        say(f"{name:<7} running, health at http://127.0.0.1:{running.port}/healthz")
    base = int(time.time()) % 100_000 * 100
    store_ids = [base + n + 1 for n in range(stores)]
    tally = Tally()
    erp = Erp(settings, tally, set(store_ids))
    await erp.start()
    started = time.monotonic()
    try:
        await _connect_stores(settings, simulator, services["ingest"], store_ids)
        await _prepare_showcase(services["mapper"], store_ids[0])
        waiting = asyncio.create_task(_wait(tally, orders, started))
        await _pay_orders(simulator, store_ids, orders, tally)
        ok = await waiting
    finally:
        await erp.close()
        # The simulated stores end with the demo: switched off (and announced), so that no
        # later run polls them.
        ingest_ctx = services["ingest"].ctx
        await ingest.switch_off(ingest_ctx.pool, ingest_ctx.broker, store_ids)
        await asyncio.gather(*(r.stop(grace_s=5) for r in services.values()))
        await simulator.close()
    summary(tally, store_ids, time.monotonic() - started, ok)
    if Progress.stream is sys.stderr:
        sys.stdout.write(json.dumps(summary_json(tally, store_ids, ok), default=str) + "\n")
    return 0 if ok else 1


async def _connect_stores(
    settings: Settings, simulator: Any, ingest_service: Running, store_ids: list[int]
) -> None:
    # Webhooks go to this run's ingest, on whichever port it got.
    here = settings.model_copy(
        update={"public_base_url": f"http://127.0.0.1:{ingest_service.port}"}
    )
    for store_id in store_ids:
        token = simulator.state.add_store(store_id)
        done = await ingest.connect_store(
            ingest_service.ctx.pool,
            here,
            store_id=store_id,
            access_token=token,
            activated_by="erp-demo-user",
            activated_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1),
        )
        say(f"store {store_id} connected; webhooks registered: {len(done.webhooks_registered)}")


async def _prepare_showcase(mapper_service: Running, store_id: int) -> None:
    """The first store matches products by SKU, and its ERP catalog has the showcase's product."""
    pool = mapper_service.ctx.pool
    await store_settings.set_product_match(pool, store_id, "sku")
    async with pool.acquire() as conn:
        await mapper.add_product(
            conn,
            store_id=store_id,
            description=SHOWCASE_PRODUCT,
            price=Decimal("59.90"),
            sku=SHOWCASE_SKU,
        )
    say(f"store {store_id}: product-match sku; the ERP catalog has {SHOWCASE_SKU!r}")


def _pay_showcase(simulator: Any, store_id: int, tally: Tally) -> None:
    order = simulator.state.add_order(
        store_id,
        customer=SHOWCASE_CUSTOMER,
        products=[SHOWCASE_LINE | {"sku": SHOWCASE_SKU}],
        payment_method="credit_card",
        installments=3,
        shipping_address=SHOWCASE_SHIPPING,
        notify=False,
    )
    tally.showcase_order = (store_id, int(order["id"]))
    simulator.state.mark_paid(store_id, int(order["id"]))
    tally.paid += 1


async def _pay_orders(simulator: Any, store_ids: list[int], count: int, tally: Tally) -> None:
    rng = random.Random(7)  # noqa: S311 - demo data
    state = simulator.state
    say(
        f"paying {count} orders across {len(store_ids)} stores (the simulator sends the webhooks) ..."
    )
    _pay_showcase(simulator, store_ids[0], tally)
    for n in range(1, count):
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
            say(line)
            last = line
        if len(tally.confirmed) >= orders:
            return True
        await asyncio.sleep(0.5)
    return False
