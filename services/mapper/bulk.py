"""The mapper's fast path: a whole batch of ordinary paid orders imported with set-based SQL.

An ordinary order is valid and belongs to a store without the stock check. For a batch of them
the cost is a fixed handful of statements (which sales exist, insert customers, read the winners,
insert products, read the winners, insert sales, insert lines, resolve rejections) instead of
a dozen round trips per order; the per-order path (``handlers.OrderHandler.import_order``) stays
for everything else: rejections, the stock check, privacy requests.

Semantics are the per-order path's, batch-wide: the same unique keys decide reuse, ``created`` is
true only on the first sale of the batch that created a customer or product, and a sale that a
concurrent worker created first is skipped (its customer and products are that worker's too).
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass, replace

from services.mapper import domain, rules
from services.mapper.adapters.postgres import as_json
from shared.contracts import OrderPaid
from shared.db import Conn

StoreKey = tuple[int, str, str]  # store, name key, document key
ProductKey = tuple[int, str]  # store, description


@dataclass(frozen=True)
class Candidate:
    """An order that passed validation, with its customer drafted."""

    order: OrderPaid
    customer: domain.CustomerDraft
    message_id: str


async def existing_sales(conn: Conn, orders: list[OrderPaid]) -> set[tuple[int, int]]:
    rows = await conn.fetch(
        """
        SELECT s.store_id, s.order_id FROM mapper.sales s
        JOIN unnest($1::bigint[], $2::bigint[]) AS t(store_id, order_id)
          ON s.store_id = t.store_id AND s.order_id = t.order_id
        """,
        [o.store_id for o in orders],
        [o.order_id for o in orders],
    )
    return {(r["store_id"], r["order_id"]) for r in rows}


async def store_rules(conn: Conn, store_ids: set[int]) -> dict[int, rules.StoreRules]:
    """The settings of the stores that have any (the others follow the defaults)."""
    rows = await conn.fetch(
        "SELECT store_id, stock_check, product_match, timezone FROM mapper.store_settings"
        " WHERE store_id = ANY($1::bigint[])",
        list(store_ids),
    )
    return {
        r["store_id"]: rules.StoreRules(r["stock_check"], r["product_match"], r["timezone"])
        for r in rows
    }


async def disabled_stores(conn: Conn, store_ids: set[int]) -> set[int]:
    rows = await conn.fetch(
        "SELECT store_id FROM mapper.store_status WHERE NOT enabled AND store_id = ANY($1::bigint[])",
        list(store_ids),
    )
    return {r["store_id"] for r in rows}


async def _customers(
    conn: Conn, candidates: list[Candidate]
) -> tuple[dict[StoreKey, domain.CustomerRef], set[StoreKey]]:
    drafts: dict[StoreKey, tuple[int, domain.CustomerDraft]] = {}
    for c in candidates:
        drafts.setdefault((c.order.store_id, *c.customer.key), (c.order.store_id, c.customer))
    keys = list(drafts)
    values = [d for _, d in drafts.values()]
    created_rows = await conn.fetch(
        """
        INSERT INTO mapper.customers
            (store_id, name, name_key, document, document_key, email, mobile_phone, business_phone,
             address)
        SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[],
                             $6::text[], $7::text[], $8::text[], $9::jsonb[])
        ON CONFLICT (store_id, name_key, document_key) DO NOTHING
        RETURNING id::text, store_id, name_key, document_key
        """,
        [k[0] for k in keys],
        [d.name for d in values],
        [k[1] for k in keys],
        [d.document for d in values],
        [k[2] for k in keys],
        [d.email for d in values],
        [d.mobile_phone for d in values],
        [d.business_phone for d in values],
        [as_json(d.address) for d in values],
    )
    refs: dict[StoreKey, domain.CustomerRef] = {}
    for row in created_rows:
        key = (row["store_id"], row["name_key"], row["document_key"])
        refs[key] = domain.CustomerRef.new(drafts[key][1], row["id"])
    missing = [k for k in keys if k not in refs]
    if missing:
        rows = await conn.fetch(
            """
            SELECT c.id::text, c.store_id, c.name_key, c.document_key, c.name, c.document,
                   c.mobile_phone, c.business_phone
            FROM mapper.customers c
            JOIN unnest($1::bigint[], $2::text[], $3::text[]) AS t(store_id, name_key, document_key)
              ON c.store_id = t.store_id AND c.name_key = t.name_key AND c.document_key = t.document_key
            """,
            [k[0] for k in missing],
            [k[1] for k in missing],
            [k[2] for k in missing],
        )
        for row in rows:
            refs[(row["store_id"], row["name_key"], row["document_key"])] = domain.CustomerRef(
                id=row["id"],
                name=row["name"],
                document=row["document"],
                mobile_phone=row["mobile_phone"],
                business_phone=row["business_phone"],
                created=False,
            )
    return refs, {(r["store_id"], r["name_key"], r["document_key"]) for r in created_rows}


async def _by_sku(
    conn: Conn, wanted: set[tuple[int, str]]
) -> dict[tuple[int, str], domain.ProductRef]:
    """(store, SKU) → the store's oldest product with that SKU."""
    if not wanted:
        return {}
    keys = sorted(wanted)
    rows = await conn.fetch(
        """
        SELECT DISTINCT ON (p.store_id, p.sku) p.id::text, p.store_id, p.sku, p.description
        FROM mapper.products p
        JOIN unnest($1::bigint[], $2::text[]) AS t(store_id, sku)
          ON p.store_id = t.store_id AND p.sku = t.sku
        ORDER BY p.store_id, p.sku, p.created_at, p.id
        """,
        [k[0] for k in keys],
        [k[1] for k in keys],
    )
    return {
        (r["store_id"], r["sku"]): domain.ProductRef(r["id"], r["description"], created=False)
        for r in rows
    }


async def _by_description(conn: Conn, keys: list[ProductKey]) -> dict[ProductKey, str]:
    rows = await conn.fetch(
        """
        SELECT p.id::text, p.store_id, p.description FROM mapper.products p
        JOIN unnest($1::bigint[], $2::text[]) AS t(store_id, description)
          ON p.store_id = t.store_id AND p.description = t.description
        """,
        [k[0] for k in keys],
        [k[1] for k in keys],
    )
    return {(r["store_id"], r["description"]): r["id"] for r in rows}


async def _products(
    conn: Conn, candidates: list[Candidate], settings: dict[int, rules.StoreRules]
) -> dict[ProductKey, domain.ProductRef]:
    """Every line's product, batch-wide, by each store's rule (``rules.plan_products``)."""
    per_store: dict[int, dict[str, domain.ProductDraft]] = {}
    for c in candidates:
        drafts = per_store.setdefault(c.order.store_id, {})
        for draft in domain.product_drafts(c.order):
            drafts.setdefault(draft.description, draft)
    match = {s: settings.get(s, rules.StoreRules()).product_match for s in per_store}
    wanted = {
        (store, d.sku)
        for store, drafts in per_store.items()
        if match[store] == rules.BY_SKU
        for d in drafts.values()
        if d.sku
    }
    by_sku = await _by_sku(conn, wanted)
    described = await _by_description(
        conn, [(store, d) for store, drafts in per_store.items() for d in drafts]
    )
    plans = {
        store: rules.plan_products(
            list(drafts.values()),
            match[store],
            {sku: ref for (s, sku), ref in by_sku.items() if s == store},
            {
                d: domain.ProductRef(i, d, created=False)
                for (s, d), i in described.items()
                if s == store
            },
        )
        for store, drafts in per_store.items()
    }
    created = await _create_products(
        conn, [(store, d) for store, plan in plans.items() for d in plan.create]
    )
    refs: dict[ProductKey, domain.ProductRef] = {}
    for store, plan in plans.items():
        mine = {d: ref for (s, d), ref in created.items() if s == store}
        refs |= {(store, d): ref for d, ref in rules.resolve_plan(plan, mine).items()}
    return refs


async def _create_products(
    conn: Conn, drafts: list[tuple[int, domain.ProductDraft]]
) -> dict[ProductKey, domain.ProductRef]:
    if not drafts:
        return {}
    rows = await conn.fetch(
        """
        INSERT INTO mapper.products (store_id, description, sku, price)
        SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::numeric[])
        ON CONFLICT (store_id, description) DO NOTHING
        RETURNING id::text, store_id, description
        """,
        [s for s, _ in drafts],
        [d.description for _, d in drafts],
        [d.sku for _, d in drafts],
        [d.unit_price for _, d in drafts],
    )
    refs = {
        (r["store_id"], r["description"]): domain.ProductRef(
            r["id"], r["description"], created=True
        )
        for r in rows
    }
    # Created by a concurrent import between the lookup and the insert: theirs is reused.
    missing = [(s, d.description) for s, d in drafts if (s, d.description) not in refs]
    if missing:
        for (store, description), product_id in (await _by_description(conn, missing)).items():
            refs[(store, description)] = domain.ProductRef(product_id, description, created=False)
    return refs


async def import_many(
    conn: Conn,
    candidates: list[Candidate],
    settings: dict[int, rules.StoreRules],
    default_timezone: str,
) -> list[tuple[str, domain.SaleDraft]]:
    """Create customers, products and sales for ``candidates``; returns the sales created."""
    customers, new_customers = await _customers(conn, candidates)
    products = await _products(conn, candidates, settings)
    zones: dict[int, dt.tzinfo] = {
        store: settings.get(store, rules.StoreRules()).zone(default_timezone)
        for store in {c.order.store_id for c in candidates}
    }
    claimed_customers: set[StoreKey] = set()
    claimed_products: set[ProductKey] = set()
    sales: list[tuple[str, domain.SaleDraft]] = []
    for c in candidates:
        store = c.order.store_id
        ckey = (store, *c.customer.key)
        customer = customers[ckey]
        # ``created`` belongs to the first sale of the batch that needed the new row.
        if ckey in new_customers and ckey not in claimed_customers:
            claimed_customers.add(ckey)
        elif customer.created:
            customer = replace(customer, created=False)
        refs: dict[str, domain.ProductRef] = {}
        for draft in domain.product_drafts(c.order):
            pkey = (store, draft.description)
            ref = products[pkey]
            if ref.created and pkey in claimed_products:
                ref = replace(ref, created=False)
            claimed_products.add(pkey)
            refs[draft.description] = ref
        sale_date = rules.sale_day(c.order, zones[store])
        draft_sale = domain.build_sale(c.order, customer, refs, c.order.activated_by, sale_date)
        sales.append((str(uuid.uuid4()), draft_sale))
    inserted = await _insert_sales(conn, sales)
    return [(sale_id, sale) for sale_id, sale in sales if sale_id in inserted]


async def _insert_sales(conn: Conn, sales: list[tuple[str, domain.SaleDraft]]) -> set[str]:
    rows = await conn.fetch(
        """
        INSERT INTO mapper.sales (id, store_id, order_id, order_number, customer_id, seller_id,
            subtotal, shipping, discount, total, sale_date, warnings, store_payment,
            customer_address, shipping_address)
        SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::bigint[], $4::bigint[], $5::uuid[],
            $6::text[], $7::numeric[], $8::numeric[], $9::numeric[], $10::numeric[], $11::date[],
            $12::jsonb[], $13::jsonb[], $14::jsonb[], $15::jsonb[])
        ON CONFLICT (store_id, order_id) DO NOTHING
        RETURNING id::text
        """,
        [sid for sid, _ in sales],
        [s.store_id for _, s in sales],
        [s.order_id for _, s in sales],
        [s.order_number for _, s in sales],
        [s.customer.id for _, s in sales],
        [s.seller_id for _, s in sales],
        [s.subtotal for _, s in sales],
        [s.shipping for _, s in sales],
        [s.discount for _, s in sales],
        [s.total for _, s in sales],
        [s.sale_date for _, s in sales],
        [json.dumps(list(s.warnings)) for _, s in sales],
        [as_json(s.store_payment) for _, s in sales],
        [as_json(s.customer_address) for _, s in sales],
        [as_json(s.shipping_address) for _, s in sales],
    )
    inserted = {r["id"] for r in rows}
    lines = [
        (sid, n, line) for sid, s in sales if sid in inserted for n, line in enumerate(s.lines, 1)
    ]
    if lines:
        await conn.execute(
            """
            INSERT INTO mapper.sale_items
                (sale_id, line_number, product_id, description, quantity, unit_price, total)
            SELECT * FROM unnest($1::uuid[], $2::int[], $3::uuid[], $4::text[], $5::int[],
                                 $6::numeric[], $7::numeric[])
            """,
            [sid for sid, _, _ in lines],
            [n for _, n, _ in lines],
            [line.product.id for _, _, line in lines],
            [line.description for _, _, line in lines],
            [line.quantity for _, _, line in lines],
            [line.unit_price for _, _, line in lines],
            [line.total for _, _, line in lines],
        )
    done = [s for sid, s in sales if sid in inserted]
    if done:
        await conn.execute(
            """
            UPDATE mapper.rejections r SET resolved_at = now()
            FROM unnest($1::bigint[], $2::bigint[]) AS t(store_id, order_id)
            WHERE r.store_id = t.store_id AND r.order_id = t.order_id AND r.resolved_at IS NULL
            """,
            [s.store_id for s in done],
            [s.order_id for s in done],
        )
    return inserted
