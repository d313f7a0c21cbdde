"""Ingest's HTTP routes: the Nuvemshop webhook receiver (the main URL and the LGPD ones).

A webhook is a prompt, not the data: it is checked (HMAC over the raw body, in constant time),
parsed, and durably queued on ``ingest.webhooks`` with a publisher confirm before the 2xx goes
back. The order itself is fetched later by the consumer. Nuvemshop waits 3 seconds for an
answer and retries otherwise, so a broker that is away (the link reconnecting: answered at once)
or cannot confirm in time gets a 503 (retry) rather than a 2xx that would lose the event.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from services.ingest import domain, lgpd
from shared.contracts import WebhookReceived
from shared.logging import get_logger
from shared.messaging import Broker, PublishError, correlation, envelope
from shared.metrics import ServiceMetrics

log = get_logger(__name__)

MAX_WEBHOOK_BYTES = 64 * 1024
# The longest a webhook waits for the broker's confirm (WEBHOOK_QUEUE_TIMEOUT_S): 2.5 s leaves
# headroom under Nuvemshop's 3-second answer deadline. A broker that is away (the link down) is
# answered 503 at once, and one that confirms nothing at all for STALL_S within 1 s.
QUEUE_DEADLINE_S = 2.5
SIGNATURE_HEADER = "x-linkedstore-hmac-sha256"

Parse = Callable[[bytes], domain.Webhook]


class WebhookReceiver:
    def __init__(
        self,
        broker: Broker,
        secret: str | None,
        metrics: ServiceMetrics,
        *,
        queue_timeout_s: float = QUEUE_DEADLINE_S,
    ) -> None:
        self.broker = broker
        self.secret = secret
        self.metrics = metrics
        self.queue_timeout_s = queue_timeout_s

    def _answer(self, status: int, body: dict[str, str]) -> web.Response:
        self.metrics.http_requests.labels("/webhooks/nuvemshop", str(status)).inc()
        return web.json_response(body, status=status)

    async def handle(
        self, request: web.Request, parse: Parse = lgpd.parse_any_webhook
    ) -> web.Response:
        if (request.content_length or 0) > MAX_WEBHOOK_BYTES:
            return self._answer(413, {"error": "webhook body over 64 KiB"})
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._answer(413, {"error": "webhook body over 64 KiB"})
        except RequestPayloadError:
            # A Content-Encoding the body does not match (found by the fuzz test: it was a 500).
            return self._answer(400, {"error": "body could not be read"})
        signature = request.headers.get(SIGNATURE_HEADER)
        if self.secret is None or not domain.verify_signature(body, signature, self.secret):
            log.warning(
                "webhook refused: signature does not match", has_signature=signature is not None
            )
            return self._answer(401, {"error": "signature does not match"})
        try:
            hook = parse(body)
        except domain.InvalidWebhook as exc:
            return self._answer(400, {"error": str(exc)})
        event = WebhookReceived(
            store_id=hook.store_id,
            event=hook.event,
            id=hook.id,
            received_at=dt.datetime.now(dt.UTC),
            # LGPD requests name customers and orders in their body: what they need is kept.
            payload=hook.payload,
        )
        env = envelope(
            event,
            message_id=f"webhook:{uuid.uuid4()}",
            correlation_id=correlation(hook.store_id, hook.id),
        )
        try:
            # Mandatory: a webhook no queue took (the queue deleted, a binding missing) is
            # returned by the broker and answered 503, never a 2xx for a lost event.
            await self.broker.publish(
                env, confirm_timeout=self.queue_timeout_s, mandatory=True, give_up_stalled=True
            )
        except PublishError as exc:
            log.error(
                "webhook could not be queued",
                store_id=hook.store_id,
                error=str(exc) or type(exc).__name__,
            )
            return self._answer(503, {"error": "could not queue the webhook, retry later"})
        self.metrics.webhooks_received.labels(hook.event).inc()
        return self._answer(200, {"status": "queued"})

    def lgpd_handler(self, event: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        """The receiver of one LGPD URL: its event comes from the URL, not from the body."""

        def parse(body: bytes) -> domain.Webhook:
            return lgpd.parse_lgpd_webhook(body, event)

        async def handle(request: web.Request) -> web.Response:
            return await self.handle(request, parse)

        return handle


def add_webhook_routes(app: web.Application, receiver: WebhookReceiver) -> None:
    app.router.add_post(lgpd.WEBHOOK_PATH, receiver.handle)
    for slug, event in lgpd.LGPD_ROUTES.items():
        app.router.add_post(f"{lgpd.WEBHOOK_PATH}/{slug}", receiver.lgpd_handler(event))
