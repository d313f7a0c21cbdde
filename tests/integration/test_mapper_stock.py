"""The stock check (SPEC §4) and all-or-nothing (SPEC §3), against the real broker and database.

"Check stock when creating a sale" is off by default. When it is on and any item's product lacks
stock, nothing of the order is created (no customer, no product, no sale), ``sale.rejected``
says ``insufficient_stock`` with the products and quantities concerned, the rejection is recorded
and the order is parked in ``mapper.orders.parked`` with its reason in the headers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest

from services.cli import catalog
from services.mapper import ops
from shared.contracts import OrderItem
from shared.settings import Settings
from tests import infra
from tests.harness import System
from tests.integration.mapper_helpers import (
    Counts,
    counts,
    line,
    make_order,
    order_envelope,
    pending_sale,
    pool,
    publish,
    random_text,
    rejection,
    running_mapper,
    wait_queue,
)

PARKED = "mapper.orders.parked"


@pytest.fixture
async def system(settings: Settings) -> AsyncIterator[System]:
    async with running_mapper(settings) as running:
        yield running


@dataclass(frozen=True)
class StockRow:
    id: str
    stock_check: bool | None  # None: never set (the default)
    catalog: dict[str, int]  # description → stock entered with `catalog add-product`
    items: list[OrderItem]
    # None when the sale is created; else the expected items[] of sale.rejected, as
    # (description, catalog description whose id is product_id or None, requested, available).
    shortages: list[tuple[str, str | None, int, int]] | None
    moves_out: dict[str, int] = field(default_factory=dict)  # stock already taken out


STOCK = [
    StockRow("off-by-default", None, {"Mesa": 0}, [line("Mesa", 2)], None),
    StockRow("off-by-default-new-product", None, {}, [line("Novo", 1)], None),
    StockRow("switched-off", False, {"Mesa": 0}, [line("Mesa", 2)], None),
    StockRow("on-enough", True, {"Mesa": 5}, [line("Mesa", 5)], None),
    StockRow(
        "on-enough-two-products",
        True,
        {"Mesa": 1, "Banco": 4},
        [line("Mesa"), line("Banco", 4)],
        None,
    ),
    StockRow("on-short", True, {"Mesa": 1}, [line("Mesa", 2)], [("Mesa", "Mesa", 2, 1)]),
    StockRow("on-none-entered", True, {"Mesa": 0}, [line("Mesa", 1)], [("Mesa", "Mesa", 1, 0)]),
    StockRow("on-new-product", True, {}, [line("Novo", 3)], [("Novo", None, 3, 0)]),
    StockRow(
        "on-lines-summed",
        True,
        {"Mesa": 3},
        [line("Mesa", 2), line("Mesa", 2, "9.00")],
        [("Mesa", "Mesa", 4, 3)],
    ),
    StockRow(
        "on-one-of-two-short",
        True,
        {"Mesa": 10, "Banco": 0},
        [line("Mesa", 1), line("Banco", 1)],
        [("Banco", "Banco", 1, 0)],
    ),
    StockRow(
        "on-existing-and-new-short",
        True,
        {"Mesa": 10},
        [line("Mesa", 1), line("mesa", 1)],  # "mesa" is another (new) product
        [("mesa", None, 1, 0)],
    ),
    StockRow(
        "on-after-movements-out",
        True,
        {"Mesa": 5},
        [line("Mesa", 2)],
        [("Mesa", "Mesa", 2, 1)],
        moves_out={"Mesa": 4},
    ),
]


async def _prepare(system: System, store_id: int, row: StockRow) -> dict[str, str]:
    db = pool(system)
    ids: dict[str, str] = {}
    for description, stock in row.catalog.items():
        added = await catalog.add_product(
            db,
            store_id=store_id,
            description=description,
            price=Decimal("10.00"),
            sku=None,
            stock=stock,
        )
        ids[description] = added["id"]
    for description, quantity in row.moves_out.items():
        await db.execute(
            "INSERT INTO ledger.stock_movements (store_id, product_id, quantity, direction, reason)"
            " VALUES ($1, $2, $3, 'out', 'adjustment')",
            store_id,
            ids[description],
            quantity,
        )
    if row.stock_check is not None:
        await ops.set_stock_check(db, store_id, on=row.stock_check)
    return ids


async def test_stock_check_rule_table(system: System, infrastructure: infra.Infrastructure) -> None:
    """Each row in a store of its own: created, or rejected with exactly the shortages."""
    stores = {row.id: 6100 + n for n, row in enumerate(STOCK)}
    ids = {row.id: await _prepare(system, stores[row.id], row) for row in STOCK}
    before = {row.id: await counts(system, stores[row.id]) for row in STOCK}
    orders = {row.id: make_order(stores[row.id], 1, items=row.items) for row in STOCK}
    sent = {row.id: await publish(system, orders[row.id]) for row in STOCK}

    failures: list[str] = []
    for row in STOCK:
        store = stores[row.id]
        if row.shortages is None:
            sale = await pending_sale(system, orders[row.id])
            if sale["total"] != format(orders[row.id].total, "f"):
                failures.append(f"{row.id}: sale total {sale['total']}")
            continue
        seen = await rejection(system, store, 1)
        body = seen.body
        expected_items = [
            {
                "description": description,
                "product_id": ids[row.id][catalog] if catalog is not None else None,
                "requested": requested,
                "available": available,
            }
            for description, catalog, requested, available in row.shortages
        ]
        got: dict[str, Any] = {
            "reason": body["reason"],
            "items": body.get("items"),
            "type": seen.type,
            "correlation": seen.correlation_id,
        }
        want: dict[str, Any] = {
            "reason": "insufficient_stock",
            "items": expected_items,
            "type": "sale.rejected.v1",
            "correlation": f"{store}:1",
        }
        if got != want:
            failures.append(f"{row.id}: got {got}, want {want}")
        for description, _, requested, _ in row.shortages:
            if description not in body["detail"] or f"{requested}" not in body["detail"]:
                failures.append(f"{row.id}: detail {body['detail']!r} misses {description}")
        # Nothing of the order exists: the catalog is as it was, no customer, no sale.
        after = await counts(system, store)
        if after != before[row.id] or after.customers or after.sales:
            failures.append(f"{row.id}: created something: {before[row.id]} -> {after}")
        recorded = await ops.rejected_orders(pool(system), store)
        if [(r["order_id"], r["reason"], r["items"]) for r in recorded] != [
            (1, "insufficient_stock", expected_items)
        ]:
            failures.append(f"{row.id}: recorded {recorded}")

    # Every rejected order waits in the parking queue with its reason and its original body.
    rejected_rows = [row for row in STOCK if row.shortages is not None]
    parked = await wait_queue(infrastructure, system.settings.amqp_url, PARKED, len(rejected_rows))
    by_correlation = {m.correlation_id: m for m in parked}
    for row in rejected_rows:
        message = by_correlation.get(f"{stores[row.id]}:1")
        if message is None:
            failures.append(f"{row.id}: not parked")
            continue
        if message.body != sent[row.id].body:
            failures.append(f"{row.id}: parked body differs from the original")
        if message.headers.get("x-error-reason") != "insufficient_stock":
            failures.append(f"{row.id}: parked headers {message.headers}")
        if not message.headers.get("x-error-detail"):
            failures.append(f"{row.id}: parked without x-error-detail")
    assert len(parked) == len(rejected_rows), [m.correlation_id for m in parked]
    assert not failures, "\n".join(failures)


async def test_stock_is_checked_per_store(system: System) -> None:
    db = pool(system)
    await ops.set_stock_check(db, 6201, on=True)
    # Store 6201 checks stock; store 6202 does not, so its order of a product without stock goes.
    order = make_order(6202, 1, items=[line("Sem Estoque", 1)])
    await publish(system, order)
    sale = await pending_sale(system, order)
    assert sale["items"][0]["product"]["created"] is True


async def test_the_setting_is_read_at_each_order(system: System) -> None:
    db = pool(system)
    store = 6300
    added = await catalog.add_product(
        db, store_id=store, description="Abajur", price=Decimal("70.00"), sku=None, stock=0
    )
    await ops.set_stock_check(db, store, on=True)
    await publish(system, make_order(store, 1, items=[line("Abajur")]))
    assert (await rejection(system, store, 1)).body["reason"] == "insufficient_stock"
    await ops.set_stock_check(db, store, on=False)
    second = make_order(store, 2, items=[line("Abajur")])
    await publish(system, second)
    sale = await pending_sale(system, second)
    assert sale["items"][0]["product"]["id"] == added["id"]
    # The mapper does not move stock: confirmation (the ledger) does.
    on_hand = await db.fetchval(
        "SELECT coalesce(sum(on_hand), 0) FROM ledger.stock_on_hand WHERE product_id = $1",
        added["id"],
    )
    assert on_hand == 0


# --- all or nothing ------------------------------------------------------------------------------


async def _dead(infrastructure: infra.Infrastructure, system: System, count: int) -> list[Any]:
    return await wait_queue(infrastructure, system.settings.amqp_url, "mapper.orders.dead", count)


@pytest.mark.parametrize(
    ("failing_line", "where", "marker"),
    [
        # A description too long for the products' unique index: fails after the customer insert.
        pytest.param("long-description", "products", "index row size", id="fails-at-products"),
        # A quantity beyond the lines' int column: fails after customer, products and sale rows.
        pytest.param("huge-quantity", "sale_items", "int32", id="fails-at-sale-lines"),
    ],
)
async def test_nothing_is_created_unless_the_sale_is(
    system: System,
    infrastructure: infra.Infrastructure,
    failing_line: str,
    where: str,
    marker: str,
) -> None:
    store = 6400
    bad = (
        line(random_text(3000), 1, "1.00")
        if failing_line == "long-description"
        else line("Parafuso", 3_000_000_000, "0.01")
    )
    order = make_order(store, 1, name="Cliente Novo", items=[line("Produto Novo", 1, "5.00"), bad])
    env = order_envelope(order)
    await system.erp.publish(env)
    # SPEC §4: an order that cannot become a sale is rejected with its reason, nothing created.
    rejected = await rejection(system, store, 1)
    assert rejected.body["reason"] == "invalid_order"
    assert marker in rejected.body["detail"], rejected.body
    assert await counts(system, store) == Counts(0, 0, 0, 0), f"left behind after {where} failed"
    assert system.observer.of("sale.pending_review", store_id=store) == []
    listed = await ops.rejected_orders(pool(system), store)
    assert [(r["order_id"], r["reason"]) for r in listed] == [(1, "invalid_order")]
    assert await _dead(infrastructure, system, 0) == []
    # The mapper goes on with the next order of the same new customer and product.
    good = make_order(store, 2, name="Cliente Novo", items=[line("Produto Novo", 1, "5.00")])
    await publish(system, good)
    sale = await pending_sale(system, good)
    assert sale["customer"]["created"] is True
    assert sale["items"][0]["product"]["created"] is True
