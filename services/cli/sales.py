"""``nuvem-ledger sales show`` and ``receivables list``: sales and receivables as the ledger holds them."""

from __future__ import annotations

import argparse
from typing import Any

from services.cli.base import Subparsers, command, database, emit, emit_rows, group
from services.ledger import ops as ledger
from shared.settings import Settings


def register(sub: Subparsers) -> None:
    sales = group(sub, "sales", "sales as the ledger holds them")
    sale_show = command(sales, "show", _sale)
    sale_show.add_argument("--store-id", type=int, required=True)
    sale_show.add_argument("--order-id", type=int, required=True)
    recv = group(sub, "receivables", "accounts receivable")
    recv_list = command(recv, "list", _receivables)
    recv_list.add_argument("--store-id", type=int, required=True)
    recv_list.add_argument("--status", choices=["open", "cancelled", "paid"])


async def _sale(args: argparse.Namespace, settings: Settings) -> None:
    async with database(settings) as pool:
        row = await ledger.sale(pool, args.store_id, args.order_id)
    emit(args, row, _sale_text)


def _address(address: dict[str, Any] | None) -> str:
    if not address:
        return "none"
    parts = ("street", "number", "complement", "locality", "city", "state", "zipcode", "country")
    return ", ".join(str(address[p]) for p in parts if address.get(p))


def _sale_text(r: dict[str, Any]) -> str:
    lines = [
        f"sale {r['sale_id']} ({r['status']}) order {r['order_id']} total {r['total']}: "
        f"{len(r['receivables'])} receivable(s), {len(r['stock_movements'])} stock movement(s)"
    ]
    paid = r.get("store_payment")
    if paid:
        card = f" {paid['card_company']}" if paid.get("card_company") else ""
        count = f" in {paid['installments']}x" if paid.get("installments") else ""
        lines.append(
            f"  paid at the store: {paid.get('method')}{card}{count} via {paid.get('gateway')}"
        )
    customer = r.get("customer") or {}
    lines.append(f"  billing address: {_address(customer.get('address'))}")
    lines.append(f"  shipping address: {_address(r.get('shipping_address'))}")
    if r.get("partially_refunded_at"):
        lines.append(f"  partially refunded at {r['partially_refunded_at']} (nothing reversed)")
    return "\n".join(lines)


async def _receivables(args: argparse.Namespace, settings: Settings) -> None:
    async with database(settings) as pool:
        rows = await ledger.receivables(pool, args.store_id, args.status)
    emit_rows(
        args,
        rows,
        lambda r: (
            f"#{r['number']} order {r['order_id']} {r['amount']} due {r['due_date']} "
            f"{r['method']} {r['status']}"
        ),
        "no receivables",
    )
