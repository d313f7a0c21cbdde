"""The ledger's LGPD rules, pure: whose values a request names, and an export part scrubbed.

The ledger's personal data is the customer (and any address) inside each kept sale announcement.
``person_of`` says whose values a request concerns: those read from the announcements of the
sales found for it and the request's own customer (None for ``store/redact``: everyone of the
store). ``clean_export`` says what an export part filed earlier becomes once that person is
removed. Reading and rewriting the sales, the export parts and the dead-lettered messages is
``services.ledger.adapters.privacy``'s; no I/O here.
"""

from __future__ import annotations

from typing import Any

from shared.contracts import PrivacyRequest
from shared.privacy import REDACTED, Person, person_values, scrub


def person_of(request: PrivacyRequest, sales: list[dict[str, Any]]) -> Person | None:
    """The person a request names, from its sales' announcements and its customer."""
    if request.kind == "store_redact":
        return None
    values: list[object] = [v for s in sales for v in person_values(s["announcement"])]
    documents = [
        d
        for s in sales
        if isinstance(d := s["announcement"].get("customer", {}).get("document"), str)
    ]
    names: list[object] = [s["announcement"].get("customer", {}).get("name") for s in sales]
    if request.customer is not None:
        c = request.customer
        values += [v for v in (c.email, c.phone, c.identification) if v]
        documents += [c.identification] if c.identification else []
        names.append(c.email)
    return Person.of(
        [v for v in values if v != REDACTED],
        documents=documents,
        names=[n for n in names if n != REDACTED],
    )


def clean_export(part: dict[str, Any], text: str, person: Person | None) -> dict[str, Any]:
    """The ledger's export part: its sales, each announcement scrubbed."""
    if person is not None and not person.concerns(text):
        return part
    return {
        "sales": [s | {"announcement": scrub(s["announcement"], person)} for s in part["sales"]]
    }
