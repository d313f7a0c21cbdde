"""The LGPD webhooks: one URL per event, bodies without an ``event`` field (pure rules, no I/O).

Nuvemshop posts the three LGPD events to URLs of their own, set in the app's partner settings
(not registered through the API), each body signed like every webhook:

- ``/webhooks/nuvemshop/store-redact``: ``{"store_id": ..}``;
- ``/webhooks/nuvemshop/customers-redact``: ``{"store_id", "customer": {id, email, phone,
  identification}, "orders_to_redact": [..]}``;
- ``/webhooks/nuvemshop/customers-data-request``: ``{"store_id", "customer": {..},
  "orders_requested": [..], "data_request": {"id": ..}}``.

The URL names the event. A body is refused (400) when it is not a JSON object, has no store id,
names another event than its URL, or, for a customer event, does not say which customer, lists
orders that are not ids, or (data request) has no request id: what is queued is always
something the consumer can act on.
"""

from __future__ import annotations

from typing import Any, Final

from pydantic import ValidationError

from services.ingest.domain import InvalidWebhook, Webhook, parse_webhook
from services.ingest.webhook_rules import read_object
from shared.contracts import PrivacyCustomer

WEBHOOK_PATH: Final = "/webhooks/nuvemshop"
# URL slug -> event
LGPD_ROUTES: Final = {
    "store-redact": "store/redact",
    "customers-redact": "customers/redact",
    "customers-data-request": "customers/data_request",
}
_SLUGS: Final = {event: slug for slug, event in LGPD_ROUTES.items()}
_ORDERS_FIELD: Final = {
    "customers/redact": "orders_to_redact",
    "customers/data_request": "orders_requested",
}
_MAX_ID: Final = 2**63 - 1


def webhook_url(public_url: str, event: str) -> str:
    """Where Nuvemshop posts ``event``: the LGPD events' own URLs, the main one for the rest."""
    base = f"{public_url.rstrip('/')}{WEBHOOK_PATH}"
    slug = _SLUGS.get(event)
    return base if slug is None else f"{base}/{slug}"


def _id(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 19:
        value = int(value)
    if isinstance(value, int) and 0 < value <= _MAX_ID:
        return value
    return None


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _customer(body: dict[str, Any]) -> dict[str, Any]:
    customer = body.get("customer")
    if not isinstance(customer, dict):
        raise InvalidWebhook(f"customer: missing or not an object: {_short(customer)}")
    try:
        read = PrivacyCustomer.model_validate(customer)
    except ValidationError as exc:
        where = ".".join(str(p) for p in exc.errors()[0]["loc"])
        raise InvalidWebhook(f"customer.{where}: not readable") from None
    if not any((read.id, read.email, read.phone, read.identification)):
        raise InvalidWebhook("customer: names nobody (no id, email, phone or identification)")
    if read.id is not None and _id(read.id) is None:
        raise InvalidWebhook(f"customer.id: not an id: {_short(read.id)}")
    return read.model_dump(exclude_none=True)


def _orders(body: dict[str, Any], field: str) -> list[int]:
    orders = body.get(field)
    if orders is None:
        return []
    if not isinstance(orders, list):
        raise InvalidWebhook(f"{field}: not a list: {_short(orders)}")
    ids = []
    for order in orders:
        read = _id(order)
        if read is None:
            raise InvalidWebhook(f"{field}: not an order id: {_short(order)}")
        ids.append(read)
    return ids


def parse_lgpd_webhook(body: bytes, event: str) -> Webhook:
    """Read the body posted to ``event``'s own URL, or ``InvalidWebhook`` saying what is wrong."""
    decoded = read_object(body)
    named = decoded.get("event")
    if named is not None and named != event:
        raise InvalidWebhook(f"event: {_short(named)} posted to the {event} URL")
    store_id = _id(decoded.get("store_id"))
    if store_id is None:
        raise InvalidWebhook(f"store_id: missing or not an id: {_short(decoded.get('store_id'))}")
    payload: dict[str, Any] = {"store_id": store_id}
    if event in _ORDERS_FIELD:
        payload["customer"] = _customer(decoded)
        payload[_ORDERS_FIELD[event]] = _orders(decoded, _ORDERS_FIELD[event])
    if event == "customers/data_request":
        request = decoded.get("data_request")
        request_id = _id(request.get("id")) if isinstance(request, dict) else None
        if request_id is None:
            raise InvalidWebhook(f"data_request: missing or without an id: {_short(request)}")
        payload["data_request"] = {"id": request_id}
    return Webhook(store_id=store_id, event=event, id=None, payload=payload)


def parse_any_webhook(body: bytes) -> Webhook:
    """The main URL: any event; an LGPD event posted there is read by its own URL's rules, so
    what is queued for it is always something the consumer can act on."""
    hook = parse_webhook(body)
    if hook.event in _ORDERS_FIELD or hook.event == "store/redact":
        return parse_lgpd_webhook(body, hook.event)
    return hook
