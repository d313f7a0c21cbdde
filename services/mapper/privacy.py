"""LGPD requests as the mapper acts on them: the rules, without I/O (``adapters/privacy.py`` reads
and writes the tables and the queues by them).

Who: the customers of the store whose document or e-mail the request names, or who bought one of
its orders (``store/redact``: every customer of the store); and the stored rejections of those
orders or whose raw order names the person.

- A **data request** files the mapper's part of the export in ``mapper.privacy_exports``: the
  customer records (every column), their sales with items, and the rejections (reason, detail and
  the raw order as received).
- A **redaction** anonymises each customer in place (it keeps its id: sales still point at it;
  every other text column, address columns added later included, is cleared; its match keys
  become its own id, so no later order matches it), clears the address columns of their sales
  (amounts stay), rewrites the rejections' raw orders, details and items without the person
  (``shared.privacy``: by shape and by value), scrubs queued events not relayed yet and earlier
  exports, drops the parked copies (the rejection row, redacted, is what ``orders retry``
  resends) and rewrites the dead-lettered ones.

Here: who the person is (``person_of``, widened by the raw orders of their rejections), what an
export holds (``export_of``), what a rejection and an earlier export become without the person
(``scrubbed_rejection``, ``scrub_export``) and which queued messages concern the request
(``concerns``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson

from shared.contracts import PrivacyRequest
from shared.privacy import REDACTED, Person, person_values, scrub, scrub_bytes, scrub_text

# Columns that are no one's personal data.
KEEP = frozenset({"id", "store_id", "created_at", "updated_at"})


def person_of(request: PrivacyRequest, customers: list[dict[str, Any]]) -> Person | None:
    """The person's values from their customer records and the request (None: the whole store)."""
    if request.kind == "store_redact":
        return None
    values: list[object] = []
    documents: list[str] = []
    names: list[object] = []
    for c in customers:
        values += [
            v for k, v in c.items() if k not in KEEP and k not in ("name_key", "document_key")
        ]
        documents += [c["document"]] if c.get("document") else []
        names += [c.get("name"), c.get("email")]
    if request.customer is not None:
        r = request.customer
        values += [v for v in (r.email, r.phone, r.identification) if v]
        documents += [r.identification] if r.identification else []
        names.append(r.email)
    values = [v for v in values if v != REDACTED]
    return Person.of(values, documents=documents, names=[n for n in names if n != REDACTED])


def widened(
    request: PrivacyRequest,
    customers: list[dict[str, Any]],
    person: Person | None,
    rejections: Sequence[Mapping[str, Any]],
) -> Person | None:
    """The raw orders rejected for this person say who they are, even before any sale."""
    if person is None:
        return None
    bodies = [json_or_text(r["body"]) for r in rejections]
    more = [v for b in bodies for v in person_values(b)]
    named = [customer_of(b) for b in bodies]
    return person_of(request, [*customers, {"found": more}, *named]) if more else person


def customer_of(body: Any) -> dict[str, Any]:
    """The name and e-mail a raw order gives its buyer (as a customer record would)."""
    customer = body.get("customer") if isinstance(body, dict) else None
    if not isinstance(customer, dict):
        return {}
    return {k: customer[k] for k in ("name", "email") if isinstance(customer.get(k), str)}


def json_or_text(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode(errors="replace")


def export_of(
    customers: list[dict[str, Any]],
    sales: Sequence[Mapping[str, Any]],
    rejections: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    """The mapper's part of an export: the customers, their sales (``sale`` and ``items`` as JSON
    text) with their items, and the rejections with the raw order as received."""
    return {
        "customers": customers,
        "sales": [orjson.loads(s["sale"]) | {"items": orjson.loads(s["items"])} for s in sales],
        "rejections": [
            {
                "order_id": r["order_id"],
                "reason": r["reason"],
                "detail": r["detail"],
                "items": orjson.loads(r["items"]) if r["items"] else None,
                "resolved": r["resolved_at"] is not None,
                "order": json_or_text(r["body"]),
            }
            for r in rejections
        ],
    }


def scrubbed_rejection(
    rejection: Mapping[str, Any], person: Person | None
) -> tuple[bytes, str, str | None]:
    """A rejection's raw order, detail and items (JSON text) without the person."""
    items = orjson.loads(rejection["items"]) if rejection["items"] else None
    return (
        scrub_bytes(rejection["body"], person),
        REDACTED if person is None else scrub_text(rejection["detail"], person),
        orjson.dumps(scrub(items, person)).decode() if items is not None else None,
    )


def scrub_export(part: dict[str, Any], person: Person | None) -> dict[str, Any]:
    """An export names its customers at the top level: they are person places too."""
    wrapped = {
        "customer": part.get("customers", []),
        "rest": {k: v for k, v in part.items() if k != "customers"},
    }
    if person is not None and not person.concerns(orjson.dumps(part).decode()):
        return part
    done = scrub(wrapped, person)
    return {"customers": done["customer"], **done["rest"]}


def concerns(request: PrivacyRequest, person: Person | None) -> Callable[[Any], bool]:
    """Whether a queued message (its correlation id ``store:order`` and body) is the request's:
    one of its orders, or naming the person (None: any message of the store)."""
    prefix = f"{request.store_id}:"

    def concerned(message: Any) -> bool:
        if not (message.correlation_id or "").startswith(prefix):
            return False
        order = (message.correlation_id or "").removeprefix(prefix)
        if person is None or (order.isdigit() and int(order) in request.order_ids):
            return True
        return person.concerns(message.body.decode(errors="replace"))

    return concerned
