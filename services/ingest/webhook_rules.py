"""Ingest's pure rules for webhooks: which events there are, reading a webhook body, and
checking its signature, without any I/O.

A body that is not a Nuvemshop webhook raises ``InvalidWebhook`` naming the field and value
(the receiver answers 400). ``services.ingest.domain`` re-exports these names.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from services.ingest.reading import quote, read_id

ORDER_EVENTS: Final = frozenset({"order/paid", "order/updated", "order/cancelled", "order/voided"})
LGPD_EVENTS: Final = frozenset({"store/redact", "customers/redact", "customers/data_request"})
APP_UNINSTALLED: Final = "app/uninstalled"


class InvalidWebhook(ValueError):  # noqa: N818 -- the name other services catch
    """A webhook body that is not a Nuvemshop webhook (the receiver answers 400)."""


@dataclass(frozen=True, slots=True)
class Webhook:
    """A webhook notification: which store, what happened, and to which record (order id)."""

    store_id: int
    event: str
    id: int | None
    # LGPD events only: what the request needs from the body, checked and rebuilt (never the raw
    # body, whose junk could be nested past what the queue's JSON writer takes).
    payload: dict[str, Any] | None = field(default=None, compare=False)


def _webhook_id(value: object, field: str) -> int:
    result = read_id(value)
    if result is None:
        raise InvalidWebhook(f"{field}: not a positive integer id: {quote(value)}")
    return result


def read_object(body: bytes) -> dict[str, Any]:
    """A webhook body as a JSON object, or ``InvalidWebhook``.

    orjson, for the main URL and the LGPD ones alike, and for the receiver when it keeps an LGPD
    body: one parser for every reading of a webhook, so a body accepted here is never refused
    later (json took NaN and Infinity, which orjson refuses: a signed one answered 500). Bad
    JSON, bad UTF-8, NaN, a BOM, integers past 64 bits and absurd nesting all land here.
    """
    try:
        decoded = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InvalidWebhook("body is not JSON") from None
    if not isinstance(decoded, dict):
        raise InvalidWebhook(f"body is not a JSON object: {type(decoded).__name__}")
    return decoded


def parse_webhook(body: bytes) -> Webhook:
    """Read a webhook body ``{"store_id", "event", "id"}``; ``id`` is required for ``order/*``.

    Raises ``InvalidWebhook`` saying what is wrong.
    """
    decoded = read_object(body)
    event = decoded.get("event")
    if not isinstance(event, str) or not event.strip():
        raise InvalidWebhook(f"event: missing or not a name: {quote(event)}")
    if decoded.get("store_id") is None:
        raise InvalidWebhook("store_id: missing")
    store_id = _webhook_id(decoded["store_id"], "store_id")
    if decoded.get("id") is None:
        # Only order events need the id: the receiver fetches that order. LGPD and app events
        # identify the store alone.
        if event.startswith("order/"):
            raise InvalidWebhook(f"id: missing for {event}")
        return Webhook(store_id=store_id, event=event, id=None)
    return Webhook(store_id=store_id, event=event, id=_webhook_id(decoded["id"], "id"))


def verify_signature(body: bytes, signature: str | None, secret: str) -> bool:
    """Check ``x-linkedstore-hmac-sha256``: lowercase hex HMAC-SHA256 of the raw body.

    An empty secret verifies nothing, since anyone could compute a signature with it.
    """
    if not signature or not secret:
        return False
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    # Bytes, not str: compare_digest refuses non-ASCII str, and a header may carry anything.
    return hmac.compare_digest(expected.encode(), signature.strip().lower().encode())
