"""Assembles the Nuvemshop simulator as one aiohttp application: the store API
(`/{version}/{store_id}/...`), the OAuth install (`/apps/...`) and the control API (`/_sim/...`)
on the same host, sharing one `SimState`. The app owns a `WebhookDispatcher` started with the app
and closed on cleanup, which cancels deliveries still in flight.
"""

from __future__ import annotations

from aiohttp import web

from services.simulator import admin, api, oauth
from services.simulator.state import SimState
from services.simulator.webhooks import WebhookDispatcher
from services.simulator.webutil import (
    CONFIG_KEY,
    DISPATCHER_KEY,
    STATE_KEY,
    TOKEN_HEADER,
    SimConfig,
)


def create_app(
    state: SimState,
    *,
    rate_limit: bool = True,
    bucket_size: int = 40,
    leak_per_s: float = 2.0,
    token_header: str = TOKEN_HEADER,
    time_scale: float = 1.0,
    webhook_timeout_s: float = 3.0,
    allow_http_webhooks: bool = False,
    strict_last_page: bool = False,
    seed: int | None = None,
) -> web.Application:
    """The simulator app over `state`.

    The rate-limit settings become the state's defaults and reset every store's bucket;
    `time_scale` compresses the webhook retry schedule; `allow_http_webhooks` accepts plain
    `http://` webhook URLs on any host (loopback is always accepted); `strict_last_page` makes a
    page past the last answer 404 instead of `[]`; `seed` orders shuffled deliveries.
    """
    state.configure_rate_limit(enabled=rate_limit, size=bucket_size, leak_per_s=leak_per_s)
    app = web.Application(middlewares=[api.api_middleware, admin.admin_errors])
    app[STATE_KEY] = state
    app[CONFIG_KEY] = SimConfig(
        token_header=token_header,
        allow_http_webhooks=allow_http_webhooks,
        strict_last_page=strict_last_page,
    )
    dispatcher = WebhookDispatcher(
        state, time_scale=time_scale, timeout_s=webhook_timeout_s, seed=seed
    )
    app[DISPATCHER_KEY] = dispatcher

    async def start_dispatcher(_: web.Application) -> None:
        await dispatcher.start()

    async def close_dispatcher(_: web.Application) -> None:
        await dispatcher.close()

    app.on_startup.append(start_dispatcher)
    app.on_cleanup.append(close_dispatcher)
    admin.add_routes(app)
    oauth.add_routes(app)
    api.add_routes(app)
    return app
