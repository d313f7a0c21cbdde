"""Orders that cannot be read as a sale (SPEC §4), against the real broker and database.

Invalid order data (no items, a negative or zero quantity, a negative amount, no customer name, or
an order ingest could not parse, announced as ``order.invalid``) is handled like a stock
rejection: nothing created, ``sale.rejected`` with reason ``invalid_order``, recorded, parked with
its reason, retryable. A message that is not the contract at all is dead-lettered with its reason.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from services.mapper import ops
from shared.contracts import Message, OrderInvalid, OrderPaid
from shared.settings import Settings
from tests import infra
from tests.harness import System
from tests.integration.mapper_helpers import (
    Cli,
    Counts,
    counts,
    import_order,
    line,
    make_order,
    order_envelope,
    pending_sale,
    pool,
    publish,
    publish_raw,
    rejection,
    running_mapper,
    wait_queue,
)

PARKED = "mapper.orders.parked"
DEAD = "mapper.orders.dead"


@pytest.fixture
async def system(settings: Settings) -> AsyncIterator[System]:
    async with running_mapper(settings) as running:
        yield running


def _paid(store_id: int, **changes: Any) -> OrderPaid:
    return make_order(store_id, 1).model_copy(update=changes)


@dataclass(frozen=True)
class InvalidRow:
    id: str
    build: Any  # store_id -> the message
    detail: str  # a part of the detail an operator reads


INVALID = [
    InvalidRow("no-items", lambda s: make_order(s, 1, items=[]), "no items"),
    InvalidRow(
        "negative-quantity",
        lambda s: make_order(s, 1, items=[line("Mesa", 1), line("Banco", -2)]),
        "item 2 has quantity -2",
    ),
    InvalidRow("zero-quantity", lambda s: make_order(s, 1, items=[line("Mesa", 0)]), "quantity 0"),
    InvalidRow(
        "negative-price", lambda s: make_order(s, 1, items=[line("Mesa", 1, "-5.00")]), "negative"
    ),
    InvalidRow(
        "blank-item-name", lambda s: make_order(s, 1, items=[line("   ", 1)]), "item 1 has no name"
    ),
    InvalidRow("no-customer-name", lambda s: make_order(s, 1, name=None), "no name"),
    InvalidRow("blank-customer-name", lambda s: make_order(s, 1, name="  \t "), "no name"),
    InvalidRow("negative-discount", lambda s: make_order(s, 1, discount="-1.00"), "discount"),
    InvalidRow("negative-shipping", lambda s: make_order(s, 1, shipping="-0.01"), "shipping"),
    InvalidRow("negative-total", lambda s: make_order(s, 1, total="-10.00"), "total"),
    # What ingest announces for an order it cannot parse (unreadable money, say).
    InvalidRow(
        "order.invalid-unparseable-money",
        lambda s: OrderInvalid(
            store_id=s, order_id=1, detail="total: not a decimal amount: '12,5.0'"
        ),
        "not a decimal amount",
    ),
]


async def test_invalid_order_rule_table(
    system: System, infrastructure: infra.Infrastructure, tmp_path: Path
) -> None:
    """Each row in a store of its own: rejected invalid_order, nothing created, recorded, parked."""
    stores = {row.id: 8100 + n for n, row in enumerate(INVALID)}
    messages: dict[str, Message] = {row.id: row.build(stores[row.id]) for row in INVALID}
    sent = {row.id: await publish(system, messages[row.id]) for row in INVALID}
    failures: list[str] = []
    for row in INVALID:
        store = stores[row.id]
        seen = await rejection(system, store, 1)
        got = (seen.body["reason"], row.detail in seen.body["detail"], seen.body.get("items"))
        if got != ("invalid_order", True, None):
            failures.append(f"{row.id}: (reason, detail ok, items) = {got}: {seen.body}")
        if seen.correlation_id != f"{store}:1" or seen.type != "sale.rejected.v1":
            failures.append(f"{row.id}: properties {seen.correlation_id} {seen.type}")
        after = await counts(system, store)
        if after != Counts(0, 0, 0, 0):
            failures.append(f"{row.id}: created {after}")
        recorded = await ops.rejected_orders(pool(system), store)
        if [(r["reason"], r["detail"]) for r in recorded] != [
            ("invalid_order", seen.body["detail"])
        ]:
            failures.append(f"{row.id}: recorded {recorded}")

    parked = await wait_queue(infrastructure, system.settings.amqp_url, PARKED, len(INVALID))
    by_correlation = {m.correlation_id: m for m in parked}
    for row in INVALID:
        message = by_correlation.get(f"{stores[row.id]}:1")
        if message is None:
            failures.append(f"{row.id}: not parked")
            continue
        headers = message.headers
        if message.body != sent[row.id].body:
            failures.append(f"{row.id}: parked body differs from the original")
        if headers.get("x-error-reason") != "invalid_order" or row.detail not in str(
            headers.get("x-error-detail")
        ):
            failures.append(f"{row.id}: parked headers {headers}")
        if headers.get("x-original-routing-key") != messages[row.id].routing_key:
            failures.append(f"{row.id}: parked without its routing key: {headers}")
    assert len(parked) == len(INVALID)

    listed = await Cli(system.settings, tmp_path).json("orders", "rejected")
    assert sorted((r["store_id"], r["reason"]) for r in listed) == sorted(
        (store, "invalid_order") for store in stores.values()
    )
    assert not failures, "\n".join(failures)


async def test_corrected_order_is_imported_and_the_rejection_resolved(
    system: System, tmp_path: Path
) -> None:
    store = 8200
    await publish(system, OrderInvalid(store_id=store, order_id=1, detail="items: unreadable"))
    await rejection(system, store, 1)
    # Ingest reads the order again, now well formed, and announces it paid.
    order = make_order(store, 1)
    sale = await import_order(system, order)
    assert sale["order_id"] == 1
    assert await Cli(system.settings, tmp_path).json("orders", "rejected") == []


async def test_retried_invalid_order_is_rejected_again(system: System, tmp_path: Path) -> None:
    store = 8300
    cli = Cli(system.settings, tmp_path)
    await publish(system, make_order(store, 1, items=[]))
    first = await rejection(system, store, 1)
    retried = await cli.json("orders", "retry", "--store-id", str(store), "--order-id", "1")
    assert [(r["order_id"], r["reason"]) for r in retried] == [(1, "invalid_order")]
    second = await rejection(system, store, 1, count=2)
    assert second.body["detail"] == first.body["detail"]
    assert second.message_id != first.message_id
    assert [(r["order_id"], r["attempts"]) for r in await cli.json("orders", "rejected")] == [
        (1, 2)
    ]
    assert await counts(system, store) == Counts(0, 0, 0, 0)


async def test_order_invalid_after_the_sale_exists_rejects_nothing(system: System) -> None:
    """A late ``order.invalid`` (reordered after the order was imported) changes nothing."""
    store = 8400
    order = make_order(store, 1)
    await import_order(system, order)
    await publish(system, OrderInvalid(store_id=store, order_id=1, detail="stale read"))
    await publish(system, make_order(store, 2))  # processed after it: the queue moved on
    await pending_sale(system, make_order(store, 2))
    await system.mapper_settled()
    assert system.observer.of("sale.rejected", store_id=store, order_id=1) == []
    assert await ops.rejected_orders(pool(system), store) == []


async def test_malformed_order_paid_is_dead_lettered_with_its_reason(
    system: System, infrastructure: infra.Infrastructure, tmp_path: Path
) -> None:
    store = 8500
    body = json.loads(order_envelope(make_order(store, 1)).body)
    body["total"] = "12,50"  # not a decimal amount: the message breaks the contract
    raw = json.dumps(body).encode()
    await publish_raw(system, "order.paid", raw, message_id="order.paid:8500:1")
    good = make_order(store, 2)
    await publish(system, good)
    await pending_sale(system, good)

    dead = await wait_queue(infrastructure, system.settings.amqp_url, DEAD, 1)
    assert len(dead) == 1
    assert dead[0].body == raw
    assert dead[0].message_id == "order.paid:8500:1"
    assert dead[0].headers.get("x-error-reason") == "invalid_message"
    assert "total" in str(dead[0].headers.get("x-error-detail"))
    listed = await Cli(system.settings, tmp_path).json("dead", "list", DEAD)
    assert [(d["message_id"], d["reason"]) for d in listed] == [
        ("order.paid:8500:1", "invalid_message")
    ]
    assert await counts(system, store) == Counts(1, 1, 1, 1)  # only the good order's
