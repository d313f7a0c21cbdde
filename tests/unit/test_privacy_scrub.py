"""Redacting a person out of JSON bodies and texts (``shared.privacy``): by shape and by value."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.privacy import REDACTED, Person, person_values, scrub, scrub_bytes, scrub_text

NAME = "Zuleica Quaresmeira"
CPF = "75839566500"
EMAIL = "zuleica@example.org"
PHONE = "+55 11 98765-1234"
PERSON = Person.of([NAME, EMAIL, PHONE, "Belo Horizonte"], documents=[CPF], names=[NAME, EMAIL])

ORDER: dict[str, Any] = {
    "store_id": 1,
    "order_id": 2,
    "total": "10.50",
    "customer": {"id": 7, "name": NAME, "document": CPF, "email": EMAIL, "created": True,
                 "address": {"street": "Rua X", "number": 12}},
    "shipping_address": {"street": "Rua X", "zipcode": "01000000"},
    "contact_phone": PHONE,
    "items": [{"name": "Vela", "quantity": 1, "unit_price": "10.50"}],
    "note": f"call {NAME} on 11 98765 1234",
}  # fmt: skip


def test_person_places_are_blanked_ids_amounts_and_lines_stay() -> None:
    done = scrub(ORDER, PERSON)
    assert done["customer"]["id"] == 7
    assert done["customer"]["created"] is True
    assert done["customer"]["name"] == REDACTED
    assert done["customer"]["address"] == {"street": REDACTED, "number": None}
    assert done["shipping_address"] == {"street": REDACTED, "zipcode": REDACTED}
    assert done["contact_phone"] == REDACTED
    assert done["total"] == "10.50"
    assert done["items"] == ORDER["items"]
    assert done["note"] == REDACTED  # names the person outside any person place


def test_a_whole_store_is_redacted_by_shape_alone() -> None:
    done = scrub(ORDER, None)
    assert done["customer"]["email"] == REDACTED
    assert done["note"] == ORDER["note"]  # no values to look for


def test_values_are_found_in_any_case_and_punctuation() -> None:
    assert PERSON.found_in("ZULEICA QUARESMEIRA")
    assert PERSON.found_in("document 758.395.665-00 refused")
    assert PERSON.found_in("tel (11) 98765 1234")
    assert not PERSON.found_in("an order of 12 items")
    assert scrub_text("customer.document: 758.395.665-00", PERSON) == REDACTED
    assert scrub_text("products: missing", PERSON) == "products: missing"


def test_person_values_reads_the_person_places() -> None:
    found = person_values(ORDER)
    assert NAME in found
    assert "Rua X" in found
    assert "Vela" not in found


def test_someone_else_sharing_a_city_is_left_as_they_are() -> None:
    other = json.dumps({"customer": {"name": "Ana", "city": "Belo Horizonte"}}).encode()
    assert scrub_bytes(other, PERSON) == other
    ours = json.dumps({"customer": {"email": EMAIL, "city": "Belo Horizonte"}}).encode()
    assert b"Belo Horizonte" not in scrub_bytes(ours, PERSON)


def test_a_body_that_is_not_json_goes_when_it_names_them() -> None:
    assert scrub_bytes(f"<{EMAIL}>".encode(), PERSON) == b'"redacted"'
    assert scrub_bytes(b"<html>", PERSON) == b"<html>"


_json = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=12)),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=10,
)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    _json, st.sampled_from([NAME, CPF, "758.395.665-00", EMAIL.upper(), PHONE]), st.text(max_size=5)
)
def test_no_value_survives_wherever_it_is_put(body: Any, value: str, around: str) -> None:
    planted = {"payload": body, "somewhere": [around + value + around]}
    text = json.dumps(scrub(planted, PERSON))
    assert not PERSON.found_in(text.replace(REDACTED, ""))
