"""Dead and parked messages, for operators: list them with their reasons, replay them.

Both read the queue with ``basic.get`` and hand back (requeue) every message they do not replay,
so listing never consumes anything. A replayed message goes back to the exchange and routing key
it was first published with (kept in its ``x-original-*`` headers), with its publisher confirm
awaited before the dead copy is acknowledged: nothing is lost between the two.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue
from aiormq.exceptions import ChannelNotFoundEntity

from services.cliutil import CommandError
from shared.messaging import Broker, Envelope
from shared.topology import MAPPER_PARKED

MAX_MESSAGES = 10_000


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return "" if value is None else str(value)


def describe(message: AbstractIncomingMessage) -> dict[str, Any]:
    headers = message.headers or {}
    return {
        "message_id": message.message_id,
        "type": message.type,
        "correlation_id": message.correlation_id,
        "reason": _text(headers.get("x-error-reason")) or None,
        "detail": _text(headers.get("x-error-detail")) or None,
        "original_exchange": _text(headers.get("x-original-exchange")) or None,
        "original_routing_key": _text(headers.get("x-original-routing-key")) or None,
        "body": message.body.decode(errors="replace"),
    }


async def _drain(queue: AbstractQueue, limit: int) -> list[AbstractIncomingMessage]:
    taken: list[AbstractIncomingMessage] = []
    while len(taken) < limit:
        message = await queue.get(no_ack=False, fail=False)
        if message is None:
            break
        taken.append(message)
    return taken


async def _open(url: str, name: str) -> tuple[aio_pika.abc.AbstractRobustConnection, AbstractQueue]:
    connection = await aio_pika.connect_robust(url)
    channel = await connection.channel()
    try:
        queue = await channel.declare_queue(name, passive=True)
    except ChannelNotFoundEntity:
        await connection.close()
        raise CommandError(f"no queue named {name!r}") from None
    return connection, queue


async def list_messages(url: str, name: str, limit: int = MAX_MESSAGES) -> list[dict[str, Any]]:
    connection, queue = await _open(url, name)
    try:
        taken = await _drain(queue, limit)
        described = [describe(m) for m in taken]
        for message in taken:
            await message.nack(requeue=True)
        return described
    finally:
        with contextlib.suppress(Exception):
            await connection.close()


def _replay_envelope(message: AbstractIncomingMessage, queue: str) -> Envelope:
    headers = dict(message.headers or {})
    exchange = _text(headers.pop("x-original-exchange", None)) or "ingest.events"
    routing_key = _text(headers.pop("x-original-routing-key", None)) or _text(message.routing_key)
    for key in (
        "x-error-reason",
        "x-error-detail",
        "x-death",
        "x-first-death-exchange",
        "x-first-death-queue",
        "x-first-death-reason",
        "x-delivery-count",
    ):
        headers.pop(key, None)
    message_id = message.message_id or ""
    if queue == MAPPER_PARKED.name:
        # The mapper's inbox has processed a parked order's message: only a new id gets it in again.
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%f")
        original = _text(headers.get("x-original-message-id")) or message_id
        headers["x-replay-of"] = original
        message_id = f"{original}:replay:{stamp}"
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
    connection, queue = await _open(url, name)
    replayed: list[dict[str, Any]] = []
    try:
        for message in await _drain(queue, limit):
            if replay_all or message.message_id == message_id:
                await broker.publish(_replay_envelope(message, name))
                await message.ack()
                replayed.append(describe(message))
            else:
                await message.nack(requeue=True)
    finally:
        with contextlib.suppress(Exception):
            await connection.close()
        await broker.close()
    if message_id is not None and not replayed:
        raise CommandError(f"no message with id {message_id!r} in {name}")
    return replayed


async def drop_parked(url: str, correlation_ids: set[str], limit: int = MAX_MESSAGES) -> int:
    """Remove the parked copies of the given orders (``<store>:<order>``); the rest stay parked."""
    if not correlation_ids:
        return 0
    connection, queue = await _open(url, MAPPER_PARKED.name)
    dropped = 0
    try:
        for message in await _drain(queue, limit):
            if message.correlation_id in correlation_ids:
                await message.ack()
                dropped += 1
            else:
                await message.nack(requeue=True)
    finally:
        with contextlib.suppress(Exception):
            await connection.close()
    return dropped
