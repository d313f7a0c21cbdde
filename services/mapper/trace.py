"""What the mapper knows of one order, for ``orders trace``: its pending sale or its rejection.

From the mapper's own records: ``mapper.sales`` (the pending sale it created, with its time),
``mapper.rejection_history`` (every rejection with its reason, every operator's retry), and
``mapper.rejections`` (whether the order is still rejected, and how many times it was).

Here, without I/O: the timeline built from those rows (``timeline``) and the history rows a
batch's ``sale.rejected`` bodies make (``history_rows``); ``adapters/trace.py`` reads and writes
them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from shared.operations import iso


def _event(at: Any, what: str, detail: str) -> dict[str, Any]:
    return {"at": iso(at), "service": "mapper", "what": what, "detail": detail}


def _times(n: int) -> str:
    return "once" if n == 1 else f"{n} times"


def _history_event(at: Any, what: str, detail: str) -> dict[str, Any]:
    if what == "rejected":
        return _event(at, "rejected (sale.rejected)", detail)
    return _event(at, "retry requested", f"an operator retried the order ({detail})")


def _last_of(rejection: Mapping[str, Any]) -> list[dict[str, Any]]:
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


def history_rows(rejected: list[dict[str, Any]]) -> list[tuple[int, int, str]]:
    """(store, order, "reason: detail") of the ``sale.rejected`` bodies that name an order."""
    return [
        (r["store_id"], r["order_id"], f"{r.get('reason')}: {r.get('detail')}"[:2000])
        for r in rejected
        if isinstance(r.get("store_id"), int) and isinstance(r.get("order_id"), int)
    ]


def timeline(
    sale: Mapping[str, Any] | None,
    rejection: Mapping[str, Any] | None,
    history: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    """The mapper's part of an order's timeline: ``state`` (None, ``pending_review``,
    ``rejected`` or ``parked``) and ``events``, from its sale, its rejection and its history.

    ``rejected``: the order could not become a sale (``sale.rejected``) and waits in
    ``mapper.orders.parked`` for an operator's retry. ``parked``: an operator retried it and it
    was rejected again (its cause is not fixed yet); it waits in the parking queue again.
    """
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
