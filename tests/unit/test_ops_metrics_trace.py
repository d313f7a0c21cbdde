"""Pure parts of issue 14: poll-lag quantiles, the bounded per-store request counter, the
operator API's OpenAPI document, and how ``orders trace`` names an order's state."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from openapi_spec_validator import validate

from services.cli.trace import STATES, combine
from services.ingest import opsapi as ingest_api
from services.ledger import opsapi as ledger_api
from services.mapper import opsapi as mapper_api
from shared.metrics import StoreRequests, quantiles, status_class
from shared.opsapi import openapi


@given(st.lists(st.floats(min_value=0, max_value=1e6), min_size=1, max_size=200))
def test_quantiles_are_members_in_order(values: list[float]) -> None:
    found = quantiles(values)
    assert list(found) == [0.5, 0.9, 0.99, 1.0]
    assert all(v in values for v in found.values())
    assert [found[q] for q in found] == sorted(found.values())
    assert found[1.0] == max(values)


def test_quantiles_of_nothing_are_zero() -> None:
    assert quantiles([]) == {0.5: 0.0, 0.9: 0.0, 0.99: 0.0, 1.0: 0.0}
    assert quantiles([float(n) for n in range(1, 11)])[0.9] == 9.0


@given(st.lists(st.tuples(st.integers(1, 300), st.sampled_from([200, 404, 429, 500, None]))))
def test_store_requests_are_bounded_and_sum_up(calls: list[tuple[int, int | None]]) -> None:
    counter = StoreRequests(top=5)
    for store_id, status in calls:
        counter.count(store_id, status)
    (family,) = list(counter.collect())
    stores = {s.labels["store_id"] for s in family.samples}
    assert len(stores - {"other"}) <= 5
    assert sum(s.value for s in family.samples) == len(calls)
    by_class: dict[str, float] = {}
    for s in family.samples:
        by_class[s.labels["status_class"]] = by_class.get(s.labels["status_class"], 0) + s.value
    for klass, total in by_class.items():
        assert total == sum(1 for _, status in calls if status_class(status) == klass)


def test_the_busiest_stores_are_named() -> None:
    counter = StoreRequests(top=2)
    for store_id, times in ((1, 5), (2, 1), (3, 9), (4, 2)):
        for _ in range(times):
            counter.count(store_id, 200)
    (family,) = list(counter.collect())
    assert {s.labels["store_id"]: s.value for s in family.samples} == {
        "1": 5,
        "3": 9,
        "other": 3,
    }


def test_each_service_document_is_valid_openapi() -> None:
    for service, operations in (
        ("ingest", ingest_api.operations(None)),  # type: ignore[arg-type]
        ("mapper", mapper_api.operations(None, None)),  # type: ignore[arg-type]
        ("ledger", ledger_api.operations(None)),  # type: ignore[arg-type]
    ):
        document = openapi(service, operations)
        validate(document)
        assert "/ops/openapi.json" in document["paths"]


def _part(state: str | None, *events: tuple[str, str]) -> dict[str, Any]:
    return {
        "state": state,
        "events": [{"at": at, "service": "x", "what": w, "detail": ""} for at, w in events],
    }


def _ingest(state: str) -> dict[str, Any]:
    return _part(state) | {"store": {"enabled": True, "disabled_reason": None}}


def test_the_state_is_the_furthest_the_records_show() -> None:
    cases = [
        ((_ingest("unknown"), _part(None), _part(None)), "unknown"),
        ((_ingest("received"), _part(None), _part(None)), "received"),
        ((_ingest("skipped"), _part(None), _part(None)), "skipped"),
        ((_ingest("announced"), _part(None), _part(None)), "announced"),
        ((_ingest("announced"), _part("pending_review"), _part(None)), "pending_review"),
        (
            (_ingest("announced"), _part("pending_review"), _part("pending_review")),
            "pending_review",
        ),
        ((_ingest("announced"), _part("rejected"), _part(None)), "rejected"),
        ((_ingest("announced"), _part("parked"), _part(None)), "parked"),
        ((_ingest("announced"), _part("pending_review"), _part("confirmed")), "confirmed"),
        ((_ingest("cancelled"), _part("pending_review"), _part("cancelled")), "cancelled"),
        ((_ingest("cancelled"), _part(None), _part("cancelled")), "cancelled"),
    ]
    for (ingested, mapped, ledgered), expected in cases:
        assert combine(1, 2, ingested, mapped, ledgered)["state"] == expected
    assert {c[1] for c in cases} == set(STATES)


def test_events_in_time_order_across_services() -> None:
    result = combine(
        1,
        2,
        _part("announced", ("2026-01-01T00:00:01", "a"), ("2026-01-01T00:00:03", "c"))
        | {"store": None},
        _part("pending_review", ("2026-01-01T00:00:02", "b")),
        _part(None),
    )
    assert [e["what"] for e in result["events"]] == ["a", "b", "c"]
