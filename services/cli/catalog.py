"""``nuvem-ledger catalog ...``: the ERP's products and customers, which the mapper owns.

A product with opening stock touches two services, each through its own operation in one
transaction: the mapper catalogues the product, the ledger enters the stock.
"""

from __future__ import annotations

import argparse
from decimal import Decimal
from typing import Any

import asyncpg

from services.cli.base import Subparsers, command, database, emit, group, money
from services.ledger import ops as ledger
from services.mapper import ops as mapper
from shared.settings import Settings


def register(sub: Subparsers) -> None:
    catalog = group(sub, "catalog", "the ERP's products and customers")
    product = command(catalog, "add-product", _add_product)
    product.add_argument("--store-id", type=int, required=True)
    product.add_argument("--description", required=True)
    product.add_argument("--price", type=money, required=True)
    product.add_argument("--sku")
    product.add_argument("--stock", type=int, default=0)
    customer = command(catalog, "add-customer", _add_customer)
    customer.add_argument("--store-id", type=int, required=True)
    customer.add_argument("--name", required=True)
    customer.add_argument("--document")
    customer.add_argument("--mobile-phone")
    customer.add_argument("--business-phone")


async def add_product(
    pool: asyncpg.Pool,
    *,
    store_id: int,
    description: str,
    price: Decimal,
    sku: str | None,
    stock: int,
) -> dict[str, Any]:
    """Catalogue a product (mapper) with its opening stock (ledger), both or neither."""
    async with pool.acquire() as conn, conn.transaction():
        product_id = await mapper.add_product(
            conn, store_id=store_id, description=description, price=price, sku=sku
        )
        await ledger.record_initial_stock(
            conn, store_id=store_id, product_id=product_id, quantity=stock
        )
    return {
        "id": product_id,
        "store_id": store_id,
        "description": description,
        "sku": sku,
        "price": price,
        "stock": stock,
    }


async def _add_product(args: argparse.Namespace, settings: Settings) -> None:
    async with database(settings) as pool:
        row = await add_product(
            pool,
            store_id=args.store_id,
            description=args.description,
            price=args.price,
            sku=args.sku,
            stock=args.stock,
        )
    emit(args, row, lambda r: f"product {r['id']}: {r['description']} (stock {r['stock']})")


async def _add_customer(args: argparse.Namespace, settings: Settings) -> None:
    async with database(settings) as pool:
        row = await mapper.add_customer(
            pool,
            store_id=args.store_id,
            name=args.name,
            document=args.document,
            mobile_phone=args.mobile_phone,
            business_phone=args.business_phone,
        )
    emit(
        args,
        row,
        lambda r: f"customer {r['id']}: {r['name']}" + ("" if r["created"] else " (existing)"),
    )
