"""``nuvem-ledger orders trace``: where an order is, and why, from every service's own records.

Each service answers for itself (``services/<svc>/adapters/trace.py`` reads its rows,
``services/<svc>/trace.py`` makes them its timeline); this joins the three parts into
one timeline in time order and names the order's state, the furthest the records show:

``unknown`` nothing anywhere · ``received`` a webhook named it, nothing fetched yet ·
``skipped`` fetched and not announced (not paid, before activation, store off) · ``announced``
ingest published it, the mapper has not answered · ``pending_review`` a pending sale ·
``rejected`` could not become a sale, waits for a retry · ``parked`` rejected again after a
retry · ``confirmed`` the ERP confirmed it · ``cancelled`` cancelled (before or after its sale).
"""

from __future__ import annotations

from typing import Any

import asyncpg

from services.ingest.adapters import trace as ingest
from services.ledger.adapters import trace as ledger
from services.mapper.adapters import trace as mapper

STATES = (
    "unknown",
    "received",
    "skipped",
    "announced",
    "pending_review",
    "rejected",
    "parked",
    "confirmed",
    "cancelled",
)


def combine(
    store_id: int,
    order_id: int,
    ingested: dict[str, Any],
    mapped: dict[str, Any],
    ledgered: dict[str, Any],
) -> dict[str, Any]:
    """One order's timeline and state from the three services' parts (pure)."""
    events = sorted(
        ingested["events"] + mapped["events"] + ledgered["events"],
        key=lambda e: (e["at"] or "", e["service"] != "ingest"),
    )
    state = ingested["state"]
    if mapped["state"] is not None:
        state = mapped["state"]
    if ledgered["state"] in ("confirmed", "cancelled") or (
        ledgered["state"] == "pending_review" and mapped["state"] is None
    ):
        state = ledgered["state"]
    if ingested["state"] == "cancelled" and state not in ("rejected", "parked"):
        state = "cancelled"
    if state not in STATES:
        state = "unknown"
    result: dict[str, Any] = {
        "store_id": store_id,
        "order_id": order_id,
        "state": state,
        "store": ingested["store"],
        "events": events,
    }
    if state == "unknown":
        result["looked_for"] = _looked_for(store_id, order_id, ingested["store"])
    return result


def _looked_for(store_id: int, order_id: int, store: dict[str, Any] | None) -> str:
    where = (
        f"store {store_id} is not connected"
        if store is None
        else f"store {store_id} is connected ({'enabled' if store['enabled'] else 'disabled'})"
    )
    return (
        f"{where}; no webhook, fetch or announcement of order {order_id} in ingest"
        " (kept TRACE_RETENTION_DAYS), no pending sale or rejection in the mapper, no sale in"
        " the ledger"
    )


async def order_trace(pool: asyncpg.Pool, store_id: int, order_id: int) -> dict[str, Any]:
    async with pool.acquire() as conn:
        ingested = await ingest.order_trace(conn, store_id, order_id)
        mapped = await mapper.order_trace(conn, store_id, order_id)
        ledgered = await ledger.order_trace(conn, store_id, order_id)
    return combine(store_id, order_id, ingested, mapped, ledgered)


def trace_text(result: dict[str, Any]) -> str:
    """The timeline as people read it: a header, then one line per event."""
    head = f"store {result['store_id']} order {result['order_id']}: {result['state']}"
    store = result["store"]
    if store is not None and not store["enabled"]:
        head += f" (the store is disabled: {store['disabled_reason']})"
    lines = [head]
    if result["state"] == "unknown":
        lines.append(f"  nothing found: {result['looked_for']}")
    for e in result["events"]:
        at = (e["at"] or "")[:23].replace("T", " ")
        lines.append(f"  {at:<23}  {e['service']:<6}  {e['what']}: {e['detail']}")
    return "\n".join(lines)
