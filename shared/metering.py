"""Counting what a consumer's handler committed, without touching the handler.

A handler returns the envelopes its transaction staged, and staging skips what was staged
before (``shared.outbox.stage``), so what comes back is exactly the new facts of a committed
batch: counting them counts each fact once, however often its message was redelivered.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import orjson
from aio_pika.abc import AbstractIncomingMessage

from shared.consumer import BatchResult, DeadLetterHook, Handler, Incoming
from shared.messaging import Envelope

Count = Callable[[list[Incoming], list[Envelope]], None]


def metered(handler: Handler, count: Count) -> Handler:
    """``handler``, telling ``count`` the batch and the envelopes each committed batch staged."""

    async def handle(batch: list[Incoming]) -> BatchResult:
        result = await handler(batch)
        count(batch, [s.envelope for s in result.staged])
        return result

    return handle


def metered_dead_letters(hook: DeadLetterHook, count: Count) -> DeadLetterHook:
    """An ``on_dead_letter`` hook whose answers are counted like a handler's."""

    async def answer(delivery: AbstractIncomingMessage, reason: str, detail: str) -> list[Envelope]:
        envs = await hook(delivery, reason, detail)
        count([], envs)
        return envs

    return answer


def body_of(env: Envelope) -> dict[str, Any]:
    try:
        parsed = orjson.loads(env.body)
    except orjson.JSONDecodeError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def header_time(incoming: Incoming, name: str) -> dt.datetime | None:
    """A timestamp header of a delivery (ISO 8601), or None when absent or unreadable."""
    value = (incoming.delivery.headers or {}).get(name)
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    if not isinstance(value, str):
        return None
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)
