"""LGPD requests end to end: a data request's export, then a redaction that leaves no trace.

One buyer, with a name, CPF, e-mail, phone and address no other buyer shares, has a sale the ERP
confirmed (mapper and ledger records, receivables), an order rejected (its raw order stored in
``mapper.rejections`` and parked) and a copy of it dead-lettered. Nuvemshop's
``customers/data_request`` produces an export of all of it (``privacy requests``, ``privacy
export``); ``customers/redact`` then removes the person: every text, JSON and byte column of every
table of every schema (read from ``information_schema``, so columns added later are scanned too)
and the dead and parked queues are searched for each value, in any punctuation. The sales keep
their amounts.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg

from services.ingest.lgpd import webhook_url
from services.mapper import ops as mapper_ops
from shared.contracts import SaleConfirm
from shared.topology import QUEUES
from tests.harness import System
from tests.integration.ingest_helpers import eventually, first_poll_done, run_cli

STORE = 736_001
CUSTOMER_ID = 99_736_001
NAME = "Zuleica Quaresmeira Fictícia"
CPF = "75839566500"
EMAIL = "zuleica.quaresmeira@example.org"
PHONE = "+5511987651234"
STREET = "Rua das Pitangueiras Secretas"
ZIPCODE = "04571919"
LGPD = ("customers/redact", "customers/data_request", "store/redact")


def _customer(document: str) -> dict[str, Any]:
    return {
        "id": CUSTOMER_ID,
        "name": NAME,
        "email": EMAIL,
        "identification": document,
        "phone": PHONE,
        "address": {"street": STREET, "zipcode": ZIPCODE, "number": "1234"},
    }


def _needles() -> dict[str, re.Pattern[str]]:
    """Each value as it may be written: any case, a document or phone in any punctuation."""

    def digits(value: str) -> re.Pattern[str]:
        return re.compile(r"\D?".join(re.escape(d) for d in re.sub(r"\D", "", value)))

    return {
        "name": re.compile(re.escape(NAME), re.IGNORECASE),
        "surname": re.compile("Quaresmeira", re.IGNORECASE),
        "email": re.compile(re.escape(EMAIL), re.IGNORECASE),
        "cpf": digits(CPF),
        "phone": digits(PHONE.removeprefix("+55")),
        "street": re.compile("Pitangueiras Secretas", re.IGNORECASE),
        "zipcode": digits(ZIPCODE),
    }


async def _tables_with_traces(conn: Any) -> list[str]:
    columns = await conn.fetch(
        """
        SELECT table_schema, table_name, column_name, data_type
        FROM information_schema.columns c
        JOIN information_schema.tables t USING (table_schema, table_name)
        WHERE t.table_type = 'BASE TABLE'
          AND table_schema NOT IN ('pg_catalog', 'information_schema')
          AND data_type IN ('text', 'character varying', 'json', 'jsonb', 'bytea', 'ARRAY')
        """
    )
    found = []
    for c in columns:
        column = f'"{c["table_schema"]}"."{c["table_name"]}"."{c["column_name"]}"'
        value = (
            f"convert_from(\"{c['column_name']}\", 'UTF8')"
            if c["data_type"] == "bytea"
            else f'"{c["column_name"]}"::text'
        )
        rows = await conn.fetch(
            f'SELECT {value} AS v FROM "{c["table_schema"]}"."{c["table_name"]}"'
            f' WHERE "{c["column_name"]}" IS NOT NULL'
        )
        for row in rows:
            found += [f"{column}: {what}" for what, p in _needles().items() if p.search(row["v"])]
    return found


async def _queues_with_traces(amqp_url: str) -> list[str]:
    names = sorted({q.dead_name for q in QUEUES} | {"mapper.orders.parked"})
    found = []
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        for name in names:
            queue = await channel.declare_queue(name, passive=True)
            taken = []
            while (message := await queue.get(no_ack=False, fail=False)) is not None:
                taken.append(message)
            for message in taken:
                text = message.body.decode(errors="replace") + json.dumps(
                    {k: str(v) for k, v in (message.headers or {}).items()}
                )
                found += [f"{name}: {what}" for what, p in _needles().items() if p.search(text)]
                await message.nack(requeue=True)
    return found


async def _publish_dead_copy(amqp_url: str, body: bytes, order_id: int) -> None:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        await channel.default_exchange.publish(
            aio_pika.Message(
                body,
                message_id=f"order.paid:{STORE}:{order_id}",
                correlation_id=f"{STORE}:{order_id}",
                type="order.paid.v1",
                headers={"x-error-reason": "invalid_message", "x-error-detail": f"{NAME} {CPF}"},
            ),
            routing_key="mapper.orders.dead",
        )


async def _exports_filed(pool: asyncpg.Pool, request_id: str) -> bool:
    async with pool.acquire() as conn:
        mapper = await conn.fetchval(
            "SELECT count(*) FROM mapper.privacy_exports WHERE request_id = $1", request_id
        )
        ledger = await conn.fetchval(
            "SELECT count(*) FROM ledger.privacy_exports WHERE request_id = $1", request_id
        )
    return bool(mapper and ledger)


async def test_a_data_request_exports_everything_and_a_redaction_leaves_no_trace(
    system: System, tmp_path: Path
) -> None:
    await system.connect_store(STORE)
    await first_poll_done(system, STORE)
    sim = system.simulator.state
    sim.lgpd_urls = {event: webhook_url(system.ingest_url, event) for event in LGPD}
    sold = sim.add_order(STORE, paid=True, customer=_customer("758.395.665-00"))
    [pending] = await system.observer.wait_for(
        "sale.pending_review", store_id=STORE, order_id=int(sold["id"])
    )
    await system.erp_publish(
        SaleConfirm(sale_id=pending.body["sale_id"], confirmed_by="erp-user-9"), "confirm-736"
    )
    await system.observer.wait_for("sale.confirmed", sale_id=pending.body["sale_id"])
    # With the stock check on, the same buyer's next order is rejected: parked, raw order stored.
    async with system.services["mapper"].ctx.pool.acquire() as conn:
        await mapper_ops.set_stock_check(conn, STORE, on=True)
    bad = sim.add_order(STORE, paid=True, customer=_customer(CPF))
    await system.observer.wait_for("sale.rejected", store_id=STORE, order_id=int(bad["id"]))
    [paid_bad] = system.observer.of("order.paid", store_id=STORE, order_id=int(bad["id"]))
    raw = json.dumps(paid_bad.body).encode()
    await _publish_dead_copy(system.settings.amqp_url, raw, int(bad["id"]))
    pool = system.services["mapper"].ctx.pool
    async with pool.acquire() as conn:
        assert await _tables_with_traces(conn)  # the scan sees what is there

    # customers/data_request: listed, and the export holds all of it.
    sim.lgpd_request(STORE, "customers/data_request", customer_id=CUSTOMER_ID, data_request_id=4242)
    listed: list[dict[str, Any]] = []

    async def listed_once() -> bool:
        result = await run_cli(
            system, tmp_path, "privacy", "requests", "--store-id", str(STORE), "--json"
        )
        assert result.returncode == 0, result.describe()
        listed[:] = result.json()
        return len(listed) == 1

    await eventually(listed_once, "the data request listed", within=20)
    [request] = listed
    assert request["kind"] == "data_request"
    assert request["data_request_id"] == 4242
    assert request["customer_id"] == CUSTOMER_ID
    assert sorted(request["order_ids"]) == sorted([int(sold["id"]), int(bad["id"])])
    await eventually(
        lambda: _exports_filed(pool, request["request_id"]), "the exports filed", within=20
    )
    result = await run_cli(
        system, tmp_path, "privacy", "export", "--request-id", request["request_id"], "--json"
    )
    assert result.returncode == 0, result.describe()
    export = result.json()
    assert export["complete"] is True
    [customer] = export["mapper"]["customers"]
    assert (customer["name"], customer["document"], customer["email"]) == (NAME, CPF, EMAIL)
    assert [s["order_id"] for s in export["mapper"]["sales"]] == [int(sold["id"])]
    assert [r["order_id"] for r in export["mapper"]["rejections"]] == [int(bad["id"])]
    assert export["mapper"]["rejections"][0]["order"]["customer"]["name"] == NAME
    [ledger_sale] = export["ledger"]["sales"]
    assert ledger_sale["status"] == "confirmed"
    assert ledger_sale["receivables"]
    assert ledger_sale["announcement"]["customer"]["document"] == CPF
    assert {o["order_id"] for o in export["ingest"]["orders"]} == {int(sold["id"]), int(bad["id"])}
    text = await run_cli(
        system, tmp_path, "privacy", "export", "--request-id", request["request_id"]
    )
    assert text.returncode == 0
    assert "customer records: 1" in text.stdout
    totals = await _totals(pool, int(sold["id"]))

    # customers/redact: nothing of the person anywhere, the amounts as they were.
    sim.lgpd_request(STORE, "customers/redact", customer_id=CUSTOMER_ID)
    await _no_trace_left(system, pool)
    assert await _totals(pool, int(sold["id"])) == totals
    # The rejection is still there to retry, its parked copy gone, its dead copy rewritten.
    rejected = await run_cli(
        system, tmp_path, "orders", "rejected", "--store-id", str(STORE), "--json"
    )
    assert [r["order_id"] for r in rejected.json()] == [int(bad["id"])]


async def _no_trace_left(system: System, pool: asyncpg.Pool) -> None:
    """Wait for the tables to be clean, then look in the queues once.

    The services rewrite their queues before they commit, so clean tables mean the queues are
    done; looking into a queue holds its messages for a moment, so the queues are not polled
    while a redaction may still be reading them (see docs/security.md, known limits)."""
    traces: list[str] = []

    async def clean() -> bool:
        async with pool.acquire() as conn:
            traces[:] = await _tables_with_traces(conn)
        return not traces

    try:
        await eventually(clean, "no trace left in the tables", within=20)
    except AssertionError:
        raise AssertionError(f"traces left: {traces}") from None
    assert await _queues_with_traces(system.settings.amqp_url) == []


async def _totals(pool: asyncpg.Pool, order_id: int) -> tuple[Any, ...]:
    async with pool.acquire() as conn:
        return (
            await conn.fetchval(
                "SELECT total FROM mapper.sales WHERE store_id = $1 AND order_id = $2",
                STORE,
                order_id,
            ),
            await conn.fetchval(
                "SELECT total FROM ledger.sales WHERE store_id = $1 AND order_id = $2",
                STORE,
                order_id,
            ),
            await conn.fetchval(
                "SELECT sum(amount) FROM ledger.receivables r JOIN ledger.sales s USING (sale_id)"
                " WHERE s.store_id = $1 AND s.order_id = $2",
                STORE,
                order_id,
            ),
        )


async def test_store_redact_after_an_uninstall_leaves_no_trace_of_any_buyer(
    system: System, tmp_path: Path
) -> None:
    await system.connect_store(STORE)
    await first_poll_done(system, STORE)
    sim = system.simulator.state
    sim.lgpd_urls = {event: webhook_url(system.ingest_url, event) for event in LGPD}
    sold = sim.add_order(STORE, paid=True, customer=_customer(CPF))
    await system.observer.wait_for("sale.pending_review", store_id=STORE, order_id=int(sold["id"]))
    async with system.services["mapper"].ctx.pool.acquire() as conn:
        await mapper_ops.set_stock_check(conn, STORE, on=True)
    bad = sim.add_order(STORE, paid=True, customer=_customer(CPF))
    await system.observer.wait_for("sale.rejected", store_id=STORE, order_id=int(bad["id"]))
    pool = system.services["mapper"].ctx.pool
    totals = await _totals(pool, int(sold["id"]))

    sim.uninstall(STORE)  # app/uninstalled, then store/redact to its partner-settings URL
    await _no_trace_left(system, pool)
    assert (await _totals(pool, int(sold["id"])))[:2] == totals[:2]
    listed = await run_cli(system, tmp_path, "privacy", "requests", "--json")
    assert [r["kind"] for r in listed.json()] == ["store_redact"]
