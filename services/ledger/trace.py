"""What the ledger knows of one order, for ``orders trace``, built from its rows: its sale,
confirmation, cancellation, and the refusals worth noting.

``timeline`` turns the ledger's records of an order (its ``ledger.sales`` row: when the pending
sale reached the ledger, who confirmed it and when, its cancellation; its receivables and stock
movements; a cancellation held in ``ledger.early_cancellations`` until its sale arrives; the
ERP's messages about the sale that were refused, ``ledger.refusals``) into its state and events.
``refusal_rows`` selects, from the refusals a batch staged, the rows to note. Pure: the reading
and writing is ``services.ledger.adapters.trace``'s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from shared.operations import iso

Row = Mapping[str, Any]


def _event(at: Any, what: str, detail: str) -> dict[str, Any]:
    return {"at": iso(at), "service": "ledger", "what": what, "detail": detail}


def refusal_rows(refused: list[dict[str, Any]]) -> list[tuple[int, int, str, str]]:
    """The refusals of known sales (``sale.confirmation_refused`` bodies naming an order) to
    note, as ``(store_id, order_id, reason, detail)``: one per key, the last one's detail."""
    latest = {
        (r["store_id"], r["order_id"], str(r["reason"])): str(r.get("detail") or "")[:2000]
        for r in refused
        if isinstance(r.get("store_id"), int) and isinstance(r.get("order_id"), int)
    }
    return [(*key, detail) for key, detail in sorted(latest.items())]


def timeline(
    sale: Row | None,
    early: Row | None,
    refusals: Sequence[Row],
    receivables: Sequence[Row],
    movements: Sequence[Row],
) -> dict[str, Any]:
    """The ledger's part of an order's timeline: ``state`` (None, ``pending_review``,
    ``confirmed`` or ``cancelled``) and ``events``."""
    events: list[dict[str, Any]] = []
    if early is not None:
        events.append(
            _event(
                early["cancelled_at"],
                "cancellation held",
                f"{early['reason']}: applied when the sale arrives",
            )
        )
    events += _refusal_events(refusals)
    if sale is None:
        return {"state": "cancelled" if early is not None else None, "events": events}
    events += _sale_events(sale, receivables, movements)
    return {"state": sale["status"], "events": events}


def _refusal_events(refusals: Sequence[Row]) -> list[dict[str, Any]]:
    events = []
    for r in refusals:
        again = "" if r["count"] == 1 else f" ({r['count']} times, this is the last)"
        events.append(
            _event(
                r["last_at"],
                "ERP message refused (sale.confirmation_refused)",
                f"{r['reason']}: {r['detail']}{again}",
            )
        )
    return events


def _sale_events(
    sale: Row, receivables: Sequence[Row], movements: Sequence[Row]
) -> list[dict[str, Any]]:
    """The sale's own steps: recorded, confirmed (what it posted), cancelled (what came back)."""
    events = [_event(sale["created_at"], "sale recorded pending review", f"sale {sale['sale_id']}")]
    if sale["confirmed_at"] is not None:
        posted = "; ".join(
            f"#{r['number']} {r['amount']} due {r['due_date']} {r['method']} ({r['status']})"
            for r in receivables
        )
        events.append(
            _event(
                sale["confirmed_at"],
                "confirmed (sale.confirmed)",
                f"by {sale['confirmed_by']}; receivables: {posted or 'none'};"
                f" stock out: {_moved(movements, 'out') or 'none'}",
            )
        )
    if sale["cancelled_at"] is not None:
        events.append(
            _event(
                sale["cancelled_at"],
                "cancelled (sale.cancelled)",
                f"{sale['cancel_reason']}; stock returned: {_moved(movements, 'in') or 'none'}",
            )
        )
    return events


def _moved(movements: Sequence[Row], direction: str) -> str:
    return ", ".join(
        f"{m['quantity']} x {m['product_id']}" for m in movements if m["direction"] == direction
    )
