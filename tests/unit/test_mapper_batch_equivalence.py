"""The one SQL path's promise, as a property: a batch decides like batches of one, in order.

Random runs of ``order.paid`` and ``order.invalid`` messages (repeated orders, shared and new
customers and products, SKUs, invalid lines, other currencies) over stores with random settings
(stock check, matching by SKU, switched off) and catalogues with stock are imported on the
in-memory store twice: as one batch, and one message at a time. What is published and what is
stored must be the same, up to the ids each run draws.
"""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.mapper import rules
from services.mapper.adapters.memory import MemoryImports, MemoryMapper
from shared.contracts import Message
from shared.messaging import Envelope
from shared.subscribers import Received
from tests.unit.test_mapper_domain import item
from tests.unit.test_mapper_imports import invalid, paid, run

STORES = (1, 2)
PRODUCTS = ("Pão", "Leite", "Café")
SKUS = (None, "S1", "S2")


@st.composite
def messages(draw: st.DrawFn) -> Received[Message]:
    store_id = draw(st.sampled_from(STORES))
    order_id = draw(st.integers(1, 4))
    if draw(st.integers(0, 9)) == 0:
        return invalid(order_id, store_id)
    lines = draw(
        st.lists(
            st.tuples(
                st.sampled_from(PRODUCTS),
                st.sampled_from(SKUS),
                st.sampled_from([0, 1, 2, 2, 3, 3]),
            ),
            min_size=1,
            max_size=3,
        )
    )
    customer = {
        "name": draw(st.sampled_from(["Ana", "Bruno", "Ana ", " "])),
        "document": draw(st.sampled_from([None, "758.395.665-00", "529.982.247-25"])),
    }
    return paid(
        order_id,
        store_id,
        customer=customer,
        items=[item(n, q, "5.00", s) for n, s, q in lines],
        currency=draw(st.sampled_from(["BRL", "BRL", "BRL", "USD"])),
    )


@st.composite
def worlds(draw: st.DrawFn) -> dict[str, Any]:
    """Each store's settings, status and catalogue (with stock), as data to build stores from."""
    return {
        "settings": {
            s: rules.StoreRules(
                stock_check=draw(st.booleans()),
                product_match=draw(st.sampled_from([rules.BY_DESCRIPTION, rules.BY_SKU])),
            )
            for s in STORES
        },
        "disabled": [s for s in STORES if draw(st.integers(0, 5)) == 0],
        "catalogue": draw(
            st.lists(
                st.tuples(
                    st.sampled_from(STORES),
                    st.sampled_from([*PRODUCTS, "Outro"]),
                    st.sampled_from(SKUS),
                    st.integers(0, 4),
                ),
                max_size=4,
                unique_by=lambda c: (c[0], c[1]),
            )
        ),
    }


def build(world: dict[str, Any]) -> MemoryMapper:
    uow = MemoryMapper()
    store = uow.tables
    store.settings |= world["settings"]
    store.disabled |= dict.fromkeys(world["disabled"], "switched_off")
    for store_id, description, sku, stock in world["catalogue"]:
        store.stock[(store_id, store.add_product(store_id, description, sku))] = stock
    return uow


def published(store: MemoryImports, envs: list[Envelope]) -> list[tuple[str, str, Any]]:
    """What was published, with the ids each run draws replaced by what they name."""
    products = {p.id: (p.store_id, p.description) for p in store.products_by_key.values()}
    customers = {c.id: (c.name, c.document) for c in store.customers_by_key.values()}
    seen: list[tuple[str, str, Any]] = []
    for env in envs:
        if env.routing_key != "sale.pending_review":
            seen.append((env.routing_key, env.message_id, env.body))
            continue
        body: dict[str, Any] = orjson.loads(env.body)
        body.pop("sale_id")
        body["customer"]["id"] = customers[body["customer"]["id"]]
        for line in body["items"]:
            line["product"]["id"] = products[line["product"]["id"]]
        seen.append((env.routing_key, "", body))
    return seen


def stored(store: MemoryImports) -> dict[str, Any]:
    return {
        "customers": sorted(store.customers_by_key),
        "products": sorted((k, p.sku) for k, p in store.products_by_key.items()),
        "sales": sorted(store.sales),
        "rejections": {
            k: (r.reason, r.detail, r.items, r.attempts, r.resolved)
            for k, r in store.rejections.items()
        },
    }


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(world=worlds(), batch=st.lists(messages(), min_size=1, max_size=8))
def test_a_batch_decides_like_batches_of_one(
    world: dict[str, Any], batch: list[Received[Message]]
) -> None:
    together, alone = build(world), build(world)
    at_once = run(together, *batch)
    one_by_one = [env for message in batch for env in run(alone, message)]
    assert published(together.tables, at_once) == published(alone.tables, one_by_one)
    assert stored(together.tables) == stored(alone.tables)
