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
    }


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
    say("  nuvem-ledger orders rejected")
