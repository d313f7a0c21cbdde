"""Running services: connect, serve HTTP and consume until SIGTERM, then drain and exit 0.

Each service is a ``Service``: its consumers, its background loops and its extra HTTP routes.
The runtime gives every service the same life: wait for PostgreSQL (migrating it) and
RabbitMQ with one log line per failed attempt, serve ``/healthz``, ``/readyz`` and ``/metrics``
on the service's port, run consumers and loops under a ``Supervisor`` (with the broker link's
keeper among them), and on SIGTERM or SIGINT stop taking new requests and messages, let the
batch in hand finish (bounded by a grace period), hand back what was buffered, and close
connections. A supervised task that keeps failing stops the process with exit code 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from aiohttp import web

from shared.consumer import BatchConsumer
from shared.db import SchemaMigrations, connect_database
from shared.health import HealthProbe
from shared.logging import get_logger
from shared.messaging import Broker
from shared.metrics import ServiceMetrics
from shared.outbox import OutboxPublisher, OutboxRelay, backlog, inbox_size
from shared.pruning import inbox_pruner
from shared.settings import Settings
from shared.supervisor import Loop, LoopWatch, Supervisor

log = get_logger(__name__)

SHUTDOWN_GRACE_S = 20.0
METRICS_QUERY_S = 2.0
SECONDS_PER_DAY = 86400.0


@dataclass
class Context:
    """What a service is built from: settings, pool, broker, metrics and the stop signal."""

    name: str
    settings: Settings
    pool: asyncpg.Pool
    broker: Broker
    metrics: ServiceMetrics
    publisher: OutboxPublisher
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    supervisor: Supervisor | None = None


class Service:
    """Base of the three services; subclasses fill in consumers, loops and routes."""

    schema: str = ""
    # The service's own schema, migrated at its start (never another service's).
    migrations: SchemaMigrations | None = None

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def consumers(self) -> list[BatchConsumer]:
        return []

    def loops(self) -> dict[str, Loop]:
        """Background loops by name (each is supervised; the name labels its restarts)."""
        ctx = self.ctx
        relay = OutboxRelay(ctx.pool, self.schema, ctx.broker, publisher=ctx.publisher)
        pruner = inbox_pruner(
            ctx.pool,
            self.schema,
            retention_s=ctx.settings.inbox_retention_days * SECONDS_PER_DAY,
            interval_s=min(60.0, ctx.settings.inbox_retention_days * SECONDS_PER_DAY),
        )
        return {"outbox-relay": relay.run, "inbox-pruner": pruner.run}

    def add_routes(self, app: web.Application) -> None:
        """Extra routes on the service's port (ingest's webhooks and OAuth)."""

    async def refresh_metrics(self) -> None:
        """Update the service's own gauges before a scrape (read from its database)."""

    async def start(self) -> None:
        """Open what the service needs beyond pool and broker (HTTP clients...)."""

    async def close(self) -> None:
        """Release what ``start`` opened."""


ServiceFactory = Callable[[Context], Service]


def health_app(
    ctx: Context, service: Service, probe: HealthProbe, *, client_max_size: int = 64 * 1024
) -> web.Application:
    """The aiohttp app of one service: health, readiness, metrics, and the service's routes."""
    app = web.Application(client_max_size=client_max_size)

    async def healthz(_: web.Request) -> web.Response:
        why = probe.liveness_problems()
        body = {"status": "ok" if not why else "failing", "service": ctx.name, "why": why}
        return web.json_response(body, status=503 if why else 200)

    async def readyz(_: web.Request) -> web.Response:
        why = await probe.readiness_problems()
        ctx.metrics.ready.set(0 if why else 1)
        return web.json_response({"ready": not why, "why": why}, status=503 if why else 200)

    async def metrics(_: web.Request) -> web.Response:
        try:
            await asyncio.wait_for(_refresh_gauges(ctx, service), timeout=METRICS_QUERY_S)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            # The counters are still worth serving; the gauges keep their last values.
            log.warning("metrics gauges not refreshed", error=str(exc) or type(exc).__name__)
        return web.Response(body=ctx.metrics.render(), content_type="text/plain")

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    service.add_routes(app)
    return app


async def _refresh_gauges(ctx: Context, service: Service) -> None:
    """The gauges read from the database at each scrape: outbox backlog, inbox size, the
    service's own (ingest: stores and poll lag)."""
    schema = service.schema or ctx.name
    async with ctx.pool.acquire() as conn:
        rows, age = await backlog(conn, schema)
        ctx.metrics.outbox_rows.labels(schema).set(rows)
        ctx.metrics.outbox_age.labels(schema).set(age)
        ctx.metrics.inbox_rows.labels(schema).set(await inbox_size(conn, schema))
    await service.refresh_metrics()


class Running:
    """A started service: its HTTP site, its supervised tasks, and how to stop it."""

    def __init__(
        self,
        ctx: Context,
        service: Service,
        runner: web.AppRunner,
        supervisor: Supervisor,
        probe: HealthProbe,
    ) -> None:
        self.ctx = ctx
        self.service = service
        self.runner = runner
        self.supervisor = supervisor
        self.probe = probe
        self.publishing: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        return _bound_port(self.runner)

    @property
    def tasks(self) -> list[asyncio.Task[None]]:
        """Every supervised task but the outbox publisher (which drains last)."""
        return [t for t in self.supervisor.tasks.values() if t is not self.publishing]

    async def stop(self, grace_s: float = SHUTDOWN_GRACE_S) -> None:
        """Stop taking requests and messages, finish the batch in hand, close everything."""
        self.ctx.stopping.set()
        await self.runner.cleanup()
        tasks = self.tasks
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace_s)
            for task in pending:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*pending, return_exceptions=True)
        if self.publishing is not None:
            # Consumers have stopped: what they committed goes out before the connections close.
            self.ctx.publisher.draining.set()
            try:
                await asyncio.wait_for(self.publishing, timeout=grace_s)
            except TimeoutError:
                log.warning("outbox not drained in time; the relay sends the rest at next start")
        await self.service.close()
        await self.probe.close()
        await self.ctx.broker.close()
        await self.ctx.pool.close()
        log.info("service stopped", service=self.ctx.name)


async def _serve_while_starting(name: str, host: str, port: int) -> web.AppRunner:
    """Answer on the service's port while it waits for its database and broker.

    Alive (``/healthz`` 200) but not ready (``/readyz`` 503), so an orchestrator waits instead of
    restarting a process that is only waiting for a dependency.
    """

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "service": name, "starting": True})

    async def not_yet(_: web.Request) -> web.Response:
        body = {"ready": False, "why": ["starting: waiting for the database and the broker"]}
        return web.json_response(body, status=503)

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_route("*", "/{tail:.*}", not_yet)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port, reuse_address=True).start()
    return runner


def _bound_port(runner: web.AppRunner) -> int:
    for site in runner.sites:
        server = getattr(site, "_server", None)
        if server is not None and server.sockets:
            return int(server.sockets[0].getsockname()[1])
    raise RuntimeError("no listening socket")


async def start_service(
    name: str,
    factory: ServiceFactory,
    settings: Settings,
    *,
    port: int | None = None,
    host: str | None = None,
    connect_deadline: float | None = None,
) -> Running:
    """Connect, build and start one service; returns once it consumes and serves HTTP."""
    bind_host = host or settings.http_host
    pool, broker, bind_port = await _connect(
        name, factory, settings, bind_host, port=port, connect_deadline=connect_deadline
    )
    schema = getattr(factory, "schema", "") or name
    metrics = ServiceMetrics(name)
    ctx = Context(
        name=name,
        settings=settings,
        pool=pool,
        broker=broker,
        metrics=metrics,
        publisher=OutboxPublisher(pool, schema, broker),
    )
    supervisor = Supervisor(metrics, ctx.stopping)
    ctx.supervisor = supervisor
    service = factory(ctx)
    await service.start()
    watch = LoopWatch()
    probe = HealthProbe(
        service=ctx.name,
        settings=settings,
        schema=schema,
        broker=broker,
        supervisor=supervisor,
        watch=watch,
    )
    runner = web.AppRunner(health_app(ctx, service, probe), handle_signals=False, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, bind_host, bind_port, reuse_address=True).start()
    running = Running(ctx, service, runner, supervisor, probe)
    supervisor.spawn("broker-link", broker.run)
    supervisor.spawn("loop-watch", watch.run)
    for consumer in service.consumers():
        supervisor.spawn(consumer.name, consumer.run)
    for loop_name, loop in service.loops().items():
        supervisor.spawn(loop_name, loop)
    running.publishing = supervisor.spawn("outbox-publisher", ctx.publisher.run)
    log.info("service started", service=name, port=running.port)
    return running


async def _connect(
    name: str,
    factory: ServiceFactory,
    settings: Settings,
    bind_host: str,
    *,
    port: int | None,
    connect_deadline: float | None,
) -> tuple[asyncpg.Pool, Broker, int]:
    """The database (migrated) and the broker, while the HTTP port already answers the probes
    (the port it bound is kept for the service's own site)."""
    starting = await _serve_while_starting(
        name, bind_host, settings.http_port(name) if port is None else port
    )
    bind_port = _bound_port(starting)
    try:
        registered = getattr(factory, "migrations", None)
        pool = await connect_database(
            settings.database_url,
            [registered] if isinstance(registered, SchemaMigrations) else [],
            deadline=connect_deadline,
        )
        broker = Broker(settings.amqp_url, app_id=f"nuvem-ledger-{name}")
        try:
            await broker.connect(deadline=connect_deadline)
        except BaseException:
            await pool.close()
            raise
    finally:
        await starting.cleanup()
    return pool, broker, bind_port


async def run_until_signalled(
    names: list[str], factories: dict[str, ServiceFactory], settings: Settings
) -> int:
    """Start the named services in this process and run them until SIGTERM/SIGINT; exit code.

    A signal that arrives while a service is still waiting for its broker or database stops the
    wait; a service that cannot start at all (its port taken, say) stops the others and exits 1
    with one log line.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    running: list[Running] = []

    async def start_all() -> None:
        for name in names:
            running.append(await start_service(name, factories[name], settings))

    starting: asyncio.Future[Any] = asyncio.ensure_future(start_all())
    stopper: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
    await asyncio.wait([starting, stopper], return_when=asyncio.FIRST_COMPLETED)
    code = 0
    if not starting.done():
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await starting
    elif starting.exception() is not None:
        log.error("service could not start", error=str(starting.exception()))
        code = 1
    else:
        failing = [asyncio.ensure_future(r.supervisor.failed.wait()) for r in running]
        await asyncio.wait([stopper, *failing], return_when=asyncio.FIRST_COMPLETED)
        for waiter in failing:
            waiter.cancel()
        if not stop.is_set():
            log.error("a task kept failing: stopping with exit code 1 for a restart")
            code = 1
    stopper.cancel()
    log.info("stopping", services=names)
    await asyncio.gather(*(r.stop() for r in running))
    return code
