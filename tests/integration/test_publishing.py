"""Batched publishing (``shared.publishing`` through ``Broker``) against the real broker.

What batching must not change: every message arrives once, in order, with the contract's
properties; a mandatory message no queue takes fails its batch with ``UnroutableError`` naming
it; bodies larger than a frame arrive whole; a caller that stops waiting leaves the channel
confirming later publishes (a delivery tag taken without its frames would stall it for good); a
lost link fails publishes at once and publishing resumes after the reconnection.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt

import aio_pika
import pytest

from shared.messaging import Broker, BrokerUnavailableError, Envelope, UnroutableError
from tests.integration.helpers import take

QUEUE = "test.publishing"


async def _broker(url: str) -> Broker:
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        await channel.declare_queue(QUEUE, durable=True, arguments={"x-queue-type": "quorum"})
    finally:
        await connection.close()
    broker = Broker(url, app_id="test-publishing")
    await broker.connect(deadline=30)
    return broker


def _env(n: int, *, queue: str = QUEUE, body: bytes | None = None) -> Envelope:
    return Envelope(
        exchange="",
        routing_key=queue,
        body=body if body is not None else f'{{"n": {n}}}'.encode(),
        message_id=f"m-{n}",
        type="test.v1",
        correlation_id=f"1:{n}",
        headers={"ledger-shard": "3"},
    )


async def test_a_batch_arrives_in_order_with_the_contract_properties(vhost_url: str) -> None:
    broker = await _broker(vhost_url)
    try:
        await broker.publish_many([_env(n) for n in range(300)], mandatory=True)
    finally:
        await broker.close()
    taken = await take(vhost_url, QUEUE, count=300)
    assert [t.message_id for t in taken] == [f"m-{n}" for n in range(300)]
    assert [t.body for t in taken] == [f'{{"n": {n}}}'.encode() for n in range(300)]
    first = taken[0]
    assert (first.type, first.correlation_id, first.content_type) == (
        "test.v1",
        "1:0",
        "application/json",
    )
    assert first.persistent
    assert first.headers["ledger-shard"] == "3"


async def test_app_id_and_timestamp_are_set(vhost_url: str) -> None:
    broker = await _broker(vhost_url)
    try:
        await broker.publish(_env(1))
    finally:
        await broker.close()
    connection = await aio_pika.connect(vhost_url)
    try:
        channel = await connection.channel()
        queue = await channel.get_queue(QUEUE, ensure=False)
        message = await queue.get(no_ack=True, timeout=5)
        assert message is not None
        assert message.app_id == "test-publishing"
        assert message.timestamp is not None
        assert abs((dt.datetime.now(dt.UTC) - message.timestamp).total_seconds()) < 60
    finally:
        await connection.close()


async def test_an_unroutable_mandatory_message_fails_its_batch_by_name(vhost_url: str) -> None:
    broker = await _broker(vhost_url)
    try:
        batch = [_env(1), _env(2, queue="no.such.queue"), _env(3)]
        with pytest.raises(UnroutableError, match=r"no\.such\.queue"):
            await broker.publish_many(batch, mandatory=True)
        # The channel's tags still match the broker's: the next publish is confirmed.
        await broker.publish(_env(4), confirm_timeout=5, mandatory=True)
        with pytest.raises(UnroutableError):
            await broker.publish(
                _env(5, queue="no.such.queue"), mandatory=True, give_up_stalled=True
            )
    finally:
        await broker.close()
    taken = await take(vhost_url, QUEUE, count=3)
    assert [t.message_id for t in taken] == ["m-1", "m-3", "m-4"]


async def test_a_body_larger_than_a_frame_arrives_whole(vhost_url: str) -> None:
    body = b'{"blob": "' + b"x" * 400_000 + b'"}'
    broker = await _broker(vhost_url)
    try:
        await broker.publish_many([_env(1), _env(2, body=body), _env(3)])
    finally:
        await broker.close()
    taken = await take(vhost_url, QUEUE, count=3)
    assert [len(t.body) for t in taken] == [len(b'{"n": 1}'), len(body), len(b'{"n": 3}')]
    assert taken[1].body == body


async def test_concurrent_publishes_are_each_confirmed(vhost_url: str) -> None:
    broker = await _broker(vhost_url)
    try:
        await asyncio.gather(
            *(
                broker.publish(_env(n), mandatory=True, give_up_stalled=n % 2 == 0)
                for n in range(200)
            )
        )
    finally:
        await broker.close()
    taken = await take(vhost_url, QUEUE, count=200)
    assert sorted(t.message_id or "" for t in taken) == sorted(f"m-{n}" for n in range(200))


async def test_a_caller_that_stops_waiting_leaves_the_channel_confirming(vhost_url: str) -> None:
    broker = await _broker(vhost_url)
    try:
        for _ in range(5):
            waiting = asyncio.create_task(broker.publish_many([_env(n) for n in range(500)]))
            await asyncio.sleep(0)
            waiting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiting
        await broker.publish(_env(9999), confirm_timeout=10)
    finally:
        await broker.close()


async def test_a_lost_link_fails_publishes_at_once_and_publishing_resumes(vhost_url: str) -> None:
    broker = await _broker(vhost_url)
    stopping = asyncio.Event()
    keeping = asyncio.create_task(broker.run(stopping))
    try:
        await broker.publish(_env(1))
        lost = asyncio.Event()
        publishing = broker.link._connections[0]  # closed under the link
        publishing.close_callbacks.add(lambda *_: lost.set())
        await publishing.close()
        await lost.wait()
        with pytest.raises(BrokerUnavailableError):
            await broker.publish(_env(2), give_up_stalled=True)
        assert await broker.wait_up(within=20)
        await broker.publish(_env(3), mandatory=True)
        await broker.publish_many([_env(4), _env(5)], mandatory=True)
    finally:
        stopping.set()
        await keeping
        await broker.close()
    taken = await take(vhost_url, QUEUE, count=4)
    assert [t.message_id for t in taken] == ["m-1", "m-3", "m-4", "m-5"]


async def test_a_refused_publish_fails_and_the_link_starts_afresh(vhost_url: str) -> None:
    """A nack is not a return: the publish fails as refused, and the link is rebuilt (RabbitMQ
    can keep refusing on a channel that published while a quorum queue changed leader)."""
    full = "test.publishing.full"
    connection = await aio_pika.connect(vhost_url)
    try:
        channel = await connection.channel()
        await channel.declare_queue(
            full,
            durable=True,
            arguments={
                "x-queue-type": "classic",
                "x-max-length": 1,
                "x-overflow": "reject-publish",
            },
        )
    finally:
        await connection.close()
    broker = await _broker(vhost_url)
    stopping = asyncio.Event()
    keeping = asyncio.create_task(broker.run(stopping))
    try:
        await broker.publish(_env(0, queue=full))  # the queue is full from here on
        generation = broker.link.generation
        with pytest.raises(UnroutableError, match="nack"):
            await broker.publish(_env(1, queue=full))
        assert await broker.wait_up(within=20)
        assert broker.link.generation > generation
        await broker.publish(_env(2), mandatory=True)
    finally:
        stopping.set()
        await keeping
        await broker.close()
    taken = await take(vhost_url, QUEUE, count=1)
    assert [t.message_id for t in taken] == ["m-2"]
