"""The demo's ERP: confirms each pending sale it sees (every third in three installments) and counts.

``Tally`` is what the demo reports at the end; ``say`` prints its progress (to stderr under
``--json``, so that stdout carries only the JSON result).
"""

from __future__ import annotations

import datetime as dt
import sys
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TextIO

import aio_pika
import orjson
from aio_pika.abc import AbstractIncomingMessage

from shared.contracts import ConfirmPayment, PaymentInstallment, SaleConfirm
from shared.messaging import Broker, envelope
from shared.settings import Settings


@dataclass
class Tally:
    paid: int = 0
    pending: set[str] = field(default_factory=set)
    confirmed: set[str] = field(default_factory=set)
    receivables: int = 0
    receivable_total: Decimal = Decimal(0)
    stock_moved: int = 0
    warnings: int = 0
    customers_created: int = 0
    products_created: int = 0
    example: dict[str, Any] | None = None
    # The order that shows SPEC §8 (card in installments, addresses, a SKU-matched product).
    showcase_order: tuple[int, int] | None = None
    showcase: dict[str, Any] | None = None


class Progress:
    """Where the demo's lines go: stdout, or stderr when stdout is for the JSON result."""

    stream: TextIO = sys.stdout


def say(text: str) -> None:
    Progress.stream.write(text + "\n")
    Progress.stream.flush()


class Erp:
    """Plays the ERP: confirms each pending sale (some in three installments) and counts results."""

    def __init__(self, settings: Settings, tally: Tally, stores: set[int]) -> None:
        self.settings = settings
        self.tally = tally
        self.stores = stores
        self.broker = Broker(settings.amqp_url, app_id="demo-erp")
        self.connection: aio_pika.abc.AbstractRobustConnection | None = None

    async def start(self) -> None:
        await self.broker.connect(deadline=30)
        self.connection = await aio_pika.connect_robust(self.settings.amqp_url)
        channel = await self.connection.channel()
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind("mapper.events", "sale.pending_review")
        await queue.bind("ledger.events", "sale.confirmed")
        await queue.consume(self._on_message, no_ack=True)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        body = orjson.loads(message.body)
        if int(body.get("store_id", 0)) not in self.stores:
            return
        if message.routing_key == "sale.pending_review":
            await self._confirm(body)
        elif (
            message.routing_key == "sale.confirmed" and body["sale_id"] not in self.tally.confirmed
        ):
            self.tally.confirmed.add(body["sale_id"])
            self.tally.receivables += len(body["receivables"])
            self.tally.receivable_total += sum(Decimal(r["amount"]) for r in body["receivables"])
            self.tally.stock_moved += sum(m["quantity"] for m in body["stock_movements"])

    async def _confirm(self, sale: dict[str, Any]) -> None:
        if sale["sale_id"] in self.tally.pending:
            return
        self.tally.pending.add(sale["sale_id"])
        self.tally.warnings += len(sale["warnings"])
        self.tally.customers_created += int(sale["customer"]["created"])
        self.tally.products_created += sum(int(i["product"]["created"]) for i in sale["items"])
        self.tally.example = self.tally.example or sale
        if (sale["store_id"], sale["order_id"]) == self.tally.showcase_order:
            self.tally.showcase = sale
        payment = None
        total = Decimal(sale["total"])
        if len(self.tally.pending) % 3 == 0 and total >= Decimal("3.00"):
            # Every third sale: the ERP user changes the payment to three monthly installments.
            first = (total / 3).quantize(Decimal("0.01"))
            day = dt.date.fromisoformat(sale["sale_date"])
            amounts = [first, first, total - 2 * first]
            payment = ConfirmPayment(
                method="credit_card",
                installments=[
                    PaymentInstallment(amount=a, due_date=day + dt.timedelta(days=30 * (n + 1)))
                    for n, a in enumerate(amounts)
                ],
            )
        confirm = SaleConfirm(
            sale_id=sale["sale_id"], confirmed_by="erp-demo-user", payment=payment
        )
        await self.broker.publish(
            envelope(confirm, message_id=f"demo-confirm:{sale['sale_id']}", correlation_id=None)
        )

    async def close(self) -> None:
        await self.broker.close()
        if self.connection is not None:
            await self.connection.close()
