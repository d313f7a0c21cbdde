"""ERP-signed connect links: only the ERP can start a store connection (SPEC §9).

The ERP hands its user ``{PUBLIC_BASE_URL}/connect/nuvemshop?user=U&expires=E&signature=S``,
where ``S`` is the lowercase hex HMAC-SHA256 of ``"{U}:{E}"`` keyed by ``CONNECT_LINK_SECRET`` and
``E`` is a Unix time in whole seconds. ``/connect/nuvemshop`` starts the OAuth install only for a
link whose signature matches (compared in constant time) and whose expiry has not passed, and
never for one that claims to live longer than ``MAX_TTL_S`` from now. The user becomes the
seller of every sale the store imports, so the link is the authority: the ERP decides who.

``"{U}:{E}"`` is unambiguous because ``E`` is canonical decimal (digits only, no leading zero):
the last colon always separates the two, so no other (user, expiry) pair has the same message.
Pure rules, no I/O.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from dataclasses import dataclass
from urllib.parse import urlencode

from shared.settings import Settings

PATH = "/connect/nuvemshop"
DEFAULT_TTL_S = 900
MAX_TTL_S = 7 * 24 * 3600
MIN_SECRET_CHARS = 16
MAX_USER_CHARS = 200
_EXPIRES = re.compile(r"(0|[1-9][0-9]{0,11})")


class ConnectLinkSecretError(RuntimeError):
    """``CONNECT_LINK_SECRET`` is missing or too weak (ingest refuses to start, in one line)."""


class LinkRefused(ValueError):  # noqa: N818 - the name reads as the answer it is
    """The link is not one the ERP signed, was altered, or expired."""


class BadLinkRequest(ValueError):  # noqa: N818
    """A link cannot be made as asked (the CLI says why)."""


@dataclass(frozen=True)
class ConnectLink:
    url: str
    expires: int


def signature(user: str, expires: int | str, secret: str) -> str:
    """Lowercase hex HMAC-SHA256 of ``"{user}:{expires}"`` keyed by ``secret``."""
    message = f"{user}:{expires}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def check_user(user: str) -> str:
    """The ERP user a link may name: non-empty, no surrounding blanks, no control characters."""
    if not user or user != user.strip():
        raise BadLinkRequest("the user must be non-empty, without surrounding blanks")
    if len(user) > MAX_USER_CHARS:
        raise BadLinkRequest(f"the user is longer than {MAX_USER_CHARS} characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in user):
        raise BadLinkRequest("the user contains control characters")
    return user


def make_link(
    base_url: str, user: str, secret: str, *, now: float | None = None, ttl_s: int = DEFAULT_TTL_S
) -> ConnectLink:
    """The signed link for ``user``, good for ``ttl_s`` seconds from ``now``."""
    check_user(user)
    if not 1 <= ttl_s <= MAX_TTL_S:
        raise BadLinkRequest(f"--ttl must be between 1 and {MAX_TTL_S} seconds")
    expires = int(time.time() if now is None else now) + ttl_s
    query = urlencode(
        {"user": user, "expires": expires, "signature": signature(user, expires, secret)}
    )
    return ConnectLink(f"{base_url.rstrip('/')}{PATH}?{query}", expires)


def verify_link(
    user: str | None,
    expires: str | None,
    given: str | None,
    secret: str,
    *,
    now: float | None = None,
) -> str:
    """The user of a genuine, unexpired link, or ``LinkRefused`` saying why."""
    if not secret:
        raise LinkRefused("no connect-link secret is configured")
    if not user or not expires or not given:
        raise LinkRefused("the link is incomplete: ask the ERP for a new one")
    if _EXPIRES.fullmatch(expires) is None:
        raise LinkRefused("the link is not one the ERP signed")
    try:
        given_bytes = given.strip().lower().encode("ascii")
    except UnicodeEncodeError:
        raise LinkRefused("the link is not one the ERP signed") from None
    # Bytes, not str: compare_digest refuses non-ASCII str, and a query may carry anything.
    if not hmac.compare_digest(signature(user, expires, secret).encode(), given_bytes):
        raise LinkRefused("the link is not one the ERP signed")
    moment = time.time() if now is None else now
    if int(expires) <= moment:
        raise LinkRefused("the link expired: ask the ERP for a new one")
    if int(expires) > moment + MAX_TTL_S:
        raise LinkRefused("the link claims to live longer than any link the ERP makes")
    return user


def secret_from_settings(settings: Settings) -> str:
    """``CONNECT_LINK_SECRET``, or ``ConnectLinkSecretError`` when it is missing or too short."""
    value = settings.connect_link_secret
    secret = value.get_secret_value() if value is not None else ""
    if not secret:
        raise ConnectLinkSecretError(
            "CONNECT_LINK_SECRET is not set: the ERP and ingest share it to sign connect links; "
            "generate one with `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
        )
    if len(secret) < MIN_SECRET_CHARS:
        raise ConnectLinkSecretError(
            f"CONNECT_LINK_SECRET is shorter than {MIN_SECRET_CHARS} characters: "
            "generate one with `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
        )
    return secret


def link_from_settings(settings: Settings, user: str, ttl_s: int = DEFAULT_TTL_S) -> ConnectLink:
    """What ``nuvem-ledger integration connect-link`` prints."""
    return make_link(settings.public_url(), user, secret_from_settings(settings), ttl_s=ttl_s)
