"""Framing publishes in batches on one channel: one socket write per batch, one confirm each.

For every message, aio-pika's ``Exchange.publish`` and aiormq's ``basic_publish`` build a
``Message``, run in a task of their own, take the channel lock, marshal the frames into a buffer
of their own, queue that buffer and wait for the socket to drain it: one write (one system
call) per message. Publishing was the largest line of every service's profile
(``docs/profiles/before``). ``ChannelPublisher`` does that work once per batch instead: whatever
was submitted while the previous write drained goes out in the next single write, and each
method frame (exchange, routing key, mandatory) is marshalled once per channel.

Each message still gets its own delivery tag and confirmation future in aiormq's own tables
(``confirmations``, ``message_id_delivery_tag``), so aiormq's reader settles them exactly as it
settles its own publishes: acks (single or ``multiple``), nacks, returns of ``mandatory``
messages; and a channel that closes fails every future it holds. Tags are taken and the frames
queued in one step under the channel lock, by the publisher's own task, which a caller's
cancellation never interrupts: the tag count cannot run ahead of what was sent. (Cancelling
aiormq's own ``basic_publish`` midway could: every later confirm then settled the wrong publish
and the channel never confirmed the last one of a burst; docs/performance.md.) Written against aiormq 6.9's ``Channel``;
``tests/unit/test_publishing.py`` checks the attributes it relies on.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

import aiormq
import pamqp.frame
from aiormq.abc import ChannelFrame
from aiormq.exceptions import ChannelInvalidStateError
from pamqp import commands as spec
from pamqp.body import ContentBody
from pamqp.header import ContentHeader

MAX_BATCH = 1000  # messages per write; the rest go in the next write at once
PERSISTENT = 2


class Envelope(Protocol):
    """What is published (``shared.messaging.Envelope``)."""

    @property
    def exchange(self) -> str: ...
    @property
    def routing_key(self) -> str: ...
    @property
    def body(self) -> bytes: ...
    @property
    def message_id(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def correlation_id(self) -> str | None: ...
    @property
    def headers(self) -> dict[str, Any]: ...


@dataclass(slots=True)
class _Item:
    env: Envelope
    mandatory: bool
    future: asyncio.Future[Any]
    # Returns are matched to their publish by id: one is made up for a message without (as
    # aiormq does).
    message_id: str = ""


def _forget(ids: dict[str, int], message_id: str, _: object) -> None:
    ids.pop(message_id, None)


class ChannelPublisher:
    """Publishes submitted envelopes on one aiormq channel with publisher confirms."""

    def __init__(self, channel: aiormq.Channel, app_id: str, *, source: object = None) -> None:
        self.channel = channel
        self.source = source  # what it was made for (the aio-pika channel), to tell it apart
        self.app_id = app_id
        self._pending: list[_Item] = []
        self._writer: asyncio.Task[None] | None = None
        self._methods: dict[tuple[str, str, bool], bytes] = {}

    def submit(self, envs: Sequence[Envelope], *, mandatory: bool) -> list[asyncio.Future[Any]]:
        """Queue ``envs`` (in order) for the next write; their confirmation futures.

        A future resolves when the broker confirms its message, and fails with aiormq's
        ``DeliveryError`` on a nack or a return, or with the channel's error when it closes.
        """
        if self.channel.is_closed:
            raise ChannelInvalidStateError(f"{self.channel!r} closed")
        futures = []
        for env in envs:
            future = self.channel.create_future()
            self._pending.append(_Item(env, mandatory, future, env.message_id or uuid.uuid4().hex))
            futures.append(future)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write_all())
        return futures

    async def _write_all(self) -> None:
        while self._pending:
            batch = self._pending[:MAX_BATCH]
            del self._pending[:MAX_BATCH]
            try:
                await self._write(batch)
            except Exception as exc:  # handed to every caller of the batch
                _fail(batch, exc)
            except BaseException:
                _fail(batch, ChannelInvalidStateError("the publisher stopped"))
                _fail(self._pending, ChannelInvalidStateError("the publisher stopped"))
                self._pending.clear()
                raise

    def _method(self, env: Envelope, mandatory: bool) -> bytes:
        key = (env.exchange, env.routing_key, mandatory)
        frame = self._methods.get(key)
        if frame is None:
            if len(self._methods) > 1024:
                self._methods.clear()
            method = spec.Basic.Publish(
                exchange=env.exchange, routing_key=env.routing_key, mandatory=mandatory
            )
            frame = self._methods[key] = pamqp.frame.marshal(method, self.channel.number)
        return frame

    def _frames(self, batch: list[_Item]) -> bytes:
        number = self.channel.number
        size = self.channel.max_content_size
        now = dt.datetime.now(dt.UTC)  # AMQP timestamps are whole seconds: one per batch
        parts: list[bytes] = []
        for item in batch:
            env = item.env
            properties = spec.Basic.Properties(
                app_id=self.app_id,
                content_type="application/json",
                correlation_id=env.correlation_id,
                delivery_mode=PERSISTENT,
                headers=dict(env.headers),
                message_id=item.message_id,
                message_type=env.type,
                priority=0,
                timestamp=now,
            )
            body = env.body
            parts.append(self._method(env, item.mandatory))
            header = ContentHeader(body_size=len(body), properties=properties)
            parts.append(pamqp.frame.marshal(header, number))
            for start in range(0, len(body), size):
                parts.append(pamqp.frame.marshal(ContentBody(body[start : start + size]), number))
        return b"".join(parts)

    async def _write(self, batch: list[_Item]) -> None:
        channel = self.channel
        payload = self._frames(batch)
        async with channel.lock:
            if any(item.future.done() for item in batch):
                # Failed by a channel closing in between: nothing of the batch is sent.
                raise ChannelInvalidStateError(f"{channel!r} closed")
            confirmations = channel.confirmations
            ids = channel.message_id_delivery_tag
            for item in batch:
                channel.delivery_tag += 1
                confirmations[channel.delivery_tag] = item.future
                ids[item.message_id] = channel.delivery_tag
                item.future.add_done_callback(partial(_forget, ids, item.message_id))
            drained = channel.create_future()
            # Failed by the channel closing while nobody awaits it (a cancelled write): read.
            drained.add_done_callback(_retrieve)
            frame = ChannelFrame(payload=payload, should_close=False, drain_future=drained)
            try:
                channel.write_queue.put_nowait(frame)
            except asyncio.QueueFull:
                # Shielded: once the tags are taken, the frames must reach the queue.
                await asyncio.shield(channel.write_queue.put(frame))
            await drained


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _fail(items: list[_Item], exc: BaseException) -> None:
    for item in items:
        if not item.future.done():
            item.future.set_exception(exc)


def settled(
    futures: Sequence[asyncio.Future[Any]], on_confirm: Callable[[], None]
) -> asyncio.Future[tuple[int, BaseException] | None]:
    """One future for many: resolves once every one is settled, with the first failure in
    order (its index and exception) or None. ``on_confirm`` runs at each confirm.

    Nothing is cancelled when the caller stops waiting: the messages were sent (or will be),
    and their outcomes are read here, so none is left unretrieved.
    """
    whole: asyncio.Future[tuple[int, BaseException] | None] = (
        asyncio.get_running_loop().create_future()
    )
    remaining = len(futures)
    failures: list[tuple[int, BaseException]] = []

    def one(index: int, future: asyncio.Future[Any]) -> None:
        nonlocal remaining
        remaining -= 1
        if future.cancelled():
            failures.append((index, ChannelInvalidStateError("publish cancelled")))
        elif (exc := future.exception()) is not None:
            failures.append((index, exc))
        else:
            on_confirm()
        if remaining == 0 and not whole.done():
            whole.set_result(min(failures, key=lambda f: f[0]) if failures else None)

    for index, future in enumerate(futures):
        future.add_done_callback(partial(one, index))
    if not futures:
        whole.set_result(None)
    return whole
