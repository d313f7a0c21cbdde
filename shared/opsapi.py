"""The operator HTTP API: ``/ops/...`` on each service's own port, for that service's own data.

Each service lists its operations (``services/<svc>/opsapi.py``): a method, a path, the function
of its ``ops.py`` that answers (the CLI's ``--json`` body, the same function), and the OpenAPI
description of it. This module serves them behind a bearer token and builds the service's OpenAPI
document, served at ``/ops/openapi.json``:

- ``OPS_API_TOKEN`` unset: no ``/ops`` route exists, so every ``/ops`` path answers 404;
- a missing or wrong ``Authorization: Bearer <token>``: 401 (compared in constant time);
- an operator's refusal (``OperatorError``: an unknown store, an order that is not rejected): 404
  with ``{"error": "<one line>"}``; a path id that is not a positive 64-bit integer: 400.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from shared.logging import get_logger
from shared.metrics import ServiceMetrics
from shared.operations import OperatorError, json_default
from shared.settings import Settings

log = get_logger(__name__)

MAX_ID = 2**63 - 1
Answer = Callable[[web.Request], Awaitable[Any]]

ID_SCHEMA: dict[str, Any] = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}},
}


class BadRequest(Exception):  # noqa: N818 - answered 400, as the name says
    """A request the API refuses before asking the service (400)."""


@dataclass(frozen=True)
class Operation:
    """One ``/ops`` operation: how it is routed, answered and described."""

    method: str
    path: str  # OpenAPI form: /ops/sales/{store_id}/{order_id}
    operation_id: str
    summary: str
    answer: Answer
    response: dict[str, Any]  # the JSON schema of the 200 body
    query: dict[str, dict[str, Any]] = field(default_factory=dict)  # optional query parameters
    not_found: str | None = None  # when the service refuses with 404, what it means


def ops_token(settings: Settings) -> str | None:
    token = settings.ops_api_token
    return token.get_secret_value() if token is not None else None


def path_id(request: web.Request, name: str) -> int:
    return _id(request.match_info[name], name)


def query_id(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    return None if raw is None else _id(raw, name)


def _id(raw: str, name: str) -> int:
    if not raw.isascii() or not raw.isdigit() or len(raw) > 19 or not 0 < int(raw) <= MAX_ID:
        raise BadRequest(f"{name} must be a positive 64-bit integer")
    return int(raw)


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(
        text=json.dumps(body, default=json_default, ensure_ascii=False),
        status=status,
        content_type="application/json",
    )


def openapi(service: str, operations: list[Operation]) -> dict[str, Any]:
    """The service's OpenAPI 3.0 document."""
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        params = [
            {"name": name, "in": "path", "required": True, "schema": ID_SCHEMA}
            for name in _path_names(op.path)
        ] + [
            {"name": name, "in": "query", "required": False, "schema": schema}
            for name, schema in op.query.items()
        ]
        responses: dict[str, Any] = {
            "200": {
                "description": "the same body as the CLI's --json",
                "content": {"application/json": {"schema": op.response}},
            },
            "401": _error("missing or wrong bearer token"),
        }
        if params:
            responses["400"] = _error("an id that is not a positive 64-bit integer")
        if op.not_found:
            responses["404"] = _error(op.not_found)
        paths.setdefault(op.path, {})[op.method.lower()] = {
            "operationId": op.operation_id,
            "summary": op.summary,
            "parameters": params,
            "responses": responses,
        }
    paths["/ops/openapi.json"] = {
        "get": {
            "operationId": "openapi",
            "summary": "this document",
            "responses": {
                "200": {
                    "description": "the OpenAPI document",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                "401": _error("missing or wrong bearer token"),
            },
        }
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": f"nuvem-ledger {service} operator API",
            "version": "1",
            "description": "Operator API of one service (docs/operations.md); off unless"
            " OPS_API_TOKEN is set.",
        },
        "servers": [{"url": "/"}],
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}],
        "paths": paths,
    }


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ERROR_SCHEMA}}}


def _path_names(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]


def add_ops_routes(
    app: web.Application,
    *,
    service: str,
    token: str | None,
    operations: list[Operation],
    metrics: ServiceMetrics,
) -> None:
    """Serve ``operations`` and ``/ops/openapi.json`` behind ``token``; nothing without one."""
    if not token:
        return
    # Digests of equal length: the comparison tells nothing, not even the token's length.
    expected = hashlib.sha256(f"Bearer {token}".encode()).digest()
    document = openapi(service, operations)

    def guarded(route: str, answer: Answer) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            response = await _answer(request, answer, expected)
            metrics.http_requests.labels(route, str(response.status)).inc()
            return response

        return handle

    async def describe(_: web.Request) -> dict[str, Any]:
        return document

    app.router.add_get("/ops/openapi.json", guarded("/ops/openapi.json", describe))
    for op in operations:
        app.router.add_route(op.method, op.path, guarded(op.path, op.answer))


async def _answer(request: web.Request, answer: Answer, expected: bytes) -> web.Response:
    given = hashlib.sha256(request.headers.get("Authorization", "").encode()).digest()
    if not hmac.compare_digest(given, expected):
        return web.json_response(
            {"error": "missing or wrong bearer token"},
            status=401,
            headers={"WWW-Authenticate": 'Bearer realm="ops"'},
        )
    try:
        return _json(await answer(request))
    except BadRequest as exc:
        return _json({"error": str(exc)}, 400)
    except OperatorError as exc:
        return _json({"error": str(exc)}, 404)
