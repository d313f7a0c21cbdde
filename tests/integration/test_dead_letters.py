"""``dead list``/``dead replay`` on what RabbitMQ dead-letters by itself (issue 9, item 4).

A message whose consumer keeps failing is dead-lettered by the broker once it passes the
queue's delivery limit: it carries no ``x-error-reason`` of ours, only the broker's ``x-death``.
``dead list`` shows that reason (``delivery_limit``), the queue and the count; ``dead replay``
sends the message back where it was first published, which ``x-death`` also says.
"""

from __future__ import annotations

import json
from pathlib import Path

import aio_pika
import pytest

from services.ingest.tokens import generate_key
from shared.messaging import declare_topology
from shared.topology import DELIVERY_LIMIT, MAPPER_ORDERS
from tests.integration.helpers import Completed, child_env, closed_port, run_cli


@pytest.fixture
def env(vhost_url: str, database_url: str) -> dict[str, str]:
    return child_env(
        AMQP_URL=vhost_url,
        DATABASE_URL=database_url,
        TOKEN_ENCRYPTION_KEY=generate_key(),
        NUVEMSHOP_API_URL=f"http://127.0.0.1:{closed_port()}/v1",
    )


def _ok(result: Completed) -> str:
    assert result.returncode == 0, result.describe()
    return result.stdout


async def _fail_until_dead_lettered(vhost_url: str, body: bytes) -> int:
    """Publish an order and hand it back unacknowledged until the broker gives up on it."""
    connection = await aio_pika.connect(vhost_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        await declare_topology(channel)
        exchange = await channel.get_exchange("ingest.events")
        await exchange.publish(
            aio_pika.Message(
                body,
                message_id="poison-1",
                type="order.paid.v1",
                correlation_id="1:2",
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key="order.paid",
        )
        queue = await channel.declare_queue(MAPPER_ORDERS.name, passive=True)
        deliveries = 0
        while (message := await queue.get(no_ack=False, fail=False)) is not None:
            deliveries += 1
            await message.nack(requeue=True)  # what a crashing consumer amounts to
            assert deliveries <= DELIVERY_LIMIT + 1, "the broker never dead-lettered it"
        return deliveries
    finally:
        await connection.close()


async def test_a_message_over_the_delivery_limit_is_listed_with_the_brokers_reason(
    env: dict[str, str], vhost_url: str, tmp_path: Path
) -> None:
    body = json.dumps({"store_id": 1, "order_id": 2}).encode()
    deliveries = await _fail_until_dead_lettered(vhost_url, body)
    assert deliveries == DELIVERY_LIMIT + 1

    listed = json.loads(
        _ok(await run_cli("dead", "list", "mapper.orders.dead", "--json", env=env, cwd=tmp_path))
    )
    assert [m["message_id"] for m in listed] == ["poison-1"]
    message = listed[0]
    assert message["reason"] == "delivery_limit"
    assert "mapper.orders" in message["detail"]
    [death] = message["dead_lettered"]
    assert death["reason"] == "delivery_limit"
    assert death["queue"] == "mapper.orders"
    assert death["count"] == 1
    assert death["exchange"] == "ingest.events"
    assert death["routing_keys"] == ["order.paid"]

    text = _ok(await run_cli("dead", "list", "mapper.orders.dead", env=env, cwd=tmp_path))
    assert text.startswith("poison-1  delivery_limit: dead-lettered by RabbitMQ from mapper.orders")

    # Replayed where it was first published: back in mapper.orders, out of the dead queue.
    replayed = json.loads(
        _ok(
            await run_cli(
                "dead", "replay", "mapper.orders.dead", "--all", "--json", env=env, cwd=tmp_path
            )
        )
    )
    assert [m["message_id"] for m in replayed] == ["poison-1"]
    connection = await aio_pika.connect(vhost_url)
    try:
        channel = await connection.channel()
        back = await (await channel.declare_queue(MAPPER_ORDERS.name, passive=True)).get(
            no_ack=True, fail=False
        )
        assert back is not None
        # A new attempt of an old fact: a new id, and x-retry-of naming the first (CONTRACT).
        assert back.message_id is not None
        assert back.message_id.startswith("poison-1:retry:")
        assert (back.headers or {})["x-retry-of"] == "poison-1"
        assert back.routing_key == "order.paid"
        assert back.body == body
        assert "x-death" not in (back.headers or {})
        # Put back, it fails again: dead list shows it as a retry; its replay names the first id.
        await channel.default_exchange.publish(
            aio_pika.Message(
                body,
                message_id=back.message_id,
                headers={
                    "x-retry-of": "poison-1",
                    "x-error-reason": "invalid_message",
                    "x-original-exchange": "ingest.events",
                    "x-original-routing-key": "order.paid",
                },
            ),
            routing_key="mapper.orders.dead",
        )
    finally:
        await connection.close()
    again = json.loads(
        _ok(await run_cli("dead", "list", "mapper.orders.dead", "--json", env=env, cwd=tmp_path))
    )
    assert [m["retry_of"] for m in again] == ["poison-1"]
    text = _ok(await run_cli("dead", "list", "mapper.orders.dead", env=env, cwd=tmp_path))
    assert text.rstrip().endswith("(retry of poison-1)")
    _ok(await run_cli("dead", "replay", "mapper.orders.dead", "--all", env=env, cwd=tmp_path))
    connection = await aio_pika.connect(vhost_url)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(MAPPER_ORDERS.name, passive=True)
        second = await queue.get(no_ack=True, fail=False)
        assert second is not None
        assert second.message_id not in ("poison-1", back.message_id)
        assert (second.headers or {})["x-retry-of"] == "poison-1"
    finally:
        await connection.close()
    empty = await run_cli("dead", "list", "mapper.orders.dead", "--json", env=env, cwd=tmp_path)
    assert json.loads(_ok(empty)) == []


async def test_our_own_reason_stays_beside_the_brokers(
    env: dict[str, str], vhost_url: str, tmp_path: Path
) -> None:
    """A message rejected (nack, no requeue) that carries our headers keeps our reason first."""
    connection = await aio_pika.connect(vhost_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        await declare_topology(channel)
        await channel.default_exchange.publish(
            aio_pika.Message(
                b"{}",
                message_id="ours-1",
                headers={"x-error-reason": "invalid_message", "x-error-detail": "no store_id"},
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=MAPPER_ORDERS.name,
        )
        queue = await channel.declare_queue(MAPPER_ORDERS.name, passive=True)
        message = await queue.get(no_ack=False)
        await message.reject(requeue=False)
    finally:
        await connection.close()
    listed = json.loads(
        _ok(await run_cli("dead", "list", "mapper.orders.dead", "--json", env=env, cwd=tmp_path))
    )
    assert [(m["reason"], m["detail"]) for m in listed] == [("invalid_message", "no store_id")]
    assert [d["reason"] for d in listed[0]["dead_lettered"]] == ["rejected"]
