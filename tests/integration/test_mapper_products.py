"""Products of a pending sale (SPEC §3), against the real broker and database.

A line's product is the store's catalog product whose description is exactly the line's name
(case and spaces matter); otherwise a new product is created with that description and the line's
SKU and price. Products belong to their store.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest

from services.cli import catalog as catalog_cli
from shared.settings import Settings
from tests.harness import System
from tests.integration.mapper_helpers import (
    Cli,
    import_order,
    line,
    make_order,
    pending_sale,
    pool,
    publish,
    running_mapper,
)


@pytest.fixture
async def system(settings: Settings) -> AsyncIterator[System]:
    async with running_mapper(settings) as running:
        yield running


@dataclass(frozen=True)
class ProductRow:
    id: str
    catalog: str  # the description of the product already in the catalog
    line: str  # the order line's name
    reused: bool


PRODUCTS = [
    ProductRow("exact", "Camiseta Azul M", "Camiseta Azul M", reused=True),
    ProductRow("exact-accents", "Caneca Coração", "Caneca Coração", reused=True),
    ProductRow("other-case", "Camiseta Azul M", "camiseta azul m", reused=False),
    ProductRow("one-letter-case", "Camiseta Azul M", "Camiseta azul M", reused=False),
    ProductRow("inner-spaces", "Camiseta Azul M", "Camiseta  Azul M", reused=False),
    ProductRow("trailing-space", "Camiseta Azul M", "Camiseta Azul M ", reused=False),
    ProductRow("leading-space", "Camiseta Azul M", " Camiseta Azul M", reused=False),
    ProductRow("no-accent", "Caneca Coração", "Caneca Coracao", reused=False),
    ProductRow("prefix", "Camiseta Azul", "Camiseta Azul M", reused=False),
]


async def test_product_reuse_rule_table(system: System) -> None:
    """Reuse by exact description only (each row in a store of its own)."""
    db = pool(system)
    catalog: dict[str, str] = {}
    for n, row in enumerate(PRODUCTS):
        added = await catalog_cli.add_product(
            db,
            store_id=5100 + n,
            description=row.catalog,
            price=Decimal("99.90"),
            sku="CAT",
            stock=0,
        )
        catalog[row.id] = added["id"]
    orders = [
        make_order(5100 + n, 1, items=[line(row.line, 1, "12.34", sku="LINE-SKU")])
        for n, row in enumerate(PRODUCTS)
    ]
    for order in orders:
        await publish(system, order)
    failures: list[str] = []
    for n, (order, row) in enumerate(zip(orders, PRODUCTS, strict=True)):
        sale = await pending_sale(system, order)
        product = sale["items"][0]["product"]
        stored = await db.fetch(
            "SELECT id::text, description, sku, price FROM mapper.products WHERE store_id = $1"
            " ORDER BY created_at",
            5100 + n,
        )
        got = (
            product["id"] == catalog[row.id],
            product["created"],
            product["description"],
            len(stored),
        )
        want = (
            row.reused,
            not row.reused,
            row.catalog if row.reused else row.line,
            1 + (not row.reused),
        )
        if got != want:
            failures.append(f"{row.id}: (reused, created, description, rows) = {got}, want {want}")
        if not row.reused:
            new = next((r for r in stored if r["id"] == product["id"]), None)
            if new is None or (new["description"], new["sku"], new["price"]) != (
                row.line,
                "LINE-SKU",
                Decimal("12.34"),
            ):
                failures.append(f"{row.id}: new product is {new and tuple(new)}")
        # The catalog product keeps its own price and SKU whatever the line says.
        kept = await db.fetchrow(
            "SELECT sku, price FROM mapper.products WHERE id = $1::uuid", catalog[row.id]
        )
        if kept is None or (kept["sku"], kept["price"]) != ("CAT", Decimal("99.90")):
            failures.append(f"{row.id}: catalog product changed to {kept and tuple(kept)}")
    assert not failures, "\n".join(failures)


async def test_new_product_gets_the_line_sku_and_price(system: System) -> None:
    order = make_order(
        5200,
        1,
        items=[
            line("Tapete Persa 2x3", 1, "1250.00", sku="TP-23"),
            line("Almofada", 4, "35.9", sku=None),
        ],
    )
    sale = await import_order(system, order)
    assert [i["product"]["created"] for i in sale["items"]] == [True, True]
    rows = await pool(system).fetch(
        "SELECT id::text, description, sku, price FROM mapper.products WHERE store_id = 5200"
        " ORDER BY description"
    )
    assert [(r["description"], r["sku"], r["price"]) for r in rows] == [
        ("Almofada", None, Decimal("35.90")),
        ("Tapete Persa 2x3", "TP-23", Decimal("1250.00")),
    ]
    by_description = {r["description"]: r["id"] for r in rows}
    for item in sale["items"]:
        assert item["product"]["id"] == by_description[item["description"]]


async def test_catalog_product_is_reused(system: System, tmp_path: Path) -> None:
    cli = Cli(system.settings, tmp_path)
    added = await cli.json(
        "catalog", "add-product", "--store-id", "5300", "--description", "Mesa de Roble",
        "--price", "6000.00", "--sku", "MR-1", "--stock", "3",
    )  # fmt: skip
    assert added["description"] == "Mesa de Roble"
    assert added["stock"] == 3
    assert isinstance(added["id"], str)

    sale = await import_order(
        system, make_order(5300, 1, items=[line("Mesa de Roble", 1, "5800.00", sku="OTHER")])
    )
    item = sale["items"][0]
    assert item["product"] == {"id": added["id"], "description": "Mesa de Roble", "created": False}
    assert item["unit_price"] == "5800.00"  # the line's price; the catalog's stays
    assert (
        await pool(system).fetchval("SELECT count(*) FROM mapper.products WHERE store_id = 5300")
        == 1
    )


async def test_products_belong_to_their_store(system: System) -> None:
    items = [line("Vaso Grande", 1, "80.00")]
    one = await import_order(system, make_order(5401, 1, items=items))
    other = await import_order(system, make_order(5402, 1, items=items))
    assert one["items"][0]["product"]["created"] is True
    assert other["items"][0]["product"]["created"] is True
    assert one["items"][0]["product"]["id"] != other["items"][0]["product"]["id"]
