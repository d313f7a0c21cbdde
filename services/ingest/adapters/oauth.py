"""The OAuth install: ``/connect/nuvemshop`` sends the merchant to Nuvemshop, the callback connects.

The ``state`` carries the ERP user who started the connection, an expiry and a nonce, signed with
HMAC-SHA256 keyed by the app's client secret: a forged, altered or expired state is refused with
a 400 page and nothing is stored. The callback exchanges the code (JSON body), stores the store
enabled with its activation date and activating user (see ``connections``), registers the
webhooks, and answers a short page a person can read.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import secrets
import time

import asyncpg
import orjson
from aiohttp import web

from services.ingest.adapters.nuvemshop import NuvemshopClient, NuvemshopError, TokenExchangeError
from services.ingest.connections import connect
from services.ingest.tokens import TokenCipher
from shared.logging import get_logger
from shared.settings import Settings

log = get_logger(__name__)

STATE_TTL_S = 600


class InvalidState(ValueError):  # noqa: N818 - the name reads as the answer it is
    """The state is not ours, was altered, or expired."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_state(
    user: str, secret: str, *, now: float | None = None, ttl_s: int = STATE_TTL_S
) -> str:
    issued = time.time() if now is None else now
    payload = _b64(orjson.dumps({"u": user, "exp": int(issued + ttl_s), "n": secrets.token_hex(8)}))
    mac = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest()
    return f"{payload}.{_b64(mac)}"


def verify_state(state: str, secret: str, *, now: float | None = None) -> str:
    """The ERP user the state carries, or ``InvalidState``."""
    try:
        payload, mac = state.split(".", 1)
        expected = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(expected, _unb64(mac)):
            raise InvalidState("the state's signature does not match")
        data = orjson.loads(_unb64(payload))
    except (ValueError, orjson.JSONDecodeError) as exc:
        raise InvalidState("the state is not one this app issued") from exc
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("u"), str)
        or not isinstance(data.get("exp"), int)
    ):
        raise InvalidState("the state is not one this app issued")
    if (time.time() if now is None else now) > data["exp"]:
        raise InvalidState("the connection link expired: start again from the ERP")
    return str(data["u"])


def page(title: str, message: str, status: int) -> web.Response:
    body = (
        "<!doctype html><html lang='en'><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title>"
        "<body style='font-family:sans-serif;max-width:36em;margin:4em auto'>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(message)}</p></body></html>"
    )
    return web.Response(text=body, status=status, content_type="text/html")


class OAuthRoutes:
    def __init__(
        self, settings: Settings, pool: asyncpg.Pool, cipher: TokenCipher, client: NuvemshopClient
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.cipher = cipher
        self.client = client

    def _secret(self) -> str | None:
        secret = self.settings.nuvemshop_client_secret
        return secret.get_secret_value() if secret else None

    async def start(self, request: web.Request) -> web.Response:
        user = request.query.get("user", "").strip()
        if not user:
            return page("Cannot connect", "The link must name the ERP user (?user=...).", 400)
        secret, app_id = self._secret(), self.settings.nuvemshop_app_id
        if not secret or not app_id:
            return page(
                "Not configured", "NUVEMSHOP_APP_ID and NUVEMSHOP_CLIENT_SECRET are not set.", 503
            )
        base = self.settings.nuvemshop_auth_url.rstrip("/")
        target = f"{base}/apps/{app_id}/authorize?state={sign_state(user, secret)}"
        raise web.HTTPFound(target)

    async def callback(self, request: web.Request) -> web.Response:
        secret, app_id = self._secret(), self.settings.nuvemshop_app_id
        if not secret or not app_id:
            return page(
                "Not configured", "NUVEMSHOP_APP_ID and NUVEMSHOP_CLIENT_SECRET are not set.", 503
            )
        code, state = request.query.get("code", ""), request.query.get("state", "")
        try:
            user = verify_state(state, secret)
        except InvalidState as exc:
            log.warning("OAuth callback refused", reason=str(exc))
            return page("Cannot connect", str(exc), 400)
        if not code:
            return page("Cannot connect", "Nuvemshop did not send an authorization code.", 400)
        try:
            grant = await self.client.exchange_code(
                self.settings.nuvemshop_auth_url, app_id, secret, code
            )
        except TokenExchangeError as exc:
            log.warning("OAuth code exchange refused", error=str(exc))
            return page("Cannot connect", f"Nuvemshop refused the authorization: {exc}", 400)
        except NuvemshopError as exc:
            log.warning("OAuth code exchange failed", error=str(exc))
            return page("Cannot connect", "Nuvemshop could not be reached; please try again.", 502)
        done = await connect(
            self.pool,
            self.cipher,
            self.client,
            store_id=grant.store_id,
            access_token=grant.access_token,
            activated_by=user,
            public_url=self.settings.public_url(),
        )
        what = "reconnected" if not done.created else "connected"
        note = (
            ""
            if done.webhook_error is None
            else " Webhooks could not be registered; orders are still polled."
        )
        log.info(
            "store connected through OAuth",
            store_id=grant.store_id,
            activated_by=user,
            created=done.created,
        )
        return page(
            "Connected", f"Store {grant.store_id} is {what} to the ERP (user {user}).{note}", 200
        )


def add_oauth_routes(app: web.Application, routes: OAuthRoutes) -> None:
    app.router.add_get("/connect/nuvemshop", routes.start)
    app.router.add_get("/oauth/nuvemshop/callback", routes.callback)
