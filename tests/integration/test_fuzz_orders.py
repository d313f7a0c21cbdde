"""Hostile order payloads from the store API, through the whole running system.

The simulator serves each order with fields replaced by what hypothesis draws (``Store.hostile``:
type confusion, numbers past a double or 64 bits, NaN and Infinity, nesting past any parser's
depth, bad escapes and odd Unicode, empty and missing fields), announced by ``order/paid``
webhooks. Every order must end as a sale (``sale.pending_review``) or a rejection with reason
``invalid_order``; no consumer dead-letters anything, and the system still imports a good order
afterwards. The figures go to ``.fuzz-figures.json`` beside the webhook fuzz's.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any

import orjson
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from services.simulator.listing import MISSING
from shared.topology import LEDGER_ERP, LEDGER_SHARDS
from tests.harness import System
from tests.integration.ingest_helpers import first_poll_done
from tests.integration.test_fuzz_webhooks import queue_depth, record_figures

STORE = 734_001
BATCHES = 6
PER_BATCH = 12
DEAD = (
    "ingest.webhooks.dead",
    "mapper.orders.dead",
    LEDGER_ERP.dead_name,
    *(q.dead_name for q in LEDGER_SHARDS),
)

# Raw JSON the simulator's writer could never produce (nesting up to 900 levels: past what orjson
# writes, under what Python's json reads; deeper answers are unreadable, like a maintenance page,
# see docs/security.md), and ordinary values of the wrong type.
_RAW = [
    b"NaN",
    b"Infinity",
    b"-Infinity",
    b"1e999",
    b"-1e-999",
    b"123456789012345678901234567890",
    b"-99999999999999999999",
    b"0.000000000000000000000001",
    b'"\\ud800"',
    b'"\\u0000"',
    b'"\\udfff\\ud800"',
]
_values = st.one_of(
    st.sampled_from(_RAW).map(orjson.Fragment),
    st.integers(min_value=1, max_value=900).map(lambda d: orjson.Fragment(b"[" * d + b"]" * d)),
    st.sampled_from([None, True, False, 0, -1, 2**63 - 1, -(2**63), 1.5, "", " ", [], {}]),
    st.sampled_from(
        [
            "12.5",
            "1e3",
            "0x10",
            "\u0661\u0662\u0663",
            "S/N",
            "\u202eevil",
            "\U0001f469\u200d\U0001f467",
            "a" * 5000,
        ]
    ),
    st.text(max_size=30),
    st.just(MISSING),
)
# Where: top-level fields, and fields of the customer and of the first product.
_TOP = [
    "total",
    "subtotal",
    "discount",
    "number",
    "paid_at",
    "store_id",
    "customer",
    "products",
    "contact_identification",
    "contact_email",
    "contact_name",
    "contact_phone",
    "billing_address",
    "billing_number",
    "billing_zipcode",
    "shipping_address",
    "payment_details",
    "gateway",
    "fulfillments",
]
_CUSTOMER = ["id", "name", "email", "identification", "phone", "billing_address", "billing_city"]
_PRODUCT = ["name", "price", "quantity", "sku", "product_id", "variant_id"]
_mutation = st.one_of(
    st.tuples(st.just("top"), st.sampled_from(_TOP), _values),
    st.tuples(st.just("customer"), st.sampled_from(_CUSTOMER), _values),
    st.tuples(st.just("product"), st.sampled_from(_PRODUCT), _values),
)
_orders = st.lists(
    st.lists(_mutation, min_size=1, max_size=3), min_size=PER_BATCH, max_size=PER_BATCH
)


def _overrides(order: dict[str, Any], mutations: list[tuple[str, str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for where, key, value in mutations:
        if where == "top":
            out[key] = value
            continue
        if where == "customer":
            base = out.get("customer", order.get("customer"))
            if isinstance(base, dict):
                out["customer"] = _set(base, key, value)
            continue
        products = out.get("products", order.get("products"))
        if isinstance(products, list) and products and isinstance(products[0], dict):
            out["products"] = [_set(products[0], key, value), *products[1:]]
    return out


def _set(part: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    changed = {k: v for k, v in part.items() if k != key}
    if value is not MISSING:
        changed[key] = value
    return changed


def _outcome(system: System, order_id: int) -> str | None:
    if system.observer.of("sale.pending_review", store_id=STORE, order_id=order_id):
        return "sale"
    rejected = system.observer.of("sale.rejected", store_id=STORE, order_id=order_id)
    return f"rejected:{rejected[0].body['reason']}" if rejected else None


async def _run_batch(system: System, batch: list[list[tuple[str, str, Any]]]) -> list[str]:
    sim = system.simulator.state
    ids = []
    for mutations in batch:
        order = sim.add_order(STORE, notify=False)
        order_id = int(order["id"])
        sim.stores[STORE].hostile[order_id] = _overrides(order, mutations)
        ids.append(order_id)
    for order_id in ids:
        sim.mark_paid(STORE, order_id)  # order/paid: ingest fetches the hostile order
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        outcomes = [_outcome(system, i) for i in ids]
        if all(outcomes) or asyncio.get_running_loop().time() > deadline:
            break
        await system.observer.next_change(0.5)
    missing = [
        (i, sim.stores[STORE].hostile[i]) for i, o in zip(ids, outcomes, strict=True) if o is None
    ]
    assert not missing, f"orders without an outcome: {missing!r}"[:4000]
    return [o for o in outcomes if o is not None]


async def test_hostile_orders_become_sales_or_invalid_order_rejections(system: System) -> None:
    await system.connect_store(STORE)
    await first_poll_done(system, STORE)
    loop = asyncio.get_running_loop()
    outcomes: Counter[str] = Counter()
    tried = 0

    @settings(
        max_examples=BATCHES,
        deadline=None,
        database=None,
        print_blob=True,
        # No shrinking: each try waits for outcomes through the whole system; a failure is
        # reported as drawn, with the blob that replays it.
        phases=(Phase.explicit, Phase.generate),
        suppress_health_check=list(HealthCheck),
    )
    @given(batch=_orders)
    def fuzz(batch: list[list[tuple[str, str, Any]]]) -> None:
        nonlocal tried
        found = asyncio.run_coroutine_threadsafe(_run_batch(system, batch), loop).result(60)
        tried += len(batch)
        outcomes.update(found)
        assert set(found) <= {"sale", "rejected:invalid_order"}, found

    await asyncio.to_thread(fuzz)

    for queue in DEAD:
        assert await queue_depth(system.settings.amqp_url, queue) == 0, queue
    good = system.simulator.state.add_order(STORE, paid=True)
    await system.observer.wait_for("sale.pending_review", store_id=STORE, order_id=int(good["id"]))
    figures = {
        "order_inputs_tried": tried,
        "order_outcomes": dict(sorted(outcomes.items())),
        "order_consumer_crashes": 0,
    }
    record_figures(figures)
    print(f"\norder fuzz: {json.dumps(figures)}")
