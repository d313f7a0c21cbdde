"""SPEC §5 and §7: whatever is redelivered, duplicated or raced, a sale is posted and reversed once.

- a redelivery (the same message id) changes nothing and announces nothing;
- a crash between the ledger's commit and its ack: the broker redelivers, nothing is posted
  twice, and what the crashed instance had to announce is announced once (outbox relay);
- ten identical confirmations at once (new message ids), on one or two ledger instances: one
  set of receivables and movements;
- a confirmation and a cancellation of the same sale at the same instant: the sale ends in one
  consistent state — never confirmed with cancelled receivables, never cancelled with open ones.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

import aio_pika
import orjson
import pytest
from aio_pika.abc import AbstractIncomingMessage

from services.ledger.adapters import postgres
from services.ledger.app import LedgerService
from services.ledger.handlers import SCHEMA, sales_handler
from shared.consumer import BatchResult, decode
from shared.contracts import Message, OrderCancelled, SaleConfirm, SaleDiscard, SalePendingReview
from shared.db import create_pool
from shared.messaging import Broker, correlation, envelope
from shared.runtime import Running
from shared.settings import Settings
from shared.topology import LEDGER_ERP, ledger_shard, shard_count, shard_of
from tests import infra
from tests.harness import Observer
from tests.integration.ledger_helpers import (
    LEDGER_MODELS,
    Ledger,
    Rows,
    Tables,
    days,
    deliveries_of,
    next_order_id,
    payment,
    pending_sale,
    product_id,
    publish_via_management,
    start_ledger,
    start_second_ledger,
    wait_until,
)

STORE = 7501
CANCELLED_AT = dt.datetime(2026, 1, 3, 9, 0, tzinfo=dt.UTC)


async def _inbox(ledger: Ledger, *message_ids: str) -> int:
    """How many of ``message_ids`` the inbox holds (an ERP message once per shard's copy)."""
    return int(
        await ledger.pool.fetchval(
            "SELECT count(DISTINCT split_part(message_id, '@shard', 1)) FROM ledger.inbox"
            " WHERE split_part(message_id, '@shard', 1) = ANY($1::text[])",
            list(message_ids),
        )
    )


# --- redelivery ---------------------------------------------------------------------------------


async def test_redelivered_messages_change_nothing_and_announce_nothing(ledger: Ledger) -> None:
    bowl = product_id()
    await ledger.add_stock(STORE, bowl, 10)
    sale = pending_sale(STORE, next_order_id(), [(bowl, 3, "20.00")])
    await ledger.announce(sale)

    # A refused confirmation, redelivered: refused once.
    bad = payment("pix", ("10.00", days(0)))
    await ledger.confirm(sale.sale_id, "erp-confirm-bad", pay=bad)
    await ledger.refused(sale.sale_id)
    await ledger.confirm(sale.sale_id, "erp-confirm-bad", pay=bad)

    await ledger.confirm(sale.sale_id, "erp-confirm-1")
    first = (await ledger.confirmed(sale.sale_id)).body
    before = ledger.processed()
    # The broker hands the confirmation, and the announcement, back again (same message ids).
    await ledger.confirm(sale.sale_id, "erp-confirm-1")
    await ledger.confirm(sale.sale_id, "erp-confirm-1")
    await ledger.announce(sale, wait=False)
    await wait_until(
        lambda: _gte(ledger.processed(), before + 3), what="the redeliveries to be consumed"
    )
    await ledger.settled()
    assert len(ledger.events("sale.confirmed", sale.sale_id)) == 1
    assert len(ledger.events("sale.confirmation_refused", sale.sale_id)) == 1
    assert await ledger.posted(sale.sale_id) == (1, 1)
    assert await ledger.on_hand(STORE, bowl) == 7

    # The mapper re-announces the sale under a new message id: the ledger already knows it.
    await ledger.publish(sale, "sale.pending_review:republished")
    await ledger.cancel_order(STORE, sale.order_id, "order-cancelled-1")
    await ledger.cancelled(sale.sale_id)
    assert await ledger.status(sale.sale_id) == "cancelled"
    before = ledger.processed()
    await ledger.cancel_order(STORE, sale.order_id, "order-cancelled-1")
    await wait_until(lambda: _gte(ledger.processed(), before + 1), what="the redelivery")
    await ledger.settled()
    assert len(ledger.events("sale.cancelled", sale.sale_id)) == 1
    assert await ledger.posted(sale.sale_id) == (1, 2)
    assert await ledger.on_hand(STORE, bowl) == 10
    assert (
        await _inbox(
            ledger,
            f"sale.pending_review:{sale.sale_id}",
            "sale.pending_review:republished",
            "erp-confirm-bad",
            "erp-confirm-1",
            "order-cancelled-1",
        )
        == 5
    )
    assert first["receivables"][0]["status"] == "open"


async def _gte(value: float, target: float) -> bool:
    return value >= target


async def test_crash_between_commit_and_ack_posts_nothing_twice(settings: Settings) -> None:
    """A ledger commits a batch and dies before acking it or publishing what it staged."""
    # Its own queue: the restarted system's observer must not share (split) its messages.
    observer = await Observer.start(settings.amqp_url, "test.observer.from-the-start")
    erp = Broker(settings.amqp_url, app_id="test-erp")
    await erp.connect(deadline=10)  # declares the topology, as any service would
    pool = await create_pool(settings.database_url)
    lamp = product_id()
    sale = pending_sale(STORE, next_order_id(), [(lamp, 2, "75.00")])
    key = correlation(STORE, sale.order_id)
    terms = payment("boleto", ("75.00", days(0)), ("75.00", days(30)))
    confirm = SaleConfirm(
        sale_id=sale.sale_id, confirmed_by="erp-user-9", seller_id="erp-user-3", payment=terms
    )
    system = None
    try:
        await erp.publish(
            envelope(sale, message_id=f"sale.pending_review:{sale.sale_id}", correlation_id=key)
        )
        await erp.publish(envelope(confirm, message_id="erp-confirm-1", correlation_id=key))

        shard = shard_of(STORE)
        # The doomed instance: takes both messages, commits through the real handler, then its
        # connection is gone before any ack (and before the fast-path publish).
        connection = await aio_pika.connect(settings.amqp_url)
        deliveries: list[AbstractIncomingMessage] = []
        try:
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=10)

            async def take(delivery: AbstractIncomingMessage) -> None:
                deliveries.append(delivery)

            # Manual acks, none of which will ever be sent: the announcement from its store's
            # shard, the confirmation from ledger.erp.
            for name in (ledger_shard(shard).name, LEDGER_ERP.name):
                await (await channel.get_queue(name, ensure=False)).consume(take)
            await wait_until(lambda: _gte(len(deliveries), 2), what="both deliveries")
            by_key = {d.routing_key: decode(d, LEDGER_MODELS) for d in deliveries}
            kept = await sales_handler(postgres.begin(pool, shard=shard), shard, shard_count())(
                [by_key["sale.pending_review"]]
            )
            decided = await sales_handler(postgres.begin(pool), None, shard_count())(
                [by_key["sale.confirm"]]
            )
            assert kept.outcomes == decided.outcomes == [None]
            staged = [s.envelope.routing_key for s in (*kept.staged, *decided.staged)]
            assert staged == ["sale.confirmed"]
        finally:
            await connection.close()
        assert await pool.fetchval(f"SELECT count(*) FROM {SCHEMA}.outbox") == 1
        assert await pool.fetchval("SELECT count(*) FROM ledger.receivables") == 2

        # The ledger restarts; the broker redelivers both messages to it.
        system = await start_ledger(settings)
        ledger = Ledger(system)
        await wait_until(
            lambda: _gte(ledger.processed(), 2), within=15, what="the redeliveries to be consumed"
        )
        confirmed = await observer.wait_for("sale.confirmed", sale_id=sale.sale_id, within=15)
        await system.ledger_settled()
        await observer.echo(erp)

        assert len(observer.of("sale.confirmed", sale_id=sale.sale_id)) == 1
        assert observer.of("sale.confirmation_refused") == []
        body = confirmed[0].body
        assert body["seller_id"] == "erp-user-3"
        assert [(r["number"], r["amount"]) for r in body["receivables"]] == [
            (1, "75.00"),
            (2, "75.00"),
        ]
        assert await ledger.posted(sale.sale_id) == (2, 1)
        assert [r["id"] for r in await ledger.receivables(sale.sale_id)] == [
            r["id"] for r in body["receivables"]
        ]
        assert await ledger.on_hand(STORE, lamp) == -2
        assert await ledger.pool.fetchval("SELECT count(*) FROM ledger.outbox") == 0
        assert await ledger.status(sale.sale_id) == "confirmed"
    finally:
        if system is not None:
            await system.stop()
        await pool.close()
        await erp.close()
        await observer.close()


# --- concurrent duplicates ----------------------------------------------------------------------

MODES = {
    # mode: (ledger instances, batch size, stop the first instance while the messages flow)
    "one-ledger": (1, 200, False),
    "two-ledgers": (2, 200, False),
    "two-ledgers-one-message-per-transaction": (2, 1, False),
    "two-ledgers-the-first-stops-midway": (2, 1, True),
}


async def _ledgers(settings: Settings, mode: str) -> tuple[Ledger, list[Running]]:
    """The ledger (first instance) and every instance started, in order."""
    instances, batch_size, _ = MODES[mode]
    system = await start_ledger(settings.model_copy(update={"batch_size": batch_size}))
    runnings = [system.services["ledger"]]
    runnings += [await start_second_ledger(system) for _ in range(instances - 1)]
    await wait_until(_settled(runnings), what="the shards shared between the instances")
    return Ledger(system), runnings


def _assigned(running: Running) -> list[int]:
    service = running.service
    assert isinstance(service, LedgerService)
    return service.assigner.assigned


def _settled(runnings: list[Running]) -> Callable[[], Awaitable[bool]]:
    """Every shard consumed by exactly one instance, each instance holding some."""

    async def check() -> bool:
        held = [_assigned(r) for r in runnings]
        flat = sorted(k for shards in held for k in shards)
        return flat == list(range(shard_count())) and all(held)

    return check


def _on_queue(running: Running, queue: str) -> float:
    value = running.ctx.metrics.registry.get_sample_value(
        "nuvem_ledger_messages_total", {"queue": queue, "outcome": "processed"}
    )
    return 0.0 if value is None else float(value)


async def _stop_first_if_asked(
    ledger: Ledger, runnings: list[Running], mode: str, *, announced: int
) -> None:
    """With two instances, stop the first while messages flow (once a first confirmation was
    processed, after the ``announced`` sales): the other carries on alone."""
    if not MODES[mode][2]:
        return
    await wait_until(
        lambda: _gte(_processed(ledger, runnings), announced + 1), what="a first confirmation"
    )
    ledger.system.services["ledger"] = runnings[1]  # the harness now reads through the survivor
    await runnings[0].stop(grace_s=5)


async def _stop(ledger: Ledger, runnings: list[Running]) -> None:
    for running in runnings:
        if running is not ledger.system.services["ledger"] and not running.ctx.stopping.is_set():
            await running.stop(grace_s=5)
    await ledger.system.stop()


def _processed(ledger: Ledger, runnings: list[Running]) -> float:
    return sum(ledger.processed(r) for r in runnings)


@pytest.mark.parametrize("mode", list(MODES))
async def test_ten_concurrent_identical_confirmations_post_once(
    settings: Settings, mode: str
) -> None:
    ledger, runnings = await _ledgers(settings, mode)
    try:
        terms = payment("boleto", ("100.00", days(0)), ("100.00", days(30)), ("50.00", days(60)))
        sales = []
        for _ in range(4):
            plate, cup = product_id(), product_id()
            await ledger.add_stock(STORE, plate, 10)
            await ledger.add_stock(STORE, cup, 10)
            sale = pending_sale(STORE, next_order_id(), [(plate, 2, "100.00"), (cup, 1, "50.00")])
            await ledger.announce(sale)
            sales.append((sale, plate, cup))

        await asyncio.gather(
            *(
                ledger.confirm(
                    sale.sale_id,
                    f"erp-confirm-{sale.sale_id}-{n}",
                    seller_id="erp-user-4",
                    pay=terms,
                )
                for n in range(10)
                for sale, _, _ in sales
            )
        )
        await _stop_first_if_asked(ledger, runnings, mode, announced=len(sales))
        for sale, _, _ in sales:
            await ledger.confirmed(sale.sale_id)
        await wait_until(
            lambda: _gte(_processed(ledger, runnings), 4 * 11), what="every message consumed"
        )
        home = ledger_shard(shard_of(STORE)).name
        kept = [_on_queue(r, home) for r in runnings]  # before the barrier's probe reaches it
        await ledger.settled()  # whatever instance published anything about them, it is seen

        for sale, plate, cup in sales:
            assert ledger.events("sale.confirmation_refused", sale.sale_id) == []
            announced = ledger.events("sale.confirmed", sale.sale_id)
            # Repeats of a confirmed sale re-announce it; every announcement says the same.
            assert 1 <= len(announced) <= 10
            assert len({repr(s.body) for s in announced}) == 1
            assert await ledger.posted(sale.sale_id) == (3, 2)
            rows = await ledger.receivables(sale.sale_id)
            assert [r["id"] for r in rows] == [r["id"] for r in announced[0].body["receivables"]]
            assert await ledger.status(sale.sale_id) == "confirmed"
            assert await ledger.on_hand(STORE, plate) == 8
            assert await ledger.on_hand(STORE, cup) == 9
        if len(runnings) == 2 and not MODES[mode][2]:
            # The store's shard is one instance's: it kept the 4 announcements, the other
            # instance none of them (the confirmations wait in ledger.erp).
            owner = next(n for n, r in enumerate(runnings) if shard_of(STORE) in _assigned(r))
            assert (kept[owner], kept[1 - owner]) == (4.0, 0.0)
    finally:
        await _stop(ledger, runnings)


async def test_ten_overlapping_transactions_confirming_one_sale_post_once(
    settings: Settings,
) -> None:
    """The handler itself, ten times at once on the same sale: the row lock serialises them.

    Called directly (with real deliveries), so the ten transactions overlap for sure, whatever
    the broker does to keep consumers apart.
    """
    pool = await create_pool(settings.database_url, min_size=1, max_size=12)
    try:
        rows = Rows(pool)
        handler = sales_handler(postgres.begin(pool), 0, 1)  # every kind, one shard
        terms = payment("pix", ("60.00", days(0)), ("60.00", days(30)))
        sales = [
            pending_sale(STORE, next_order_id(), [(product_id(), 3, "40.00")]) for _ in range(3)
        ]
        messages: list[tuple[Message, str]] = [(s, f"announce-{s.sale_id}") for s in sales]
        messages += [
            (SaleConfirm(sale_id=s.sale_id, confirmed_by=f"erp-user-{n}", payment=terms), f"c-{s.sale_id}-{n}")
            for s in sales
            for n in range(10)
        ]  # fmt: skip
        incoming = await deliveries_of(settings.amqp_url, messages)
        await handler(incoming[: len(sales)])

        results = await asyncio.gather(*(handler([i]) for i in incoming[len(sales) :]))
        for sale in sales:
            staged = _staged(results, sale.sale_id)
            # The first confirmation stages sale.confirmed; the repeats find it already staged.
            assert [e["key"] for e in staged] == ["sale.confirmed"]
            assert await rows.posted(sale.sale_id) == (2, 1)
            assert await rows.status(sale.sale_id) == "confirmed"
            stored = await pool.fetchval(
                "SELECT confirm_message_id FROM ledger.sales WHERE sale_id = $1", sale.sale_id
            )
            assert stored.startswith(f"c-{sale.sale_id}-")
        assert await pool.fetchval("SELECT count(*) FROM ledger.outbox") == len(sales)
        assert all(r.outcomes == [None] for r in results)
    finally:
        await pool.close()


def _staged(results: list[BatchResult], sale_id: str) -> list[dict[str, Any]]:
    """What the handler calls staged to publish about one sale: routing key and body."""
    found = []
    for result in results:
        for staged in result.staged:
            body = orjson.loads(staged.envelope.body)
            if body.get("sale_id") == sale_id:
                found.append({"key": staged.envelope.routing_key, "body": body})
    return found


# --- confirm / cancel race ----------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["one-ledger", "two-ledgers-one-message-per-transaction"])
async def test_confirm_and_cancel_at_the_same_instant_end_consistent(
    settings: Settings, mode: str
) -> None:
    ledger, runnings = await _ledgers(settings, mode)
    try:
        sales = []
        for n in range(20):
            stool, board = product_id(), product_id()
            await ledger.add_stock(STORE, stool, 5)
            await ledger.add_stock(STORE, board, 5)
            sale = pending_sale(STORE, next_order_id(), [(stool, 2, "30.00"), (board, 1, "40.00")])
            await ledger.announce(sale, wait=False)
            sales.append((n, sale, stool, board))
        for _, sale, _, _ in sales:
            await ledger.wait_status(sale.sale_id, "pending_review")

        def racers(n: int, sale: SalePendingReview) -> list[Awaitable[None]]:
            confirm = ledger.confirm(
                sale.sale_id,
                f"erp-confirm-{sale.sale_id}",
                pay=payment("pix", ("50.00", days(0)), ("50.00", days(30))),
            )
            # Half are discarded by the ERP, half cancelled by the store; the order alternates.
            cancel = (
                ledger.discard(sale.sale_id, f"erp-discard-{sale.sale_id}")
                if n % 2
                else ledger.cancel_order(STORE, sale.order_id, f"order-cancelled-{sale.sale_id}")
            )
            return [confirm, cancel] if n % 4 < 2 else [cancel, confirm]

        await asyncio.gather(*(c for n, sale, _, _ in sales for c in racers(n, sale)))
        for _, sale, _, _ in sales:
            await ledger.cancelled(sale.sale_id, within=15)
            await ledger.outcome(sale.sale_id)
        await ledger.settled()  # a second answer to either message would be seen by now

        problems: list[str] = []
        for _, sale, stool, board in sales:
            published = {
                key: [s.body for s in ledger.events(key, sale.sale_id)]
                for key in ("sale.confirmed", "sale.confirmation_refused", "sale.cancelled")
            }
            problems += await _inconsistencies(ledger, sale.sale_id, published)
            for product in (stool, board):
                if await ledger.on_hand(STORE, product) != 5:
                    problems.append(f"{sale.sale_id}: stock of {product} not returned")
        assert problems == []
    finally:
        await _stop(ledger, runnings)


async def test_overlapping_confirm_and_cancel_transactions_end_consistent(
    settings: Settings,
) -> None:
    """The handler itself: a confirmation and a cancellation of each of 20 sales, all at once."""
    pool = await create_pool(settings.database_url, min_size=1, max_size=20)
    try:
        rows = Rows(pool)
        handler = sales_handler(postgres.begin(pool), 0, 1)  # every kind, one shard
        terms = payment("boleto", ("30.00", days(0)), ("50.00", days(30)))
        sales = [
            pending_sale(STORE, next_order_id(), [(product_id(), 2, "30.00"), (product_id(), 1, "20.00")])
            for _ in range(20)
        ]  # fmt: skip
        messages: list[tuple[Message, str]] = [(s, f"announce-{s.sale_id}") for s in sales]
        for n, sale in enumerate(sales):
            confirm = SaleConfirm(sale_id=sale.sale_id, confirmed_by="erp-user-9", payment=terms)
            cancel: Message = (
                SaleDiscard(sale_id=sale.sale_id, discarded_by="erp-user-9")
                if n % 2
                else OrderCancelled(
                    store_id=STORE,
                    order_id=sale.order_id,
                    cancelled_at=CANCELLED_AT,
                    reason="cancelled",
                )
            )
            pair: list[tuple[Message, str]] = [
                (confirm, f"confirm-{sale.sale_id}"),
                (cancel, f"cancel-{sale.sale_id}"),
            ]
            messages += pair if n % 4 < 2 else pair[::-1]
        incoming = await deliveries_of(settings.amqp_url, messages)
        await handler(incoming[: len(sales)])
        for sale in sales:
            for item in sale.items:
                await rows.add_stock(STORE, item.product.id, 5)

        results = await asyncio.gather(*(handler([i]) for i in incoming[len(sales) :]))
        assert all(r.outcomes == [None] for r in results)
        problems: list[str] = []
        for sale in sales:
            staged = _staged(results, sale.sale_id)
            published = {
                key: [e["body"] for e in staged if e["key"] == key]
                for key in ("sale.confirmed", "sale.confirmation_refused", "sale.cancelled")
            }
            problems += await _inconsistencies(rows, sale.sale_id, published)
            for item in sale.items:
                if await rows.on_hand(STORE, item.product.id) != 5:
                    problems.append(f"{sale.sale_id}: stock of {item.product.id} not returned")
        assert problems == []
    finally:
        await pool.close()


async def _inconsistencies(
    rows: Tables, sale_id: str, published: dict[str, list[dict[str, Any]]]
) -> list[str]:
    """Everything wrong with a sale that was both confirmed and cancelled at the same instant.

    It must end cancelled, exactly one ``sale.cancelled`` said so, and either it was confirmed
    first (posted once, then fully reversed: every receivable cancelled, every movement out
    matched by one in, both listed by ``sale.cancelled``), or cancelled first (the confirmation
    refused as ``sale_cancelled``, nothing ever posted, ``sale.cancelled`` lists nothing).
    """
    problems = []
    status = await rows.status(sale_id)
    receivables = await rows.receivables(sale_id)
    movements = await rows.movements(sale_id)
    confirmed = published["sale.confirmed"]
    refused = published["sale.confirmation_refused"]
    cancelled = published["sale.cancelled"]
    if status != "cancelled":
        problems.append(f"{sale_id}: status {status}")
    if any(r["status"] == "open" for r in receivables):
        problems.append(f"{sale_id}: cancelled with open receivables")
    net = sum(m["quantity"] * (1 if m["direction"] == "in" else -1) for m in movements)
    if net != 0:
        problems.append(f"{sale_id}: stock movements do not net to zero ({net})")
    if len(cancelled) != 1:
        return [*problems, f"{sale_id}: {len(cancelled)} sale.cancelled"]
    reversal = cancelled[0]
    if confirmed:
        if len(confirmed) != 1 or refused:
            problems.append(f"{sale_id}: {len(confirmed)} confirmed, {len(refused)} refused")
        if [r["status"] for r in receivables] != ["cancelled", "cancelled"]:
            problems.append(f"{sale_id}: receivables {[r['status'] for r in receivables]}")
        outs = sorted(
            (m["line_number"], m["quantity"]) for m in movements if m["direction"] == "out"
        )
        ins = sorted((m["line_number"], m["quantity"]) for m in movements if m["direction"] == "in")
        if outs != ins or len(outs) != 2:
            problems.append(f"{sale_id}: movements out {outs}, in {ins}")
        if [r["id"] for r in reversal["receivables"]] != [r["id"] for r in receivables]:
            problems.append(f"{sale_id}: sale.cancelled does not list the cancelled receivables")
        listed = [(m["quantity"], m["direction"]) for m in reversal["stock_movements"]]
        if listed != [(2, "in"), (1, "in")]:
            problems.append(f"{sale_id}: sale.cancelled lists movements {listed}")
    else:
        if [r["reason"] for r in refused] != ["sale_cancelled"]:
            problems.append(f"{sale_id}: refusals {refused}")
        if receivables or movements:
            problems.append(f"{sale_id}: posted {len(receivables)}/{len(movements)}")
        if reversal["receivables"] or reversal["stock_movements"]:
            problems.append(f"{sale_id}: sale.cancelled lists reversals of nothing")
    return problems


async def test_messages_without_a_message_id_are_not_skipped_after_a_restart(
    settings: Settings, infrastructure: infra.Infrastructure
) -> None:
    """SPEC §7: no message is dropped silently.

    A confirmation published without a ``message_id`` (from the management UI, or by a client
    that sets none) must be handled after a ledger restart as before it, not mistaken for one
    already processed.
    """
    assert infrastructure.management_url is not None
    answers = []
    for attempt in range(2):  # the same sequence of deliveries before and after a restart
        ledger = Ledger(await start_ledger(settings))
        try:
            sale = pending_sale(STORE, next_order_id(), [(product_id(), 1, "10.00")])
            await ledger.announce(sale)
            body = orjson.dumps({"sale_id": sale.sale_id, "confirmed_by": f"erp-user-{attempt}"})
            await publish_via_management(
                infrastructure.management_url,
                settings.amqp_url,
                "erp.events",
                "sale.confirm",
                body,
            )
            try:
                answers.append(await ledger.outcome(sale.sale_id, within=5))
            except AssertionError:
                answers.append(("no answer", await ledger.status(sale.sale_id) or ""))
        finally:
            await ledger.system.stop()
    assert answers == [("sale.confirmed", ""), ("sale.confirmed", "")]
