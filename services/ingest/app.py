"""Composition root of ingest: the webhook receiver, the webhook consumer and the outbox relay."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from services.ingest import opsapi
from services.ingest.adapters import postgres as db
from services.ingest.adapters.http import WebhookReceiver, add_webhook_routes
from services.ingest.adapters.nuvemshop import NuvemshopClient
from services.ingest.adapters.oauth import OAuthRoutes, add_oauth_routes
from services.ingest.adapters.trace import TracePruner
from services.ingest.connect_links import secret_from_settings
from services.ingest.handlers import SCHEMA
from services.ingest.migrations import MIGRATIONS
from services.ingest.sync import OrderReader, Poller
from services.ingest.tokens import TokenCipher, cipher_from_settings
from services.ingest.webhooks import INGEST, Webhooks
from shared.consumer import BatchConsumer
from shared.opsapi import add_ops_routes, ops_token
from shared.runtime import SECONDS_PER_DAY, Context, Service
from shared.settings import Settings
from shared.supervisor import Loop
from shared.topology import INGEST_WEBHOOKS
from shared.unitofwork import SessionHandler, consumer


class IngestService(Service):
    schema = SCHEMA
    migrations = MIGRATIONS

    @staticmethod
    def check_settings(settings: Settings) -> None:
        """Refuse to start without a usable token key or connect-link secret, in one line, before
        waiting for anything."""
        cipher_from_settings(settings)
        secret_from_settings(settings)

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        settings = ctx.settings
        self.cipher: TokenCipher = cipher_from_settings(settings)
        secret_from_settings(settings)  # refuses to start without the connect-link secret
        secret = settings.nuvemshop_client_secret
        self.receiver = WebhookReceiver(
            ctx.broker,
            secret.get_secret_value() if secret else None,
            ctx.metrics,
            queue_timeout_s=settings.webhook_queue_timeout_s,
        )
        self._session: aiohttp.ClientSession | None = None
        self._client: NuvemshopClient | None = None

    @property
    def client(self) -> NuvemshopClient:
        if self._client is None:
            raise RuntimeError("ingest not started")
        return self._client

    async def start(self) -> None:
        self._session = aiohttp.ClientSession()
        self._client = NuvemshopClient(
            self._session,
            api_url=self.ctx.settings.nuvemshop_api_url,
            token_header=self.ctx.settings.nuvemshop_token_header,
            user_agent=self.ctx.settings.nuvemshop_user_agent,
            max_retries=self.ctx.settings.nuvemshop_max_retries,
            on_answer=self.ctx.metrics.api_answer,
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def consumers(self) -> list[BatchConsumer]:
        ctx = self.ctx
        webhooks = Webhooks(
            ctx.pool,
            OrderReader(self.client, self.cipher),
            ctx.metrics,
            amqp_url=ctx.settings.amqp_url,
        )
        queue = INGEST_WEBHOOKS.name
        return [consumer(ctx, SCHEMA, queue, INGEST, SessionHandler(INGEST.on(queue), webhooks))]

    def loops(self) -> dict[str, Loop]:
        ctx = self.ctx
        poller = Poller(
            ctx.pool,
            ctx.broker,
            self.client,
            self.cipher,
            interval_s=ctx.settings.poll_interval_seconds,
            publisher=ctx.publisher,
            metrics=ctx.metrics,
        )
        retention_s = ctx.settings.trace_retention_days * SECONDS_PER_DAY
        pruner = TracePruner(ctx.pool, retention_s=retention_s, interval_s=min(3600.0, retention_s))
        return {**super().loops(), "poller": poller.run, "trace-pruner": pruner.run}

    async def refresh_metrics(self) -> None:
        """Stores by state, the poll interval and the poll lag's quantiles over enabled stores."""
        metrics = self.ctx.metrics
        metrics.poll_interval.set(self.ctx.settings.poll_interval_seconds)
        enabled, disabled = await db.store_lags(self.ctx.pool)
        metrics.stores.labels("enabled").set(len(enabled))
        metrics.stores.labels("disabled").set(disabled)
        metrics.set_poll_lag(enabled)

    def add_routes(self, app: web.Application) -> None:
        add_ops_routes(
            app,
            service="ingest",
            token=ops_token(self.ctx.settings),
            operations=opsapi.operations(self.ctx.pool),
            metrics=self.ctx.metrics,
        )
        add_webhook_routes(app, self.receiver)
        routes = OAuthRoutes(
            self.ctx.settings, self.ctx.pool, self.cipher, self.client, self.ctx.publisher
        )
        add_oauth_routes(app, routes)
