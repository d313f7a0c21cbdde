"""Ingest's use cases: turn fetched store orders into ``order.*`` events, exactly once.

Every path that sees orders (webhooks, the poller, a backfill) ends in ``import_orders``: it
classifies each raw order with the pure rules of ``domain`` (paid, partially refunded, cancelled,
malformed, or nothing to do yet), then, in one transaction, claims the (store_id, order_id) rows
and stages the events of the orders it claimed in the outbox. Nothing
here talks HTTP inside a transaction: orders are fetched first, written second.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from services.ingest import domain, trace
from services.ingest.adapters import postgres as db
from services.ingest.adapters import trace as trace_db
from services.ingest.reading import read_id
from shared.contracts import IntegrationDisabled, IntegrationEnabled, OrderInvalid
from shared.db import Conn
from shared.logging import get_logger
from shared.messaging import RECEIVED_HEADER, Envelope, correlation, envelope
from shared.metrics import ServiceMetrics
from shared.outbox import Staged, stage

log = get_logger(__name__)

SCHEMA = "ingest"


@dataclass
class ImportSummary:
    paid: int = 0
    partially_refunded: int = 0
    cancelled: int = 0
    invalid: int = 0
    skipped: int = 0
    fetched: int = 0
    skipped_by: dict[str, int] = field(default_factory=dict)  # reason -> orders
    staged: list[Staged] = field(default_factory=list)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class _Classified:
    """Candidate events of a batch of raw orders, by order id (nothing claimed yet)."""

    paid: dict[int, tuple[int | None, Envelope]] = field(default_factory=dict)
    partially_refunded: dict[int, Envelope] = field(default_factory=dict)
    cancelled: dict[int, Envelope] = field(default_factory=dict)
    invalid: dict[int, tuple[str, Envelope]] = field(default_factory=dict)
    skipped: int = 0
    skips: dict[int, str] = field(default_factory=dict)  # order id -> reason


def _classify(
    store: db.StoreRecord,
    raw: Mapping[str, Any],
    order_id: int,
    into: _Classified,
    *,
    backfill: bool,
) -> None:
    key = correlation(store.store_id, order_id)
    claimed = read_id(raw.get("store_id"))
    if claimed is not None and claimed != store.store_id:
        # Found by the order fuzz test: the order's own store_id was trusted, so an answer naming
        # another store filed the sale under that store. The store asked is the order's store.
        raise domain.MalformedOrder(
            "store_id", f"names store {claimed}, read from {store.store_id}"
        )
    state = domain.order_state(raw)
    if state in (domain.OrderState.PAID, domain.OrderState.PARTIALLY_REFUNDED):
        if not backfill and not domain.is_importable(raw.get("created_at"), store.activated_at):
            into.skipped += 1
            into.skips[order_id] = "before_activation"
            return
        # A partly refunded order was paid: it is imported like any paid order (once), and the
        # refund is noted on top of it.
        event = domain.parse_order_paid(raw, activated_by=store.activated_by)
        env = envelope(event, message_id=f"order.paid:{key}", correlation_id=key)
        into.paid[order_id] = (event.order_number, env)
        if state is domain.OrderState.PARTIALLY_REFUNDED:
            refund = domain.parse_order_partially_refunded(raw, now=now())
            into.partially_refunded[order_id] = envelope(
                refund, message_id=f"order.partially_refunded:{key}", correlation_id=key
            )
    elif state is domain.OrderState.CANCELLED:
        cancel = domain.parse_order_cancelled(raw, now=now())
        into.cancelled[order_id] = envelope(
            cancel, message_id=f"order.cancelled:{key}", correlation_id=key
        )
    else:
        into.skipped += 1
        into.skips[order_id] = "not_paid"


def _events_for(
    store: db.StoreRecord, raw_orders: Iterable[Mapping[str, Any]], *, backfill: bool
) -> _Classified:
    """Classify raw orders into candidate events (no I/O)."""
    classified = _Classified()
    for raw in raw_orders:
        order_id = order_id_of(raw)
        if order_id is None:
            log.warning("order without a readable id skipped", store_id=store.store_id)
            classified.skipped += 1
            continue
        try:
            _classify(store, raw, order_id, classified, backfill=backfill)
        except domain.MalformedOrder as exc:
            key = correlation(store.store_id, order_id)
            bad = OrderInvalid(store_id=store.store_id, order_id=order_id, detail=str(exc))
            classified.invalid[order_id] = (
                str(exc),
                envelope(
                    bad, message_id=f"order.invalid:{key}:{_digest(str(exc))}", correlation_id=key
                ),
            )
    return classified


async def import_orders(
    conn: Conn,
    store: db.StoreRecord,
    raw_orders: Iterable[Mapping[str, Any]],
    *,
    backfill: bool = False,
    via: str = "poll",
    received: Mapping[int, dt.datetime] | None = None,
) -> ImportSummary:
    """Claim and stage the events of ``raw_orders`` in the caller's transaction.

    ``via`` (``webhook``, ``poll``, ``backfill``) is how the orders were fetched, and
    ``received`` when the webhooks that led to them arrived; both go to the order's trace.
    """
    raw_orders = list(raw_orders)
    found = _events_for(store, raw_orders, backfill=backfill)
    summary = ImportSummary(skipped=found.skipped)
    await _trace(conn, store.store_id, raw_orders, found, "backfill" if backfill else via)
    summary.fetched = len(raw_orders)
    for reason in found.skips.values():
        summary.skipped_by[reason] = summary.skipped_by.get(reason, 0) + 1
    numbers = [(oid, number) for oid, (number, _) in found.paid.items()]
    claimed = await db.claim_paid(conn, store.store_id, numbers)
    summary.paid = len(claimed)
    to_stage = [_received(found.paid[oid][1], (received or {}).get(oid)) for oid in sorted(claimed)]
    # A partial refund is noted once, after the payment it refunds (even in the same batch).
    refunded = await db.claim_partially_refunded(
        conn, store.store_id, sorted(found.partially_refunded)
    )
    summary.partially_refunded = len(refunded)
    to_stage += [found.partially_refunded[oid] for oid in sorted(refunded)]
    # A cancellation seen in the same batch as the payment is staged after it.
    gone = await db.claim_cancelled(conn, store.store_id, sorted(found.cancelled))
    summary.cancelled = len(gone)
    to_stage += [found.cancelled[oid] for oid in sorted(gone)]
    for order_id, (detail, env) in sorted(found.invalid.items()):
        if await db.claim_invalid(conn, store.store_id, order_id, detail):
            summary.invalid += 1
            to_stage.append(env)
    summary.staged = await stage(conn, SCHEMA, to_stage)
    for order_id in sorted(claimed):
        log.info("order paid announced", store_id=store.store_id, order_id=order_id)
    for order_id in sorted(refunded):
        log.info("order partial refund announced", store_id=store.store_id, order_id=order_id)
    for order_id in sorted(gone):
        log.info("order cancellation announced", store_id=store.store_id, order_id=order_id)
    return summary


def count_import(metrics: ServiceMetrics | None, summary: ImportSummary, via: str) -> None:
    """What one committed import did, in the service's metrics."""
    if metrics is None:
        return
    metrics.orders_fetched.labels(via).inc(summary.fetched)
    metrics.orders_announced.inc(summary.paid)
    for reason, count in summary.skipped_by.items():
        metrics.orders_skipped.labels(reason).inc(count)


def _received(env: Envelope, at: dt.datetime | None) -> Envelope:
    if at is None:
        return env
    return replace(env, headers=env.headers | {RECEIVED_HEADER: at.isoformat()})


async def _trace(
    conn: Conn, store_id: int, raw_orders: list[Mapping[str, Any]], found: _Classified, via: str
) -> None:
    # At the transaction's time, as the announcements it makes (ingest.orders).
    seen = [trace.Seen(oid, trace.FETCHED, via) for raw in raw_orders if (oid := order_id_of(raw))]
    seen += [trace.Seen(oid, trace.SKIPPED, reason) for oid, reason in found.skips.items()]
    await trace_db.record(conn, store_id, seen)


def order_id_of(raw: Mapping[str, Any]) -> int | None:
    """The id of a raw API order (an int, or a string of digits), or None."""
    value = raw.get("id")
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


async def disable_store(
    conn: Conn, store_id: int, reason: str, metrics: ServiceMetrics | None = None
) -> list[Staged]:
    """Switch a store off with a reason and announce it (only when it was on)."""
    changed = await db.set_enabled(conn, store_id, enabled=False, reason=reason)
    if not changed:
        return []
    if metrics is not None:
        metrics.integrations_disabled.labels(reason).inc()
    event = IntegrationDisabled.model_validate({"store_id": store_id, "reason": reason})
    stamp = int(now().timestamp() * 1000)
    # A store-level event has no order: its correlation id is the store alone.
    env = envelope(
        event, message_id=f"integration.disabled:{store_id}:{stamp}", correlation_id=str(store_id)
    )
    log.warning("integration disabled", store_id=store_id, reason=reason)
    return await stage(conn, SCHEMA, [env])


async def announce_enabled(conn: Conn, store_id: int) -> list[Staged]:
    """Announce a store switched on again (the mapper stops rejecting its orders, SPEC §4)."""
    stamp = int(now().timestamp() * 1000)
    env = envelope(
        IntegrationEnabled(store_id=store_id),
        message_id=f"integration.enabled:{store_id}:{stamp}",
        correlation_id=str(store_id),
    )
    log.info("integration enabled", store_id=store_id)
    return await stage(conn, SCHEMA, [env])
