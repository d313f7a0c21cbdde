"""Each service's LGPD rules without I/O: whom a request names, what concerns it, what stays.

The rules live in ``services/<svc>/privacy.py``; their adapters (``adapters/privacy.py``) apply
them to the tables and queues, which ``tests/integration/test_privacy_requests.py`` covers end to
end. Values are made up; the CPF is a valid test number.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import orjson

from services.ingest import privacy as ingest
from services.ledger import privacy as ledger
from services.mapper import privacy as mapper
from shared.contracts import PrivacyCustomer, PrivacyRequest
from shared.privacy import REDACTED

CPF = "529.982.247-25"


def _request(kind: str = "customers_redact", **over: Any) -> PrivacyRequest:
    customer = PrivacyCustomer(
        id=9, email="ana@example.com", phone="+55 11 98765-4321", identification=CPF
    )
    fields: dict[str, Any] = {"store_id": 42, "kind": kind, "customer": customer, "order_ids": [7]}
    return PrivacyRequest.model_validate(fields | over)


def test_a_store_redaction_names_no_one_but_takes_everything() -> None:
    whole = _request("store_redact")
    assert ingest.person_of(whole) is None
    assert mapper.person_of(whole, [{"name": "Ana"}]) is None
    assert ledger.person_of(whole, []) is None
    assert ingest.concerns(whole, None, '{"store_id": 42, "x": 1}')
    assert not ingest.concerns(whole, None, '{"store_id": 43}')


def test_ingest_hunts_for_the_request_values() -> None:
    person = ingest.person_of(_request())
    assert person is not None
    assert person.concerns("order by ANA@example.com")
    assert person.concerns("doc 52998224725")
    assert person.concerns("tel (11) 98765-4321")
    assert not person.concerns("someone else")
    assert ingest.concerns(_request(), person, '{"store_id":42,"email":"ana@example.com"}')
    assert not ingest.concerns(_request(), person, '{"store_id":42,"email":"bia@example.com"}')


def test_mapper_person_from_its_customer_records_but_not_their_keys() -> None:
    customers = [
        {"id": "c-1", "store_id": 42, "name": "Ana Souza", "email": "a2@example.com",
         "document": CPF, "name_key": "ana souza", "document_key": "52998224725"},
    ]  # fmt: skip
    person = mapper.person_of(_request(customer=None), customers)
    assert person is not None
    assert person.concerns("Ana Souza bought it")
    assert person.concerns("A2@example.com")
    assert "c-1" not in person.texts
    assert "42" not in person.texts


def test_mapper_widens_the_person_by_their_rejected_raw_orders() -> None:
    request = _request(customer=PrivacyCustomer(email="ana@example.com"))
    person = mapper.person_of(request, [])
    raw = {"customer": {"name": "Ana Rejeitada", "email": "ana@example.com"}}
    rejection = {"body": orjson.dumps(raw)}
    wider = mapper.widened(request, [], person, [rejection])
    assert wider is not None
    assert wider.concerns("Ana Rejeitada")
    assert not (person and person.concerns("Ana Rejeitada"))
    assert mapper.widened(request, [], None, [rejection]) is None


def test_mapper_concerns_the_request_orders_and_the_person_in_the_store() -> None:
    request = _request()
    person = mapper.person_of(request, [])
    concerned = mapper.concerns(request, person)

    def message(correlation: str, body: str = "{}") -> Any:
        return SimpleNamespace(correlation_id=correlation, body=body.encode())

    assert concerned(message("42:7"))
    assert concerned(message("42:8", '{"email": "ana@example.com"}'))
    assert not concerned(message("42:8", '{"email": "bia@example.com"}'))
    assert not concerned(message("43:7"))


def test_mapper_rejection_scrubbed_keeps_its_shape() -> None:
    rejection = {
        "body": b'{"customer": {"email": "ana@example.com"}, "total": "10.00"}',
        "detail": "customer ana@example.com has no document",
        "items": '[{"sku": "X-1", "name": "Camiseta"}]',
    }
    body, detail, items = mapper.scrubbed_rejection(rejection, mapper.person_of(_request(), []))
    assert b"ana@example.com" not in body
    assert b'"10.00"' in body
    assert "ana@example.com" not in detail
    assert items is not None
    assert "X-1" in items
    _, whole_store, _ = mapper.scrubbed_rejection(rejection, None)
    assert whole_store == REDACTED


def test_ledger_person_from_the_announcements_it_keeps() -> None:
    sales = [{"announcement": {"customer": {"name": "Ana Souza", "document": CPF}}}]
    person = ledger.person_of(_request(customer=None), sales)
    assert person is not None
    assert person.concerns("Ana Souza")
    assert person.concerns("52998224725")


def test_ledger_export_left_alone_unless_it_names_the_person() -> None:
    part = {"sales": [{"sale_id": "s-1", "announcement": {"customer": {"name": "Bia Lima"}}}]}
    person = ledger.person_of(_request(), [])
    assert ledger.clean_export(part, orjson.dumps(part).decode(), person) is part
    mine = {
        "sales": [{"sale_id": "s-2", "announcement": {"customer": {"name": "ana@example.com"}}}]
    }
    cleaned = ledger.clean_export(mine, orjson.dumps(mine).decode(), person)
    assert "ana@example.com" not in orjson.dumps(cleaned).decode()
    assert cleaned["sales"][0]["sale_id"] == "s-2"
