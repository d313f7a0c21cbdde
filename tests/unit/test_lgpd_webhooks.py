"""The LGPD webhooks' own URLs and bodies (no ``event`` field): what is read, what is refused."""

from __future__ import annotations

import contextlib
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.ingest.domain import InvalidWebhook, Webhook
from services.ingest.lgpd import LGPD_ROUTES, parse_lgpd_webhook, webhook_url

CUSTOMER = {
    "id": 105799010,
    "email": "maria@example.com",
    "phone": "+5511987654321",
    "identification": "75839566500",
}
BODIES: dict[str, dict[str, Any]] = {
    "store/redact": {"store_id": 1234},
    "customers/redact": {"store_id": 1234, "customer": CUSTOMER, "orders_to_redact": [1, 2]},
    "customers/data_request": {
        "store_id": 1234,
        "customer": CUSTOMER,
        "orders_requested": [3],
        "data_request": {"id": 77},
    },
}


def test_each_lgpd_event_has_its_own_url() -> None:
    assert webhook_url("https://x.example/", "store/redact") == (
        "https://x.example/webhooks/nuvemshop/store-redact"
    )
    assert webhook_url("https://x.example", "customers/redact") == (
        "https://x.example/webhooks/nuvemshop/customers-redact"
    )
    assert webhook_url("https://x.example", "customers/data_request") == (
        "https://x.example/webhooks/nuvemshop/customers-data-request"
    )
    assert webhook_url("https://x.example", "order/paid") == "https://x.example/webhooks/nuvemshop"
    assert sorted(LGPD_ROUTES.values()) == [
        "customers/data_request",
        "customers/redact",
        "store/redact",
    ]


@pytest.mark.parametrize("event", list(BODIES))
def test_the_documented_bodies_are_read_with_the_event_of_their_url(event: str) -> None:
    body = orjson.dumps(BODIES[event])
    assert parse_lgpd_webhook(body, event) == Webhook(store_id=1234, event=event, id=None)
    # The same body with its own event named is fine; with another one it is refused.
    named = orjson.dumps({**BODIES[event], "event": event})
    assert parse_lgpd_webhook(named, event).event == event
    with pytest.raises(InvalidWebhook, match="posted to"):
        parse_lgpd_webhook(orjson.dumps({**BODIES[event], "event": "order/paid"}), event)


def test_a_store_id_may_come_as_digits() -> None:
    assert parse_lgpd_webhook(b'{"store_id": "1234"}', "store/redact").store_id == 1234


@pytest.mark.parametrize(
    ("event", "body", "says"),
    [
        ("store/redact", b"not json", "not JSON"),
        ("store/redact", b"[1234]", "not a JSON object"),
        ("store/redact", b"{}", "store_id"),
        ("store/redact", b'{"store_id": 0}', "store_id"),
        ("store/redact", b'{"store_id": true}', "store_id"),
        ("store/redact", b'{"store_id": 99999999999999999999}', "store_id"),
        ("customers/redact", b'{"store_id": 1}', "customer"),
        ("customers/redact", b'{"store_id": 1, "customer": "maria"}', "customer"),
        ("customers/redact", b'{"store_id": 1, "customer": {}}', "names nobody"),
        ("customers/redact", b'{"store_id": 1, "customer": {"id": "abc"}}', "customer.id"),
        ("customers/redact", b'{"store_id": 1, "customer": {"email": 5}}', "customer.email"),
        (
            "customers/redact",
            b'{"store_id": 1, "customer": {"id": 1}, "orders_to_redact": 3}',
            "not a list",
        ),
        (
            "customers/redact",
            b'{"store_id": 1, "customer": {"id": 1}, "orders_to_redact": [1, "x"]}',
            "not an order id",
        ),
        ("customers/data_request", b'{"store_id": 1, "customer": {"id": 1}}', "data_request"),
        (
            "customers/data_request",
            b'{"store_id": 1, "customer": {"id": 1}, "data_request": {}}',
            "data_request",
        ),
        (
            "customers/data_request",
            b'{"store_id": 1, "customer": {"id": 1}, "data_request": {"id": 1}, "orders_requested": [null]}',
            "not an order id",
        ),
    ],
)
def test_bodies_that_say_nothing_actionable_are_refused(event: str, body: bytes, says: str) -> None:
    with pytest.raises(InvalidWebhook, match=says):
        parse_lgpd_webhook(body, event)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)
documented = st.sampled_from(list(BODIES))


@given(documented, st.one_of(st.binary(max_size=200), json_values.map(orjson.dumps)))
def test_any_body_is_read_or_refused_never_crashes(event: str, body: bytes) -> None:
    try:
        hook = parse_lgpd_webhook(body, event)
    except InvalidWebhook:
        return
    assert hook.event == event
    assert hook.store_id > 0


@given(documented, json_values, json_values)
def test_any_customer_and_orders_are_read_or_refused_never_crashes(
    event: str, customer: Any, orders: Any
) -> None:
    body = {
        "store_id": 1,
        "customer": customer,
        "orders_to_redact": orders,
        "orders_requested": orders,
        "data_request": {"id": 1},
    }
    with contextlib.suppress(InvalidWebhook):
        parse_lgpd_webhook(orjson.dumps(body), event)
