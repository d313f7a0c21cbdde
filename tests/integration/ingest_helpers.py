"""Helpers for the ingest integration tests: the running ingest's parts, waits, the OAuth dance,
signed webhooks with any body, listing clients that stop or hang, and the console command.

Everything runs against the system the ``system`` fixture (or ``start_system``) starts: the
simulator, the three services, the test's own vhost and database. Nothing is mocked.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Unpack

import aiohttp
import asyncpg
import orjson
from yarl import URL

from services.ingest.adapters import postgres as ingest_db
from services.ingest.adapters.nuvemshop import MAX_REACH, NuvemshopClient, WindowFilters
from services.ingest.app import IngestService
from services.ingest.connect_links import make_link
from services.ingest.sync import Poller
from services.simulator.webhooks import HMAC_HEADER, sign
from shared.settings import Settings
from tests.harness import System, start_system
from tests.integration import helpers
from tests.integration.helpers import Completed

# Every variable Settings reads: a child process sees only what the test gives it.
_SETTINGS_ENV = frozenset(name.upper() for name in Settings.model_fields)


# --- the running ingest ----------------------------------------------------------------------


def ingest_service(system: System) -> IngestService:
    service = system.services["ingest"].service
    assert isinstance(service, IngestService)
    return service


def ingest_pool(system: System) -> asyncpg.Pool:
    return system.services["ingest"].ctx.pool


async def start_polling_system(settings: Settings, interval_s: float = 1.0) -> System:
    """The whole system with a short poll interval (the fixture's settings poll every 300 s)."""
    return await start_system(settings.model_copy(update={"poll_interval_seconds": interval_s}))


def sim_client(system: System) -> NuvemshopClient:
    """A client of the simulator of its own (its own client-side pacing, same server bucket)."""
    return NuvemshopClient(
        system.http, api_url=system.simulator.api_url, user_agent="nuvem-ledger tests"
    )


def poller(system: System, client: NuvemshopClient | None = None) -> Poller:
    """A second Poller against the running ingest's database and broker."""
    service = ingest_service(system)
    ctx = system.services["ingest"].ctx
    return Poller(
        ctx.pool,
        ctx.broker,
        client or service.client,
        service.cipher,
        interval_s=ctx.settings.poll_interval_seconds,
    )


# --- waiting ---------------------------------------------------------------------------------


async def eventually(
    check: Callable[[], Awaitable[bool]], what: str, within: float = 10.0, every: float = 0.1
) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {within}s for {what}")
        await asyncio.sleep(every)


async def store_row(system: System, store_id: int) -> asyncpg.Record | None:
    return await ingest_pool(system).fetchrow(
        "SELECT * FROM ingest.stores WHERE store_id = $1", store_id
    )


async def store_record(system: System, store_id: int) -> ingest_db.StoreRecord:
    return (await ingest_db.load_stores(ingest_pool(system), [store_id]))[store_id]


async def first_poll_done(system: System, store_id: int, within: float = 10.0) -> dt.datetime:
    """Wait for the poll that connecting a store triggers; returns the cursor it left."""

    async def polled() -> bool:
        row = await store_row(system, store_id)
        return row is not None and row["poll_cursor"] is not None

    await eventually(polled, f"the first poll of store {store_id}", within)
    row = await store_row(system, store_id)
    assert row is not None
    cursor: dt.datetime = row["poll_cursor"]
    return cursor


async def make_due(system: System, store_id: int) -> None:
    """The store's next poll is now (as if its interval had elapsed)."""
    await ingest_pool(system).execute(
        "UPDATE ingest.stores SET next_poll_at = now() WHERE store_id = $1", store_id
    )


async def announced_rows(system: System, store_id: int) -> dict[int, asyncpg.Record]:
    rows = await ingest_pool(system).fetch(
        "SELECT * FROM ingest.orders WHERE store_id = $1", store_id
    )
    return {r["order_id"]: r for r in rows}


def per_order(system: System, routing_key: str, store_id: int) -> Counter[int]:
    """How many times each order was announced under ``routing_key``."""
    return Counter(
        int(s.body["order_id"]) for s in system.observer.of(routing_key, store_id=store_id)
    )


# --- webhooks with any body ------------------------------------------------------------------


async def post_signed(system: System, body: dict[str, Any]) -> int:
    """POST a webhook body of our choosing, signed as Nuvemshop signs it."""
    raw = orjson.dumps(body)
    headers = {
        "Content-Type": "application/json",
        HMAC_HEADER: sign(raw, system.simulator.state.client_secret),
    }
    async with system.http.post(
        f"{system.ingest_url}/webhooks/nuvemshop", data=raw, headers=headers
    ) as response:
        await response.read()
        return response.status


# --- OAuth -----------------------------------------------------------------------------------


def prepare_oauth(system: System, store_id: int) -> None:
    """Point the simulator's approval at ingest's callback and at ``store_id``.

    Ingest listens on a free port in tests, so its public URL (where webhooks are registered)
    is set to that port here, as ``PUBLIC_BASE_URL`` would be in a deployment.
    """
    system.simulator.state.redirect_url = f"{system.ingest_url}/oauth/nuvemshop/callback"
    system.simulator.state.install_store_id = store_id
    system.services["ingest"].ctx.settings.public_base_url = system.ingest_url


@dataclass(frozen=True)
class Page:
    status: int
    content_type: str
    text: str


async def get_page(system: System, url: str | URL) -> Page:
    async with system.http.get(url, allow_redirects=False) as response:
        return Page(response.status, response.content_type, await response.text())


def connect_link(system: System, user: str, *, ttl_s: int = 900) -> URL:
    """The link the ERP would hand ``user`` (signed with the test's ``CONNECT_LINK_SECRET``)."""
    secret = system.settings.connect_link_secret
    assert secret is not None
    return URL(make_link(system.ingest_url, user, secret.get_secret_value(), ttl_s=ttl_s).url)


async def start_install(system: System, user: str) -> URL:
    """``GET /connect/nuvemshop?user=..&expires=..&signature=..``: the authorize URL ingest
    redirects to."""
    async with system.http.get(connect_link(system, user), allow_redirects=False) as response:
        assert response.status == 302, await response.text()
        return URL(response.headers["Location"])


async def approve(system: System, authorize: URL) -> URL:
    """The merchant approves on Nuvemshop (the simulator): the callback URL it redirects to."""
    async with system.http.get(authorize, allow_redirects=False) as response:
        assert response.status == 302, await response.text()
        return URL(response.headers["Location"])


async def oauth_install(system: System, store_id: int, user: str) -> Page:
    """The whole install, step by step; the page the callback answers."""
    prepare_oauth(system, store_id)
    callback = await approve(system, await start_install(system, user))
    return await get_page(system, callback)


# --- listing clients that stop in the middle -------------------------------------------------


class GatedClient(NuvemshopClient):
    """Its windowed listing waits at ``gate`` before the first request (``entered`` says so)."""

    def __init__(self, session: aiohttp.ClientSession, *, api_url: str) -> None:
        super().__init__(session, api_url=api_url, user_agent="nuvem-ledger tests")
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()

    async def iter_orders_windowed(
        self,
        store_id: int,
        token: str,
        *,
        start: dt.datetime,
        end: dt.datetime,
        max_per_window: int = MAX_REACH,
        **filters: Unpack[WindowFilters],
    ) -> AsyncIterator[list[dict[str, Any]]]:
        self.entered.set()
        await self.gate.wait()
        async for page in super().iter_orders_windowed(
            store_id, token, start=start, end=end, max_per_window=max_per_window, **filters
        ):
            yield page


class HangingClient(NuvemshopClient):
    """Lists in pages of ``per_page``; after ``pages`` pages were handed over (and so committed by
    the poller, which asks for the next page only then) it sets ``committed`` and hangs, like a
    process stuck in the middle of a poll, until its task is cancelled."""

    def __init__(
        self, session: aiohttp.ClientSession, *, api_url: str, per_page: int, pages: int
    ) -> None:
        super().__init__(session, api_url=api_url, user_agent="nuvem-ledger tests")
        self.per_page = per_page
        self.pages = pages
        self.committed = asyncio.Event()

    async def iter_orders_windowed(
        self,
        store_id: int,
        token: str,
        *,
        start: dt.datetime,
        end: dt.datetime,
        max_per_window: int = MAX_REACH,
        **filters: Unpack[WindowFilters],
    ) -> AsyncIterator[list[dict[str, Any]]]:
        filters["per_page"] = self.per_page
        served = 0
        async for page in super().iter_orders_windowed(
            store_id, token, start=start, end=end, max_per_window=max_per_window, **filters
        ):
            yield page
            served += 1
            if served == self.pages:
                self.committed.set()
                await asyncio.Event().wait()


# --- the console command ---------------------------------------------------------------------


def cli_env(system: System) -> dict[str, str]:
    """The environment a command needs to act on this test's system (and nothing else)."""
    settings = system.settings
    key, link_secret = settings.token_encryption_key, settings.connect_link_secret
    assert key is not None
    assert link_secret is not None
    env = {k: v for k, v in os.environ.items() if k.upper() not in _SETTINGS_ENV}
    env |= {
        "AMQP_URL": settings.amqp_url,
        "DATABASE_URL": settings.database_url,
        "TOKEN_ENCRYPTION_KEY": key.get_secret_value(),
        "CONNECT_LINK_SECRET": link_secret.get_secret_value(),
        "NUVEMSHOP_API_URL": system.simulator.api_url,
        "NUVEMSHOP_AUTH_URL": system.simulator.auth_url,
        "NUVEMSHOP_APP_ID": system.simulator.state.app_id,
        "NUVEMSHOP_CLIENT_SECRET": system.simulator.state.client_secret,
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }
    return env


async def run_cli(system: System, cwd: Path, *args: str, within: float = 25.0) -> Completed:
    """Run ``nuvem-ledger *args`` to completion (``cwd`` keeps any ``.env`` file away)."""
    return await helpers.run_cli(*args, env=cli_env(system), cwd=cwd, within=within)
