"""What the mapper knows of one order, for ``orders trace``: its pending sale or its rejection.

From the mapper's own records: ``mapper.sales`` (the pending sale it created, with its time),
``mapper.rejections`` (the last rejection with its reason, how many times it was rejected, and
the operator's last retry).
"""

from __future__ import annotations

from typing import Any

from shared.db import Executor
from shared.operations import iso


def _event(at: Any, what: str, detail: str) -> dict[str, Any]:
    return {"at": iso(at), "service": "mapper", "what": what, "detail": detail}


def _times(n: int) -> str:
    return "once" if n == 1 else f"{n} times"


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
    events: list[dict[str, Any]] = []
    state: str | None = None
    if rejection is not None:
        detail = f"{rejection['reason']}: {rejection['detail']}"
        if rejection["attempts"] > 1:
            detail += f" (rejected {_times(rejection['attempts'])}, this is the last)"
        events.append(_event(rejection["rejected_at"], "rejected (sale.rejected)", detail))
        if rejection["retried_at"] is not None:
            events.append(
                _event(
                    rejection["retried_at"],
                    "retry requested",
                    f"an operator retried the order ({_times(rejection['retries'])} in all)",
                )
            )
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
