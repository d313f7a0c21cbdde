"""The OAuth install: ``/connect/nuvemshop`` sends the merchant to Nuvemshop, the callback connects.

Only a link the ERP signed starts an install (``connect_links``): anything else is a 403 page.
The ``state`` carries the ERP user who started the connection, an expiry and a nonce, signed with
HMAC-SHA256 keyed by the app's client secret: a forged, altered or expired state is refused with
a 400 page and nothing is stored. A state is good for one callback: its nonce is recorded
(``ingest.oauth_states``) before the code is exchanged, so a second callback with the same state,
replayed or raced, is a 400 that changes nothing. The callback exchanges the code (JSON body),
stores the store enabled with its activation date and activating user (see ``connections``),
registers the webhooks, and answers a short page a person can read.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import html
import secrets
import time
from dataclasses import dataclass

import asyncpg
import orjson
from aiohttp import web

from services.ingest.adapters import postgres as db
from services.ingest.adapters.nuvemshop import NuvemshopClient, NuvemshopError, TokenExchangeError
from services.ingest.connect_links import LinkRefused, secret_from_settings, verify_link
from services.ingest.connections import connect
from services.ingest.tokens import TokenCipher
from shared.logging import get_logger
from shared.outbox import OutboxPublisher
from shared.settings import Settings

log = get_logger(__name__)

STATE_TTL_S = 600


class InvalidState(ValueError):  # noqa: N818 - the name reads as the answer it is
    """The state is not ours, was altered, or expired."""


@dataclass(frozen=True)
class State:
    user: str
    nonce: str
    expires: dt.datetime


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_state(
    user: str, secret: str, *, now: float | None = None, ttl_s: int = STATE_TTL_S
) -> str:
    issued = time.time() if now is None else now
    nonce = secrets.token_hex(16)
    payload = _b64(orjson.dumps({"u": user, "exp": int(issued + ttl_s), "n": nonce}))
    mac = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest()
    return f"{payload}.{_b64(mac)}"


def verify_state(state: str, secret: str, *, now: float | None = None) -> str:
    """The ERP user the state carries, or ``InvalidState``."""
    return read_state(state, secret, now=now).user


def read_state(state: str, secret: str, *, now: float | None = None) -> State:
    """What a genuine, unexpired state carries, or ``InvalidState``."""
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
        or not isinstance(data.get("n"), str)
    ):
        raise InvalidState("the state is not one this app issued")
    if (time.time() if now is None else now) > data["exp"]:
        raise InvalidState("the connection link expired: start again from the ERP")
    try:
        expires = dt.datetime.fromtimestamp(data["exp"], dt.UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise InvalidState("the state is not one this app issued") from exc
    return State(str(data["u"]), str(data["n"]), expires)


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
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        cipher: TokenCipher,
        client: NuvemshopClient,
        publisher: OutboxPublisher | None = None,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.cipher = cipher
        self.client = client
        # Announces a store connected again (integration.enabled) as soon as it is stored.
        self.publisher = publisher
        self.link_secret = secret_from_settings(settings)

    def _secret(self) -> str | None:
        secret = self.settings.nuvemshop_client_secret
        return secret.get_secret_value() if secret else None

    async def start(self, request: web.Request) -> web.Response:
        query = request.query
        try:
            user = verify_link(
                query.get("user"), query.get("expires"), query.get("signature"), self.link_secret
            )
        except LinkRefused as exc:
            log.warning("connect link refused", reason=str(exc))
            return page("Cannot connect", f"{exc}.", 403)
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
            claimed = read_state(state, secret)
        except InvalidState as exc:
            log.warning("OAuth callback refused", reason=str(exc))
            return page("Cannot connect", str(exc), 400)
        if not code:
            return page("Cannot connect", "Nuvemshop did not send an authorization code.", 400)
        user = claimed.user
        # Spent before anything else happens: whatever follows, this state never connects again.
        if not await db.claim_oauth_state(self.pool, claimed.nonce, claimed.expires):
            log.warning("OAuth callback refused: state already used", activated_by=user)
            return page(
                "Cannot connect",
                "This connection link was already used: start again from the ERP.",
                400,
            )
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
            publisher=self.publisher,
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
