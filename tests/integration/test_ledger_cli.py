"""The operator's view of the ledger: ``sales show`` and ``receivables list``, as subprocesses.

``python -m services.cli`` runs with only this test's ``AMQP_URL``, ``DATABASE_URL`` and
``TOKEN_ENCRYPTION_KEY``; with ``--json`` stdout is exactly one JSON document.
"""

from __future__ import annotations

from pathlib import Path

from tests.integration.ledger_helpers import (
    Ledger,
    days,
    next_order_id,
    payment,
    pending_sale,
    product_id,
    run_cli,
)

STORE = 7601


async def test_sales_show_prints_the_sale_its_receivables_and_movements(
    ledger: Ledger, tmp_path: Path
) -> None:
    settings = ledger.system.settings
    cup, pot = product_id(), product_id()
    order_id = next_order_id()
    sale = pending_sale(STORE, order_id, [(cup, 4, "12.50"), (pot, 1, "80.00")], shipping="20.00")
    await ledger.announce(sale)

    pending = (
        await run_cli(
            "sales", "show", "--store-id", str(STORE), "--order-id", str(order_id), "--json",
            settings=settings, cwd=tmp_path,
        )
    ).json()  # fmt: skip
    assert pending["sale_id"] == sale.sale_id
    assert pending["status"] == "pending_review"
    assert (pending["receivables"], pending["stock_movements"]) == ([], [])

    terms = payment("cartao", ("75.00", days(0)), ("75.00", days(30)))
    await ledger.confirm(sale.sale_id, "erp-confirm-1", seller_id="erp-user-8", pay=terms)
    confirmed = (await ledger.confirmed(sale.sale_id)).body

    shown = (
        await run_cli(
            "sales", "show", "--store-id", str(STORE), "--order-id", str(order_id), "--json",
            settings=settings, cwd=tmp_path,
        )
    ).json()  # fmt: skip
    assert shown["sale_id"] == sale.sale_id
    assert shown["store_id"] == STORE
    assert shown["order_id"] == order_id
    assert shown["status"] == "confirmed"
    assert shown["seller_id"] == "erp-user-8"
    assert shown["confirmed_by"] == "erp-user-9"
    assert shown["total"] == "150.00"
    assert shown["sale_date"] == days(0).isoformat()
    assert [
        (r["id"], r["number"], r["amount"], r["due_date"], r["method"], r["status"])
        for r in shown["receivables"]
    ] == [
        (r["id"], r["number"], r["amount"], r["due_date"], r["method"], r["status"])
        for r in confirmed["receivables"]
    ]
    assert [
        (m["id"], m["product_id"], m["quantity"], m["direction"]) for m in shown["stock_movements"]
    ] == [
        (m["id"], m["product_id"], m["quantity"], m["direction"])
        for m in confirmed["stock_movements"]
    ]

    await ledger.discard(sale.sale_id, "erp-discard-1")
    await ledger.cancelled(sale.sale_id)
    shown = (
        await run_cli(
            "sales", "show", "--store-id", str(STORE), "--order-id", str(order_id), "--json",
            settings=settings, cwd=tmp_path,
        )
    ).json()  # fmt: skip
    assert shown["status"] == "cancelled"
    assert shown["cancel_reason"]
    assert [r["status"] for r in shown["receivables"]] == ["cancelled", "cancelled"]
    assert sorted((m["direction"], m["product_id"]) for m in shown["stock_movements"]) == sorted(
        [("out", cup), ("out", pot), ("in", cup), ("in", pot)]
    )

    text = await run_cli(
        "sales", "show", "--store-id", str(STORE), "--order-id", str(order_id),
        settings=settings, cwd=tmp_path,
    )  # fmt: skip
    assert text.returncode == 0, text.describe()
    assert sale.sale_id in text.stdout
    assert "cancelled" in text.stdout


async def test_sales_show_of_an_unknown_order_fails_in_one_line(
    ledger: Ledger, tmp_path: Path
) -> None:
    result = await run_cli(
        "sales", "show", "--store-id", str(STORE), "--order-id", "999", "--json",
        settings=ledger.system.settings, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode != 0, result.describe()
    assert result.stdout == ""
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1, result.describe()
    assert "999" in errors[0]


async def test_receivables_list_filters_by_store_and_status(ledger: Ledger, tmp_path: Path) -> None:
    settings = ledger.system.settings
    kept = pending_sale(STORE, next_order_id(), [(product_id(), 1, "300.00")])
    dropped = pending_sale(STORE, next_order_id(), [(product_id(), 1, "40.00")])
    elsewhere = pending_sale(STORE + 1, next_order_id(), [(product_id(), 1, "55.00")])
    for sale in (kept, dropped, elsewhere):
        await ledger.announce(sale)
    three = payment("boleto", ("100.00", days(0)), ("100.00", days(30)), ("100.00", days(60)))
    await ledger.confirm(kept.sale_id, "confirm-kept", pay=three)
    await ledger.confirm(dropped.sale_id, "confirm-dropped")
    await ledger.confirm(elsewhere.sale_id, "confirm-elsewhere")
    for sale in (kept, dropped, elsewhere):
        await ledger.confirmed(sale.sale_id)
    await ledger.cancel_order(STORE, dropped.order_id, "order-cancelled-dropped")
    await ledger.cancelled(dropped.sale_id)

    def args(*extra: str) -> tuple[str, ...]:
        return ("receivables", "list", "--store-id", str(STORE), *extra, "--json")

    opened = (await run_cli(*args("--status", "open"), settings=settings, cwd=tmp_path)).json()
    assert [
        (r["sale_id"], r["order_id"], r["number"], r["amount"], r["due_date"], r["method"], r["status"])
        for r in opened
    ] == [
        (kept.sale_id, kept.order_id, n, "100.00", days(30 * (n - 1)).isoformat(), "boleto", "open")
        for n in (1, 2, 3)
    ]  # fmt: skip
    assert {r["id"] for r in opened} == {r["id"] for r in await ledger.receivables(kept.sale_id)}

    cancelled = (
        await run_cli(*args("--status", "cancelled"), settings=settings, cwd=tmp_path)
    ).json()
    assert [(r["sale_id"], r["amount"], r["status"]) for r in cancelled] == [
        (dropped.sale_id, "40.00", "cancelled")
    ]

    everything = (await run_cli(*args(), settings=settings, cwd=tmp_path)).json()
    assert sorted(r["sale_id"] for r in everything) == sorted(
        [kept.sale_id] * 3 + [dropped.sale_id]
    )

    paid = (await run_cli(*args("--status", "paid"), settings=settings, cwd=tmp_path)).json()
    assert paid == []

    bad = await run_cli(
        "receivables", "list", "--store-id", str(STORE), "--status", "overdue", "--json",
        settings=settings, cwd=tmp_path,
    )  # fmt: skip
    assert bad.returncode != 0
    assert bad.stdout == ""
