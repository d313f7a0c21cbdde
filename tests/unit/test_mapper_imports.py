"""The mapper's use case (``imports.import_orders``) on an in-memory store: fast, no database.

What a paid order becomes (a new or reused customer, catalogued or created products, or one of
the rejections with its parked copy), and the promise of the one SQL path: a batch of many
decides every message exactly as batches of one would, in the same order.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from services.mapper import rules
from services.mapper.imports import Received, import_orders
from shared.contracts import OrderInvalid, OrderPaid
from shared.messaging import Envelope
from tests.unit.mapper_memory import MemoryImports, Rejection
from tests.unit.test_mapper_domain import item, order_body

TZ = rules.DEFAULT_TIMEZONE


def paid(order_id: int = 1, store_id: int = 7, **overrides: Any) -> Received:
    order = OrderPaid.model_validate(order_body(store_id=store_id, order_id=order_id, **overrides))
    return received(order, f"order.paid:{store_id}:{order_id}")


def invalid(order_id: int, store_id: int = 7) -> Received:
    return received(OrderInvalid(store_id=store_id, order_id=order_id, detail="unreadable"))


def received(message: OrderPaid | OrderInvalid, message_id: str | None = None) -> Received:
    body = message.model_dump_json().encode()
    key = message.routing_key
    return Received(message, message_id or f"{key}:{message.order_id}", key, body, f"{key}.v1")


def run(store: MemoryImports, *messages: Received) -> list[Envelope]:
    return asyncio.run(import_orders(store, list(messages), TZ))


def bodies(envs: list[Envelope], routing_key: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = [
        orjson.loads(e.body) for e in envs if e.routing_key == routing_key
    ]
    return found


def one_sale(envs: list[Envelope]) -> dict[str, Any]:
    (sale,) = bodies(envs, "sale.pending_review")
    return sale


def one_rejection(envs: list[Envelope]) -> dict[str, Any]:
    assert [e.routing_key for e in envs] == ["sale.rejected", "mapper.orders.parked"]
    (rejected,) = bodies(envs, "sale.rejected")
    return rejected


# --- what a paid order becomes --------------------------------------------------------------------


def test_a_new_customer_and_new_products_are_created() -> None:
    store = MemoryImports()
    sale = one_sale(run(store, paid(1)))
    assert sale["customer"]["created"] is True
    assert sale["customer"]["name"] == "Maria da Silva"
    assert [(i["description"], i["product"]["created"]) for i in sale["items"]] == [
        ("Camiseta", True),
        ("Caneca", True),
    ]
    assert sale["total"] == "135.50"
    assert len(store.customers_by_key) == 1
    assert set(store.products_by_key) == {(7, "Camiseta"), (7, "Caneca")}
    assert store.products_by_key[(7, "Camiseta")].sku == "CAM-1"  # the line's SKU is kept


def test_the_same_name_and_document_reuse_the_customer() -> None:
    store = MemoryImports()
    first = one_sale(run(store, paid(1)))
    again = one_sale(run(store, paid(2)))
    assert again["customer"]["id"] == first["customer"]["id"]
    assert again["customer"]["created"] is False
    assert [i["product"]["created"] for i in again["items"]] == [False, False]
    # In one batch: the first sale created the customer, the second reused it.
    batch = bodies(run(store := MemoryImports(), paid(1), paid(2)), "sale.pending_review")
    assert [s["customer"]["created"] for s in batch] == [True, False]
    assert len({s["customer"]["id"] for s in batch}) == 1
    assert len(store.customers_by_key) == 1


def test_another_document_is_another_customer() -> None:
    store = MemoryImports()
    customer = {**order_body()["customer"], "document": "529.982.247-25"}
    sales = bodies(run(store, paid(1), paid(2, customer=customer)), "sale.pending_review")
    assert [s["customer"]["created"] for s in sales] == [True, True]
    assert len(store.customers_by_key) == 2


def test_a_catalogued_product_is_taken_and_the_rest_created() -> None:
    store = MemoryImports()
    caneca = store.add_product(7, "Caneca")
    sale = one_sale(run(store, paid(1)))
    products = {i["description"]: i["product"] for i in sale["items"]}
    assert products["Caneca"] == {"id": caneca, "description": "Caneca", "created": False}
    assert products["Camiseta"]["created"] is True


def test_matching_by_sku_takes_the_product_with_the_lines_sku() -> None:
    store = MemoryImports(settings={7: rules.StoreRules(product_match=rules.BY_SKU)})
    shirt = store.add_product(7, "Camiseta azul P", sku="CAM-1")
    sale = one_sale(run(store, paid(1)))
    assert sale["items"][0]["product"] == {
        "id": shirt,
        "description": "Camiseta azul P",
        "created": False,
    }


# --- rejections ------------------------------------------------------------------------------------


def test_an_invalid_order_is_rejected_and_parked_and_creates_nothing() -> None:
    store = MemoryImports()
    message = paid(1, items=[item("Caneca", quantity=0)])
    envs = run(store, message)
    rejected = one_rejection(envs)
    assert rejected["reason"] == "invalid_order"
    assert "quantity 0" in rejected["detail"]
    parked = envs[1]
    assert parked.body == message.body
    assert parked.message_id == f"{message.message_id}:parked:1"
    assert parked.headers["x-error-reason"] == "invalid_order"
    assert parked.headers["x-original-routing-key"] == "order.paid"
    assert (store.customers_by_key, store.products_by_key, store.sales) == ({}, {}, {})
    assert store.open_rejections()[(7, 1)].attempts == 1
    assert envs[0].message_id == "sale.rejected:7:1:1"
    # Rejected again: a second attempt, a new announcement and a new parked copy.
    again = run(store, message)
    assert [e.message_id for e in again] == [
        "sale.rejected:7:1:2",
        f"{message.message_id}:parked:2",
    ]


def test_order_invalid_is_rejected_unless_the_order_was_imported() -> None:
    store = MemoryImports()
    assert one_rejection(run(store, invalid(1)))["reason"] == "invalid_order"
    one_sale(run(store, paid(1)))  # the corrected order: imported, the rejection resolved
    assert store.open_rejections() == {}
    assert run(store, invalid(1)) == []


def test_a_switched_off_store_rejects_before_anything_else() -> None:
    store = MemoryImports(disabled={7: "switched_off"})
    rejected = one_rejection(run(store, paid(1, currency="USD")))
    assert rejected["reason"] == "store_disabled"
    assert "switched off (switched_off)" in rejected["detail"]


def test_an_order_not_in_reais_is_rejected() -> None:
    store = MemoryImports()
    envs = run(store, paid(1, currency="USD"), paid(2))
    assert bodies(envs, "sale.rejected")[0]["reason"] == "unsupported_currency"
    assert [s["order_id"] for s in bodies(envs, "sale.pending_review")] == [2]


def test_the_stock_check_rejects_what_lacks_stock_and_creates_nothing() -> None:
    store = MemoryImports(settings={7: rules.StoreRules(stock_check=True)})
    shirt = store.add_product(7, "Camiseta")
    store.stock[(7, shirt)] = 1
    rejected = one_rejection(run(store, paid(1)))
    assert rejected["reason"] == "insufficient_stock"
    assert rejected["items"] == [
        {"description": "Camiseta", "product_id": shirt, "requested": 2, "available": 1},
        # Caneca would be created: no id to show, no stock.
        {"description": "Caneca", "product_id": None, "requested": 1, "available": 0},
    ]
    assert (store.customers_by_key, store.sales) == ({}, {})
    assert set(store.products_by_key) == {(7, "Camiseta")}
    mug = store.add_product(7, "Caneca")
    store.stock |= {(7, shirt): 2, (7, mug): 1}
    one_sale(run(store, paid(1)))  # enough now: imported, the rejection resolved
    assert store.open_rejections() == {}


# --- repeats ---------------------------------------------------------------------------------------


def test_an_order_already_imported_publishes_nothing_and_resolves_its_rejection() -> None:
    store = MemoryImports()
    one_sale(run(store, paid(1)))
    # Rejected meanwhile on a retry (the sale existed already): the next copy resolves it.
    store.rejections[(7, 1)] = Rejection("insufficient_stock", "a retry", None, "retry-1")
    assert run(store, paid(1)) == []
    assert store.open_rejections() == {}


def test_copies_of_one_order_in_a_batch_make_one_sale() -> None:
    store = MemoryImports()
    copies = [received(paid(1).message, f"copy-{n}") for n in range(3)]
    envs = run(store, *copies)
    assert [e.routing_key for e in envs] == ["sale.pending_review"]


def test_a_rejected_order_then_its_correction_in_one_batch() -> None:
    store = MemoryImports()
    envs = run(store, invalid(1), paid(1), invalid(1))
    assert [e.routing_key for e in envs] == [
        "sale.rejected",
        "mapper.orders.parked",
        "sale.pending_review",
    ]
    assert store.open_rejections() == {}
