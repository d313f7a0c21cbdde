"""What the demo prints at the end: a summary (text, or JSON with ``--json``) and where to look."""

from __future__ import annotations

from typing import Any

from services.cli.demo.erp import Tally, say


def summary_json(tally: Tally, store_ids: list[int], ok: bool) -> dict[str, Any]:
    return {
        "complete": ok,
        "stores": store_ids,
        "orders_paid": tally.paid,
        "pending_sales": len(tally.pending),
        "confirmed_sales": len(tally.confirmed),
        "receivables": tally.receivables,
        "receivables_total": tally.receivable_total,
        "stock_moved": tally.stock_moved,
        "customers_created": tally.customers_created,
        "products_created": tally.products_created,
        "warnings": tally.warnings,
        "showcase": _showcase(tally.showcase),
    }


def _showcase(sale: dict[str, Any] | None) -> dict[str, Any] | None:
    """What the showcase sale carries of SPEC §8, as the ERP received it."""
    if sale is None:
        return None
    item = sale["items"][0]
    return {
        "sale_id": sale["sale_id"],
        "store_id": sale["store_id"],
        "order_id": sale["order_id"],
        "store_payment": sale.get("store_payment"),
        "billing_address": sale["customer"].get("address"),
        "shipping_address": sale.get("shipping_address"),
        "line": item["description"],
        "product": item["product"],
        "payment": sale["payment"],
    }


def _address(address: dict[str, Any] | None) -> str:
    if not address:
        return "none"
    parts = ("street", "number", "complement", "locality", "city", "state", "zipcode")
    return ", ".join(str(address[p]) for p in parts if address.get(p))


def _say_showcase(sale: dict[str, Any]) -> None:
    shown = _showcase(sale)
    assert shown is not None
    paid = shown["store_payment"] or {}
    product = shown["product"]
    say(
        f"  showcase: order {shown['order_id']} of store {shown['store_id']} → sale {shown['sale_id']}"
    )
    say(
        f"    paid at the store   {paid.get('method')} {paid.get('card_company') or ''} in "
        f"{paid.get('installments')}x via {paid.get('gateway')} (the sale's own payment: "
        f"{shown['payment']['method']}, until the ERP user says otherwise)"
    )
    say(f"    billing address     {_address(shown['billing_address'])}")
    say(f"    shipping address    {_address(shown['shipping_address'])}")
    matched = "matched by SKU" if not product["created"] else "created"
    say(f"    line {shown['line']!r} → product {product['description']!r} ({matched})")


def summary(tally: Tally, store_ids: list[int], elapsed: float, ok: bool) -> None:
    say("")
    say("summary" + ("" if ok else " (INCOMPLETE: not every order was confirmed in time)"))
    say(f"  orders paid            {tally.paid}")
    say(
        f"  pending sales created  {len(tally.pending)}  (customers created {tally.customers_created}, "
        f"products created {tally.products_created}, warnings {tally.warnings})"
    )
    say(f"  sales confirmed        {len(tally.confirmed)}")
    say(f"  receivables            {tally.receivables}  (total {tally.receivable_total})")
    say(f"  stock moved out        {tally.stock_moved} units")
    say(f"  elapsed                {elapsed:.1f} s")
    if tally.example is not None:
        ex = tally.example
        say(
            f"  example: order {ex['order_id']} of store {ex['store_id']} → sale {ex['sale_id']} "
            f"for {ex['customer']['name']}, total {ex['total']}"
        )
    if tally.showcase is not None:
        _say_showcase(tally.showcase)
    say("  (the demo's stores are switched off at the end: their simulator stops with the demo)")
    say("")
    say("where to look:")
    say("  RabbitMQ management UI  http://127.0.0.1:15672/#/queues  (guest/guest)")
    first = store_ids[0]
    say(f"  nuvem-ledger integration show {first}")
    say(f"  nuvem-ledger receivables list --store-id {first}")
    if tally.example is not None:
        say(
            f"  nuvem-ledger sales show --store-id {tally.example['store_id']} --order-id {tally.example['order_id']}"
        )
    if tally.showcase is not None:
        sale = tally.showcase
        say(
            f"  nuvem-ledger sales show --store-id {sale['store_id']} --order-id {sale['order_id']}"
        )
        say(f"  nuvem-ledger settings show --store-id {sale['store_id']}")
    say("  nuvem-ledger orders rejected")
