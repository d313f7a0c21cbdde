"""What the ledger knows of one order, for ``orders trace``: its sale, confirmation, cancellation.

From the ledger's own records: ``ledger.sales`` (when the pending sale reached the ledger, who
confirmed it and when, its cancellation), its receivables and stock movements, and a
cancellation held in ``ledger.early_cancellations`` until its sale arrives, and the ERP's
messages about the sale that were refused (``ledger.refusals``).
"""

from __future__ import annotations

from typing import Any

from asyncpg import Record

from shared.db import Executor
from shared.operations import iso


def _event(at: Any, what: str, detail: str) -> dict[str, Any]:
    return {"at": iso(at), "service": "ledger", "what": what, "detail": detail}


async def record_refusals(db: Executor, refused: list[dict[str, Any]]) -> None:
    """Note refusals of known sales (``sale.confirmation_refused`` bodies naming an order)."""
    rows = sorted(
        {
            (r["store_id"], r["order_id"], str(r["reason"])): str(r.get("detail") or "")[:2000]
            for r in refused
            if isinstance(r.get("store_id"), int) and isinstance(r.get("order_id"), int)
        }.items()
    )
    if not rows:
        return
    await db.execute(
        """
        INSERT INTO ledger.refusals AS r (store_id, order_id, reason, detail)
        SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[])
        ON CONFLICT (store_id, order_id, reason) DO UPDATE SET
            detail = excluded.detail, last_at = now(), count = r.count + 1
        """,
        [k[0] for k, _ in rows],
        [k[1] for k, _ in rows],
        [k[2] for k, _ in rows],
        [detail for _, detail in rows],
    )


async def order_trace(db: Executor, store_id: int, order_id: int) -> dict[str, Any]:
    """The ledger's part of an order's timeline: ``state`` (None, ``pending_review``,
    ``confirmed`` or ``cancelled``) and ``events``."""
    sale = await db.fetchrow(
        "SELECT sale_id, status, total, created_at, confirmed_by, confirmed_at, cancelled_at,"
        " cancel_reason FROM ledger.sales WHERE store_id = $1 AND order_id = $2",
        store_id,
        order_id,
    )
    early = await db.fetchrow(
        "SELECT cancelled_at, reason FROM ledger.early_cancellations"
        " WHERE store_id = $1 AND order_id = $2",
        store_id,
        order_id,
    )
    events: list[dict[str, Any]] = []
    if early is not None:
        events.append(
            _event(
                early["cancelled_at"],
                "cancellation held",
                f"{early['reason']}: applied when the sale arrives",
            )
        )
    events += await _refusal_events(db, store_id, order_id)
    if sale is None:
        return {"state": "cancelled" if early is not None else None, "events": events}
    events += await _sale_events(db, sale)
    return {"state": sale["status"], "events": events}


async def _refusal_events(db: Executor, store_id: int, order_id: int) -> list[dict[str, Any]]:
    refusals = await db.fetch(
        "SELECT reason, detail, last_at, count FROM ledger.refusals"
        " WHERE store_id = $1 AND order_id = $2",
        store_id,
        order_id,
    )
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


async def _sale_events(db: Executor, sale: Record) -> list[dict[str, Any]]:
    """The sale's own steps: recorded, confirmed (what it posted), cancelled (what came back)."""
    events = [_event(sale["created_at"], "sale recorded pending review", f"sale {sale['sale_id']}")]
    receivables = await db.fetch(
        "SELECT number, amount, due_date, method, status FROM ledger.receivables"
        " WHERE sale_id = $1 ORDER BY number",
        sale["sale_id"],
    )
    movements = await db.fetch(
        "SELECT product_id, quantity, direction FROM ledger.stock_movements"
        " WHERE sale_id = $1 ORDER BY direction DESC, line_number",
        sale["sale_id"],
    )
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


def _moved(movements: list[Record], direction: str) -> str:
    return ", ".join(
        f"{m['quantity']} x {m['product_id']}" for m in movements if m["direction"] == direction
    )
