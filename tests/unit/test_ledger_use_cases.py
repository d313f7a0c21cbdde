"""The ledger's use cases against its in-memory unit of work (no broker, no database).

The same declarations and handlers the consumers run (``services/ledger/handlers.py``), over
``services/ledger/adapters/memory.py``; the real-database tests (tests/integration/test_ledger*)
cover the SQL, the locks and the broker.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import orjson
import pytest

from services.ledger.adapters.memory import MemoryLedger, begin
from services.ledger.handlers import sales_handler
from shared.contracts import (
    ConfirmPayment,
    Installment,
    Message,
    OrderCancelled,
    OrderPartiallyRefunded,
    PaymentInstallment,
    SaleConfirm,
    SaleCustomer,
    SaleDiscard,
    SaleItem,
    SalePayment,
    SalePendingReview,
    SaleProduct,
)
from shared.subscribers import Received
from shared.topology import PROBE_EVERY, PROBE_HEADER, SHARD_EXCHANGE

STORE = 7001
DAY = dt.date(2026, 1, 2)
AT = dt.datetime(2026, 1, 3, 12, tzinfo=dt.UTC)


def sale(order_id: int, *lines: tuple[str, int, str], store_id: int = STORE) -> SalePendingReview:
    items = [
        SaleItem(
            product=SaleProduct(id=pid, description=f"Produto {pid}", created=False),
            description=f"Produto {pid}",
            quantity=qty,
            unit_price=Decimal(price),
            total=Decimal(price) * qty,
        )
        for pid, qty, price in lines
    ]
    total = sum((i.total for i in items), Decimal(0))
    return SalePendingReview(
        sale_id=str(uuid.uuid4()),
        store_id=store_id,
        order_id=order_id,
        order_number=order_id,
        seller_id="seller-1",
        customer=SaleCustomer(id="c1", name="Maria Silva", created=True),
        items=items,
        subtotal=total,
        shipping=Decimal(0),
        discount=Decimal(0),
        total=total,
        payment=SalePayment(
            method="cash", installments=[Installment(number=1, amount=total, due_date=DAY)]
        ),
        sale_date=DAY,
    )


def confirm(sale_id: str, *amounts: str, seller: str | None = None) -> SaleConfirm:
    payment = None
    if amounts:
        payment = ConfirmPayment(
            method="pix",
            installments=[
                PaymentInstallment(amount=Decimal(a), due_date=DAY + dt.timedelta(days=30 * n))
                for n, a in enumerate(amounts)
            ],
        )
    return SaleConfirm(sale_id=sale_id, confirmed_by="erp-user", seller_id=seller, payment=payment)


class Ledger:
    """One shard's consumer (of a single-shard installation) over a memory unit of work."""

    def __init__(
        self, shard: int | None = 0, shards: int = 1, uow: MemoryLedger | None = None
    ) -> None:
        self.uow = uow or MemoryLedger()
        self.handler = sales_handler(begin(self.uow), shard, shards)
        self._ids = 0

    async def send(self, *messages: Message | tuple[Message, str]) -> list[tuple[str, Any]]:
        batch: list[Received[Message]] = []
        for m in messages:
            message, message_id = m if isinstance(m, tuple) else (m, self._next_id())
            batch.append(Received.message_of(message, message_id, correlation_id="erp-corr"))
        staged = await self.handler.run(batch)
        return [(s.envelope.routing_key, orjson.loads(s.envelope.body)) for s in staged]

    def _next_id(self) -> str:
        self._ids += 1
        return f"m{self._ids}"

    def status(self, sale_id: str) -> str:
        return self.uow.tables.sales[sale_id].row.status


async def test_an_announced_sale_is_kept_once() -> None:
    ledger = Ledger()
    s = sale(1, ("lamp", 2, "10.00"))
    assert await ledger.send(s) == []
    assert await ledger.send(s) == []  # another message, the same sale: already known
    assert ledger.status(s.sale_id) == "pending_review"
    assert [line.quantity for line in ledger.uow.tables.sales[s.sale_id].lines] == [2]


async def test_a_run_of_announcements_and_confirmations_is_handled_in_order() -> None:
    ledger = Ledger()
    a, b = sale(1, ("lamp", 2, "10.00")), sale(2, ("desk", 1, "99.90"), ("lamp", 1, "10.00"))
    answers = await ledger.send(a, b, confirm(a.sale_id), confirm(b.sale_id, "50.00", "59.90"))
    assert [key for key, _ in answers] == ["sale.confirmed", "sale.confirmed"]
    first, second = answers[0][1], answers[1][1]
    assert [(r["number"], r["amount"], r["method"]) for r in first["receivables"]] == [
        (1, "20.00", "cash")
    ]
    assert [r["amount"] for r in second["receivables"]] == ["50.00", "59.90"]
    assert [(m["product_id"], m["quantity"]) for m in second["stock_movements"]] == [
        ("desk", 1),
        ("lamp", 1),
    ]
    assert ledger.uow.tables.on_hand(STORE, "lamp") == -3  # no stock check: it may go below 0


async def test_refusals_post_nothing() -> None:
    ledger = Ledger()
    s = sale(1, ("lamp", 1, "10.00"))
    await ledger.send(s)
    answers = await ledger.send(
        confirm("no-such-sale"), confirm(s.sale_id, "4.00", "5.00"), confirm(s.sale_id)
    )
    (k1, unknown), (k2, mismatch), (k3, _) = answers
    assert (k1, unknown["reason"], unknown["store_id"]) == (
        "sale.confirmation_refused",
        "unknown_sale",
        None,
    )
    assert (k2, mismatch["reason"]) == ("sale.confirmation_refused", "installments_mismatch")
    assert k3 == "sale.confirmed"  # the sale was left untouched by the refusal
    cancelled = sale(2, ("lamp", 1, "10.00"))
    await ledger.send(
        cancelled, OrderCancelled(store_id=STORE, order_id=2, cancelled_at=AT, reason="cancelled")
    )
    [(_, refused)] = await ledger.send(confirm(cancelled.sale_id))
    assert refused["reason"] == "sale_cancelled"
    assert ledger.uow.tables.receivables.get(cancelled.sale_id) is None


async def test_the_stock_check_counts_what_the_run_already_took() -> None:
    ledger = Ledger()
    ledger.uow.tables.stock_checked.add(STORE)
    ledger.uow.add_stock(STORE, "lamp", 4)
    a, b = sale(1, ("lamp", 3, "10.00")), sale(2, ("lamp", 2, "10.00"))
    await ledger.send(a, b)
    answers = await ledger.send(confirm(a.sale_id), confirm(b.sale_id))
    assert [key for key, _ in answers] == ["sale.confirmed", "sale.confirmation_refused"]
    assert answers[1][1]["reason"] == "insufficient_stock"
    assert "requested 2, available 1" in answers[1][1]["detail"]
    assert ledger.uow.tables.on_hand(STORE, "lamp") == 1
    assert ledger.status(b.sale_id) == "pending_review"


async def test_a_repeated_confirmation_re_announces_or_is_refused() -> None:
    ledger = Ledger()
    s = sale(1, ("lamp", 1, "30.00"))
    await ledger.send(s)
    # The same sale twice in one run: the first confirms, the second repeats its answer (one
    # message id per sale, so it is staged once).
    [(key, first)] = await ledger.send(
        confirm(s.sale_id, "10.00", "20.00", seller="s9"), confirm(s.sale_id, "10.00", "20.00")
    )
    assert key == "sale.confirmed"
    ledger.uow.outbox.clear()  # published and forgotten, as the consumer does
    [(key, again)] = await ledger.send(confirm(s.sale_id, "10.00", "20.00"))
    assert (key, again) == ("sale.confirmed", first)  # the same receivables, not new ones
    [(key, other)] = await ledger.send(confirm(s.sale_id, "30.00"))
    assert (key, other["reason"]) == ("sale.confirmation_refused", "already_confirmed")
    assert len(ledger.uow.tables.receivables[s.sale_id]) == 2


async def test_cancelling_a_confirmed_sale_reverses_it_once() -> None:
    ledger = Ledger()
    s = sale(1, ("lamp", 2, "10.00"))
    await ledger.send(s, confirm(s.sale_id, "5.00", "15.00"))
    cancel = OrderCancelled(store_id=STORE, order_id=1, cancelled_at=AT, reason="cancelled")
    [(key, body)] = await ledger.send(cancel)
    assert key == "sale.cancelled"
    assert [r["status"] for r in body["receivables"]] == ["cancelled", "cancelled"]
    assert [(m["direction"], m["quantity"]) for m in body["stock_movements"]] == [("in", 2)]
    assert ledger.uow.tables.on_hand(STORE, "lamp") == 0
    assert await ledger.send(cancel) == []  # a new notice of the same cancellation: nothing
    assert ledger.uow.tables.sales[s.sale_id].cancel_reason == "order cancelled"


async def test_a_cancellation_before_its_sale_cancels_it_on_arrival() -> None:
    ledger = Ledger()
    early = OrderCancelled(store_id=STORE, order_id=5, cancelled_at=AT, reason="fraud")
    refund = OrderPartiallyRefunded(store_id=STORE, order_id=5, noted_at=AT)
    assert await ledger.send(early, refund) == []
    s = sale(5, ("lamp", 1, "10.00"))
    answers = await ledger.send(s)
    assert [key for key, _ in answers] == ["sale.partially_refunded", "sale.cancelled"]
    assert ledger.uow.tables.sales[s.sale_id].cancel_reason == "order fraud"
    assert ledger.uow.tables.early_cancellations == {}


async def test_discarding_a_pending_sale_and_an_unknown_one() -> None:
    ledger = Ledger()
    s = sale(1, ("lamp", 1, "10.00"))
    await ledger.send(s)
    answers = await ledger.send(
        SaleDiscard(sale_id=s.sale_id, discarded_by="erp-user"),
        (SaleDiscard(sale_id="nope", discarded_by="erp-user"), "d-2"),
    )
    assert [key for key, _ in answers] == ["sale.cancelled", "sale.confirmation_refused"]
    assert answers[0][1]["stock_movements"] == []
    assert ledger.uow.tables.sales[s.sale_id].cancel_reason == "discarded by erp-user"
    assert answers[1][1]["reason"] == "unknown_sale"


async def test_a_redelivered_message_is_skipped_and_a_failed_batch_leaves_nothing() -> None:
    ledger = Ledger()
    s = sale(1, ("lamp", 1, "10.00"))
    await ledger.send((s, "a-1"))
    assert await ledger.send((confirm(s.sale_id), "c-1")) != []
    assert await ledger.send((confirm(s.sale_id), "c-1")) == []  # the inbox knows c-1
    other = sale(2, ("lamp", 1, "10.00"))
    await ledger.send((other, "a-2"))
    before = (set(ledger.uow.inbox), dict(ledger.uow.outbox))
    # A confirmation, then an announcement the ledger cannot store: the batch fails whole.
    broken = SalePendingReview.model_construct(**(sale(3).__dict__ | {"items": None}))
    batch: list[Received[Message]] = [
        Received.message_of(confirm(other.sale_id), "c-2"),
        Received(broken, "a-3", broken.routing_key),
    ]
    with pytest.raises(TypeError):
        await ledger.handler.run(batch)
    assert (set(ledger.uow.inbox), dict(ledger.uow.outbox)) == before
    assert ledger.status(other.sale_id) == "pending_review"
    assert other.sale_id not in ledger.uow.tables.receivables
    assert sorted(k.row.order_id for k in ledger.uow.tables.sales.values()) == [1, 2]


async def test_decisions_about_unknown_sales_are_probed_and_refused_once() -> None:
    uow = MemoryLedger()
    erp = Ledger(None, 4, uow)
    s = sale(1, ("lamp", 1, "10.00"))
    await Ledger(0, 4, uow).send(s)
    known, unknown = confirm(s.sale_id), confirm("not-yet")
    assert [k for k, _ in await erp.send((known, "c-1"))] == ["sale.confirmed"]
    staged = await erp.handler.run([Received.message_of(unknown, "c-2")])
    [probe] = [st.envelope for st in staged]
    assert (probe.exchange, probe.headers) == (SHARD_EXCHANGE, {PROBE_HEADER: PROBE_EVERY})
    refusals = [await Ledger(k, 4, uow).send((unknown, "c-2")) for k in range(4)]
    assert [len(r) for r in refusals] == [0, 0, 0, 1]  # the shard that looks last refuses
    assert refusals[3][0][1]["reason"] == "unknown_sale"
