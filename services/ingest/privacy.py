"""LGPD requests as ingest sees them: the pure rules (whom a request names, how records read).

Every accepted LGPD webhook becomes a row of ``ingest.privacy_requests`` (no personal data: the
customer's Nuvemshop id and the order ids) and a ``privacy.request`` event under the same
``request_id``; the mapper and the ledger file their parts of a data request's export under that
id in their own schemas. Ingest's own part is what it knows of the named orders. On a redaction,
what ingest keeps about the person goes: the invalid-order details of their orders (they may
quote a value), the queued copies of events not relayed yet, and their dead webhook records.

This module owns the rules only: whom a request names (``person_of``), which dead webhook record
concerns it (``concerns``) and how stored values read in an export or a listing (``plain``).
The filing, the export's reads and the redaction run in ``adapters/privacy.py``.
"""

from __future__ import annotations

import datetime as dt

from shared.contracts import PrivacyRequest
from shared.privacy import Person


def plain(value: object) -> object:
    """A stored value as JSON can carry it: a timestamp in ISO 8601, anything else as it is."""
    return value.isoformat() if isinstance(value, dt.datetime) else value


def person_of(request: PrivacyRequest) -> Person | None:
    """What ingest can hunt for: the request's own values (None: the whole store)."""
    if request.kind == "store_redact" or request.customer is None:
        return None
    c = request.customer
    values = [v for v in (c.email, c.phone, c.identification) if v]
    return Person.of(
        values, documents=[c.identification] if c.identification else [], names=[c.email]
    )


def concerns(request: PrivacyRequest, person: Person | None, body: str) -> bool:
    """Whether a dead webhook record (its body as text) is the request's to redact: the store's,
    and naming the person unless the whole store goes."""
    return f'"store_id":{request.store_id}' in body.replace(" ", "") and (
        person is None or person.concerns(body)
    )
