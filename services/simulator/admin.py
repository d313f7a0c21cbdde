"""The control API under `/_sim/`, JSON in and out, without auth or rate limit, so that another
process (the demo, a CLI, a black-box test) can drive the simulator: create stores and orders (in
bulk too), pay, cancel, void, refund or edit orders, revoke, reinstall, uninstall or suspend a
store, read and reset the request counters, change the rate limit, steer the OAuth approval, fire
webhooks on demand and set delivery faults, read the delivery log and wait for it to settle.
Errors answer `{"error": "..."}` with 400 (bad input), 404 (unknown store/order) or 409.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from services.simulator import api
from services.simulator.lgpd import UnknownCustomerError
from services.simulator.orderbook import UnknownOrderError, UnknownStoreError
from services.simulator.timefmt import parse_ts
from services.simulator.webutil import (
    DISPATCHER_KEY,
    STATE_KEY,
    ApiError,
    json_response,
    read_json,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ORDER_KEYS = (
    "paid", "customer", "products", "shipping", "shipments", "shipping_owner", "shipping_address",
    "discount", "payment_method", "installments", "payment_status", "currency", "number", "shape",
    "quirks",
)  # fmt: skip


@web.middleware
async def admin_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Map simulator exceptions to JSON errors on the control routes."""
    if not (request.match_info.route.name or "").startswith("sim-"):
        return await handler(request)
    try:
        return await handler(request)
    except ApiError as exc:
        return json_response(exc.body, exc.status)
    except (UnknownStoreError, UnknownOrderError, UnknownCustomerError) as exc:
        return json_response({"error": str(exc.args[0])}, 404)
    except KeyError as exc:
        return json_response({"error": f"missing field {exc.args[0]}"}, 400)
    except (ValueError, TypeError, ArithmeticError) as exc:
        return json_response({"error": str(exc)}, 400)


def _sid(request: web.Request) -> int:
    return int(request.match_info["store_id"])


def _when(payload: dict[str, Any], key: str) -> dt.datetime | None:
    raw = payload.get(key)
    return parse_ts(str(raw)) if raw else None


async def health(_: web.Request) -> web.Response:
    """`GET /_sim/health`."""
    return json_response({"ok": True})


async def create_store(request: web.Request) -> web.Response:
    """`POST /_sim/stores {"store_id"?, "token"?, "scopes"?, "shape"?, "bucket_size"?,
    "leak_per_s"?, "suspended"?}` → 201 `{"store_id", "token"}`."""
    state, payload = request.app[STATE_KEY], await read_json(request)
    store_id = payload.get("store_id")
    if store_id is not None and int(store_id) in state.stores:
        raise ApiError(409, {"error": f"store {store_id} already exists"})
    options = {
        k: payload[k] for k in ("scopes", "shape", "bucket_size", "leak_per_s") if k in payload
    }
    new_id = int(store_id) if store_id is not None else state.new_store_id()
    token = state.add_store(new_id, payload.get("token"), **options)
    if payload.get("suspended"):
        state.suspend(new_id)
    return json_response({"store_id": new_id, "token": token}, 201)


async def list_stores(request: web.Request) -> web.Response:
    """`GET /_sim/stores`."""
    stores = request.app[STATE_KEY].stores.values()
    return json_response({"stores": [store.summary() for store in stores]})


async def show_store(request: web.Request) -> web.Response:
    """`GET /_sim/stores/{id}`."""
    return json_response(request.app[STATE_KEY].store(_sid(request)).summary())


async def store_action(request: web.Request) -> web.Response:
    """`POST /_sim/stores/{id}/{revoke|reinstall|uninstall|suspend|fail|fault}` (suspend:
    `{"on": bool}`; fail: `{"statuses": [503, ...]}`, what the next order reads answer instead;
    fault: `{"fault": "403"|"500"|"invalid_json"|"no_headers"|null}`, until cleared)."""
    state, store_id, action = request.app[STATE_KEY], _sid(request), request.match_info["action"]
    payload = await read_json(request)
    if action == "revoke":
        state.revoke_token(store_id)
    elif action == "reinstall":
        state.reinstall(store_id)
    elif action == "uninstall":
        state.uninstall(store_id)
    elif action == "suspend":
        state.suspend(store_id, bool(payload.get("on", True)))
    elif action == "fail":
        statuses = [int(s) for s in payload.get("statuses", [503])]
        state.store(store_id).failing_reads.extend(statuses)
    elif action == "fault":
        fault = payload.get("fault")
        if fault is not None and fault not in api.FAULTS:
            raise ApiError(400, {"error": f"fault must be one of {sorted(api.FAULTS)} or null"})
        state.set_fault(store_id, fault)
    else:
        raise ApiError(404, {"error": f"unknown action {action}"})
    return json_response(state.store(store_id).summary())


async def create_orders(request: web.Request) -> web.Response:
    """`POST /_sim/stores/{id}/orders {"count"?: 1, "created_at"?, "paid_at"?, "start"?,
    "interval_s"?: 60, "notify"?, ...add_order keywords}` → 201 `{"count", "ids", "order"?}`."""
    state, store_id, payload = request.app[STATE_KEY], _sid(request), await read_json(request)
    spec = {key: payload[key] for key in ORDER_KEYS if key in payload}
    count = int(payload.get("count", 1))
    if count < 1:
        raise ApiError(400, {"error": "count must be 1 or more"})
    if count == 1:
        order = state.add_order(
            store_id,
            created_at=_when(payload, "created_at"),
            paid_at=_when(payload, "paid_at"),
            notify=bool(payload.get("notify", True)),
            **spec,
        )
        return json_response({"count": 1, "ids": [order["id"]], "order": order}, 201)
    ids = state.add_orders(
        store_id,
        count,
        start=_when(payload, "start"),
        interval=dt.timedelta(seconds=float(str(payload.get("interval_s", 60)))),
        notify=bool(payload.get("notify", False)),
        **spec,
    )
    return json_response({"count": len(ids), "ids": ids}, 201)


async def show_order(request: web.Request) -> web.Response:
    """`GET /_sim/stores/{id}/orders/{order_id}` → the order as stored."""
    order_id = int(request.match_info["order_id"])
    return json_response(request.app[STATE_KEY].get_order(_sid(request), order_id))


async def order_action(request: web.Request) -> web.Response:
    """`POST /_sim/stores/{id}/orders/{order_id}/{pay|cancel|void|refund|update}` with
    `{"at"?, "reason"?, "amount"?, "changes"?, "notify"?: true}` → the order."""
    state, store_id = request.app[STATE_KEY], _sid(request)
    order_id, action = int(request.match_info["order_id"]), request.match_info["action"]
    payload = await read_json(request)
    notify = bool(payload.get("notify", True))
    at = _when(payload, "at")
    if action == "pay":
        order = state.mark_paid(store_id, order_id, at, notify=notify)
    elif action == "cancel":
        reason = str(payload.get("reason", "customer"))
        order = state.cancel(store_id, order_id, reason, at, notify=notify)
    elif action == "void":
        order = state.void(store_id, order_id, at, notify=notify)
    elif action == "refund":
        order = state.refund(store_id, order_id, payload.get("amount"), notify=notify)
    elif action == "update":
        order = state.update_order(store_id, order_id, payload.get("changes"), notify=notify)
    else:
        raise ApiError(404, {"error": f"unknown action {action}"})
    return json_response(order)


async def lgpd(request: web.Request) -> web.Response:
    """`POST /_sim/stores/{id}/lgpd {"event", "customer_id"?, "orders"?, "data_request_id"?}` →
    202 `{"sent": bool}` (false when the partner settings have no URL for the event)."""
    state, payload = request.app[STATE_KEY], await read_json(request)
    raw_customer, orders = payload.get("customer_id"), payload.get("orders")
    sent = state.lgpd_request(
        _sid(request),
        str(payload["event"]),
        customer_id=int(raw_customer) if raw_customer is not None else None,
        orders=[int(o) for o in orders] if orders is not None else None,
        data_request_id=int(payload.get("data_request_id", 1)),
    )
    return json_response({"sent": sent is not None}, 202)


async def counters(request: web.Request) -> web.Response:
    """`GET /_sim/counters` → `{"stores": {"<id>": {"requests", "throttled", "served", ...}}}`."""
    table = request.app[STATE_KEY].counters()
    return json_response({"stores": {str(k): v for k, v in table.items()}})


async def reset_counters(request: web.Request) -> web.Response:
    """`POST /_sim/counters/reset`."""
    request.app[STATE_KEY].reset_counters()
    return json_response({"ok": True})


async def rate_limit(request: web.Request) -> web.Response:
    """`PUT /_sim/rate-limit {"enabled"?, "size"?, "leak_per_s"?}` (resets every bucket)."""
    state, payload = request.app[STATE_KEY], await read_json(request)
    current = state.rate
    state.configure_rate_limit(
        enabled=bool(payload.get("enabled", current.enabled)),
        size=int(payload.get("size", current.size)),
        leak_per_s=float(str(payload.get("leak_per_s", current.leak_per_s))),
    )
    rate = state.rate
    return json_response(
        {"enabled": rate.enabled, "size": rate.size, "leak_per_s": rate.leak_per_s}
    )


async def oauth_config(request: web.Request) -> web.Response:
    """`POST /_sim/oauth {"install_store_id"?, "redirect_url"?, "lgpd_urls"?: {event: url}}` →
    the app's settings (the LGPD URLs are set in the partner panel, not through the API)."""
    state, payload = request.app[STATE_KEY], await read_json(request)
    if "install_store_id" in payload:
        raw = payload["install_store_id"]
        state.install_store_id = int(raw) if raw is not None else None
    if payload.get("redirect_url"):
        state.redirect_url = str(payload["redirect_url"])
    if isinstance(payload.get("lgpd_urls"), dict):
        state.lgpd_urls = {str(k): str(v) for k, v in payload["lgpd_urls"].items() if v}
    return json_response(
        {
            "app_id": state.app_id,
            "install_store_id": state.install_store_id,
            "redirect_url": state.redirect_url,
            "lgpd_urls": state.lgpd_urls,
        }
    )


async def oauth_code(request: web.Request) -> web.Response:
    """`POST /_sim/oauth/code {"store_id"?}` → `{"code", "store_id"}` without the redirect."""
    payload = await read_json(request)
    raw = payload.get("store_id")
    code, store_id = request.app[STATE_KEY].issue_code(int(raw) if raw is not None else None)
    return json_response({"code": code, "store_id": store_id})


async def fire(request: web.Request) -> web.Response:
    """`POST /_sim/webhooks/fire` with `{"store_id", "event", "id", "duplicates"?, "drop"?,
    "urls"?}` or `{"events": [{"store_id", "event", "id"}...], "shuffle"?, "duplicates"?}`."""
    dispatcher, payload = request.app[DISPATCHER_KEY], await read_json(request)
    duplicates = int(payload.get("duplicates", 0))
    if "events" in payload:
        items = [(int(e["store_id"]), str(e["event"]), int(e["id"])) for e in payload["events"]]
        deliveries = dispatcher.fire_batch(
            items, shuffle=bool(payload.get("shuffle", False)), duplicates=duplicates
        )
    else:
        urls = payload.get("urls")
        deliveries = dispatcher.fire(
            int(payload["store_id"]),
            str(payload["event"]),
            int(payload["id"]),
            urls=[str(u) for u in urls] if urls is not None else None,
            duplicates=duplicates,
            drop=bool(payload.get("drop", False)),
        )
    return json_response({"deliveries": [d.to_json() for d in deliveries]}, 202)


async def faults(request: web.Request) -> web.Response:
    """`GET|PUT /_sim/webhooks/faults {"duplicates"?, "shuffle"?, "shuffle_window_s"?,
    "drop_next"?}` — misbehaviour for the webhooks that order changes trigger."""
    current = request.app[DISPATCHER_KEY].faults
    if request.method == "PUT":
        payload = await read_json(request)
        current.duplicates = int(payload.get("duplicates", current.duplicates))
        current.shuffle = bool(payload.get("shuffle", current.shuffle))
        window = payload.get("shuffle_window_s", current.shuffle_window_s)
        current.shuffle_window_s = float(str(window))
        current.drop_next = int(payload.get("drop_next", current.drop_next))
    return json_response(
        {
            "duplicates": current.duplicates,
            "shuffle": current.shuffle,
            "shuffle_window_s": current.shuffle_window_s,
            "drop_next": current.drop_next,
        }
    )


async def delivery_log(request: web.Request) -> web.Response:
    """`GET /_sim/webhooks/log?store_id=&event=` → `{"deliveries": [...]}`."""
    store_id, event = request.query.get("store_id"), request.query.get("event")
    return json_response(
        {
            "deliveries": [
                d.to_json()
                for d in request.app[DISPATCHER_KEY].log
                if (store_id is None or str(d.store_id) == store_id)
                and (event is None or d.event == event)
            ]
        }
    )


async def wait_idle(request: web.Request) -> web.Response:
    """`POST /_sim/webhooks/wait {"timeout"?: 10}` → `{"idle": bool}` once nothing is in flight."""
    payload = await read_json(request)
    try:
        await request.app[DISPATCHER_KEY].wait_idle(float(str(payload.get("timeout", 10))))
    except TimeoutError:
        return json_response({"idle": False})
    return json_response({"idle": True})


def add_routes(app: web.Application) -> None:
    """Register the control API."""
    r = app.router
    r.add_get("/_sim/health", health, name="sim-health")
    r.add_post("/_sim/stores", create_store, name="sim-store-create")
    r.add_get("/_sim/stores", list_stores, name="sim-stores")
    r.add_get("/_sim/stores/{store_id:\\d+}", show_store, name="sim-store")
    r.add_post("/_sim/stores/{store_id:\\d+}/orders", create_orders, name="sim-orders-create")
    r.add_get("/_sim/stores/{store_id:\\d+}/orders/{order_id:\\d+}", show_order, name="sim-order")
    r.add_post(
        "/_sim/stores/{store_id:\\d+}/orders/{order_id:\\d+}/{action}",
        order_action,
        name="sim-order-action",
    )
    r.add_post("/_sim/stores/{store_id:\\d+}/lgpd", lgpd, name="sim-lgpd")
    r.add_post("/_sim/stores/{store_id:\\d+}/{action}", store_action, name="sim-store-action")
    r.add_get("/_sim/counters", counters, name="sim-counters")
    r.add_post("/_sim/counters/reset", reset_counters, name="sim-counters-reset")
    r.add_put("/_sim/rate-limit", rate_limit, name="sim-rate-limit")
    r.add_post("/_sim/oauth", oauth_config, name="sim-oauth")
    r.add_post("/_sim/oauth/code", oauth_code, name="sim-oauth-code")
    r.add_post("/_sim/webhooks/fire", fire, name="sim-fire")
    r.add_get("/_sim/webhooks/faults", faults, name="sim-faults")
    r.add_put("/_sim/webhooks/faults", faults, name="sim-faults-set")
    r.add_get("/_sim/webhooks/log", delivery_log, name="sim-log")
    r.add_post("/_sim/webhooks/wait", wait_idle, name="sim-wait")
