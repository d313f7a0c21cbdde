"""What the simulator's HTTP modules share: the typed application keys, the configuration the
app was created with, JSON responses rendered by orjson, and the exception a handler raises to
answer with an error body.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from services.simulator.state import SimState
from services.simulator.webhooks import WebhookDispatcher

TOKEN_HEADER = "Authentication"  # noqa: S105 - a header name, not a secret


@dataclass(frozen=True)
class SimConfig:
    """How the app behaves (see `create_app`)."""

    token_header: str = TOKEN_HEADER
    allow_http_webhooks: bool = False
    strict_last_page: bool = False


STATE_KEY = web.AppKey("nuvemshop_sim_state", SimState)
CONFIG_KEY = web.AppKey("nuvemshop_sim_config", SimConfig)
DISPATCHER_KEY = web.AppKey("nuvemshop_sim_dispatcher", WebhookDispatcher)


class ApiError(Exception):
    """Raised by a handler to answer `status` with the JSON `body`."""

    def __init__(self, status: int, body: Mapping[str, Any]) -> None:
        super().__init__(status, body)
        self.status = status
        self.body = dict(body)


def json_response(
    data: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """A JSON response serialised with orjson."""
    return web.Response(
        body=orjson.dumps(data),
        status=status,
        content_type="application/json",
        headers=dict(headers or {}),
    )


def not_found(description: str) -> ApiError:
    """The API's 404."""
    return ApiError(404, {"code": 404, "message": "Not Found", "description": description})


async def read_json(request: web.Request) -> dict[str, Any]:
    """The request's JSON object body (empty body → `{}`), or a 400 ApiError."""
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ApiError(400, {"error": "Invalid JSON body"}) from None
    if not isinstance(data, dict):
        raise ApiError(400, {"error": "The JSON body must be an object"})
    return data
