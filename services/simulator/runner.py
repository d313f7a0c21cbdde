"""Runs the simulator inside the caller's event loop (tests, the demo): `start_simulator` binds
the app (port 0 picks a free port) and returns a `Running` handle with the base URLs the ingest
service is configured with — `api_url` for `NUVEMSHOP_API_URL` (…/v1) and `auth_url` for
`NUVEMSHOP_AUTH_URL` — plus the state and the webhook dispatcher, and `close()`.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType
from typing import Any

from aiohttp import web

from services.simulator.app import create_app
from services.simulator.state import SimState
from services.simulator.webhooks import WebhookDispatcher
from services.simulator.webutil import DISPATCHER_KEY


@dataclass
class Running:
    """A simulator serving on `host:port`."""

    state: SimState
    app: web.Application
    runner: web.AppRunner
    host: str
    port: int

    @property
    def url(self) -> str:
        """Base URL, e.g. `http://127.0.0.1:8090`."""
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host  # noqa: S104
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    @property
    def api_url(self) -> str:
        """`NUVEMSHOP_API_URL`: the base URL plus `/v1`."""
        return f"{self.url}/v1"

    @property
    def auth_url(self) -> str:
        """`NUVEMSHOP_AUTH_URL`: the base URL."""
        return self.url

    @property
    def dispatcher(self) -> WebhookDispatcher:
        """The app's webhook dispatcher (faults, log, `fire`, `wait_idle`)."""
        return self.app[DISPATCHER_KEY]

    async def close(self) -> None:
        """Stop serving and cancel webhook deliveries in flight."""
        await self.runner.cleanup()

    async def __aenter__(self) -> Running:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


async def start_simulator(
    state: SimState | None = None, host: str = "127.0.0.1", port: int = 0, **opts: Any
) -> Running:
    """Serve a simulator over `state` (a fresh one by default); `opts` go to `create_app`."""
    state = state if state is not None else SimState()
    app = create_app(state, **opts)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = runner.addresses[0][1] if runner.addresses else port
    return Running(state, app, runner, host, int(bound))
