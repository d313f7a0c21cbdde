"""Redacting a person out of what a service keeps (LGPD): pure rules, and its queues.

Two ways in, used together because neither alone is enough:

- **by shape**: in a JSON body (an order message, a sale announcement, a stored rejection) the
  person lives in known places: ``customer``, ``shipping_address``, ``address``,
  ``billing_address``, ``destination`` objects and the order's flat ``billing_*``/``contact_*``
  fields. Their text becomes ``"redacted"``, numbers and nested values ``None``; ids and flags
  stay (sales keep pointing at their customer).
- **by value**: the person's own values (name, document, e-mail, phones, address parts, read from
  the records being redacted and from the request) are searched in every other string, so a
  value quoted in a free-text detail, or kept under a field added later, goes too. A document
  matches in any punctuation, a phone by its digits.

Each service applies these to its own tables and queues (``services/<svc>/adapters/privacy.py``);
``scrub_outbox_and_exports`` does the part every service shares: its unpublished messages and
the export parts it filed for earlier data requests.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

import orjson

from shared.db import Conn
from shared.documents import normalize_document
from shared.outbox import rewrite_store_outbox

REDACTED: Final = "redacted"
PERSON_OBJECTS: Final = frozenset(
    {"customer", "shipping_address", "address", "billing_address", "destination"}
)
PERSON_PREFIXES: Final = ("billing_", "contact_")
KEEP_IN_PERSON: Final = frozenset({"id", "created", "active", "customer_id"})
_MIN_VALUE: Final = 4  # shorter values ("27", "SP") are too common to hunt for everywhere
_MIN_DIGITS: Final = 8
_NOT_DIGIT: Final = re.compile(r"\D")


@dataclass(frozen=True)
class Person:
    """The values to hunt for: free text (case-insensitive), documents and phone digits."""

    texts: frozenset[str]
    documents: frozenset[str]
    phones: frozenset[str]
    # What says a row or message is about this person (name, e-mail): a city or a street alone
    # does not, though it is redacted where the person is.
    names: frozenset[str] = frozenset()

    @classmethod
    def of(
        cls,
        values: Iterable[object],
        *,
        documents: Iterable[str] = (),
        names: Iterable[object] = (),
    ) -> Person:
        texts = {v.strip().casefold() for v in _strings(values) if len(v.strip()) >= _MIN_VALUE}
        docs = {normalize_document(d) for d in _strings(documents)}
        phones = {_NOT_DIGIT.sub("", v) for v in _strings(values)}
        # Brazilian numbers are written with or without the country code (55).
        phones |= {p[2:] for p in phones if p.startswith("55") and len(p) >= 12}
        strong = {v.strip().casefold() for v in _strings(names) if len(v.strip()) >= _MIN_VALUE}
        return cls(
            frozenset(texts | strong),
            frozenset(d for d in docs if len(d) >= 11),
            frozenset(p for p in phones if len(p) >= _MIN_DIGITS),
            frozenset(strong - {REDACTED}),
        )

    def __bool__(self) -> bool:
        return bool(self.texts or self.documents or self.phones)

    def found_in(self, text: str) -> bool:
        folded = text.casefold()
        if any(v in folded for v in self.texts):
            return True
        if self.documents and any(d in normalize_document(text) for d in self.documents):
            return True
        digits = _NOT_DIGIT.sub("", text)
        return bool(digits) and any(p in digits for p in self.phones)

    def concerns(self, text: str) -> bool:
        """Whether ``text`` is about this person: a name or e-mail, a document, a phone."""
        folded = text.casefold()
        if any(v in folded for v in self.names):
            return True
        if self.documents and any(d in normalize_document(text) for d in self.documents):
            return True
        digits = _NOT_DIGIT.sub("", text)
        return bool(digits) and any(p in digits for p in self.phones if len(p) >= 10)

    def sql_patterns(self) -> list[str]:
        """ILIKE patterns that find a row about this person (names, e-mails, documents)."""
        return [f"%{_like(v)}%" for v in sorted(self.names | self.documents)]


def _like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _strings(values: Iterable[object]) -> list[str]:
    """Every string in ``values``, looking inside lists and objects."""
    out: list[str] = []
    for value in values:
        if isinstance(value, str):
            out.append(value)
        elif isinstance(value, dict):
            out += _strings(value.values())
        elif isinstance(value, list | tuple):
            out += _strings(value)
    return out


def person_values(body: Any) -> list[str]:
    """The strings a body holds in its person places (see the module's "by shape")."""
    found: list[str] = []
    if isinstance(body, dict):
        for key, value in body.items():
            if key in PERSON_OBJECTS or key.startswith(PERSON_PREFIXES):
                found += _strings(
                    [value]
                    if not isinstance(value, dict)
                    else [v for k, v in value.items() if k not in KEEP_IN_PERSON]
                )
            else:
                found += person_values(value)
    elif isinstance(body, list):
        for value in body:
            found += person_values(value)
    return found


def _blank(value: Any, person: Person) -> Any:
    if isinstance(value, dict):
        return {k: (v if k in KEEP_IN_PERSON else _blank(v, person)) for k, v in value.items()}
    if isinstance(value, list):
        return [_blank(v, person) for v in value]
    if isinstance(value, str):
        return REDACTED if value else value
    if isinstance(value, bool) or value is None:
        return value
    return None


def scrub(body: Any, person: Person | None) -> Any:
    """``body`` with its person places blanked and ``person``'s values gone from every string.

    ``person`` None: by shape only (a whole store is being redacted)."""
    probe = person or Person(frozenset(), frozenset(), frozenset())
    if isinstance(body, dict):
        out: dict[str, Any] = {}
        for key, value in body.items():
            if key in PERSON_OBJECTS or key.startswith(PERSON_PREFIXES):
                out[key] = _blank(value, probe)
            else:
                out[key] = scrub(value, person)
        return out
    if isinstance(body, list):
        return [scrub(v, person) for v in body]
    if isinstance(body, str) and person is not None and person.found_in(body):
        return REDACTED
    return body


def scrub_text(text: str, person: Person) -> str:
    """A free-text line (an error detail) with ``person``'s values cut out."""
    return REDACTED if person.found_in(text) else text


def scrub_bytes(raw: bytes, person: Person | None) -> bytes:
    """A JSON message body, scrubbed; a body that is not JSON is replaced when it names them."""
    text = raw.decode(errors="replace")
    if person is not None and not person.concerns(text):
        return raw  # someone else's: left as it is
    try:
        decoded = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return b'"redacted"'
    return orjson.dumps(scrub(decoded, person))


def detail_scrubber(person: Person | None) -> Callable[[str], str]:
    """For a free-text detail: the person's values out (a whole store: the detail goes)."""
    if person is None:
        return lambda _: REDACTED
    return lambda text: scrub_text(text, person)


async def scrub_outbox_and_exports(
    conn: Conn,
    schema: str,
    store_id: int,
    person: Person | None,
    clean_export: Callable[[dict[str, Any], str], dict[str, Any]],
) -> None:
    """Remove the person (None: everyone of the store) from ``schema``'s unpublished messages
    about the store and from its ``privacy_exports`` parts; ``clean_export(part, text)`` says
    what an export part becomes (the part as it was when the person is not in ``text``)."""
    await rewrite_store_outbox(conn, schema, store_id, lambda body: scrub_bytes(body, person))
    exports = await conn.fetch(
        f"SELECT request_id, part::text AS part FROM {schema}.privacy_exports WHERE store_id = $1",
        store_id,
    )
    for e in exports:
        part = orjson.loads(e["part"])
        cleaned = clean_export(part, e["part"])
        if cleaned != part:
            await conn.execute(
                f"UPDATE {schema}.privacy_exports SET part = $2::jsonb WHERE request_id = $1",
                e["request_id"],
                orjson.dumps(cleaned).decode(),
            )
