"""The store API under `/{version}/{store_id}/...` (`v1`, `2025-03`, any `vN` or `YYYY-MM`):
orders and webhooks. A middleware applies Nuvemshop's gatekeeping in this order — missing
`User-Agent` 400, wrong or missing token (header name configurable, value `bearer <token>` with a
lowercase `bearer`) 401, suspended store 402, bucket overflow 429, a POST/PUT body without
`Content-Type: application/json` 415 — stamps the `x-rate-limit-*` headers on every response for a
known store and counts it. Webhook URLs must be HTTPS, except `http://` to 127.0.0.1/localhost/::1
(the simulator runs locally) or any `http://` with `allow_http_webhooks`; an (event, url) pair
already registered is refused with 422.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from yarl import URL

from services.simulator.listing import (
    QueryError,
    link_header,
    paginate,
    present,
    wanted_fields,
    wants_fulfillment,
    with_hostile,
)
from services.simulator.model import Store
from services.simulator.webutil import (
    CONFIG_KEY,
    STATE_KEY,
    ApiError,
    json_response,
    not_found,
    read_json,
)

VERSION = r"{version:v\d+|\d{4}-\d{2}}"
PREFIX = f"/{VERSION}/{{store_id:\\d+}}"
# The events of the reference's webhook table (resources/webhook). The LGPD events are not among
# them: their URLs are set in the app's partner settings, not registered through the API.
KNOWN_EVENTS = frozenset(
    [f"order/{e}" for e in ("created", "updated", "paid", "packed", "fulfilled", "cancelled")]
    + [f"order/{e}" for e in ("edited", "pending", "voided", "unpacked", "custom_fields_updated")]
    + [f"app/{e}" for e in ("uninstalled", "suspended", "resumed")]
    + [f"{r}/{e}" for r in ("product", "category", "customer", "location", "order_custom_field")
       for e in ("created", "updated", "deleted")]
    + [f"product_variant_custom_field/{e}" for e in ("created", "updated", "deleted")]
    + ["product_variant/custom_fields_updated", "domain/updated", "subscription/updated"]
    + ["fulfillment/updated", "fulfillment_order/status_updated"]
    + [f"fulfillment_order/tracking_event_{e}" for e in ("created", "updated", "deleted")]
)  # fmt: skip
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
UNAUTHORIZED = {"code": 401, "message": "Unauthorized", "description": "Invalid access token"}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Test controls (not Nuvemshop behaviour we claim, but answers a real API can give): a token
# without a scope the call needs (403), an outage (500), a body that is not JSON, and an answer
# without its paging and rate-limit headers.
FAULTS = frozenset({"403", "500", "invalid_json", "no_headers"})
FORBIDDEN = {"code": 403, "message": "Forbidden", "description": "Missing scope for this action"}


def _error(status: int, body: dict[str, object]) -> web.Response:
    return json_response(body, status)


def _token(request: web.Request) -> str | None:
    value = request.headers.get(request.app[CONFIG_KEY].token_header, "")
    scheme, _, token = value.partition(" ")
    if scheme != "bearer" or not token.strip():
        return None
    return token.strip()


async def _gatekeep(request: web.Request, handler: Handler, store: Store | None) -> web.Response:
    if not request.headers.get("User-Agent", "").strip():
        return _error(400, {"error": "The User-Agent header is required (app name and contact)"})
    token = _token(request)
    if (
        store is None
        or token is None
        or request.app[STATE_KEY].authenticate(store.store_id, token) is None
    ):
        return _error(401, UNAUTHORIZED)
    if store.suspended:
        return _error(
            402, {"code": 402, "message": "Payment Required", "description": "Store suspended"}
        )
    if not store.bucket.take():
        return _error(
            429,
            {"code": 429, "message": "Too Many Requests", "description": "Rate limit exceeded"},
        )
    if request.method in ("POST", "PUT") and request.content_type != "application/json":
        return _error(415, {"error": "Content-Type must be application/json"})
    route = request.match_info.route.name or ""
    if store.failing_reads and route in ("api-order", "api-orders"):
        status = store.failing_reads.pop(0)
        return _error(status, {"code": status, "message": "Service Unavailable"})
    if store.fault == "403":
        return _error(403, FORBIDDEN)
    if store.fault == "500":
        return _error(500, {"code": 500, "message": "Internal Server Error"})
    if store.fault == "invalid_json":
        return web.Response(status=200, text="<html>maintenance</html>", content_type="text/html")
    try:
        response = await handler(request)
    except ApiError as exc:
        return _error(exc.status, exc.body)
    except QueryError as exc:
        return _error(exc.status, exc.body)
    assert isinstance(response, web.Response)
    return response


@web.middleware
async def api_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Gatekeeping, rate-limit headers and counters for the store API routes."""
    name = request.match_info.route.name or ""
    if not name.startswith("api-"):
        return await handler(request)
    store = request.app[STATE_KEY].stores.get(int(request.match_info["store_id"]))
    response = await _gatekeep(request, handler, store)
    if store is not None and store.fault == "no_headers":
        for header in ("x-total-count", "Link"):
            response.headers.pop(header, None)
    elif store is not None:
        response.headers.update(store.bucket.headers())
    if store is not None:
        store.counters.record(response.status, name)
    return response


def _store(request: web.Request) -> Store:
    return request.app[STATE_KEY].store(int(request.match_info["store_id"]))


def _int(request: web.Request, key: str, what: str) -> int:
    try:
        return int(request.match_info[key])
    except ValueError:
        raise not_found(f"{what} {request.match_info[key]} not found") from None


async def list_orders(request: web.Request) -> web.Response:
    """`GET /orders`."""
    store = _store(request)
    params = request.query
    page = paginate(
        store.sorted_orders(), params, strict_last_page=request.app[CONFIG_KEY].strict_last_page
    )
    fields, fulfillment = wanted_fields(params), wants_fulfillment(params)
    with_customer = "read_customers" in store.scopes.split(",")
    if fulfillment:
        store.counters.aggregate_reads += len(page.items)
    body = [
        with_hostile(
            present(r, fields=fields, fulfillment=fulfillment, with_customer=with_customer),
            store.hostile.get(r.id),
        )
        for r in page.items
    ]
    headers = {"x-total-count": str(page.total)}
    link = link_header(request.url, page)
    if link:
        headers["Link"] = link
    return json_response(body, headers=headers)


async def get_order(request: web.Request) -> web.Response:
    """`GET /orders/{id}`."""
    store = _store(request)
    order_id = _int(request, "order_id", "Order")
    record = store.orders.get(order_id)
    if record is None:
        raise not_found(f"Order {order_id} not found")
    params = request.query
    if wants_fulfillment(params):
        store.counters.aggregate_reads += 1
    body = present(
        record,
        fields=wanted_fields(params),
        fulfillment=wants_fulfillment(params),
        with_customer="read_customers" in store.scopes.split(","),
    )
    return json_response(with_hostile(body, store.hostile.get(order_id)))


def _validate_webhook(event: object, url: object, allow_http: bool) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    if not event:
        errors["event"] = ["can't be blank"]
    elif not isinstance(event, str) or event not in KNOWN_EVENTS:
        errors["event"] = ["is not a valid event"]
    if not url:
        errors["url"] = ["can't be blank"]
    elif not isinstance(url, str):
        errors["url"] = ["must be a string"]
    else:
        parsed = URL(url)
        secure = parsed.scheme == "https" and bool(parsed.host)
        local = parsed.scheme == "http" and (allow_http or parsed.host in LOOPBACK)
        if not (secure or local):
            errors["url"] = ["must be an HTTPS URL"]
    return errors


async def create_webhook(request: web.Request) -> web.Response:
    """`POST /webhooks {"event", "url"}` → 201."""
    store = _store(request)
    payload = await read_json(request)
    event, url = payload.get("event"), payload.get("url")
    errors = _validate_webhook(event, url, request.app[CONFIG_KEY].allow_http_webhooks)
    if not errors and any(h.event == event and h.url == url for h in store.webhooks.values()):
        errors["url"] = ["has already been taken for this event"]
    if errors:
        raise ApiError(422, errors)
    assert isinstance(event, str)
    assert isinstance(url, str)
    hook = request.app[STATE_KEY].register_webhook(store.store_id, event, url)
    return json_response(hook.to_json(), 201)


async def list_webhooks(request: web.Request) -> web.Response:
    """`GET /webhooks` (optional `event` and `url` filters)."""
    store = _store(request)
    event, url = request.query.get("event"), request.query.get("url")
    return json_response(
        [
            hook.to_json()
            for hook in store.webhooks.values()
            if (event is None or hook.event == event) and (url is None or hook.url == url)
        ]
    )


async def get_webhook(request: web.Request) -> web.Response:
    """`GET /webhooks/{id}`."""
    hook = _store(request).webhooks.get(_int(request, "webhook_id", "Webhook"))
    if hook is None:
        raise not_found(f"Webhook {request.match_info['webhook_id']} not found")
    return json_response(hook.to_json())


async def update_webhook(request: web.Request) -> web.Response:
    """`PUT /webhooks/{id} {"event"?, "url"?}`."""
    store = _store(request)
    hook = store.webhooks.get(_int(request, "webhook_id", "Webhook"))
    if hook is None:
        raise not_found(f"Webhook {request.match_info['webhook_id']} not found")
    payload = await read_json(request)
    event, url = payload.get("event", hook.event), payload.get("url", hook.url)
    errors = _validate_webhook(event, url, request.app[CONFIG_KEY].allow_http_webhooks)
    if errors:
        raise ApiError(422, errors)
    assert isinstance(event, str)
    assert isinstance(url, str)
    hook.event, hook.url, hook.updated_at = event, url, request.app[STATE_KEY].now()
    return json_response(hook.to_json())


async def delete_webhook(request: web.Request) -> web.Response:
    """`DELETE /webhooks/{id}` → 200 `{}`."""
    store = _store(request)
    webhook_id = _int(request, "webhook_id", "Webhook")
    if not request.app[STATE_KEY].delete_webhook(store.store_id, webhook_id):
        raise not_found(f"Webhook {webhook_id} not found")
    return json_response({})


async def unknown_resource(request: web.Request) -> web.Response:
    """Anything else under a store answers the API's 404 (after the gatekeeping)."""
    raise not_found(f"{request.path} is not simulated")


def add_routes(app: web.Application) -> None:
    """Register the store API."""
    app.router.add_get(f"{PREFIX}/orders", list_orders, name="api-orders")
    app.router.add_get(f"{PREFIX}/orders/{{order_id}}", get_order, name="api-order")
    app.router.add_get(f"{PREFIX}/webhooks", list_webhooks, name="api-webhooks")
    app.router.add_post(f"{PREFIX}/webhooks", create_webhook, name="api-webhooks-create")
    app.router.add_get(f"{PREFIX}/webhooks/{{webhook_id}}", get_webhook, name="api-webhook")
    app.router.add_put(
        f"{PREFIX}/webhooks/{{webhook_id}}", update_webhook, name="api-webhook-update"
    )
    app.router.add_delete(
        f"{PREFIX}/webhooks/{{webhook_id}}", delete_webhook, name="api-webhook-delete"
    )
    app.router.add_route("*", f"{PREFIX}/{{tail:.*}}", unknown_resource, name="api-unknown")
