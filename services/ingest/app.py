"""Composition root of ingest: the webhook receiver, the webhook consumer and the outbox relay."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from services.ingest.adapters.http import WebhookReceiver, add_webhook_routes
from services.ingest.adapters.nuvemshop import NuvemshopClient
from services.ingest.handlers import SCHEMA, WebhookHandler
from services.ingest.tokens import TokenCipher, cipher_from_settings
from shared.consumer import BatchConsumer
from shared.contracts import WebhookReceived
from shared.runtime import Context, Service
from shared.topology import INGEST_WEBHOOKS


class IngestService(Service):
    schema = SCHEMA

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        settings = ctx.settings
        self.cipher: TokenCipher = cipher_from_settings(settings)
        secret = settings.nuvemshop_client_secret
        self.receiver = WebhookReceiver(
            ctx.broker, secret.get_secret_value() if secret else None, ctx.metrics
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
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def consumers(self) -> list[BatchConsumer]:
        ctx = self.ctx
        return [
            BatchConsumer(
                broker=ctx.broker,
                pool=ctx.pool,
                schema=SCHEMA,
                queue=INGEST_WEBHOOKS.name,
                models={WebhookReceived.routing_key: WebhookReceived},
                handler=WebhookHandler(ctx.pool, self.client, self.cipher),
                metrics=ctx.metrics,
                batch_size=ctx.settings.batch_size,
                batch_wait_ms=ctx.settings.batch_wait_ms,
            )
        ]

    def add_routes(self, app: web.Application) -> None:
        add_webhook_routes(app, self.receiver)
