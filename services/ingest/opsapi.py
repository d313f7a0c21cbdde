"""Ingest's operator HTTP API: the store connections (``integration list|show --json``)."""

from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp import web

from services.ingest import ops
from shared.opsapi import ID_SCHEMA, Operation, path_id


def _text(nullable: bool = True, fmt: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", "nullable": nullable}
    if fmt:
        schema["format"] = fmt
    return schema


INTEGRATION: dict[str, Any] = {
    "type": "object",
    "required": [
        "store_id",
        "enabled",
        "disabled_reason",
        "activated_at",
        "activated_by",
        "last_synced_at",
        "last_error",
        "last_error_at",
        "imported",
        "rejected",
        "pending",
    ],
    "properties": {
        "store_id": ID_SCHEMA,
        "enabled": {"type": "boolean"},
        "disabled_reason": _text(),
        "disabled_at": _text(fmt="date-time"),
        "activated_at": _text(False, "date-time"),
        "activated_by": _text(False),
        "last_synced_at": _text(fmt="date-time"),
        "poll_cursor": _text(fmt="date-time"),
        "paused_until": _text(fmt="date-time"),
        "last_error": _text(),
        "last_error_at": _text(fmt="date-time"),
        "imported": {"type": "integer", "minimum": 0},
        "rejected": {"type": "integer", "minimum": 0},
        "pending": {"type": "integer", "minimum": 0},
    },
}


def operations(pool: asyncpg.Pool) -> list[Operation]:
    async def listing(_: web.Request) -> Any:
        return await ops.integration_rows(pool)

    async def one(request: web.Request) -> Any:
        return await ops.integration(pool, path_id(request, "store_id"))

    return [
        Operation(
            "GET",
            "/ops/integrations",
            "listIntegrations",
            "every connected store (integration list --json)",
            listing,
            {"type": "array", "items": INTEGRATION},
        ),
        Operation(
            "GET",
            "/ops/integrations/{store_id}",
            "showIntegration",
            "one connected store (integration show S --json)",
            one,
            INTEGRATION,
            not_found="the store is not connected",
        ),
    ]
