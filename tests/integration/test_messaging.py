"""RabbitMQ as CONTRACT.md promises it, against the real broker and database.

The topology (durable topic exchanges, durable quorum queues with their ``.dead`` queues), the
properties every published message carries, and the batch consumer's handling of bad input:
malformed orders and ERP messages are dead-lettered with their reason and never block the queue,
malformed or unknown ERP requests are answered with ``sale.confirmation_refused``, and a
redelivered order becomes one sale.
"""

from __future__ import annotations

import itertools
import uuid
from typing import Any
from urllib.parse import quote

import aio_pika
import orjson

from services.cli import deadletters
from shared.contracts import EXCHANGES, SaleConfirm
from shared.messaging import declare_topology
from shared.topology import QUEUES, SHARD_EXCHANGE, QueueSpec, shard_binding
from tests import infra
from tests.harness import System
from tests.integration.helpers import (
    management_get,
    order_paid,
    publish_raw,
    take,
    unique_store_id,
)

_order_ids = itertools.count(7_000_001)


def _name(value: str) -> str:
    return quote(value, safe="")


async def _assert_exchanges(infrastructure: infra.Infrastructure, amqp_url: str) -> None:
    for name in EXCHANGES:
        exchange = await management_get(
            infrastructure, amqp_url, f"exchanges/{{vhost}}/{_name(name)}"
        )
        assert exchange["type"] == "topic", name
        assert exchange["durable"] is True, name
        assert exchange["auto_delete"] is False, name


async def _queue(infrastructure: infra.Infrastructure, amqp_url: str, name: str) -> Any:
    return await management_get(infrastructure, amqp_url, f"queues/{{vhost}}/{_name(name)}")


async def _assert_queue(
    infrastructure: infra.Infrastructure, amqp_url: str, spec: QueueSpec
) -> None:
    queue = await _queue(infrastructure, amqp_url, spec.name)
    assert queue["type"] == "quorum", spec.name
    assert queue["durable"] is True, spec.name
    assert queue["auto_delete"] is False, spec.name
    assert queue["exclusive"] is False, spec.name
    arguments = queue["arguments"]
    assert arguments["x-queue-type"] == "quorum", spec.name
    if spec.dead_letter:
        # Broker-side dead-lettering (a message that keeps crashing its consumer) goes to .dead.
        assert arguments["x-dead-letter-exchange"] == "", spec.name
        assert arguments["x-dead-letter-routing-key"] == f"{spec.name}.dead", spec.name
        if spec.delivery_limit is not None:
            assert int(arguments["x-delivery-limit"]) == spec.delivery_limit, spec.name
        else:
            # Browsed by operators (listing hands messages back): no limit that could drop them.
            assert "x-delivery-limit" not in arguments, spec.name
        dead = await _queue(infrastructure, amqp_url, f"{spec.name}.dead")
        assert dead["type"] == "quorum", spec.dead_name
        assert dead["durable"] is True, spec.dead_name
        assert dead["arguments"]["x-queue-type"] == "quorum", spec.dead_name
    bindings = await management_get(
        infrastructure, amqp_url, f"queues/{{vhost}}/{_name(spec.name)}/bindings"
    )
    bound = {(b["source"], b["routing_key"]) for b in bindings if b["source"] != SHARD_EXCHANGE}
    bound.discard(("", spec.name))  # the default exchange's binding
    assert bound == set(spec.bindings), spec.name
    by_header = [b["arguments"] for b in bindings if b["source"] == SHARD_EXCHANGE]
    assert by_header == ([] if spec.shard is None else [shard_binding(spec.shard)]), spec.name


# --- topology -----------------------------------------------------------------------------------


async def test_started_services_declare_the_contract_topology(
    system: System, infrastructure: infra.Infrastructure
) -> None:
    url = system.settings.amqp_url
    await _assert_exchanges(infrastructure, url)
    for spec in QUEUES:
        await _assert_queue(infrastructure, url, spec)


async def test_declare_topology_on_a_channel_is_idempotent(
    vhost_url: str, infrastructure: infra.Infrastructure
) -> None:
    connection = await aio_pika.connect(vhost_url)
    try:
        channel = await connection.channel()
        await declare_topology(channel)
        await declare_topology(channel)  # a second start redeclares with the same arguments
    finally:
        await connection.close()
    await _assert_exchanges(infrastructure, vhost_url)
    for spec in QUEUES:
        await _assert_queue(infrastructure, vhost_url, spec)


async def test_every_queue_has_a_quorum_dead_letter_queue(
    vhost_url: str, infrastructure: infra.Infrastructure
) -> None:
    """CONTRACT.md: our queues are durable quorum queues; each has a dead-letter queue ``<queue>.dead``."""
    connection = await aio_pika.connect(vhost_url)
    try:
        await declare_topology(await connection.channel())
    finally:
        await connection.close()
    existing = {
        q["name"]: q for q in await management_get(infrastructure, vhost_url, "queues/{vhost}")
    }
    missing = [f"{spec.name}.dead" for spec in QUEUES if f"{spec.name}.dead" not in existing]
    assert missing == [], f"queues of shared.topology.QUEUES without a dead-letter queue: {missing}"
    for spec in QUEUES:
        dead = existing[f"{spec.name}.dead"]
        assert dead["type"] == "quorum"
        assert dead["durable"] is True


# --- message properties -------------------------------------------------------------------------


async def test_published_messages_carry_the_contract_properties(system: System) -> None:
    store = unique_store_id()
    connected = await system.connect_store(store, user="erp-user-3")
    assert connected.webhook_error is None
    order = system.simulator.state.add_order(
        store,
        paid=True,
        notify=False,
        customer={"name": "João Souza", "identification": "75839566500"},
        products=[{"name": "Banco de Pinho", "price": "80.00", "quantity": 2, "sku": "BP-1"}],
        shipping="15.00",
        discount="0",
    )
    order_id = int(order["id"])
    assert await system.webhook(store, "order/paid", order_id) == 200

    paid = await system.observer.wait_for("order.paid", order_id=order_id)
    pending = await system.observer.wait_for("sale.pending_review", order_id=order_id)
    sale_id = pending[0].body["sale_id"]
    await system.erp_publish(
        SaleConfirm(sale_id=sale_id, confirmed_by="erp-user-3"), message_id=f"confirm-{sale_id}"
    )
    confirmed = await system.observer.wait_for("sale.confirmed", sale_id=sale_id)

    ours = [
        s
        for s in system.observer.seen
        if s.exchange in ("ingest.events", "mapper.events", "ledger.events")
    ]
    assert {s.routing_key for s in ours} >= {"order.paid", "sale.pending_review", "sale.confirmed"}
    for seen in ours:
        assert seen.content_type == "application/json", seen
        assert seen.persistent, seen
        assert seen.message_id, seen
        assert seen.type == f"{seen.routing_key}.v1", seen
    for seen in (paid[0], pending[0], confirmed[0]):
        assert seen.correlation_id == f"{store}:{order_id}", seen
        assert seen.body["store_id"] == store
        assert seen.body["order_id"] == order_id
    assert paid[0].exchange == "ingest.events"
    assert pending[0].exchange == "mapper.events"
    assert confirmed[0].exchange == "ledger.events"
    # Money travels as decimal strings.
    assert paid[0].body["total"] == "175.00"
    assert pending[0].body["total"] == "175.00"


# --- the batch consumer: bad input --------------------------------------------------------------


async def test_malformed_orders_are_dead_lettered_and_do_not_block_the_queue(
    system: System,
) -> None:
    url = system.settings.amqp_url
    store = unique_store_id()
    not_json = b"this is not json {"
    not_contract = orjson.dumps({"store_id": "one", "order_id": 5, "items": "none"})
    await publish_raw(url, "ingest.events", "order.paid", not_json, message_id=f"bad-1-{store}")
    await publish_raw(url, "ingest.events", "order.paid", not_contract, message_id=f"bad-2-{store}")
    good = order_paid(store, next(_order_ids))
    await publish_raw(
        url,
        "ingest.events",
        "order.paid",
        good.model_dump_json().encode(),
        message_id=f"good-{store}",
    )

    pending = await system.observer.wait_for("sale.pending_review", order_id=good.order_id)
    assert pending[0].body["store_id"] == store

    dead = await take(url, "mapper.orders.dead", count=2)
    assert len(dead) == 2, dead
    by_id = {d.message_id: d for d in dead}
    assert set(by_id) == {f"bad-1-{store}", f"bad-2-{store}"}
    for message, body in (
        (by_id[f"bad-1-{store}"], not_json),
        (by_id[f"bad-2-{store}"], not_contract),
    ):
        assert message.body == body  # the original body, untouched
        assert message.header("x-error-reason"), message
        assert message.header("x-error-detail"), message
    assert by_id[f"bad-1-{store}"].header("x-error-reason") != by_id[f"bad-2-{store}"].header(
        "x-error-reason"
    )
    # Nothing else was dead-lettered and nothing stays behind in the order queue.
    assert await take(url, "mapper.orders.dead", count=0, within=0) == []


async def test_malformed_erp_messages_are_refused_and_dead_lettered(system: System) -> None:
    url = system.settings.amqp_url
    missing_confirmed_by = orjson.dumps({"sale_id": "sale-without-confirmer"})
    not_json = b"<confirm sale='1'/>"
    await publish_raw(
        url, "erp.events", "sale.confirm", missing_confirmed_by, message_id="erp-bad-1"
    )
    await publish_raw(url, "erp.events", "sale.confirm", not_json, message_id="erp-bad-2")

    refused = await system.observer.wait_for("sale.confirmation_refused", count=2)
    by_sale = {r.body.get("sale_id"): r for r in refused}
    assert "sale-without-confirmer" in by_sale
    for seen in refused:
        assert seen.exchange == "ledger.events"
        assert seen.body["reason"]
        assert seen.body["detail"]
        assert seen.type == "sale.confirmation_refused.v1"

    dead = await take(url, "ledger.erp.dead", count=2)
    by_id = {d.message_id: d for d in dead}
    assert set(by_id) == {"erp-bad-1", "erp-bad-2"}
    assert by_id["erp-bad-1"].body == missing_confirmed_by
    assert by_id["erp-bad-2"].body == not_json
    for message in dead:
        assert message.header("x-error-reason")
        assert message.header("x-error-detail")

    # The queue is not blocked: a well-formed request behind them is still answered.
    unknown = str(uuid.uuid4())
    await system.erp_publish(SaleConfirm(sale_id=unknown, confirmed_by="erp-user-1"), "erp-good-1")
    await system.observer.wait_for("sale.confirmation_refused", sale_id=unknown)


async def test_confirming_an_unknown_sale_is_refused(system: System) -> None:
    unknown = str(uuid.uuid4())
    await system.erp_publish(
        SaleConfirm(sale_id=unknown, confirmed_by="erp-user-9"), message_id=f"confirm-{unknown}"
    )
    refused = await system.observer.wait_for("sale.confirmation_refused", sale_id=unknown)
    assert refused[0].body["reason"] == "unknown_sale"
    assert refused[0].body["detail"]
    assert refused[0].exchange == "ledger.events"
    await system.ledger_settled()
    assert system.observer.of("sale.confirmed") == []
    # A refusal is an answer, not a failure: nothing is dead-lettered.
    assert await take(system.settings.amqp_url, "ledger.erp.dead", count=0, within=0) == []


async def test_a_redelivered_or_republished_order_becomes_one_sale(system: System) -> None:
    url = system.settings.amqp_url
    store = unique_store_id()
    order = order_paid(store, next(_order_ids))
    body = order.model_dump_json().encode()
    await publish_raw(url, "ingest.events", "order.paid", body, message_id=f"order.paid:{store}:1")
    await publish_raw(url, "ingest.events", "order.paid", body, message_id=f"order.paid:{store}:1")
    await publish_raw(url, "ingest.events", "order.paid", body, message_id=f"order.paid:{store}:2")

    await system.observer.wait_for("sale.pending_review", order_id=order.order_id)
    await system.mapper_settled()
    await system.ledger_settled()  # the ledger's count below is read after it had its chance
    assert len(system.observer.of("sale.pending_review", store_id=store)) == 1
    pool = system.services["mapper"].ctx.pool
    sales = await pool.fetchval("SELECT count(*) FROM mapper.sales WHERE store_id = $1", store)
    assert sales == 1
    ledger = await pool.fetchval("SELECT count(*) FROM ledger.sales WHERE store_id = $1", store)
    assert ledger == 1
    assert await take(url, "mapper.orders.dead", count=0, within=0) == []


# --- dead-letter queues for operators -----------------------------------------------------------


async def test_listing_a_dead_letter_queue_does_not_consume_it(vhost_url: str) -> None:
    """``dead list`` hands every message back: listing many times loses nothing."""
    connection = await aio_pika.connect(vhost_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        await declare_topology(channel)
        await channel.default_exchange.publish(
            aio_pika.Message(
                b'{"store_id": 1}',
                message_id="dead-1",
                headers={"x-error-reason": "invalid_message", "x-error-detail": "store_id only"},
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key="mapper.orders.dead",
        )
    finally:
        await connection.close()
    for _ in range(25):  # more than any delivery limit a broker could apply by default
        listed = await deadletters.list_messages(vhost_url, "mapper.orders.dead")
        assert [(m["message_id"], m["reason"], m["detail"]) for m in listed] == [
            ("dead-1", "invalid_message", "store_id only")
        ]
    left = await take(vhost_url, "mapper.orders.dead", count=1)
    assert [m.body for m in left] == [b'{"store_id": 1}']
