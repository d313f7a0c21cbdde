"""Each service's part of ``orders trace`` built from its rows, without a database.

The rows are what each service's ``adapters/trace.py`` reads (as plain mappings); the states and
events here are what ``tests/integration/test_orders_trace.py`` checks end to end.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from services.ingest import trace as ingest
from services.ledger import trace as ledger
from services.mapper import trace as mapper

T0 = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


def at(seconds: int) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def _order(**over: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "order_number": 101,
        "paid_announced_at": None,
        "cancelled_announced_at": None,
        "invalid_detail": None,
        "partially_refunded_announced_at": None,
        "updated_at": at(5),
    }
    return row | over


def test_ingest_merge_counts_repeats_and_widens_their_span() -> None:
    seen = [
        ingest.Seen(7, ingest.WEBHOOK, "order/paid", at(3)),
        ingest.Seen(7, ingest.WEBHOOK, "order/paid", at(1)),
        ingest.Seen(7, ingest.FETCHED, "webhook"),
        ingest.Seen(7, ingest.WEBHOOK, "order/paid", at(2)),
    ]
    tallies = {(t.what, t.detail): t for t in ingest.merge(seen)}
    assert tallies[(ingest.WEBHOOK, "order/paid")] == ingest.Tally(
        7, ingest.WEBHOOK, "order/paid", at(1), at(3), 3
    )
    assert tallies[(ingest.FETCHED, "webhook")].first_at is None  # the transaction's time
    assert tallies[(ingest.FETCHED, "webhook")].count == 1


@given(st.lists(st.tuples(st.integers(1, 3), st.sampled_from(["webhook", "fetched"])), max_size=30))
def test_ingest_merge_loses_no_sighting(keys: list[tuple[int, str]]) -> None:
    seen = [ingest.Seen(o, w, "d", at(i)) for i, (o, w) in enumerate(keys)]
    tallies = ingest.merge(seen)
    assert sum(t.count for t in tallies) == len(seen)
    assert len(tallies) == len(set(keys))


def test_ingest_states_follow_the_furthest_record() -> None:
    webhook = {
        "what": ingest.WEBHOOK,
        "detail": "order/paid",
        "first_at": at(0),
        "last_at": at(0),
        "count": 1,
    }
    skipped = {
        "what": ingest.SKIPPED,
        "detail": "not_paid",
        "first_at": at(1),
        "last_at": at(4),
        "count": 2,
    }
    assert ingest.timeline(None, [], None) == {"store": None, "state": "unknown", "events": []}
    assert ingest.timeline(None, [webhook], None)["state"] == "received"
    part = ingest.timeline(None, [webhook, skipped], None)
    assert part["state"] == "skipped"
    assert "not paid (nothing to import yet) (2 times" in part["events"][1]["detail"]
    paid = ingest.timeline(None, [webhook], _order(paid_announced_at=at(2)))
    assert paid["state"] == "announced"
    assert paid["events"][-1]["what"] == "announced order.paid"
    assert paid["events"][-1]["detail"] == "paid order #101"
    gone = ingest.timeline(
        None, [webhook], _order(paid_announced_at=at(2), cancelled_announced_at=at(9))
    )
    assert gone["state"] == "cancelled"


def test_ingest_names_the_store_and_an_unreadable_order() -> None:
    store = {"enabled": False, "disabled_reason": "credentials_revoked", "activated_at": T0}
    part = ingest.timeline(store, [], _order(invalid_detail="total: not a number"))
    assert part["store"] == {
        "enabled": False,
        "disabled_reason": "credentials_revoked",
        "activated_at": "2026-12-01T12:00:00+00:00",
    }
    assert part["state"] == "announced"
    assert part["events"][0]["what"] == "announced order.invalid"


def _rejection(**over: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "reason": "unknown_product",
        "detail": "SKU X-1",
        "attempts": 1,
        "rejected_at": at(1),
        "resolved_at": None,
        "retried_at": None,
        "retries": 0,
    }
    return row | over


def test_mapper_rejected_parked_and_pending() -> None:
    assert mapper.timeline(None, None, []) == {"state": None, "events": []}
    assert mapper.timeline(None, _rejection(), [])["state"] == "rejected"
    again = mapper.timeline(None, _rejection(attempts=2, retried_at=at(2), retries=1), [])
    assert again["state"] == "parked"
    assert [e["what"] for e in again["events"]] == ["rejected (sale.rejected)", "retry requested"]
    sale = {"sale_id": "s-1", "total": Decimal("10.00"), "warnings": 1, "created_at": at(3)}
    done = mapper.timeline(sale, _rejection(resolved_at=at(3)), [])
    assert done["state"] == "pending_review"
    assert done["events"][-1]["detail"] == "sale s-1, total 10.00, 1 warning(s)"


def test_mapper_history_replaces_the_last_rejection_and_rows_need_an_order() -> None:
    history = [
        {"at": at(1), "what": "rejected", "detail": "unknown_product: SKU X-1"},
        {"at": at(2), "what": "retried", "detail": "by ops"},
    ]
    part = mapper.timeline(None, _rejection(attempts=2), history)
    assert [e["what"] for e in part["events"]] == ["rejected (sale.rejected)", "retry requested"]
    rows = mapper.history_rows(
        [
            {"store_id": 1, "order_id": 2, "reason": "r", "detail": "d"},
            {"store_id": 1, "order_id": None, "reason": "r"},
        ]
    )
    assert rows == [(1, 2, "r: d")]


def test_ledger_states_and_what_a_confirmation_posted() -> None:
    assert ledger.timeline(None, None, [], [], []) == {"state": None, "events": []}
    early = {"cancelled_at": at(1), "reason": "order.cancelled"}
    assert ledger.timeline(None, early, [], [], [])["state"] == "cancelled"
    sale = {
        "sale_id": "s-1",
        "status": "confirmed",
        "created_at": at(2),
        "confirmed_by": "ana",
        "confirmed_at": at(3),
        "cancelled_at": None,
        "cancel_reason": None,
    }
    receivables = [
        {
            "number": 1,
            "amount": Decimal("5.00"),
            "due_date": "2026-12-31",
            "method": "pix",
            "status": "open",
        }
    ]
    movements = [{"product_id": "p-1", "quantity": 2, "direction": "out"}]
    part = ledger.timeline(sale, None, [], receivables, movements)
    assert part["state"] == "confirmed"
    posted = part["events"][-1]["detail"]
    assert "by ana" in posted
    assert "#1 5.00 due 2026-12-31 pix (open)" in posted
    assert "stock out: 2 x p-1" in posted


def test_ledger_refusals_keep_one_row_per_reason_with_the_last_detail() -> None:
    refused = [
        {"store_id": 1, "order_id": 2, "reason": "unknown_sale", "detail": "first"},
        {"store_id": 1, "order_id": 2, "reason": "unknown_sale", "detail": "last"},
        {"store_id": 1, "reason": "malformed"},
    ]
    assert ledger.refusal_rows(refused) == [(1, 2, "unknown_sale", "last")]
    events = ledger.timeline(
        None,
        None,
        [{"reason": "unknown_sale", "detail": "last", "last_at": at(4), "count": 2}],
        [],
        [],
    )["events"]
    assert events[0]["detail"] == "unknown_sale: last (2 times, this is the last)"
