"""Customers of a pending sale (SPEC §3), against the real broker and database.

A stored customer is reused only when both the normalised name (trimmed, inner spaces collapsed)
and the normalised document match; an invalid or missing document gives a customer without a
document and a warning on the sale that never shows the full number. Name fallbacks are ingest's
job: here whatever name arrives is the one used.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from shared.documents import normalize_document
from shared.settings import Settings
from tests.harness import System
from tests.integration.mapper_helpers import (
    CNPJ,
    CNPJ_ALPHANUMERIC,
    CNPJ_FORMATTED,
    CPF,
    CPF_FORMATTED,
    OTHER_CPF,
    Cli,
    import_order,
    make_order,
    pending_sale,
    pool,
    publish,
    running_mapper,
)


@pytest.fixture
async def system(settings: Settings) -> AsyncIterator[System]:
    async with running_mapper(settings) as running:
        yield running


@dataclass(frozen=True)
class ReuseRow:
    id: str
    first: tuple[str, str | None]  # (name, document) of the customer already stored
    second: tuple[str, str | None]  # (name, document) of the next order
    reused: bool


REUSE = [
    # The seed's own examples.
    ReuseRow("same-cpf-other-name", ("Maria Silva", CPF), ("Mariana Souza", CPF), reused=False),
    ReuseRow("same-name-other-cpf", ("Maria Silva", CPF), ("Maria Silva", OTHER_CPF), reused=False),
    ReuseRow("same-name-same-cpf", ("Maria Silva", CPF), ("Maria Silva", CPF), reused=True),
    # Names compare trimmed, inner spaces collapsed.
    ReuseRow("name-spacing", ("Maria Silva", CPF), ("  Maria   Silva ", CPF), reused=True),
    ReuseRow("name-tabs", ("Maria da Silva", CPF), ("Maria\tda  Silva", CPF), reused=True),
    ReuseRow("name-other-accent", ("José Silva", CPF), ("Jose Silva", CPF), reused=False),
    ReuseRow("name-other-case", ("Maria Silva", CPF), ("MARIA SILVA", CPF), reused=False),
    # Documents compare normalised.
    ReuseRow("cpf-formatted", ("Maria Silva", CPF), ("Maria Silva", CPF_FORMATTED), reused=True),
    ReuseRow(
        "cpf-spaces", ("Maria Silva", CPF_FORMATTED), ("Maria Silva", " 758 395 665 00 "), True
    ),
    ReuseRow("cnpj-formatted", ("Loja LTDA", CNPJ_FORMATTED), ("Loja LTDA", CNPJ), reused=True),
    ReuseRow(
        "cnpj-alphanumeric-case",
        ("Loja Nova LTDA", "12.ABC.345/01DE-35"),
        ("Loja Nova LTDA", CNPJ_ALPHANUMERIC.lower()),
        reused=True,
    ),
    ReuseRow("cpf-vs-cnpj", ("Maria Silva", CPF), ("Maria Silva", CNPJ), reused=False),
    # No document on either side: the name alone is then the whole key.
    ReuseRow("both-without-document", ("Maria Silva", None), ("Maria Silva", None), reused=True),
    ReuseRow("document-then-none", ("Maria Silva", CPF), ("Maria Silva", None), reused=False),
    ReuseRow("none-then-document", ("Maria Silva", None), ("Maria Silva", CPF), reused=False),
    # An invalid document is dropped: the customer is one without a document.
    ReuseRow("invalid-then-none", ("Maria Silva", "123.456.789-00"), ("Maria Silva", ""), True),
    ReuseRow("valid-then-invalid", ("Maria Silva", CPF), ("Maria Silva", "75839566501"), False),
]


async def test_customer_reuse_rule_table(system: System) -> None:
    """Reuse only when both name and document match (each row in a store of its own)."""
    firsts = [
        make_order(4100 + n, 1, name=row.first[0], document=row.first[1])
        for n, row in enumerate(REUSE)
    ]
    seconds = [
        make_order(4100 + n, 2, name=row.second[0], document=row.second[1])
        for n, row in enumerate(REUSE)
    ]
    for order in firsts:
        await publish(system, order)
    first_sales = await asyncio.gather(*(pending_sale(system, o) for o in firsts))
    for order in seconds:
        await publish(system, order)
    second_sales = await asyncio.gather(*(pending_sale(system, o) for o in seconds))

    failures: list[str] = []
    for n, row in enumerate(REUSE):
        first, second = first_sales[n]["customer"], second_sales[n]["customer"]
        stored = await pool(system).fetchval(
            "SELECT count(*) FROM mapper.customers WHERE store_id = $1", 4100 + n
        )
        got = (first["created"], second["id"] == first["id"], second["created"], stored)
        want = (True, row.reused, not row.reused, 1 if row.reused else 2)
        if got != want:
            failures.append(
                f"{row.id}: (first created, same id, second created, rows) = {got}, want {want}"
            )
    assert not failures, "\n".join(failures)


async def test_customers_belong_to_their_store(system: System) -> None:
    one = await import_order(system, make_order(4201, 1))
    other = await import_order(system, make_order(4202, 1))
    assert one["customer"]["created"] is True
    assert other["customer"]["created"] is True
    assert one["customer"]["id"] != other["customer"]["id"]


async def test_catalog_customer_is_reused(system: System, tmp_path: Path) -> None:
    cli = Cli(system.settings, tmp_path)
    added = await cli.json(
        "catalog",
        "add-customer",
        "--store-id",
        "4300",
        "--name",
        "Ana Paula Lima",
        "--document",
        "529.982.247-25",
        "--mobile-phone",
        "+55 21 97777-0000",
    )
    assert isinstance(added["id"], str)
    again = await cli.json(
        "catalog", "add-customer", "--store-id", "4300", "--name", " Ana  Paula Lima", "--document",
        OTHER_CPF,
    )  # fmt: skip
    assert again["id"] == added["id"]

    sale = await import_order(
        system, make_order(4300, 1, name="Ana Paula  Lima", document=OTHER_CPF)
    )
    assert sale["customer"]["id"] == added["id"]
    assert sale["customer"]["created"] is False
    assert sale["customer"]["document"] == OTHER_CPF
    assert sale["customer"]["mobile_phone"] == "+55 21 97777-0000"  # the stored customer's
    other = await import_order(system, make_order(4300, 2, name="Ana Paula Lima", document=None))
    assert other["customer"]["created"] is True
    assert other["customer"]["id"] != added["id"]
    assert (
        await pool(system).fetchval("SELECT count(*) FROM mapper.customers WHERE store_id = 4300")
        == 2
    )


@dataclass(frozen=True)
class DocumentRow:
    id: str
    document: str | None
    kept: str | None  # the normalised document the customer gets, None when dropped


DOCUMENTS = [
    DocumentRow("cpf", CPF, CPF),
    DocumentRow("cpf-formatted", CPF_FORMATTED, CPF),
    DocumentRow("cnpj-formatted", CNPJ_FORMATTED, CNPJ),
    DocumentRow("cnpj-alphanumeric", "12.abc.345/01de-35", CNPJ_ALPHANUMERIC),
    DocumentRow("missing", None, None),
    DocumentRow("empty", "", None),
    DocumentRow("blank", "   ", None),
    DocumentRow("cpf-bad-check-digits", "758.395.665-01", None),
    DocumentRow("cpf-all-equal", "111.111.111-11", None),
    DocumentRow("cnpj-bad-check-digits", "11.222.333/0001-82", None),
    DocumentRow("cnpj-alphanumeric-bad", "12ABC34501DE36", None),
    DocumentRow("wrong-length", "7583956650", None),
    DocumentRow("letters-in-cpf", "7583956650X", None),
    DocumentRow("rg-not-cpf", "MG-12.345.678", None),
]


async def test_document_rule_table(system: System) -> None:
    """Invalid or missing → imported without a document, with a warning; never the full number."""
    orders = [
        make_order(4400, 1 + n, name=f"Cliente {n}", document=row.document)
        for n, row in enumerate(DOCUMENTS)
    ]
    for order in orders:
        await publish(system, order)
    failures: list[str] = []
    for order, row in zip(orders, DOCUMENTS, strict=True):
        sale = await pending_sale(system, order)
        stored = await pool(system).fetchrow(
            "SELECT document, document_key FROM mapper.customers WHERE id = $1::uuid",
            sale["customer"]["id"],
        )
        assert stored is not None
        warnings: list[str] = sale["warnings"]
        got = (sale["customer"]["document"], stored["document"], len(warnings))
        want = (row.kept, row.kept, 0 if row.kept else 1)
        if got != want:
            failures.append(f"{row.id}: (message, stored, warnings) = {got}, want {want}")
        raw = (row.document or "").strip()
        digits = normalize_document(raw)
        for warning in warnings:
            if len(digits) > 4 and (raw in warning or digits in warning):
                failures.append(f"{row.id}: warning shows the full document: {warning!r}")
            if "document" not in warning.lower() and "cpf" not in warning.lower():
                failures.append(f"{row.id}: warning does not say what was dropped: {warning!r}")
        stored_warnings = await pool(system).fetchval(
            "SELECT warnings::text FROM mapper.sales WHERE id = $1::uuid", sale["sale_id"]
        )
        if len(digits) > 4 and digits in stored_warnings:
            failures.append(f"{row.id}: stored warnings show the full document")
    assert not failures, "\n".join(failures)


async def test_what_arrives_is_used(system: System) -> None:
    """Name, phones and e-mail as ingest announced them (its fallbacks are its own tests)."""
    rows = [
        ("Conceição Ñandú d'Ávila", "+55 11 91234-5678", "+55 11 3000-0000", "c@example.com.br"),
        ("Empresa X Comércio LTDA", None, "(11) 3456-7890", None),
        ("Pedro", "11987654321", None, None),
    ]
    for n, (name, mobile, business, email) in enumerate(rows):
        order = make_order(
            4500,
            1 + n,
            name=name,
            document=None,
            mobile_phone=mobile,
            business_phone=business,
            email=email,
        )
        sale = await import_order(system, order)
        customer = sale["customer"]
        assert (customer["name"], customer["mobile_phone"], customer["business_phone"]) == (
            name,
            mobile,
            business,
        )
        stored = await pool(system).fetchrow(
            "SELECT name, mobile_phone, business_phone, email FROM mapper.customers"
            " WHERE id = $1::uuid",
            customer["id"],
        )
        assert stored is not None
        assert tuple(stored) == (name, mobile, business, email)
