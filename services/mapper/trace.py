"""What the mapper knows of one order, for ``orders trace``: its pending sale or its rejection.

From the mapper's own records: ``mapper.sales`` (the pending sale it created, with its time),
``mapper.rejection_history`` (every rejection with its reason, every operator's retry), and
``mapper.rejections`` (whether the order is still rejected, and how many times it was).
"""

from __future__ import annotations

from typing import Any

from shared.db import Executor
from shared.operations import iso


def _event(at: Any, what: str, detail: str) -> dict[str, Any]:
    return {"at": iso(at), "service": "mapper", "what": what, "detail": detail}


def _times(n: int) -> str:
    return "once" if n == 1 else f"{n} times"


def _history_event(at: Any, what: str, detail: str) -> dict[str, Any]:
    if what == "rejected":
        return _event(at, "rejected (sale.rejected)", detail)
    return _event(at, "retry requested", f"an operator retried the order ({detail})")


def _last_of(rejection: Any) -> list[dict[str, Any]]:
    detail = f"{rejection['reason']}: {rejection['detail']}"
    if rejection["attempts"] > 1:
        detail += f" (rejected {_times(rejection['attempts'])}, this is the last)"
    events = [_event(rejection["rejected_at"], "rejected (sale.rejected)", detail)]
    if rejection["retried_at"] is not None:
        events.append(
            _event(
                rejection["retried_at"],
                "retry requested",
                f"an operator retried the order ({_times(rejection['retries'])} in all)",
            )
        )
    return events


async def record_rejections(db: Executor, rejected: list[dict[str, Any]]) -> None:
    """Note ``sale.rejected`` bodies (store, order, reason, detail) in the order's history."""
    rows = [
        (r["store_id"], r["order_id"], f"{r.get('reason')}: {r.get('detail')}"[:2000])
        for r in rejected
        if isinstance(r.get("store_id"), int) and isinstance(r.get("order_id"), int)
    ]
    if rows:
        await db.execute(
            "INSERT INTO mapper.rejection_history (store_id, order_id, what, detail)"
            " SELECT s, o, 'rejected', d FROM unnest($1::bigint[], $2::bigint[], $3::text[])"
            " AS t(s, o, d)",
            [r[0] for r in rows],
            [r[1] for r in rows],
            [r[2] for r in rows],
        )


async def order_trace(db: Executor, store_id: int, order_id: int) -> dict[str, Any]:
    """The mapper's part of an order's timeline: ``state`` (None, ``pending_review``,
    ``rejected`` or ``parked``) and ``events``.

    ``rejected``: the order could not become a sale (``sale.rejected``) and waits in
    ``mapper.orders.parked`` for an operator's retry. ``parked``: an operator retried it and it
    was rejected again (its cause is not fixed yet); it waits in the parking queue again.
    """
    sale = await db.fetchrow(
        "SELECT id::text AS sale_id, order_number, total, status,"
        " jsonb_array_length(warnings) AS warnings, created_at"
        " FROM mapper.sales WHERE store_id = $1 AND order_id = $2",
        store_id,
        order_id,
    )
    rejection = await db.fetchrow(
        "SELECT reason, detail, attempts, rejected_at, resolved_at, retried_at, retries"
        " FROM mapper.rejections WHERE store_id = $1 AND order_id = $2",
        store_id,
        order_id,
    )
    history = await db.fetch(
        "SELECT at, what, detail FROM mapper.rejection_history"
        " WHERE store_id = $1 AND order_id = $2 ORDER BY at",
        store_id,
        order_id,
    )
    events = [_history_event(h["at"], h["what"], h["detail"]) for h in history]
    state: str | None = None
    if rejection is not None:
        if not history:  # rejected before the history was kept: its last rejection and retry
            events += _last_of(rejection)
        if rejection["resolved_at"] is None:
            state = "parked" if rejection["attempts"] > 1 else "rejected"
    if sale is not None:
        warnings = sale["warnings"]
        events.append(
            _event(
                sale["created_at"],
                "pending sale created (sale.pending_review)",
                f"sale {sale['sale_id']}, total {sale['total']}"
                + (f", {warnings} warning(s)" if warnings else ""),
            )
        )
        if state is None:
            state = "pending_review"
    return {"state": state, "events": events}
