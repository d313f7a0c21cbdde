"""Dead and parked messages, for operators: list them with their reasons, replay them.

Both read the queue without consuming it (``shared.queues``). A message carries its reason in
one of two ways: our consumers dead-letter or park it with ``x-error-reason``/``x-error-detail``;
RabbitMQ dead-letters it itself (a consumer that kept failing past the queue's delivery limit, a
rejection) and says so in ``x-death``: one entry per queue and reason, with a count. A listing
shows both; a message with only the broker's account is listed under the broker's reason
(``delivery_limit``, ``rejected``, ``expired``, ``maxlen``).

A replayed message goes back to the exchange and routing key it was first published with (kept
in its ``x-original-*`` headers), with its publisher confirm awaited before the dead copy is
acknowledged: nothing is lost between the two.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from aio_pika.abc import AbstractIncomingMessage

from services.cli.base import CommandError
from shared.messaging import RETRY_OF, Broker, Envelope, retry_ids
from shared.queues import MAX_MESSAGES, opened, take, text

# Why RabbitMQ dead-lettered a message, in an operator's words.
BROKER_REASONS = {
    "delivery_limit": "delivered more times than the queue's delivery limit, never acknowledged",
    "rejected": "rejected by a consumer without requeue",
    "expired": "its time to live ran out",
    "maxlen": "the queue was over its length limit",
}
# What a dead-lettering adds to a message; a replay removes it.
DEATH_HEADERS = (
    "x-error-reason",
    "x-error-detail",
    "x-death",
    "x-first-death-exchange",
    "x-first-death-queue",
    "x-first-death-reason",
    "x-last-death-exchange",
    "x-last-death-queue",
    "x-last-death-reason",
    "x-delivery-count",
)


def deaths(headers: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The broker's ``x-death`` entries (latest first): reason, queue, count, where from, when."""
    entries = headers.get("x-death")
    if not isinstance(entries, list | tuple):
        return []
    out = []
    for entry in entries:
        if not isinstance(entry, Mapping):
            continue
        when = entry.get("time")
        out.append(
            {
                "reason": text(entry.get("reason")),
                "queue": text(entry.get("queue")),
                "count": int(entry.get("count") or 1),
                "exchange": text(entry.get("exchange")),
                "routing_keys": [text(k) for k in entry.get("routing-keys") or ()],
                "time": when.isoformat() if isinstance(when, dt.datetime) else None,
            }
        )
    return out


def death_detail(death: Mapping[str, Any]) -> str:
    why = BROKER_REASONS.get(death["reason"], death["reason"])
    times = "once" if death["count"] == 1 else f"{death['count']} times"
    return f"dead-lettered by RabbitMQ from {death['queue']} ({why}), {times}"


def describe(message: AbstractIncomingMessage) -> dict[str, Any]:
    headers = message.headers or {}
    broker_deaths = deaths(headers)
    latest = broker_deaths[0] if broker_deaths else None
    reason = text(headers.get("x-error-reason")) or (latest["reason"] if latest else "")
    detail = text(headers.get("x-error-detail")) or (death_detail(latest) if latest else "")
    return {
        "message_id": message.message_id,
        "type": message.type,
        "correlation_id": message.correlation_id,
        "reason": reason or None,
        "detail": detail or None,
        "dead_lettered": broker_deaths,
        "original_exchange": text(headers.get("x-original-exchange")) or None,
        "original_routing_key": text(headers.get("x-original-routing-key")) or None,
        "retry_of": text(headers.get(RETRY_OF)) or None,
        "body": message.body.decode(errors="replace"),
    }


async def list_messages(url: str, name: str, limit: int = MAX_MESSAGES) -> list[dict[str, Any]]:
    async with opened(url, name) as queue:
        taken = await take(queue, limit)
        described = [describe(m) for m in taken]
        for message in taken:
            await message.nack(requeue=True)
    return described


def _replay_envelope(message: AbstractIncomingMessage) -> Envelope:
    headers = dict(message.headers or {})
    exchange, routing_key = "ingest.events", text(message.routing_key)
    broker_deaths = deaths(headers)
    if broker_deaths and broker_deaths[-1]["routing_keys"]:
        # Dead-lettered by RabbitMQ: its oldest x-death entry says where it was first published.
        exchange, routing_key = broker_deaths[-1]["exchange"], broker_deaths[-1]["routing_keys"][0]
    exchange = text(headers.pop("x-original-exchange", None)) or exchange
    routing_key = text(headers.pop("x-original-routing-key", None)) or routing_key
    for key in DEATH_HEADERS:
        headers.pop(key, None)
    # A replay is a new attempt of an old fact (CONTRACT): a new id, which the inboxes take as a
    # new message (a parked order's was processed already), and x-retry-of naming the first one.
    first = text(headers.pop("x-original-message-id", None)) or message.message_id or ""
    message_id, headers[RETRY_OF] = retry_ids(first, headers)
    return Envelope(
        exchange=exchange,
        routing_key=routing_key,
        body=message.body,
        message_id=message_id,
        type=message.type or f"{routing_key}.v1",
        correlation_id=message.correlation_id,
        headers=headers,
    )


async def replay(
    url: str, name: str, *, message_id: str | None, replay_all: bool, limit: int = MAX_MESSAGES
) -> list[dict[str, Any]]:
    if not replay_all and message_id is None:
        raise CommandError("say which messages to replay: --all or --message-id M")
    broker = Broker(url, app_id="nuvem-ledger-cli")
    await broker.connect(deadline=10)
    replayed: list[dict[str, Any]] = []
    try:
        async with opened(url, name) as queue:
            for message in await take(queue, limit):
                if replay_all or message.message_id == message_id:
                    await broker.publish(_replay_envelope(message))
                    await message.ack()
                    replayed.append(describe(message))
                else:
                    await message.nack(requeue=True)
    finally:
        await broker.close()
    if message_id is not None and not replayed:
        raise CommandError(f"no message with id {message_id!r} in {name}")
    return replayed
