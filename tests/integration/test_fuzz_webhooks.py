"""Hostile webhooks: every webhook URL of the running ingest fuzzed with hypothesis.

Random bodies (bytes, JSON of any shape, webhook-shaped objects with junk in every field, bodies
around the 64 KiB limit, absurd nesting), encodings (UTF-8, UTF-16, a BOM, Latin-1), headers
(content types, a ``Content-Encoding`` that lies, chunked bodies without a length) and
signatures (none, junk, valid over junk, valid over another body) go to the main URL and the three
LGPD URLs, for the connected store and for stores nobody knows. Every answer must be 2xx, 400,
401, 413 or 503; a 2xx needs a valid signature; what is queued (``webhook.received``, seen by the
observer) is exactly what was answered 2xx; the webhook consumer never dead-letters anything, and
the service still answers and imports an order afterwards. The figures (inputs tried, distinct
answers) are printed and written to ``.fuzz-figures.json`` for docs/security.md.

Hypothesis runs in a worker thread; each example's request runs on the test's event loop, where
the system lives.
"""

from __future__ import annotations

import asyncio
import gzip
import json
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.ingest.domain import LGPD_EVENTS, Webhook
from services.ingest.lgpd import LGPD_ROUTES, parse_any_webhook, parse_lgpd_webhook
from services.simulator.webhooks import HMAC_HEADER, sign
from tests.harness import System
from tests.integration.ingest_helpers import first_poll_done

STORE = 733_001
UNKNOWN = 733_999
ALLOWED = {200, 201, 202, 204, 400, 401, 413, 503}
PATHS = ["", "/store-redact", "/customers-redact", "/customers-data-request"]
EXAMPLES = 600
FIGURES = Path(__file__).resolve().parents[2] / ".fuzz-figures.json"
LIMIT = 64 * 1024

_json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
_json = st.recursive(
    _json_leaf,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_ids = st.one_of(
    st.sampled_from([STORE, UNKNOWN, str(STORE), 0, -1, 2**63, 2**64, 1.0, "1e3", " 7 ", True]),
    _json_leaf,
)
_events = st.one_of(
    st.sampled_from(
        [
            "order/paid",
            "order/created",
            "order/cancelled",
            "app/uninstalled",
            "store/redact",
            "customers/redact",
            "customers/data_request",
            "product/created",
        ]
    ),
    st.text(max_size=30),
    _json_leaf,
)
_customer = st.one_of(
    _json,
    st.fixed_dictionaries(
        {},
        optional={
            "id": _ids,
            "email": st.one_of(st.emails(), _json_leaf),
            "phone": _json_leaf,
            "identification": st.one_of(st.sampled_from(["75839566500", "123"]), _json_leaf),
        },
    ),
)
_good_customer = st.fixed_dictionaries(
    {"id": st.integers(min_value=1, max_value=2**40)},
    optional={
        "email": st.emails(),
        "phone": st.text(max_size=15),
        "identification": st.sampled_from(["75839566500", "11.222.333/0001-81", ""]),
    },
)
_plausible = st.fixed_dictionaries(
    {
        "store_id": st.sampled_from([STORE, UNKNOWN, str(STORE)]),
        "event": st.sampled_from(
            ["store/redact", "customers/redact", "customers/data_request", "product/created"]
        ),
        "customer": _good_customer,
        "orders_to_redact": st.lists(st.integers(min_value=1, max_value=2**40), max_size=3),
        "orders_requested": st.lists(st.integers(min_value=1, max_value=2**40), max_size=3),
        "data_request": st.fixed_dictionaries({"id": st.integers(min_value=1, max_value=2**40)}),
    },
    optional={"extra": _json, "id": st.integers(min_value=1, max_value=2**40)},
)
_webhook_shaped = st.fixed_dictionaries(
    {},
    optional={
        "store_id": _ids,
        "event": _events,
        "id": _ids,
        "customer": _customer,
        "orders_to_redact": st.one_of(st.lists(_ids, max_size=5), _json),
        "orders_requested": st.one_of(st.lists(_ids, max_size=5), _json),
        "data_request": st.one_of(st.fixed_dictionaries({"id": _ids}), _json),
        "extra": _json,
    },
)


def _dump(value: Any) -> bytes:
    # json, not orjson: it writes NaN, Infinity and integers past 64 bits, as an attacker may.
    return json.dumps(value).encode()


@st.composite
def _bodies(draw: st.DrawFn) -> bytes:
    kind = draw(
        st.sampled_from(
            ["bytes", "json", "webhook", "plausible", "plausible", "near_limit", "nested"]
        )
    )
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "json":
        return _dump(draw(_json))
    if kind == "webhook":
        return _dump(draw(_webhook_shaped))
    if kind == "plausible":
        return _dump(draw(_plausible))
    if kind == "near_limit":
        size = draw(st.integers(min_value=LIMIT - 64, max_value=LIMIT + 4096))
        head = _dump({"store_id": STORE, "event": "store/redact", "pad": ""})[:-2]
        return head + b"x" * max(0, size - len(head) - 2) + b'"}'
    depth = draw(st.integers(min_value=1, max_value=6000))
    return (
        b'{"store_id": %d, "event": "store/redact", "x": ' % STORE
        + b"[" * depth
        + b"]" * depth
        + b"}"
    )


def _encode(body: bytes, encoding: str) -> bytes:
    if encoding == "raw":
        return body
    text = body.decode("utf-8", errors="surrogateescape")
    try:
        return text.encode(encoding, errors="surrogateescape" if encoding == "utf-8" else "strict")
    except (UnicodeEncodeError, LookupError):
        return body


@dataclass
class Case:
    path: str
    body: bytes
    signature: str
    content_type: str
    gzip_header: str
    chunked: bool


@st.composite
def _cases(draw: st.DrawFn) -> Case:
    body = _encode(
        draw(_bodies()), draw(st.sampled_from(["raw", "raw", "utf-16", "utf-8-sig", "latin-1"]))
    )
    return Case(
        path=draw(st.sampled_from(PATHS)),
        body=body,
        signature=draw(
            st.sampled_from(["valid", "valid", "valid", "upper", "none", "junk", "other_body"])
        ),
        content_type=draw(
            st.sampled_from(
                ["application/json", "text/plain", "application/json; charset=utf-16", ""]
            )
        ),
        gzip_header=draw(st.sampled_from(["none", "none", "none", "lie", "true"])),
        chunked=draw(st.booleans()),
    )


async def _chunks(body: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(body), 4096):
        yield body[start : start + 4096]


async def _send(system: System, case: Case) -> tuple[int, str]:
    secret = system.simulator.state.client_secret
    wire = gzip.compress(case.body) if case.gzip_header == "true" else case.body
    headers = {"Content-Type": case.content_type} if case.content_type else {}
    if case.gzip_header != "none":
        headers["Content-Encoding"] = "gzip"
    good = sign(case.body, secret)
    headers |= {
        "valid": {HMAC_HEADER: good},
        "upper": {HMAC_HEADER: f" {good.upper()} "},
        "none": {},
        "junk": {HMAC_HEADER: "zz" + good[2:]},
        "other_body": {HMAC_HEADER: sign(case.body + b" ", secret)},
    }[case.signature]
    data: Any = _chunks(wire) if case.chunked else wire
    url = f"{system.ingest_url}/webhooks/nuvemshop{case.path}"
    async with system.http.post(url, data=data, headers=headers) as response:
        text = await response.text(errors="replace")
    try:
        error = str(orjson.loads(text).get("error", ""))
    except (orjson.JSONDecodeError, AttributeError):
        error = text[:40]
    # The error names the field and quotes the value: keep the field for "distinct answers".
    return response.status, error.split(":")[0][:40]


def parse_lgpd_or_main(case: Case) -> Webhook:
    slug = case.path.lstrip("/")
    if not slug:
        return parse_any_webhook(case.body)
    return parse_lgpd_webhook(case.body, LGPD_ROUTES[slug])


async def queue_depth(amqp_url: str, queue: str) -> int:
    """Messages ready in ``queue`` (a passive declare: nothing is taken)."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        return int(declared.declaration_result.message_count or 0)


async def test_fuzzed_webhooks_get_only_contract_answers_and_queue_only_what_they_accept(
    system: System,
) -> None:
    await system.connect_store(STORE)
    await first_poll_done(system, STORE)
    loop = asyncio.get_running_loop()
    before = len(system.observer.of("webhook.received"))
    answers: Counter[tuple[int, str]] = Counter()
    statuses: Counter[int] = Counter()
    requests: list[str] = []  # LGPD requests accepted for the known store

    @settings(
        max_examples=EXAMPLES,
        print_blob=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=_cases())
    def fuzz(case: Case) -> None:
        status, error = asyncio.run_coroutine_threadsafe(_send(system, case), loop).result(30)
        answers[(status, error)] += 1
        statuses[status] += 1
        assert status in ALLOWED, (status, error, case)
        if status < 300:
            assert case.signature in ("valid", "upper"), case
            hook = parse_lgpd_or_main(case)
            if hook.store_id == STORE and hook.event in LGPD_EVENTS:
                requests.append(hook.event)

    await asyncio.to_thread(fuzz)

    accepted = sum(n for s, n in statuses.items() if s < 300)
    await system.observer.wait_for("webhook.received", count=before + accepted, within=30)
    # Every webhook.received was queued (confirmed) before its request was answered: once the
    # answered ones are handled and an echo is back, one queued for a refused request is seen too.
    await system.ingest_settled(within=30)
    assert len(system.observer.of("webhook.received")) == before + accepted
    # The consumer acted on every accepted request for the known store (and crashed on none).
    await system.observer.wait_for(
        "privacy.request", count=len(requests), store_id=STORE, within=30
    )
    assert await queue_depth(system.settings.amqp_url, "ingest.webhooks.dead") == 0
    # Still alive and still working: a genuine order webhook imports its order.
    async with system.http.get(f"{system.ingest_url}/healthz") as response:
        assert response.status == 200
    order = system.simulator.state.add_order(STORE, paid=True)
    await system.observer.wait_for("order.paid", store_id=STORE, order_id=int(order["id"]))

    figures = {
        "webhook_inputs_tried": sum(statuses.values()),
        "webhook_distinct_answers": len(answers),
        "webhook_statuses": {str(s): n for s, n in sorted(statuses.items())},
        "webhook_crashes": 0,
    }
    record_figures(figures)
    print(f"\nwebhook fuzz: {json.dumps(figures)}")


def record_figures(figures: dict[str, Any]) -> None:
    known = json.loads(FIGURES.read_text()) if FIGURES.exists() else {}
    FIGURES.write_text(json.dumps(known | figures, indent=2) + "\n")
